//! The machine's own limits, measured in the same run as the servers, so each result can be
//! read against what the hardware allows: single-core SHA-256 (the `sha2` crate, as holdfast
//! uses it), TLS throughput on loopback (rustls with ring on both ends, the holdfast
//! certificate, one direction, the cipher suite holdfast negotiates with the harness), and an
//! fsync'd sequential write to the disk the servers use. It also finds which suite each
//! server picks for the harness's client, since the bulk cipher sets the pull ceiling.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::data::{pool_pieces, PIECE};

#[derive(Clone, Debug)]
pub struct Limits {
    pub sha256_mb_s: f64,
    pub tls_loopback_mb_s: f64,
    pub tls_cipher: String,
    pub fsync_write_mb_s: f64,
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Hashes `bytes` bytes of `pool` (repeated) on one thread.
pub fn sha256_rate(pool: &Bytes, bytes: u64) -> f64 {
    let mut h = sha2::Sha256::new();
    let started = Instant::now();
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(pool.len() as u64) as usize;
        for p in pool[..n].chunks(PIECE) {
            h.update(p);
        }
        done += n as u64;
    }
    std::hint::black_box(h.finalize());
    mb_s(bytes, started.elapsed())
}

/// Writes `bytes` bytes to a new file in `dir` in 1 MiB writes, then fsyncs it; the time
/// includes the fsync (like `dd bs=1M conv=fsync`). The file is removed afterwards.
pub fn fsync_write_rate(dir: &Path, pool: &Bytes, bytes: u64) -> std::io::Result<f64> {
    let path: PathBuf = dir.join("fsync-probe");
    let started = Instant::now();
    {
        let mut f = std::fs::File::create(&path)?;
        for piece in pool_pieces(pool.len(), bytes) {
            f.write_all(&pool[piece])?;
        }
        f.sync_all()?;
    }
    let rate = mb_s(bytes, started.elapsed());
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// A rustls client configuration as the harness's HTTP client has it (ring's default suite
/// order, AES-256-GCM first) trusting `ca_pem`.
fn client_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| e.to_string())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The cipher suite the server at `base` (`https://127.0.0.1:PORT`) picks for a client with
/// the harness's preferences.
pub async fn negotiated_suite(base: &str, ca_pem: &[u8]) -> Result<rustls::CipherSuite, String> {
    use rustls::pki_types::ServerName;

    let addr = base
        .strip_prefix("https://")
        .ok_or_else(|| format!("{base}: not an https:// address"))?;
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem)?));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(30), connector.connect(name, tcp))
        .await
        .map_err(|_| format!("{addr}: TLS handshake timed out"))?
        .map_err(|e| format!("{addr}: TLS handshake: {e}"))?;
    tls.get_ref()
        .1
        .negotiated_cipher_suite()
        .map(|c| c.suite())
        .ok_or_else(|| format!("{addr}: no cipher suite after the handshake"))
}

/// A rustls server configuration with holdfast's certificate; with `suite`, offering only that
/// one (the one the registries serve), else ring's default list.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    suite: Option<rustls::CipherSuite>,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
        if provider.cipher_suites.is_empty() {
            return Err(format!("TLS loopback: ring has no suite {suite:?}"));
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("server.key: {e}"))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// The sending end of a TLS probe: `bytes` bytes from `pool` (repeated) in 1 MiB writes, then
/// close_notify.
pub async fn send_stream<W: tokio::io::AsyncWrite + Unpin>(
    tls: &mut W,
    pool: &[u8],
    bytes: u64,
) -> std::io::Result<()> {
    for piece in pool_pieces(pool.len(), bytes) {
        tls.write_all(&pool[piece]).await?;
    }
    tls.shutdown().await
}

/// The receiving end of a TLS probe: reads up to `bytes` bytes into one 256 KiB buffer;
/// returns how many arrived.
pub async fn receive_stream<R: tokio::io::AsyncRead + Unpin>(
    tls: &mut R,
    bytes: u64,
) -> Result<u64, String> {
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    let deadline = Duration::from_secs(300);
    while got < bytes {
        let n = tokio::time::timeout(deadline, tls.read(&mut buf))
            .await
            .map_err(|_| "TLS loopback read timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// Connects to a TLS probe's sender on `addr` as the harness's client would.
pub async fn connect(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls::pki_types::ServerName;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem)?));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// Pushes `bytes` bytes from a rustls server to a rustls client over one loopback TCP
/// connection, both inside this process; returns MB/s (from the end of the handshake to the
/// last byte read) and the cipher suite. With `suite`, the server offers only that one (the
/// one the registries serve), else the client's preference decides.
pub async fn tls_loopback_rate(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    suite: Option<rustls::CipherSuite>,
    pool: Bytes,
    bytes: u64,
) -> Result<(f64, String), String> {
    let server_config = server_config(cert_pem, key_pem, suite)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut tls = acceptor.accept(tcp).await?;
        send_stream(&mut tls, &pool, bytes).await
    });
    let mut tls = connect(addr, ca_pem).await?;
    let cipher = tls
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    let started = Instant::now();
    let got = receive_stream(&mut tls, bytes).await?;
    let took = started.elapsed();
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("TLS loopback server: {e}"))?;
    if got != bytes {
        return Err(format!("TLS loopback: read {got} of {bytes} bytes"));
    }
    Ok((mb_s(bytes, took), cipher))
}
