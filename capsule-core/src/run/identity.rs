//! A run's identity (host name, domain, machine-id): the capsule's defaults with the run's
//! options over them, checked before the program starts, and the files that carry it written
//! into the sandbox tree (`/etc/hostname`, `/etc/machine-id`, `/var/lib/dbus/machine-id`,
//! `/proc/sys/kernel/hostname`), where both tiers route those paths. `uname` and
//! `gethostname` are answered by the shim's hooks and the supervisor's handler.

use std::fs;
use std::path::Path;

use super::RunError;
use crate::manifest::{Identity, RelPath};

/// Identity errors, naming the value.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not a usable host name.
    #[error("invalid hostname {0:?}: 1 to 64 bytes of letters, digits, '-' and '.'")]
    Hostname(String),
    /// Not a usable domain name.
    #[error("invalid domain {0:?}: 1 to 64 bytes of letters, digits, '-' and '.'")]
    Domain(String),
    /// Not 32 hex digits.
    #[error("invalid machine-id {0:?}: 32 lowercase hex digits")]
    MachineId(String),
    /// Not six colon-separated hex bytes.
    #[error("invalid MAC address {0:?}: six hex bytes, colon-separated (02:42:ac:11:00:02)")]
    Mac(String),
    /// An address the capsule cannot have without a network namespace.
    #[error(
        "invalid --ip {0}: without --netns a capsule's address is a loopback address (127.0.0.0/8) or one of this machine's"
    )]
    Address(std::net::Ipv4Addr),
}

/// Parse "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Result<[u8; 6], IdentityError> {
    let bad = || IdentityError::Mac(s.to_owned());
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The interface the capsule's address and MAC are shown on: `eth0` if the machine has one,
/// else its first interface other than `lo` (by name).
pub fn primary_interface() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.iter().find(|n| *n == "eth0").or(names.first()).cloned()
}

/// Whether `ip` is loopback or already on one of this machine's interfaces.
fn usable(ip: std::net::Ipv4Addr) -> bool {
    ip.is_loopback()
        || nix::ifaddrs::getifaddrs()
            .is_ok_and(|mut all| all.any(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|v| v.ip())) == Some(ip)))
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

/// The effective identity: `over` wins over `base`; every value is checked.
pub fn effective(base: &Identity, over: &Identity) -> Result<Identity, IdentityError> {
    effective_of(&[base, over])
}

/// The effective identity of `layers`, a later layer winning; every value is checked once.
pub fn effective_of(layers: &[&Identity]) -> Result<Identity, IdentityError> {
    let Some((first, rest)) = layers.split_first() else { return check(Identity::default()) };
    let mut id = (*first).clone();
    for over in rest {
        overlay(&mut id, over);
    }
    check(id)
}

fn overlay(id: &mut Identity, over: &Identity) {
    if over.hostname.is_some() {
        id.hostname.clone_from(&over.hostname);
    }
    if over.domain.is_some() {
        id.domain.clone_from(&over.domain);
    }
    if over.machine_id.is_some() {
        id.machine_id.clone_from(&over.machine_id);
    }
    if over.ipv4.is_some() {
        id.ipv4 = over.ipv4;
    }
    if over.mac.is_some() {
        id.mac = over.mac;
    }
}

fn check(id: Identity) -> Result<Identity, IdentityError> {
    if let Some(ip) = id.ipv4
        && !usable(ip)
    {
        return Err(IdentityError::Address(ip));
    }
    if let Some(h) = &id.hostname
        && !name_ok(h)
    {
        return Err(IdentityError::Hostname(h.clone()));
    }
    if let Some(d) = &id.domain
        && !name_ok(d)
    {
        return Err(IdentityError::Domain(d.clone()));
    }
    if let Some(m) = &id.machine_id
        && (m.len() != 32 || !m.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
    {
        return Err(IdentityError::MachineId(m.clone()));
    }
    Ok(id)
}

/// Write the identity's files into `tree`; the paths written (for the view). `hosts_base` is
/// the capsule's own /etc/hosts, when it has one (else the host's is the base).
pub fn write_files(tree: &Path, id: &Identity, hosts_base: Option<&str>) -> Result<Vec<RelPath>, RunError> {
    let mut files: Vec<(&str, String)> = Vec::new();
    if let Some(h) = &id.hostname {
        files.push(("etc/hostname", format!("{h}\n")));
        files.push(("proc/sys/kernel/hostname", format!("{h}\n")));
    }
    if let Some(d) = &id.domain {
        files.push(("proc/sys/kernel/domainname", format!("{d}\n")));
    }
    if let Some(m) = &id.machine_id {
        files.push(("etc/machine-id", format!("{m}\n")));
        files.push(("var/lib/dbus/machine-id", format!("{m}\n")));
    }
    // (`and_then`, not `zip`: the interface listing only when there is a MAC to show.)
    let sys_address = id.mac.and_then(|m| primary_interface().map(|ifname| (m, ifname))).map(|(m, ifname)| {
        let text = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        (format!("sys/class/net/{ifname}/address"), format!("{text}\n"))
    });
    // The capsule's own name resolves to its own address (Debian's 127.0.1.1 convention
    // without one), on top of the hosts file the program would otherwise read.
    if let Some(h) = &id.hostname {
        let base = hosts_base.map_or_else(|| fs::read_to_string("/etc/hosts").unwrap_or_default(), str::to_owned);
        let ip = id.ipv4.map_or_else(|| "127.0.1.1".to_owned(), |ip| ip.to_string());
        let fqdn = id.domain.as_ref().map(|d| format!("{h}.{d} ")).unwrap_or_default();
        let sep = if base.is_empty() || base.ends_with('\n') { "" } else { "\n" };
        files.push(("etc/hosts", format!("{base}{sep}{ip}\t{fqdn}{h}\n")));
    }
    let mut out = Vec::new();
    let files = files.into_iter().map(|(r, c)| (r.to_owned(), c)).chain(sys_address);
    for (rel, content) in files {
        let rel = rel.as_str();
        let dest = tree.join(rel);
        let dir = dest.parent().unwrap_or(tree);
        // Plain directories: mirroring /proc's read-only modes would lock us out of our own tree.
        fs::create_dir_all(dir).map_err(RunError::io("failed to create", dir))?;
        if fs::read_to_string(&dest).ok().as_deref() != Some(content.as_str()) {
            super::materialize::write_atomic(&dest, content.as_bytes(), Some(0o644))?;
        }
        out.push(
            RelPath::new(rel).map_err(|_| RunError::io("bad path", &dest)(std::io::ErrorKind::InvalidInput.into()))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_name() {
        let over = |h: &str| Identity { hostname: Some(h.to_owned()), ..Identity::default() };
        assert!(effective(&Identity::default(), &over("db1")).is_ok());
        let long = "x".repeat(65);
        assert_eq!(
            effective(&Identity::default(), &over(&long)).unwrap_err().to_string(),
            format!("invalid hostname {long:?}: 1 to 64 bytes of letters, digits, '-' and '.'")
        );
        assert!(effective(&Identity::default(), &over("a b")).is_err());
        let mid = |m: &str| Identity { machine_id: Some(m.to_owned()), ..Identity::default() };
        assert!(effective(&Identity::default(), &mid("0123456789abcdef0123456789abcdef")).is_ok());
        assert!(effective(&Identity::default(), &mid("xyz")).is_err());
        let base = Identity { hostname: Some("base".into()), ..Identity::default() };
        assert_eq!(effective(&base, &Identity::default()).unwrap().hostname.as_deref(), Some("base"));
    }
}
