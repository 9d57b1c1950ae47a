//! [`RelPath`]: a validated path inside a capsule, and the lexical rules for symlink targets.
//!
//! A capsule's tree is rooted at `/` of the application's view. Manifest paths are stored
//! without the leading `/` ("usr/bin/jq"), as bytes (Linux file names need not be UTF-8).
//! Invariant of a valid `RelPath`: non-empty, at most [`MAX_PATH`] bytes, no NUL, no empty,
//! `.` or `..` component, no leading or trailing `/`, each component at most
//! [`MAX_COMPONENT`] bytes. So no manifest entry can name a place outside the capsule root.
//!
//! Symlink targets are stored *relative* and must stay inside the root when resolved from the
//! link's directory: capture rewrites absolute targets (which a host kernel would resolve on the
//! host once the file is materialised) into relative ones, and import refuses any other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest path the kernel accepts (PATH_MAX less the NUL).
pub const MAX_PATH: usize = 4095;
/// Longest file-name component (NAME_MAX).
pub const MAX_COMPONENT: usize = 255;

/// Why a path or symlink target is not acceptable in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty path.
    #[error("empty path")]
    Empty,
    /// Longer than [`MAX_PATH`] or with a component longer than [`MAX_COMPONENT`].
    #[error("path {0} is too long")]
    TooLong(String),
    /// Contains a NUL byte.
    #[error("path {0} contains a NUL byte")]
    Nul(String),
    /// Contains `..`, `.` or an empty component, or starts or ends with `/`.
    #[error("path {0} is not normalised (it has a '..', '.' or empty component, or a leading '/')")]
    NotNormal(String),
    /// A symlink whose target is absolute.
    #[error("symlink {link} has an absolute target {target}, which would escape the capsule")]
    AbsoluteTarget {
        /// The link.
        link: String,
        /// Its target.
        target: String,
    },
    /// A symlink whose relative target climbs above the capsule root.
    #[error("symlink {link} -> {target} points outside the capsule")]
    EscapingTarget {
        /// The link.
        link: String,
        /// Its target.
        target: String,
    },
}

/// A validated path inside a capsule, stored without the leading `/`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(Vec<u8>);

fn show(bytes: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(bytes))
}

impl RelPath {
    /// Validate `bytes` (without a leading `/`).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let p = RelPath(bytes.into());
        p.check()?;
        Ok(p)
    }

    /// Accept an absolute or relative path with redundant `/` and `.` (but never `..`), as a
    /// host walk produces them: "/usr//bin/./jq" becomes "usr/bin/jq".
    pub fn from_host(path: &[u8]) -> Result<Self, PathError> {
        let mut out = Vec::with_capacity(path.len());
        for comp in path.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(PathError::NotNormal(show(path))),
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        RelPath::new(out)
    }

    /// Check the invariant (used after decoding untrusted bytes).
    pub fn check(&self) -> Result<(), PathError> {
        let b = &self.0;
        if b.is_empty() {
            return Err(PathError::Empty);
        }
        if b.len() > MAX_PATH {
            return Err(PathError::TooLong(show(&b[..64])));
        }
        if b.contains(&0) {
            return Err(PathError::Nul(show(b)));
        }
        for comp in b.split(|&c| c == b'/') {
            if comp.is_empty() || comp == b"." || comp == b".." {
                return Err(PathError::NotNormal(show(b)));
            }
            if comp.len() > MAX_COMPONENT {
                return Err(PathError::TooLong(show(b)));
            }
        }
        Ok(())
    }

    /// The bytes, without the leading `/`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The parent directory, `None` at the top level.
    pub fn parent(&self) -> Option<RelPath> {
        let i = self.0.iter().rposition(|&c| c == b'/')?;
        Some(RelPath(self.0[..i].to_vec()))
    }

    /// Every proper ancestor, outermost first ("usr", "usr/bin" for "usr/bin/jq").
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0.iter().enumerate().filter(|&(_, &c)| c == b'/').map(|(i, _)| RelPath(self.0[..i].to_vec()))
    }

    /// `self/name`, validated.
    pub fn join(&self, name: &[u8]) -> Result<RelPath, PathError> {
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath::new(v)
    }

    /// The path as the application sees it, with a leading `/` (lossy for non-UTF-8 names).
    pub fn display(&self) -> String {
        show(&self.0)
    }

    /// The path as an absolute host-style path.
    pub fn to_absolute(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new("/").join(std::ffi::OsStr::from_bytes(&self.0))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.display())
    }
}

/// Resolve `target` lexically from the directory holding `link`, clamping `..` at the root as
/// the kernel does. Returns the components of the absolute result.
fn lexical_target<'a>(link: &'a [u8], target: &'a [u8]) -> (Vec<&'a [u8]>, bool) {
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut escaped = false;
    if !target.starts_with(b"/") {
        stack.extend(link.split(|&c| c == b'/'));
        stack.pop(); // the link's own name
    }
    for comp in target.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => escaped |= stack.pop().is_none(),
            c => stack.push(c),
        }
    }
    (stack, escaped)
}

/// Rewrite a symlink target found on a host into the relative form a manifest stores: an
/// absolute target becomes relative to the link's directory, and `..` that would climb above
/// `/` is clamped as the kernel clamps it. The result resolves to the same place as the host
/// link did, and [`check_symlink`] accepts it.
pub fn relativize_symlink(link: &RelPath, target: &[u8]) -> Vec<u8> {
    let (abs, _) = lexical_target(&link.0, target);
    let dir: Vec<&[u8]> = {
        let mut d: Vec<&[u8]> = link.0.split(|&c| c == b'/').collect();
        d.pop();
        d
    };
    let common = dir.iter().zip(abs.iter()).take_while(|(a, b)| a == b).count();
    let mut out: Vec<u8> = Vec::new();
    for _ in common..dir.len() {
        out.extend_from_slice(b"../");
    }
    for comp in &abs[common..] {
        out.extend_from_slice(comp);
        out.push(b'/');
    }
    if out.is_empty() {
        out.push(b'.');
    } else {
        out.pop();
    }
    out
}

/// Accept only relative targets that stay inside the capsule root.
pub fn check_symlink(link: &RelPath, target: &[u8]) -> Result<(), PathError> {
    let err_args = || (link.display(), String::from_utf8_lossy(target).into_owned());
    if target.is_empty() {
        return Err(PathError::Empty);
    }
    if target.len() > MAX_PATH {
        return Err(PathError::TooLong(link.display()));
    }
    if target.contains(&0) {
        return Err(PathError::Nul(link.display()));
    }
    if target.starts_with(b"/") {
        let (link, target) = err_args();
        return Err(PathError::AbsoluteTarget { link, target });
    }
    if lexical_target(&link.0, target).1 {
        let (link, target) = err_args();
        return Err(PathError::EscapingTarget { link, target });
    }
    Ok(())
}

/// The capsule path a symlink at `link` with (valid, relative) `target` points to, or `None`
/// when it points at the root itself.
pub fn symlink_destination(link: &RelPath, target: &[u8]) -> Option<RelPath> {
    let (abs, _) = lexical_target(&link.0, target);
    if abs.is_empty() {
        return None;
    }
    RelPath::new(abs.join(&b'/')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "/usr", "usr/", "usr//bin", "usr/../etc", "./x", "a/./b", "..", "a\0b"] {
            assert!(RelPath::new(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(RelPath::new(vec![b'a'; 256]).is_err());
        assert!(RelPath::new(vec![b'a'; 200]).is_ok());
        assert_eq!(RelPath::from_host(b"/usr//bin/./jq").unwrap(), p("usr/bin/jq"));
        assert!(RelPath::from_host(b"/usr/../etc").is_err());
    }

    #[test]
    fn ancestors_and_parent() {
        let a: Vec<_> = p("usr/bin/jq").ancestors().collect();
        assert_eq!(a, vec![p("usr"), p("usr/bin")]);
        assert_eq!(p("usr/bin/jq").parent(), Some(p("usr/bin")));
        assert_eq!(p("usr").parent(), None);
    }

    #[test]
    fn symlink_rules() {
        let link = p("usr/lib64/ld-linux-x86-64.so.2");
        let rel = relativize_symlink(&link, b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        assert_eq!(rel, b"../../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        check_symlink(&link, &rel).unwrap();
        assert_eq!(symlink_destination(&link, &rel), Some(p("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")));
        assert_eq!(relativize_symlink(&p("lib"), b"usr/lib"), b"usr/lib");
        assert_eq!(relativize_symlink(&p("usr/bin/x"), b"../../../../etc/passwd"), b"../../etc/passwd");
        assert_eq!(relativize_symlink(&p("a/b"), b"/a"), b".");
        assert!(matches!(check_symlink(&link, b"/etc/passwd"), Err(PathError::AbsoluteTarget { .. })));
        assert!(matches!(check_symlink(&p("usr/x"), b"../../etc/passwd"), Err(PathError::EscapingTarget { .. })));
        assert!(check_symlink(&p("usr/x"), b"../etc/passwd").is_ok());
        assert!(check_symlink(&p("x"), b"a/../../y").is_err());
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![Just("..".to_owned()), Just(".".to_owned()), Just(String::new()), "[a-z]{1,4}"]
    }

    fn raw_path() -> impl Strategy<Value = String> {
        (any::<bool>(), prop::collection::vec(component(), 0..8)).prop_map(|(abs, c)| {
            let p = c.join("/");
            if abs { format!("/{p}") } else { p }
        })
    }

    proptest! {
        /// Whatever a host symlink says, the rewritten target is accepted by import and points
        /// where the kernel would have resolved the original (with `..` clamped at `/`).
        #[test]
        fn relativized_targets_are_valid_and_equivalent(
            link in prop::collection::vec("[a-z]{1,4}", 1..6),
            target in raw_path(),
        ) {
            let link = RelPath::new(link.join("/")).unwrap();
            prop_assume!(!target.is_empty());
            let rel = relativize_symlink(&link, target.as_bytes());
            prop_assert!(check_symlink(&link, &rel).is_ok(), "{:?}", String::from_utf8_lossy(&rel));
            let (want, _) = lexical_target(link.as_bytes(), target.as_bytes());
            let (got, escaped) = lexical_target(link.as_bytes(), &rel);
            prop_assert!(!escaped);
            prop_assert_eq!(want, got);
        }

        /// Validation never panics, and accepts exactly the normalised paths.
        #[test]
        fn relpath_accepts_only_normal_paths(p in raw_path()) {
            let ok = RelPath::new(p.as_bytes()).is_ok();
            let normal = !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            prop_assert_eq!(ok, normal);
        }
    }
}
