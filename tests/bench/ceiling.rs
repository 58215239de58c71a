//! The pull ceiling of the harness's own HTTP client: the same reqwest client the pull
//! workload uses, downloading from an in-process hyper server (rustls/ring, the suite holdfast
//! picks) whose response body is the blob already in memory, handed over in 1 MiB pieces
//! without a copy. No storage, no registry logic, no second process: the fastest an HTTP
//! server on this stack can deliver to this client, measured in the same run. The bare TLS
//! probe (`limits`) has no HTTP on either end, so the distance between the two is what the
//! client's HTTP stack costs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::api::{Api, ApiResult, Proto};
use crate::data::pool_pieces;

/// Serves `bytes` bytes (from `pool`, repeated) for any request over TLS on a loopback port,
/// pulls them once with the harness's client speaking `proto`, and returns MB/s.
pub async fn pull_ceiling(
    (cert_pem, key_pem, ca_pem): &(Vec<u8>, Vec<u8>, Vec<u8>),
    suite: Option<rustls::CipherSuite>,
    pool: Bytes,
    bytes: u64,
    proto: Proto,
    timeout: Duration,
) -> ApiResult<f64> {
    let mut config = crate::limits::server_config(cert_pem, key_pem, suite)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let service = hyper::service::service_fn(move |_req| {
            let pool = pool.clone();
            async move {
                let pieces = pool_pieces(pool.len(), bytes)
                    .map(move |piece| Ok::<_, Infallible>(Frame::data(pool.slice(piece))));
                let body = StreamBody::new(futures_util::stream::iter(pieces));
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-length", bytes)
                        .header("content-type", "application/octet-stream")
                        .body(body)
                        .expect("static response"),
                )
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The same receive windows holdfast sets (they only matter for uploads).
        builder
            .http2()
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 20);
        builder
            .serve_connection(TokioIo::new(tls), service)
            .await
            .map_err(|e| e.to_string())
    });

    let api = Api::for_base(
        &format!("https://127.0.0.1:{port}"),
        ca_pem,
        None,
        proto,
        timeout,
    );
    let started = Instant::now();
    let result = api.pull_blob("ceiling", "sha256:0", false).await;
    let took = started.elapsed();
    server.abort();
    let (n, version) = result?;
    let expected = match proto {
        Proto::H1 => reqwest::Version::HTTP_11,
        Proto::H2 => reqwest::Version::HTTP_2,
    };
    if n != bytes || version != expected {
        return Err(format!(
            "pull ceiling: read {n} of {bytes} bytes over {version:?}, expected {expected:?}"
        ));
    }
    Ok(bytes as f64 / 1e6 / took.as_secs_f64())
}
