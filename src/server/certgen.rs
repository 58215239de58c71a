//! Making TLS material for installs without a PKI: a local CA and a server certificate it
//! signs (rcgen). The first-run default and `holdfast cert init` both come here. Keys are
//! written 0600 and every file is replaced atomically, so a crash never leaves half a PEM.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Paths of generated material inside a folder.
pub struct Generated {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Generated {
    pub fn in_dir(dir: &Path) -> Generated {
        Generated {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }

    pub fn exists(&self) -> bool {
        self.ca_cert.exists() && self.cert.exists() && self.key.exists()
    }
}

/// The names a default certificate covers: localhost, loopback addresses, this host's name,
/// and any extra names given.
pub fn default_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(h) = host_name() {
        names.push(h);
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn host_name() -> Option<String> {
    // uname(2), not /proc/sys/kernel/hostname: the hardened unit (ProcSubset=pid) hides
    // the latter.
    let uts = rustix::system::uname();
    let h = uts.nodename().to_str().ok()?.trim().to_owned();
    (!h.is_empty() && h != "localhost").then_some(h)
}

fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

/// Generates a CA (valid 10 years) and a server certificate for `names` (valid 2 years)
/// into `dir`: `ca.crt`, `ca.key`, `server.crt` (leaf then CA), `server.key`.
pub fn generate(dir: &Path, names: &[String]) -> Result<Generated, CertGenError> {
    create_private_dir(dir)?;
    let year = this_year();

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "holdfast local CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "holdfast");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for n in names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let out = Generated::in_dir(dir);
    write_atomic(&dir.join("ca.key"), ca_key_pem.as_bytes(), 0o600)?;
    write_atomic(&out.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&out.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    let chain = format!("{}{}", cert.pem(), ca_cert.pem());
    write_atomic(&out.cert, chain.as_bytes(), 0o644)?;
    Ok(out)
}

fn create_private_dir(dir: &Path) -> Result<(), CertGenError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertGenError::Write {
            path: dir.to_owned(),
            source,
        })
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CertGenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertGenError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_chain_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let names = default_names(&["registry.example".into()]);
        let g = generate(dir.path(), &names).unwrap();
        assert!(g.exists());
        let tls = crate::server::tls::load_server_config(&g.cert, &g.key);
        assert!(tls.is_ok(), "{:?}", tls.err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&g.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
