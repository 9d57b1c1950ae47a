//! `sbom NAME [--format spdx|cyclonedx] [-o FILE]`: the capsule's package inventory as an
//! SPDX 2.3 or CycloneDX 1.5 JSON document.
//!
//! The capsule is the described (root) element: its name, its tag as the version, its
//! manifest digest as a BLAKE3 checksum. Each package of the inventory is an element with its
//! name, version, architecture, source package, maintainer (as supplier) and purl
//! (`pkg:deb/ID/NAME@VERSION?arch=ARCH&distro=ID-VERSION_ID`); the capsule contains each, and
//! each depends on the packages of the inventory its dpkg record depends on. The output is the
//! same for the same capsule but for the creation time, which `SOURCE_DATE_EPOCH` sets.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use capsule_core::digest::Digest;
use capsule_core::manifest::{Distro, Inventory, Manifest, Package};
use capsule_core::store::Store;
use serde_json::{Value, json};

use super::any_ref;
use crate::cli::Output;
use crate::cli::args::{Sbom, SbomFormat};

/// `sbom`.
pub fn run(store: &Store, out: Output, a: &Sbom) -> Result<ExitCode> {
    let r = any_ref(&a.name)?;
    let (digest, m) = store.load(&r).with_context(|| format!("cannot make an SBOM of capsule {r}"))?;
    let Some(inv) = &m.inventory else {
        bail!(
            "capsule {}:{} ({}) has no package inventory: it was made before capsules kept one (manifest version 2 \
             or older) or by a capture that keeps none (`capture shared`); capture it again to list its packages",
            m.name,
            m.tag,
            digest.short()
        );
    };
    let created = created()?;
    let doc = match a.format {
        SbomFormat::Spdx => spdx(&digest, &m, inv, &created),
        SbomFormat::Cyclonedx => cyclonedx(&digest, &m, inv, &created),
    };
    let mut text = serde_json::to_vec_pretty(&doc)?;
    text.push(b'\n');
    match &a.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write the SBOM to {}", path.display()))?;
            if !out.quiet {
                eprintln!(
                    "capsule: wrote the {} SBOM of {}:{} ({} packages) to {}",
                    match a.format {
                        SbomFormat::Spdx => "SPDX 2.3",
                        SbomFormat::Cyclonedx => "CycloneDX 1.5",
                    },
                    m.name,
                    m.tag,
                    inv.packages.len(),
                    path.display()
                );
            }
        }
        None => std::io::stdout().lock().write_all(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The creation time, RFC 3339 in UTC: `SOURCE_DATE_EPOCH` when set, else now.
fn created() -> Result<String> {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH {v:?} is not seconds since the epoch"))?,
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    Ok(rfc3339(secs))
}

/// `secs` since the epoch as `YYYY-MM-DDThh:mm:ssZ` (the proleptic Gregorian calendar).
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Percent-encode all but RFC 3986's unreserved characters (purl components).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package's purl: `pkg:deb/ID/NAME@VERSION?arch=ARCH[&distro=ID-VERSION_ID]` (the
/// namespace `debian` when the capture could not tell the distribution).
pub fn purl(p: &Package, distro: Option<&Distro>) -> String {
    let ns = distro.map_or("debian", |d| d.id.as_str());
    let mut s =
        format!("pkg:deb/{}/{}@{}?arch={}", encode(ns), encode(&p.name), encode(&p.version), encode(&p.architecture));
    if let Some(d) = distro {
        let release = if d.version_id.is_empty() { &d.codename } else { &d.version_id };
        if !release.is_empty() {
            s.push_str(&format!("&distro={}", encode(&format!("{}-{release}", d.id))));
        }
    }
    s
}

/// "Name <email>" as (name, email).
fn person(maintainer: &str) -> (String, Option<String>) {
    match maintainer.split_once('<') {
        Some((name, rest)) => {
            let email = rest.split('>').next().unwrap_or_default().trim();
            (name.trim().to_owned(), (!email.is_empty()).then(|| email.to_owned()))
        }
        None => (maintainer.trim().to_owned(), None),
    }
}

/// SPDX's supplier of a package: `Person: NAME (EMAIL)` from its maintainer.
fn spdx_supplier(maintainer: &str) -> String {
    let (name, email) = person(maintainer);
    let name: String = name.chars().filter(|c| !matches!(c, '(' | ')')).collect();
    if name.trim().is_empty() {
        return "NOASSERTION".to_owned();
    }
    match email {
        Some(e) => format!("Person: {} ({})", name.trim(), e.replace(['(', ')'], "")),
        None => format!("Person: {}", name.trim()),
    }
}

fn source_info(p: &Package) -> String {
    format!("built package from: {} {}", p.source, p.source_version.as_deref().unwrap_or(&p.version))
}

/// The SPDX id of the `i`th package: its index keeps it unique whatever the name's
/// characters become (SPDX ids allow `A-Z a-z 0-9 . -`).
fn spdx_id(i: usize, p: &Package) -> String {
    let clean =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect::<String>();
    format!("SPDXRef-Package-deb-{i}-{}-{}", clean(&p.name), clean(&p.architecture))
}

/// The manifest's BLAKE3 extended to 1024 bits, in hex: SPDX tools take a BLAKE3 checksum of
/// at least 256 hex digits. Its first 64 digits are the manifest digest. `None` if the
/// manifest does not re-encode to its digest (it always does for the versions with an
/// inventory).
fn blake3_1024(digest: &Digest, m: &Manifest) -> Option<String> {
    let mut out = [0u8; 128];
    blake3::Hasher::new().update(&m.encode()).finalize_xof().fill(&mut out);
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    hex.starts_with(&digest.to_hex()).then_some(hex)
}

/// The SPDX 2.3 document.
fn spdx(digest: &Digest, m: &Manifest, inv: &Inventory, created: &str) -> Value {
    let root = "SPDXRef-Capsule";
    let mut packages = vec![json!({
        "SPDXID": root,
        "name": m.name,
        "versionInfo": m.tag,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "APPLICATION",
        "checksums": blake3_1024(digest, m).map(|h| json!({ "algorithm": "BLAKE3", "checksumValue": h })).into_iter().collect::<Vec<_>>(),
        "comment": format!("capsule {}:{}, manifest digest (BLAKE3) {}", m.name, m.tag, digest.to_hex()),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root,
    })];
    let ids: Vec<String> = inv.packages.iter().enumerate().map(|(i, p)| spdx_id(i, p)).collect();
    for (p, id) in inv.packages.iter().zip(&ids) {
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "supplier": spdx_supplier(&p.maintainer),
            "sourceInfo": source_info(p),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                "referenceLocator": purl(p, inv.distro.as_ref()),
            }],
        }));
        relationships.push(json!({ "spdxElementId": root, "relationshipType": "CONTAINS", "relatedSpdxElement": id }));
    }
    for (p, id) in inv.packages.iter().zip(&ids) {
        for d in &p.depends {
            for (_, qid) in inv.packages.iter().zip(&ids).filter(|(q, _)| &q.name == d) {
                relationships.push(json!({
                    "spdxElementId": id, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": qid,
                }));
            }
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("capsule {}:{}", m.name, m.tag),
        "documentNamespace": format!("urn:capsule:spdx:{}:{}:{}", m.name, m.tag, digest.to_hex()),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: capsule-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// A version-5-shaped UUID made of the digest (CycloneDX's serial number pattern).
fn uuid_of(digest: &Digest) -> String {
    let h = digest.to_hex();
    let b = h.as_bytes();
    let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&b[r]).into_owned();
    let variant = ["8", "9", "a", "b"][usize::from(b[16] % 4)];
    format!("{}-{}-5{}-{variant}{}-{}", s(0..8), s(8..12), s(13..16), s(17..20), s(20..32))
}

/// The CycloneDX 1.5 document.
fn cyclonedx(digest: &Digest, m: &Manifest, inv: &Inventory, created: &str) -> Value {
    let root = format!("capsule:{}:{}@{}", m.name, m.tag, digest.to_hex());
    let refs: Vec<String> = inv.packages.iter().map(|p| purl(p, inv.distro.as_ref())).collect();
    let components: Vec<Value> = inv
        .packages
        .iter()
        .zip(&refs)
        .map(|(p, r)| {
            let (name, email) = person(&p.maintainer);
            let mut c = json!({
                "type": "library",
                "bom-ref": r,
                "name": p.name,
                "version": p.version,
                "purl": r,
                "properties": [
                    { "name": "capsule:deb:architecture", "value": p.architecture },
                    { "name": "capsule:deb:source", "value": p.source },
                    { "name": "capsule:deb:source-version", "value": p.source_version.as_deref().unwrap_or(&p.version) },
                ],
            });
            if !name.is_empty() {
                let mut contact = json!({ "name": name });
                if let Some(e) = email {
                    contact["email"] = json!(e);
                }
                c["supplier"] = json!({ "name": name, "contact": [contact] });
                c["publisher"] = json!(p.maintainer);
            }
            c
        })
        .collect();
    let mut dependencies = vec![json!({ "ref": root, "dependsOn": refs })];
    for (p, r) in inv.packages.iter().zip(&refs) {
        let on: Vec<&String> =
            inv.packages.iter().zip(&refs).filter(|(q, _)| p.depends.contains(&q.name)).map(|(_, qr)| qr).collect();
        dependencies.push(json!({ "ref": r, "dependsOn": on }));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_of(digest)),
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": { "components": [{ "type": "application", "name": "capsule", "version": env!("CARGO_PKG_VERSION") }] },
            "component": {
                "type": "application",
                "bom-ref": root,
                "name": m.name,
                "version": m.tag,
                "hashes": [{ "alg": "BLAKE3", "content": digest.to_hex() }],
            },
        },
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_purls() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_927_845), "2025-12-05T09:44:05Z");
        let p = Package {
            name: "libstdc++6".into(),
            version: "1:12.2.0-14+deb12u1".into(),
            architecture: "amd64".into(),
            source: "gcc-12".into(),
            ..Package::default()
        };
        let d = Distro { id: "debian".into(), version_id: "12".into(), codename: "bookworm".into() };
        assert_eq!(
            purl(&p, Some(&d)),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
        );
        assert_eq!(purl(&p, None), "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64");
        assert_eq!(spdx_supplier("Debian Team <t@lists.example>"), "Person: Debian Team (t@lists.example)");
        assert_eq!(spdx_supplier(""), "NOASSERTION");
        let u = uuid_of(&Digest::of(b"x"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
    }
}
