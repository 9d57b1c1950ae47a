//! [`Noise`]: paths a capture never records — caches, logs, package-manager state, kernel
//! filesystems, the store itself. Patterns are globs over the absolute path the application
//! would see (`*` stays within one component, `**` crosses them). A pattern that matches a
//! directory excludes everything below it, because the scan does not descend into it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::CaptureError;

/// The default rules. dpkg's and apt's databases are excluded because a capsule carrying them
/// would overlay the host's package state with a stale copy; `ld.so.cache` likewise.
pub const DEFAULTS: &[&str] = &[
    "/tmp",
    "/var/tmp",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/var/lock",
    "/var/cache",
    "/var/log",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/lib/ucf",
    "/var/backups",
    "/var/spool",
    "/var/mail",
    "/etc/ld.so.cache",
    "/etc/.pwd.lock",
    "/etc/*-",
    "/root/.cache",
    "/home/*/.cache",
    "**/lost+found",
];

/// Compiled exclusion rules.
#[derive(Debug, Clone)]
pub struct Noise {
    set: GlobSet,
    patterns: Vec<String>,
}

impl Noise {
    /// [`DEFAULTS`] plus `extra` patterns.
    pub fn with_defaults(extra: &[String]) -> Result<Noise, CaptureError> {
        let mut all: Vec<String> = DEFAULTS.iter().map(|s| (*s).to_owned()).collect();
        all.extend(extra.iter().cloned());
        Noise::new(all)
    }

    /// Exactly `patterns`.
    pub fn new(patterns: Vec<String>) -> Result<Noise, CaptureError> {
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|source| CaptureError::Pattern { pattern: p.clone(), source })?;
            b.add(glob);
        }
        let set = b.build().map_err(|source| CaptureError::Pattern { pattern: patterns.join(","), source })?;
        Ok(Noise { set, patterns })
    }

    /// The patterns, defaults included.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether absolute capsule path `abs` (with a leading `/`) is excluded.
    pub fn is_noise(&self, abs: &[u8]) -> bool {
        self.set.is_match(Path::new(OsStr::from_bytes(abs)))
    }

    /// Whether `abs` or any of its ancestors is excluded.
    pub fn covers(&self, abs: &[u8]) -> bool {
        abs.iter().enumerate().filter(|&(i, &c)| c == b'/' && i > 0).any(|(i, _)| self.is_noise(&abs[..i]))
            || self.is_noise(abs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extension() {
        let n = Noise::with_defaults(&["/opt/app/*.log".into()]).unwrap();
        assert!(n.is_noise(b"/var/cache"));
        assert!(n.covers(b"/var/cache/apt/archives/jq.deb"));
        assert!(n.is_noise(b"/etc/passwd-"));
        assert!(!n.is_noise(b"/etc/passwd"));
        assert!(n.is_noise(b"/opt/app/x.log"));
        assert!(!n.is_noise(b"/opt/app/sub/x.log"));
        assert!(!n.covers(b"/usr/bin/jq"));
        assert!(!n.covers(b"/var/lib/jq"));
        assert!(Noise::new(vec!["/a/[".into()]).is_err());
    }
}
