//! Declarations a capture adds to a capsule besides its files: the prefixes it keeps as
//! shared state, and the shared capsules it links to. `capture shared` makes a capsule of
//! declarations alone (a `pgdata`-style state holder); every other capture kind takes the same
//! `--state` and `--link` options and re-commits its capsule with them.

use super::CaptureError;
use super::builder::Builder;
use crate::digest::Digest;
use crate::manifest::{CaptureStep, Isolation, IsolationRule, Link, Manifest, RelPath, check_name};
use crate::store::{CapsuleRef, Store, StoreLock};

/// What to declare.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    /// Absolute prefixes kept as shared state.
    pub state: Vec<String>,
    /// Shared capsules linked (by name; the newest version is used at run time).
    pub links: Vec<String>,
}

impl Declarations {
    /// Whether there is nothing to declare.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty() && self.links.is_empty()
    }

    /// Add these declarations to `m` (each once), validated.
    pub fn apply(&self, m: &mut Manifest) -> Result<(), CaptureError> {
        for s in &self.state {
            let prefix =
                RelPath::from_host(s.as_bytes()).map_err(|source| CaptureError::Path { path: s.into(), source })?;
            let prefix = prefix.display();
            if !m.isolation.iter().any(|r| r.prefix == prefix && r.mode == Isolation::State) {
                m.isolation.push(IsolationRule { prefix, mode: Isolation::State });
            }
        }
        for l in &self.links {
            check_name("name", l)?;
            if !m.links.iter().any(|x| x.name == *l) {
                m.links.push(Link { name: l.clone(), digest: None });
            }
        }
        m.validate()?;
        Ok(())
    }
}

/// `capture shared NAME --state PATH... [--link SHARED]...`: a capsule of declarations only.
pub fn shared(store: &Store, r: &CapsuleRef, d: &Declarations) -> Result<Digest, CaptureError> {
    let _lock = StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Declared, format!("state {}", d.state.join(" ")));
    let mut m = Manifest::new(&r.name, &r.tag, origin.at);
    m.origins.push(origin);
    d.apply(&mut m)?;
    Ok(store.commit_capsule(&m)?)
}

/// Re-commit capsule `r` (just captured) with `d` added. The previous manifest blob becomes
/// garbage for `gc`.
pub fn redeclare(store: &Store, r: &CapsuleRef, d: &Declarations) -> Result<Digest, CaptureError> {
    let _lock = StoreLock::shared(store)?;
    let (digest, mut m) = store.load(r)?;
    if d.is_empty() {
        return Ok(digest);
    }
    d.apply(&mut m)?;
    Ok(store.commit_capsule(&m)?)
}
