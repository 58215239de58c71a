//! Accepting connections: the TCP accept loop, the TLS handshake (with a time limit), and
//! serving HTTP/1.1 or HTTP/2 on each connection through hyper, with the HTTP limits and
//! flow-control windows set for bulk transfers. Also where graceful shutdown stops accepting
//! and lets in-flight connections finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::config::ServerConfig;
use crate::server::http::PeerAddr;

/// HTTP/2 flow-control windows sized for large blobs: with hyper's small defaults a 1 GiB
/// upload over h2 ran at a quarter of HTTP/1.1's speed on this class of machine.
const H2_STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const H2_MAX_FRAME: u32 = 1024 * 1024;

pub struct Serving {
    pub builder: auto::Builder<TokioExecutor>,
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub connections: Arc<Semaphore>,
    /// Client networks allowed to connect; empty allows all.
    pub allow: Vec<ipnet::IpNet>,
}

impl Serving {
    pub fn new(cfg: &ServerConfig, allow: Vec<ipnet::IpNet>) -> Serving {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Some(Duration::from_secs(cfg.header_read_timeout_secs)))
            .max_buf_size(cfg.max_header_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_frame_size(H2_MAX_FRAME)
            .max_header_list_size(cfg.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Serving {
            builder,
            handshake_timeout: Duration::from_secs(cfg.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            allow,
        }
    }
}

impl Serving {
    /// Whether a client at `ip` may connect (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Accepts on `listener` until `shutdown` turns true; each connection is registered with
/// `graceful` so shutdown can wait for it.
pub async fn accept_loop<Svc>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Svc,
    serving: Arc<Serving>,
    graceful: Arc<GracefulShutdown>,
    mut shutdown: watch::Receiver<bool>,
) where
    Svc: Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    loop {
        let permit = tokio::select! {
            p = serving.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if !serving.admits(peer.ip()) {
            // Closed before any TLS byte: outsiders learn nothing about the service.
            tracing::debug!(peer = %peer, "connection refused by the allow-list");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let serving = serving.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(serving.handshake_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => {
                            serve(tls_stream, peer, service, &serving, watcher).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
                None => serve(stream, peer, service, &serving, watcher).await,
            }
        });
    }
}

async fn serve<I, Svc>(
    io: I,
    peer: SocketAddr,
    service: Svc,
    serving: &Serving,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let svc = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            let guard = InFlight::start(activity.clone());
            let mut service = service.clone();
            async move {
                let response = service.call(req).await?;
                // The request counts as in flight until its response body is done.
                Ok::<_, std::convert::Infallible>(response.map(|body| GuardedBody {
                    inner: body,
                    _guard: guard,
                }))
            }
        })
    };
    let conn = serving
        .builder
        .serve_connection(TokioIo::new(io), svc)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    let idle_limit = serving.idle_timeout;
    let mut tick = tokio::time::interval(idle_check_period(idle_limit));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            r = &mut conn => break r,
            _ = tick.tick() => {
                if activity.idle_for() > idle_limit {
                    tracing::debug!(peer = %peer, "closing idle connection");
                    break Ok(());
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

fn idle_check_period(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Requests in flight on one connection, and when the last one ended. hyper's own header
/// timeout starts only with a request's first byte, so a client that connects (and shakes
/// hands) but never sends anything would hold its connection forever without this.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    last_end: std::sync::Mutex<std::time::Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_end: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = *self.last_end.lock().unwrap_or_else(|p| p.into_inner());
        last.elapsed()
    }
}

/// Marks one request in flight until dropped (with its response body).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A response body that keeps its request marked in flight until the body is finished.
struct GuardedBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
