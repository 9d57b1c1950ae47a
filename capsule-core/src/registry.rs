//! The registry: a capsule's hierarchical configuration, the Linux counterpart of ThinApp's and
//! App-V's virtual registry. `machine/…` keys come with the capsule (capture records /etc files
//! there); the sandbox holds a layer of its own (`sandboxes/NAME/registry`, written by
//! `capsule config set/unset/import`), which wins over the capsule's: capsule < sandbox.
//!
//! What a run makes of it ([`Projection`]):
//! - `machine/env/NAME`, `user/env/NAME` (string or int): environment variables.
//! - `machine/files/PATH#KEY`, `user/files/PATH#KEY` (string or int): line `KEY` of the
//!   configuration file `/PATH` reads with this value, as the program sees the file; the host's
//!   file is never touched.
//! - anything else: plain settings, for `config get`.
//!
//! The text form (`export`/`import`, think `.reg` files) is one `KEY = VALUE` per line, `#`
//! comments; VALUE is a JSON string (`"text"`), `int:N`, `file:DIGEST:MODE` (octal) or
//! `deleted`. It round-trips exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{Manifest, RegValue};

/// Registry errors, naming the line or key.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A line of a text registry that does not parse.
    #[error("{source_name}:{line}: {reason}: {text:?}")]
    BadLine {
        /// Where the text came from (a file name).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A key outside `machine/` and `user/`, or malformed.
    #[error(
        "invalid registry key {0:?}: keys are machine/… or user/…, '/'-separated, no spaces, '=' or '#' outside a files/ key's '#KEY'"
    )]
    BadKey(String),
    /// Reading or writing the sandbox layer.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The longest key or string value accepted.
const MAX_LEN: usize = 4096;

/// Check a key: `machine/…` or `user/…`, non-empty components, printable, no spaces or '='.
pub fn check_key(key: &str) -> Result<(), RegistryError> {
    let bad = || RegistryError::BadKey(key.to_owned());
    let rest = key.strip_prefix("machine/").or_else(|| key.strip_prefix("user/")).ok_or_else(bad)?;
    let (path, field) = match rest.split_once('#') {
        Some((p, f)) if p.starts_with("files/") && !f.is_empty() => (p, Some(f)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let chars_ok = |s: &str| s.chars().all(|c| c.is_ascii_graphic() && c != '=' && c != '#');
    if key.len() > MAX_LEN || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") || !chars_ok(path) {
        return Err(bad());
    }
    if field.is_some_and(|f| !chars_ok(f)) {
        return Err(bad());
    }
    Ok(())
}

/// Parse one VALUE.
pub fn parse_value(s: &str) -> Result<RegValue, String> {
    let s = s.trim();
    if s == "deleted" {
        return Ok(RegValue::Deleted);
    }
    if let Some(n) = s.strip_prefix("int:") {
        return n.parse().map(RegValue::Int).map_err(|_| format!("not an integer: {n:?}"));
    }
    if let Some(f) = s.strip_prefix("file:") {
        let (d, m) = f.split_once(':').ok_or("file: wants DIGEST:MODE")?;
        let digest: Digest = d.parse().map_err(|_| format!("not a digest: {d:?}"))?;
        let mode = u32::from_str_radix(m, 8).map_err(|_| format!("not an octal mode: {m:?}"))?;
        return Ok(RegValue::File { digest, mode });
    }
    if s.starts_with('"') {
        let v: String = serde_json::from_str(s).map_err(|e| format!("bad string: {e}"))?;
        if v.len() > MAX_LEN {
            return Err(format!("string longer than {MAX_LEN} bytes"));
        }
        return Ok(RegValue::String(v));
    }
    Err("a value is \"text\", int:N, file:DIGEST:MODE or deleted".to_owned())
}

/// Format one VALUE (the inverse of [`parse_value`]).
pub fn format_value(v: &RegValue) -> String {
    match v {
        RegValue::String(s) => serde_json::to_string(s).unwrap_or_default(),
        RegValue::Int(n) => format!("int:{n}"),
        RegValue::File { digest, mode } => format!("file:{}:{mode:o}", digest.to_hex()),
        RegValue::Deleted => "deleted".to_owned(),
    }
}

/// Parse a text registry (`source_name` names it in errors). Later lines win.
pub fn parse(text: &str, source_name: &str) -> Result<BTreeMap<String, RegValue>, RegistryError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let bad = |reason: String| RegistryError::BadLine {
            source_name: source_name.to_owned(),
            line: i + 1,
            text: line.to_owned(),
            reason,
        };
        let (k, v) = t.split_once(" = ").ok_or_else(|| bad("expected KEY = VALUE".to_owned()))?;
        check_key(k.trim()).map_err(|e| bad(e.to_string()))?;
        let v = parse_value(v).map_err(bad)?;
        out.insert(k.trim().to_owned(), v);
    }
    Ok(out)
}

/// The text form of `entries`.
pub fn format<'a>(entries: impl IntoIterator<Item = (&'a String, &'a RegValue)>) -> String {
    let mut s = String::from("# capsule registry: KEY = VALUE (\"text\", int:N, file:DIGEST:MODE, deleted)\n");
    for (k, v) in entries {
        let _ = writeln!(s, "{k} = {}", format_value(v));
    }
    s
}

/// The sandbox layer of capsule `name`, in `store_root`.
pub fn sandbox_file(store_root: &Path, name: &str) -> PathBuf {
    store_root.join("sandboxes").join(name).join("registry")
}

/// Read the sandbox layer (empty if none).
pub fn load_layer(path: &Path) -> Result<BTreeMap<String, RegValue>, RegistryError> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(RegistryError::Io { action: "failed to read", path: path.to_owned(), source }),
    }
}

/// Replace the sandbox layer atomically (temp file, rename).
pub fn save_layer(path: &Path, layer: &BTreeMap<String, RegValue>) -> Result<(), RegistryError> {
    let io = |action| move |source| RegistryError::Io { action, path: path.to_owned(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("failed to create the directory of"))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("failed to write"))?;
    std::fs::write(tmp.path(), format(layer)).map_err(io("failed to write"))?;
    tmp.persist(path).map_err(|e| RegistryError::Io {
        action: "failed to write",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// What a shared capsule `m` contributes to the capsules linked to it: its own keys with its
/// sandbox layer over them (so `config SHARED set` reaches every linked app).
pub fn shared_layer(store_root: &Path, m: &Manifest) -> Result<BTreeMap<String, RegValue>, RegistryError> {
    let own = load_layer(&sandbox_file(store_root, &m.name))?;
    Ok(merged(m, &[], &own))
}

/// The effective registry: the capsule's keys, the layers of the shared capsules it links to
/// over them (in link order, see [`shared_layer`]), then the sandbox layer over all.
pub fn merged(
    m: &Manifest,
    shared: &[BTreeMap<String, RegValue>],
    layer: &BTreeMap<String, RegValue>,
) -> BTreeMap<String, RegValue> {
    let mut out: BTreeMap<String, RegValue> = m.registry.iter().cloned().collect();
    for s in shared {
        out.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// What a run makes of the effective registry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// Environment variables (user/ over machine/).
    pub env: BTreeMap<String, String>,
    /// Per configuration file (absolute path), the lines to set: KEY → value.
    pub edits: BTreeMap<String, BTreeMap<String, String>>,
    /// Identity defaults (`identity/hostname`, `domain`, `ip`, `mac`, `machine-id`): the
    /// capsule's own, over which `run`'s options win.
    pub identity: BTreeMap<String, String>,
}

/// The identity keys the registry carries (under `machine/identity/` or `user/identity/`).
pub const IDENTITY_KEYS: [&str; 5] = ["hostname", "domain", "ip", "mac", "machine-id"];

/// Project `reg` (see the module docs).
pub fn project(reg: &BTreeMap<String, RegValue>) -> Projection {
    let mut p = Projection::default();
    let text = |v: &RegValue| match v {
        RegValue::String(s) => Some(s.clone()),
        RegValue::Int(n) => Some(n.to_string()),
        _ => None,
    };
    // machine/ first, user/ second: the user's value wins.
    for layer in ["machine/", "user/"] {
        for (k, v) in reg.iter().filter(|(k, _)| k.starts_with(layer)) {
            let rest = &k[layer.len()..];
            let Some(value) = text(v) else { continue };
            if let Some(var) = rest.strip_prefix("env/") {
                p.env.insert(var.to_owned(), value);
            } else if let Some((file, key)) = rest.strip_prefix("files").and_then(|f| f.split_once('#')) {
                p.edits.entry(file.to_owned()).or_default().insert(key.to_owned(), value);
            } else if let Some(field) = rest.strip_prefix("identity/").filter(|f| IDENTITY_KEYS.contains(f)) {
                p.identity.insert(field.to_owned(), value);
            }
        }
    }
    p
}

/// `content` with each `KEY` line set to its value, keeping the line's own separator
/// (`KEY = v`, `KEY: v`, `KEY v`); keys not found are appended as `KEY = value`.
pub fn edit(content: &str, sets: &BTreeMap<String, String>) -> String {
    let mut done = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(content.len() + 64);
    for line in content.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = &body[..body.len() - body.trim_start().len()];
        let rest = body.trim_start();
        let hit = sets.iter().find(|(k, _)| {
            rest.strip_prefix(k.as_str())
                .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t', '=', ':']))
                && !rest.starts_with('#')
        });
        match hit {
            Some((k, v)) => {
                let after = &rest[k.len()..];
                let sep_len = after.len() - after.trim_start_matches([' ', '\t', '=', ':']).len();
                let sep = if sep_len == 0 { " = " } else { &after[..sep_len] };
                let _ = writeln!(out, "{indent}{k}{sep}{v}");
                done.insert(k.clone());
            }
            None => {
                out.push_str(body);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    for (k, v) in sets.iter().filter(|(k, _)| !done.contains(*k)) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(out, "{k} = {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let mut m = BTreeMap::new();
        m.insert("machine/env/GREETING".to_owned(), RegValue::String("hé \"quoted\"\n".to_owned()));
        m.insert("user/app/count".to_owned(), RegValue::Int(-3));
        m.insert("machine/files/etc/x.conf".to_owned(), RegValue::File { digest: Digest::of(b"x"), mode: 0o644 });
        m.insert("machine/files/etc/gone".to_owned(), RegValue::Deleted);
        m.insert("user/files/etc/x.conf#port".to_owned(), RegValue::Int(8080));
        let text = format(&m);
        assert_eq!(parse(&text, "t").unwrap(), m);
        assert_eq!(format(&parse(&text, "t").unwrap()), text);
    }

    #[test]
    fn bad_lines_and_keys_are_named() {
        let e = parse("# ok\nuser/a = \"x\"\nuser/b \"no equals\"\n", "f.reg").unwrap_err().to_string();
        assert!(e.starts_with("f.reg:3:"), "{e}");
        assert!(parse("other/a = \"x\"\n", "f").is_err());
        assert!(parse("user/a/../b = \"x\"\n", "f").is_err());
        assert!(parse("user/a = int:x\n", "f").is_err());
        assert!(parse("user/a#k = \"x\"\n", "f").is_err(), "# only in files/ keys");
        assert!(check_key("user/files/etc/app.conf#listen").is_ok());
    }

    #[test]
    fn projection_layers_and_file_edits() {
        let mut r = BTreeMap::new();
        r.insert("machine/env/MODE".to_owned(), RegValue::String("capsule".to_owned()));
        r.insert("user/env/MODE".to_owned(), RegValue::String("user".to_owned()));
        r.insert("machine/files/etc/app.conf#port".to_owned(), RegValue::Int(80));
        r.insert("user/files/etc/app.conf#port".to_owned(), RegValue::Int(8080));
        let p = project(&r);
        assert_eq!(p.env["MODE"], "user");
        assert_eq!(p.edits["/etc/app.conf"]["port"], "8080");
        let sets: BTreeMap<String, String> =
            [("port", "8080"), ("name", "x"), ("new", "1")].iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
        let out = edit("# port = 1\nport = 80\n  name: old\nportal yes\n", &sets);
        assert_eq!(out, "# port = 1\nport = 8080\n  name: x\nportal yes\nnew = 1\n");
    }
}
