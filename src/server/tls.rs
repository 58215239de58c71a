//! The TLS side of a listener: a rustls server configuration with TLS 1.2 and 1.3 only,
//! ALPN offering HTTP/2 and HTTP/1.1, optional client-certificate verification (mutual
//! TLS), the server's own cipher-suite preference, and a certificate store that can swap in
//! a new certificate/key pair while the server runs. A pair that does not load (or whose key
//! does not match) is refused and the old one keeps serving; connections already open are
//! never touched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::ClientAuth;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificate chain {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("reading private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
    #[error("client CA bundle {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    crate::crypto::rustls_provider()
}

/// Whether this CPU has AES and carry-less multiply instructions, which make AES-GCM the
/// fastest suite; without them ChaCha20-Poly1305 is faster (and constant-time in software).
fn aes_gcm_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The rank of a suite in the server's preference (lower first). All three bulk ciphers are
/// strong; AES-128-GCM does 10 AES rounds to AES-256's 14, so bulk transfers (blob pulls)
/// run faster with it. This is also the order Go's crypto/tls server uses, i.e. what
/// clients get from CNCF distribution.
fn suite_rank(suite: rustls::CipherSuite, aes_hardware: bool) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => {
            if aes_hardware {
                0
            } else {
                1
            }
        }
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 2,
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            if aes_hardware {
                3
            } else {
                0
            }
        }
        _ => 4,
    }
}

/// The provider for serving: the same suites, in the server's order of preference.
fn server_provider() -> Arc<CryptoProvider> {
    let mut provider = (*provider()).clone();
    let aes_hardware = aes_gcm_in_hardware();
    provider
        .cipher_suites
        .sort_by_key(|s| suite_rank(s.suite(), aes_hardware));
    Arc::new(provider)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

/// Loads and checks a certificate chain and its private key.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert).map_err(|message| TlsError::Cert {
        path: cert.to_owned(),
        message,
    })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(TlsError::Pair)
}

/// The server's current certificate, replaceable at run time.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, TlsError> {
        let provider = provider();
        let pair = load_pair(cert, key, &provider)?;
        Ok(Arc::new(CertStore {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(pair)),
        }))
    }

    /// The files to watch for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }

    /// Re-reads the files; on any error the current pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Builds the server configuration around `store`, verifying client certificates against
/// `client_ca` when given.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<(&Path, ClientAuth)>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = server_provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Pair)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((path, mode)) => {
            let ca_err = |message: String| TlsError::ClientCa {
                path: path.to_owned(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path).map_err(ca_err)? {
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match mode {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| ca_err(e.to_string()))?)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    // The server's order, not the client's: most clients list AES-256-GCM first, which costs
    // bulk throughput for no practical gain in strength.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A configuration straight from files, without reload (tests and one-off checks).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config(CertStore::load(cert, key)?, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    /// Runs a handshake in memory between `server` and a client built from `client`; returns
    /// the suite both sides agreed on.
    fn negotiate(server: Arc<rustls::ServerConfig>, client: rustls::ClientConfig) -> CipherSuite {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut cursor = &wire[..];
            while !cursor.is_empty() {
                server.read_tls(&mut cursor).unwrap();
            }
            server.process_new_packets().unwrap();
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            let mut cursor = &wire[..];
            while !cursor.is_empty() {
                client.read_tls(&mut cursor).unwrap();
            }
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        let agreed = server.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(client.negotiated_cipher_suite().unwrap().suite(), agreed);
        agreed
    }

    fn setup() -> (
        tempfile::TempDir,
        Arc<rustls::ServerConfig>,
        rustls::RootCertStore,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let generated = super::super::certgen::generate(dir.path(), &["localhost".into()]).unwrap();
        let server = load_server_config(&generated.cert, &generated.key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(&generated.ca_cert).unwrap() {
            roots.add(c).unwrap();
        }
        (dir, server, roots)
    }

    #[test]
    fn the_server_order_wins_over_a_client_that_prefers_aes_256() {
        let (_dir, server, roots) = setup();
        // rustls clients (reqwest, containerd's Go stack aside) list AES-256-GCM first.
        let client_provider = rustls::crypto::ring::default_provider();
        assert_eq!(
            client_provider.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let expected = if aes_gcm_in_hardware() {
            CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(negotiate(server.clone(), client), expected);

        // The same over TLS 1.2.
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let agreed = negotiate(server, client);
        let expected12 = if aes_gcm_in_hardware() {
            [
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        } else {
            [
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        };
        assert!(expected12.contains(&agreed), "TLS 1.2 agreed on {agreed:?}");
    }

    #[test]
    fn a_client_with_only_one_suite_still_gets_it() {
        let (_dir, server, roots) = setup();
        let mut only = rustls::crypto::ring::default_provider();
        only.cipher_suites
            .retain(|s| s.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384);
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(only))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        assert_eq!(
            negotiate(server, client),
            CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }

    #[test]
    fn serving_offers_every_suite_of_the_provider() {
        let served: Vec<_> = server_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let all = provider().cipher_suites.len();
        assert_eq!(served.len(), all);
        let ranks: Vec<_> = served
            .iter()
            .map(|s| suite_rank(*s, aes_gcm_in_hardware()))
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{served:?}");
    }
}
