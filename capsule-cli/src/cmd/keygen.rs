//! `keygen [-o PREFIX]`: a new ed25519 key pair for signed exports.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::sign::SecretKey;
use serde_json::json;

use crate::cli::Output;
use crate::cli::args::Keygen;

/// `keygen`.
pub fn run(out: Output, k: &Keygen) -> Result<ExitCode> {
    let key = SecretKey::generate().context("cannot make a signing key")?;
    let (secret, public) = key
        .write_pair(&k.output)
        .with_context(|| format!("cannot write the key pair {}.key / .pub", k.output.display()))?;
    let public_key = key.public();
    if out.json {
        out.print_json(&json!({
            "secret_key_file": secret.display().to_string(),
            "public_key_file": public.display().to_string(),
            "public_key": public_key.to_hex(),
            "fingerprint": public_key.fingerprint(),
        }))?;
    } else {
        out.info(format!(
            "wrote {} (secret: keep it private) and {} (give it to whoever imports your exports)",
            secret.display(),
            public.display()
        ));
        println!("{}", public_key.to_text().trim_end());
        println!("fingerprint {}", public_key.fingerprint());
    }
    Ok(ExitCode::SUCCESS)
}
