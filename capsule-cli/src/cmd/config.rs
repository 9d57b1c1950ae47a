//! `config NAME get|set|unset|list|export|import`: the registry (capsule_core::registry).
//! Reads show the effective registry (the capsule's keys, under its linked shared capsules'
//! keys, under the sandbox's layer); writes go
//! to the sandbox's layer, which the next run projects (environment, edited /etc files).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use capsule_core::manifest::RegValue;
use capsule_core::registry;
use capsule_core::store::Store;

use super::capsule_ref;
use crate::cli::Output;
use crate::cli::args::{ConfigAction, ConfigArgs};

/// `config`.
pub fn run(store: &Store, out: Output, c: ConfigArgs) -> Result<ExitCode> {
    let r = capsule_ref(&c.name)?;
    let (_, m) = store.load(&r).with_context(|| format!("cannot load capsule {r}"))?;
    // The shared capsules the manifest links to layer their keys over the capsule's.
    let links =
        capsule_core::run::shared::linked(store, &m, &[]).with_context(|| format!("cannot load the links of {r}"))?;
    let shared =
        links.iter().map(|l| registry::shared_layer(store.root(), &l.manifest)).collect::<Result<Vec<_>, _>>()?;
    let layer_path = registry::sandbox_file(store.root(), &r.name);
    let mut layer = registry::load_layer(&layer_path)?;
    match c.action {
        ConfigAction::Get { key } => {
            registry::check_key(&key)?;
            let merged = registry::merged(&m, &shared, &layer);
            let Some(v) = merged.get(&key) else { bail!("capsule {r} has no registry key {key}") };
            println!("{}", registry::format_value(v));
        }
        ConfigAction::Set { key, value } => {
            registry::check_key(&key)?;
            // Typed literals as in the text form; anything else is a plain string.
            let v = registry::parse_value(&value).unwrap_or(RegValue::String(value));
            layer.insert(key, v);
            registry::save_layer(&layer_path, &layer)?;
        }
        ConfigAction::Unset { key } => {
            registry::check_key(&key)?;
            if layer.remove(&key).is_none() {
                if m.registry.iter().any(|(k, _)| *k == key) {
                    bail!("{key} comes with capsule {r}; `config set` it to override it");
                }
                bail!("capsule {r} has no registry key {key} in its sandbox");
            }
            registry::save_layer(&layer_path, &layer)?;
        }
        ConfigAction::List { prefix } => {
            let merged = registry::merged(&m, &shared, &layer);
            let p = prefix.unwrap_or_default();
            if out.json {
                let items: Vec<_> = merged
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| serde_json::json!({ "key": k, "value": registry::format_value(v) }))
                    .collect();
                out.print_json(&serde_json::Value::Array(items))?;
            } else {
                for (k, v) in merged.iter().filter(|(k, _)| k.starts_with(&p)) {
                    println!("{k} = {}", registry::format_value(v));
                }
            }
        }
        ConfigAction::Export { output } => {
            let text = registry::format(&registry::merged(&m, &shared, &layer));
            match output {
                Some(f) => std::fs::write(&f, text).with_context(|| format!("cannot write {}", f.display()))?,
                None => print!("{text}"),
            }
        }
        ConfigAction::Import { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let incoming = registry::parse(&text, &file.display().to_string())?;
            let n = incoming.len();
            layer.extend(incoming);
            registry::save_layer(&layer_path, &layer)?;
            out.info(format!("imported {n} keys into capsule {r}'s sandbox"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
