//! Signing keys for export files: [`SecretKey`], [`PublicKey`] (ed25519) and their key files.
//!
//! ```text
//! PREFIX.key   capsule-ed25519-secret <64 hex: the 32-byte seed>     mode 0600, created O_EXCL
//! PREFIX.pub   capsule-ed25519 <64 hex: the 32-byte public key>
//! ```
//! One line each, a trailing newline optional. A signature covers [`SIGNING_DOMAIN`] followed by
//! the 32-byte manifest digest and nothing else: the manifest names every blob by digest, and
//! import checks every blob against its digest, so the one signature binds the whole capsule
//! (docs/security.md walks the chain). The domain prefix keeps a capsule signature from ever
//! being valid as a signature over anything else made with the same key, and the other way
//! round. The fingerprint shown to people is the first 16 hex digits of the public key itself,
//! not a hash of it, so it can be checked by eye against a `.pub` file or a `--trust` argument.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::digest::Digest;

/// What a capsule signature signs, before the manifest digest.
pub const SIGNING_DOMAIN: &[u8] = b"capsule-export-signature-v1\0";
/// First word of a secret key file.
pub const SECRET_PREFIX: &str = "capsule-ed25519-secret";
/// First word of a public key file.
pub const PUBLIC_PREFIX: &str = "capsule-ed25519";
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Errors about keys and key files. Every variant names the file or the argument.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("{action} key file {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `keygen` never overwrites a key.
    #[error("key file {} exists already; choose another prefix or remove it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Not in the key file format above.
    #[error("{what} is not a capsule {kind} key: expected one line `{expected} <64 hex digits>`")]
    Malformed {
        /// The file (or the argument, for a bare public key).
        what: String,
        /// "secret" or "public".
        kind: &'static str,
        /// The expected first word.
        expected: &'static str,
    },
    /// 32 bytes that are not an ed25519 public key (not a curve point).
    #[error("{what} holds an invalid ed25519 public key")]
    InvalidPublic {
        /// The file or argument.
        what: String,
    },
    /// The operating system gave no random bytes.
    #[error("no random bytes for a new key")]
    Random(#[source] getrandom::Error),
}

/// An ed25519 public key, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// An ed25519 secret key (the seed is wiped from memory on drop by ed25519-dalek).
pub struct SecretKey(SigningKey);

impl PublicKey {
    /// The key from its 32 bytes; `None` when they are not a valid key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(bytes).ok().map(PublicKey)
    }

    /// Its 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The first 16 hex digits, for people.
    pub fn fingerprint(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(16);
        s
    }

    /// The public key file's text.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX} {}\n", self.to_hex())
    }

    /// Whether `signature` is this key's signature over manifest `digest`. Strict verification:
    /// no malleable or small-order signatures.
    pub fn verifies(&self, digest: &Digest, signature: &[u8; SIGNATURE_LEN]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.0.verify_strict(&message(digest), &sig).is_ok()
    }

    /// A public key given on the command line: 64 hex digits, or the path of a `.pub` file.
    pub fn from_arg(arg: &str) -> Result<PublicKey, KeyError> {
        if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_public(arg, &format!("argument {arg:?}"));
        }
        let path = Path::new(arg);
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            action: "failed to read public",
            path: path.to_owned(),
            source,
        })?;
        let what = format!("public key file {}", path.display());
        let hex = one_line(&text, PUBLIC_PREFIX).ok_or(KeyError::Malformed {
            what: what.clone(),
            kind: "public",
            expected: PUBLIC_PREFIX,
        })?;
        parse_public(hex, &what)
    }
}

fn parse_public(hex: &str, what: &str) -> Result<PublicKey, KeyError> {
    let bytes =
        decode32(hex).ok_or(KeyError::Malformed { what: what.to_owned(), kind: "public", expected: PUBLIC_PREFIX })?;
    PublicKey::from_bytes(&bytes).ok_or(KeyError::InvalidPublic { what: what.to_owned() })
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public().fingerprint())
    }
}

/// A secret key read from its file, and whether the file's mode lets others at it.
#[derive(Debug)]
pub struct LoadedSecret {
    /// The key.
    pub key: SecretKey,
    /// The file's permission bits when group or others have any access (`mode & 0o077 != 0`),
    /// so the caller can warn, as ssh does.
    pub loose_mode: Option<u32>,
}

impl SecretKey {
    /// A new random key from the operating system's generator (getrandom(2)).
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::Random)?;
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(key)
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature over manifest `digest`.
    pub fn sign(&self, digest: &Digest) -> [u8; SIGNATURE_LEN] {
        self.0.sign(&message(digest)).to_bytes()
    }

    /// Read a secret key file.
    pub fn load(path: &Path) -> Result<LoadedSecret, KeyError> {
        let io_err = |action| move |source| KeyError::Io { action, path: path.to_owned(), source };
        let mode = fs::metadata(path).map_err(io_err("failed to stat secret"))?.permissions().mode();
        let text = fs::read_to_string(path).map_err(io_err("failed to read secret"))?;
        let what = format!("secret key file {}", path.display());
        let malformed = || KeyError::Malformed { what: what.clone(), kind: "secret", expected: SECRET_PREFIX };
        let seed = one_line(&text, SECRET_PREFIX).and_then(decode32).ok_or_else(malformed)?;
        let loose_mode = (mode & 0o077 != 0).then_some(mode & 0o777);
        Ok(LoadedSecret { key: SecretKey::from_seed(&seed), loose_mode })
    }

    /// Write a new key pair to `PREFIX.key` (mode 0600, never over an existing file) and
    /// `PREFIX.pub`; returns their paths. Neither file is left behind when either fails.
    pub fn write_pair(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let with_ext = |ext: &str| {
            let mut s = prefix.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        let (key_path, pub_path) = (with_ext(".key"), with_ext(".pub"));
        if pub_path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: pub_path });
        }
        let secret = format!("{SECRET_PREFIX} {}\n", hex::encode(self.0.to_bytes()));
        create_new(&key_path, 0o600, secret.as_bytes())?;
        if let Err(e) = create_new(&pub_path, 0o644, self.public().to_text().as_bytes()) {
            let _ = fs::remove_file(&key_path);
            return Err(e);
        }
        Ok((key_path, pub_path))
    }
}

/// Create `path` with `mode` (O_CREAT|O_EXCL: refuses an existing file or symlink), write
/// `bytes` and make them durable. A failed write removes the file again.
fn create_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyError> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_owned() }
        } else {
            KeyError::Io { action: "failed to create", path: path.to_owned(), source }
        }
    })?;
    if let Err(source) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = fs::remove_file(path);
        return Err(KeyError::Io { action: "failed to write", path: path.to_owned(), source });
    }
    Ok(())
}

/// The signed message: the domain, then the manifest digest.
fn message(digest: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 32);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(&digest.0);
    m
}

/// The hex of a one-line key file `<prefix> <hex>` (surrounding whitespace allowed).
fn one_line<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let mut words = text.trim().split(' ');
    (words.next() == Some(prefix)).then_some(())?;
    let hex = words.next()?;
    words.next().is_none().then_some(hex)
}

fn decode32(hex_str: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain() {
        let k = SecretKey::from_seed(&[7; 32]);
        let d = Digest::of(b"manifest");
        let sig = k.sign(&d);
        assert!(k.public().verifies(&d, &sig));
        assert!(!k.public().verifies(&Digest::of(b"other"), &sig));
        assert!(!SecretKey::from_seed(&[8; 32]).public().verifies(&d, &sig));
        // Without the domain prefix, the same key's signature over the bare digest is not ours.
        let bare = k.0.sign(&d.0).to_bytes();
        assert!(!k.public().verifies(&d, &bare));
    }

    #[test]
    fn key_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k");
        let k = SecretKey::generate().unwrap();
        let (key, public) = k.write_pair(&prefix).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = SecretKey::load(&key).unwrap();
        assert_eq!(loaded.key.public(), k.public());
        assert_eq!(loaded.loose_mode, None);
        assert_eq!(PublicKey::from_arg(public.to_str().unwrap()).unwrap(), k.public());
        assert_eq!(PublicKey::from_arg(&k.public().to_hex()).unwrap(), k.public());
        assert!(matches!(k.write_pair(&prefix), Err(KeyError::Exists { .. })));
        // A stray .key alone also blocks, and the .pub is not created.
        fs::remove_file(&public).unwrap();
        assert!(matches!(k.write_pair(&prefix), Err(KeyError::Exists { .. })));
        assert!(!public.exists());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(SecretKey::load(&key).unwrap().loose_mode, Some(0o644));
    }

    #[test]
    fn malformed_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.pub");
        let k = SecretKey::from_seed(&[1; 32]).public();
        for text in ["", "capsule-ed25519", "capsule-ed25519 abcd", "other 00", &format!("{} x", k.to_text().trim())] {
            fs::write(&f, text).unwrap();
            let e = PublicKey::from_arg(f.to_str().unwrap()).unwrap_err();
            assert!(matches!(e, KeyError::Malformed { .. }) && e.to_string().contains("bad.pub"), "{text:?}: {e}");
        }
        // A secret key file is not a public key, and the other way round.
        fs::write(&f, format!("{SECRET_PREFIX} {}", "11".repeat(32))).unwrap();
        assert!(matches!(PublicKey::from_arg(f.to_str().unwrap()), Err(KeyError::Malformed { .. })));
        fs::write(&f, k.to_text()).unwrap();
        assert!(matches!(SecretKey::load(&f), Err(KeyError::Malformed { .. })));
        let missing = dir.path().join("none.key");
        assert!(SecretKey::load(&missing).unwrap_err().to_string().contains("none.key"));
    }
}
