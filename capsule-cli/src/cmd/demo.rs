//! `demo`: capture the bundled demo application, show what the capsule holds, and run it
//! from the capsule.
//!
//! The demo is compiled from the sources embedded in this binary ([`crate::fixture`]) and
//! installed into an empty staging root between `snapshot begin` and `snapshot end`, exactly
//! as an admin would capture an install, so the demo exercises the real capture path. The
//! staging root is then deleted: what the program finds (its /etc config, its data, its own
//! library) it can only find in the capsule.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::capture::snapshot;
use capsule_core::manifest::{EntryKind, RelPath};
use capsule_core::store::Store;

use crate::cli::Output;
use crate::cli::progress::Bars;
use crate::fixture;

/// The capsule the demo makes.
const NAME: &str = "capsule-demo";
/// The identity the demo runs with: its own host name, domain, address, MAC and machine-id.
const HOST: &str = "demo-host";
const DOMAIN: &str = "capsule.test";
const IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 42);
const MAC: &str = "02:ca:95:00:00:01";
const MID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// `demo`.
pub fn run(store: &Store, out: Output) -> Result<ExitCode> {
    let staging =
        tempfile::Builder::new().prefix("capsule-demo-root-").tempdir().context("cannot create a staging root")?;
    let bars = Bars::new(out.bars());
    let roots = vec!["/usr".to_owned(), "/etc".to_owned()];
    out.info("1. snapshot of an empty staging root");
    snapshot::begin(store, staging.path(), &roots, &[], &bars).context("demo: snapshot begin failed")?;
    out.info("2. building and installing the demo application (a C program, its config under /etc, its data and its own library)");
    fixture::install_demo(staging.path()).context("demo: cannot build the demo application")?;
    out.info("3. snapshot end: the changes become the capsule");
    let digest = snapshot::end(
        store,
        NAME,
        "latest",
        Some(&format!("/{}", fixture::DEMO_BINARY)),
        capsule_core::manifest::BaseKind::Host,
        &bars,
    )
    .context("demo: snapshot end failed")?;
    let m = store.load_manifest(&digest)?;
    if out.json {
        out.print_json(&super::inspect::to_json(&digest, &m, store.root()))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("\ncapsule {NAME}:latest {} holds {} entries:", digest.short(), m.entries.len());
    for e in &m.entries {
        let origin = m.origins.get(e.origin as usize).map(|o| o.step.name()).unwrap_or("?");
        let what = match &e.kind {
            EntryKind::File { size, .. } => format!("{size} bytes"),
            EntryKind::Symlink { target } => format!("-> {}", String::from_utf8_lossy(target)),
            k => k.name().to_owned(),
        };
        println!("  {:<48} {what:<26} ({origin})", e.path.display());
    }
    let conf = RelPath::new(fixture::DEMO_CONFIG).context("demo config path")?;
    if let Some(EntryKind::File { digest, .. }) = m.get(&conf).map(|e| &e.kind) {
        let text = store.read_blob(digest, 1 << 20, "config file")?;
        println!(
            "\n/{} as stored in the capsule (also registry key machine/files/{}):",
            fixture::DEMO_CONFIG,
            fixture::DEMO_CONFIG
        );
        print!("{}", String::from_utf8_lossy(&text));
    }
    drop(staging);
    println!(
        "\n$ capsule run {NAME} --hostname {HOST} --domain {DOMAIN} --ip {IP} --mac {MAC} --machine-id {MID}\n  \
         (the staging root is gone; everything below comes from the capsule and its identity)"
    );
    let run = crate::cli::args::Run {
        name: NAME.to_owned(),
        entry: None,
        isolation: Vec::new(),
        seccomp: crate::cli::args::Seccomp::Auto,
        stats: false,
        no_cookie: false,
        unconfined: false,
        stop_timeout: 10,
        hostname: Some(HOST.to_owned()),
        domain: Some(DOMAIN.to_owned()),
        machine_id: Some(MID.to_owned()),
        ip: Some(IP),
        mac: Some(MAC.to_owned()),
        netns: false,
        netns_peer: None,
        sandbox: None,
        user: None,
        with: Vec::new(),
        args: Vec::new(),
    };
    let code = super::run::run(store, out, run)?;
    println!(
        "\nnext: `capsule inspect {NAME}`, `capsule sandbox {NAME} diff`, `capsule export {NAME} -o demo.capsule`"
    );
    Ok(code)
}
