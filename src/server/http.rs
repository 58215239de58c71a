//! The HTTP adapter: one warp filter that takes every request apart (method, decoded path,
//! query, headers, streaming body), gives it a request id and an access-log line, hands
//! `/v2/` requests to the registry (and `/token`, `/api/v1/`, `/v1/search` and the web UI
//! at `/`, `/r/…`, `/-/…` to the embedded index) and turns its `Reply` into a response.
//! Every answer to a `HEAD` goes out without a body (HTTP/2 clients break otherwise).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tracing::Instrument;
use warp::filters::path::FullPath;
use warp::{Filter, Reply as _};

use crate::registry::errors::RegistryError;
use crate::registry::{Payload, Registry, Reply, Request};
use crate::server::access::Gate;
use crate::server::health;
use crate::server::metrics::{self, Metrics};
use crate::storage::{BodyStream, Storage};

/// The client's address, put into request extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

type Response = warp::reply::Response;

/// What every request handler shares.
pub struct Context<S: Storage> {
    pub registry: Arc<Registry<S>>,
    pub gate: Gate,
    pub metrics: Arc<Metrics>,
    /// The storage folder, for filesystem-size metrics.
    pub storage_root: std::path::PathBuf,
    /// `false` in a custom index process (`holdfast index`): no `/v2/` here.
    pub registry_api: bool,
}

/// All routes of the server, as one filter that never rejects.
pub fn routes<S: Storage>(
    ctx: Arc<Context<S>>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let request_ids = Arc::new(RequestIds::new());
    let metrics = ctx.metrics.clone();
    let body = warp::body::stream().map(move |s| body_stream(s, metrics.clone()));
    warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(body)
        .and(warp::ext::optional::<PeerAddr>())
        .then(
            move |method: Method,
                  path: FullPath,
                  query: String,
                  headers: HeaderMap,
                  body: BodyStream,
                  peer: Option<PeerAddr>| {
                let ctx = ctx.clone();
                let id = request_ids.next();
                let peer_text = peer.map(|p| p.0.to_string()).unwrap_or_default();
                let span = tracing::info_span!(
                    "request",
                    id = %id,
                    peer = %peer_text,
                    user = tracing::field::Empty
                );
                async move {
                    let started = Instant::now();
                    let route = metrics::route_label(path.as_str());
                    let reply =
                        serve_request(&ctx, &method, &path, &query, headers, body, peer, route)
                            .await;
                    let status = reply.status;
                    let sent = match &reply.payload {
                        _ if method == Method::HEAD => 0,
                        Payload::Empty => 0,
                        Payload::Bytes(b) => b.len() as u64,
                        Payload::Stream { len, .. } => *len,
                    };
                    let response = into_response(reply, method == Method::HEAD, &id);
                    let elapsed = started.elapsed();
                    ctx.metrics
                        .observe(route, method.as_str(), status.as_u16(), elapsed, sent);
                    tracing::info!(
                        method = %method,
                        path = %path.as_str(),
                        status = status.as_u16(),
                        millis = elapsed.as_millis() as u64,
                        "access"
                    );
                    response
                }
                .instrument(span)
            },
        )
        .recover(|rejection: warp::Rejection| async move {
            // The filter above accepts every request; a rejection means warp itself could
            // not hand over the request (e.g. a body already taken).
            tracing::warn!(?rejection, "request rejected by the HTTP layer");
            let err = RegistryError::new(
                StatusCode::BAD_REQUEST,
                crate::registry::errors::Code::Unsupported,
                "malformed request",
            );
            Ok::<_, Infallible>(into_response(Reply::error(&err), false, ""))
        })
        .unify()
}

/// One request: health checks, authentication, then the registry (or metrics).
#[allow(clippy::too_many_arguments)]
async fn serve_request<S: Storage>(
    ctx: &Context<S>,
    method: &Method,
    path: &FullPath,
    query: &str,
    headers: HeaderMap,
    body: BodyStream,
    peer: Option<PeerAddr>,
    route: &'static str,
) -> Reply {
    // Wrapped first, so that an early 401 (clients often send a large body without
    // credentials, then retry) drains it too.
    let body: BodyStream = if announces_body(&headers) {
        Box::pin(DrainOnDrop { inner: Some(body) })
    } else {
        body
    };
    if health::is_health_path(path.as_str()) {
        return health::answer(&ctx.registry, path.as_str()).await;
    }
    if path.as_str() == crate::index::endpoint::TOKEN_PATH {
        if let Some(index) = ctx.gate.index() {
            return index
                .handle(method, query, &headers, body, peer.map(|p| p.0.ip()))
                .await;
        }
    }
    if crate::index::api::is_api_path(path.as_str()) {
        if let Some(index) = ctx.gate.index() {
            let decoded = match percent_encoding::percent_decode_str(path.as_str()).decode_utf8() {
                Ok(p) => p.into_owned(),
                Err(_) => {
                    return Reply::error(&RegistryError::from(
                        crate::registry::names::NameError::Name,
                    ))
                }
            };
            return crate::index::api::handle(
                index,
                method,
                &decoded,
                query,
                &headers,
                body,
                peer.map(|p| p.0.ip()),
            )
            .await;
        }
    }
    if crate::index::web::is_ui_path(path.as_str()) {
        if let Some(index) = ctx.gate.index() {
            let Ok(decoded) = percent_encoding::percent_decode_str(path.as_str()).decode_utf8()
            else {
                return Reply::error(&RegistryError::from(
                    crate::registry::names::NameError::Name,
                ));
            };
            return crate::index::web::handle(
                index,
                method,
                &decoded,
                query,
                &headers,
                body,
                peer.map(|p| p.0.ip()),
            )
            .await;
        }
    }
    if !ctx.registry_api && path.as_str() != METRICS_PATH {
        return Reply::error(&RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "this is an index: it serves /token and /api/v1/; the registry API is on the registries",
        ));
    }
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (caller, access) = match ctx.gate.admit(authorization, peer.map(|p| p.0.ip())).await {
        Ok(admitted) => admitted,
        Err(e) => {
            ctx.metrics
                .auth_failure(if e.status == StatusCode::TOO_MANY_REQUESTS {
                    "throttled"
                } else {
                    "bad_credentials"
                });
            return Reply::error(&e);
        }
    };
    if let Some(caller) = &caller {
        tracing::Span::current().record("user", caller.log_name());
    }
    if path.as_str() == METRICS_PATH {
        // On the main port, metrics are for administrators only.
        return if access.is_admin() {
            metrics_reply(ctx).await
        } else if let Some(challenge) = access.challenge(None) {
            Reply::error(
                &RegistryError::new(
                    StatusCode::UNAUTHORIZED,
                    crate::registry::errors::Code::Unauthorized,
                    "authentication required",
                )
                .with_header(http::header::WWW_AUTHENTICATE, challenge),
            )
        } else {
            Reply::error(&RegistryError::new(
                StatusCode::FORBIDDEN,
                crate::registry::errors::Code::Denied,
                "metrics are for administrators",
            ))
        };
    }
    let (path, query) = match decode(path.as_str(), query) {
        Ok(decoded) => decoded,
        Err(e) => return Reply::error(&e),
    };
    let _upload = (matches!(route, "upload" | "upload_start")
        && matches!(*method, Method::POST | Method::PATCH | Method::PUT))
    .then(|| ctx.metrics.upload_started());
    let req = Request {
        access,
        user: caller.and_then(|c| c.user),
        method: method.clone(),
        path,
        query,
        headers,
        body,
    };
    ctx.registry.handle(req).await
}

pub const METRICS_PATH: &str = "/metrics";

/// The metrics page, with storage gauges refreshed first.
async fn metrics_reply<S: Storage>(ctx: &Context<S>) -> Reply {
    let free = ctx.registry.storage.free_space().await.ok().flatten();
    ctx.metrics
        .set_storage(free, metrics::filesystem_size(&ctx.storage_root));
    Reply::new(StatusCode::OK).bytes(
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(ctx.metrics.render()),
    )
}

/// The monitoring listener's routes: health and metrics only (never the registry API).
pub fn monitoring_routes<S: Storage>(
    ctx: Arc<Context<S>>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .then(move |method: Method, path: FullPath| {
            let ctx = ctx.clone();
            async move {
                let reply = if health::is_health_path(path.as_str()) {
                    health::answer(&ctx.registry, path.as_str()).await
                } else if path.as_str() == METRICS_PATH {
                    metrics_reply(&ctx).await
                } else {
                    Reply::error(&RegistryError::unsupported(
                        StatusCode::NOT_FOUND,
                        "the monitoring listener serves /healthz, /readyz and /metrics only",
                    ))
                };
                into_response(reply, method == Method::HEAD, "")
            }
        })
}

/// Adapts warp's body stream to the registry's: plain `Bytes` chunks and I/O errors,
/// counted as received bytes.
fn body_stream<St, B>(s: St, metrics: Arc<Metrics>) -> BodyStream
where
    St: futures_util::Stream<Item = Result<B, warp::Error>> + Send + Sync + 'static,
    B: Buf,
{
    Box::pin(s.map(move |chunk| {
        chunk
            .map(|mut b| {
                metrics.received(b.remaining() as u64);
                b.copy_to_bytes(b.remaining())
            })
            .map_err(std::io::Error::other)
    }))
}

/// Whether the request announces a body (HTTP/1.1 `Content-Length` > 0 or chunked).
fn announces_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    chunked || length.is_some_and(|n| n > 0)
}

/// Most of an unread request body drained after an early answer, and for how long.
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body that, if dropped before its end (a handler answered early: unknown
/// upload, bad name, oversized manifest), reads and discards the rest in the background,
/// up to a cap. An HTTP/1.1 client still sending would otherwise get a connection reset
/// instead of the error response.
struct DrainOnDrop {
    inner: Option<BodyStream>,
}

impl futures_util::Stream for DrainOnDrop {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let item = std::task::ready!(inner.as_mut().poll_next(cx));
        if item.is_none() {
            // Finished: nothing to drain on drop.
            self.inner = None;
        }
        std::task::Poll::Ready(item)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let (Some(mut body), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(async move {
            let drain = async {
                let mut seen = 0u64;
                while let Some(Ok(chunk)) = body.next().await {
                    seen += chunk.len() as u64;
                    if seen > DRAIN_MAX_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
        });
    }
}

/// Percent-decodes the path and query. A path that does not decode to UTF-8 is a bad name.
fn decode(path: &str, query: &str) -> Result<(String, Vec<(String, String)>), RegistryError> {
    let bad_name = || RegistryError::from(crate::registry::names::NameError::Name);
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| bad_name())?
        .into_owned();
    let query = serde_urlencoded::from_str::<Vec<(String, String)>>(query).map_err(|_| {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            crate::registry::errors::Code::Unsupported,
            "malformed query string",
        )
    })?;
    Ok((path, query))
}

fn into_response(reply: Reply, is_head: bool, request_id: &str) -> Response {
    let Reply {
        status,
        mut headers,
        payload,
    } = reply;
    let mut response = match payload {
        _ if is_head => {
            // Keep the Content-Length a handler computed for HEAD; drop an error body's.
            http::Response::new(Bytes::new()).into_response()
        }
        Payload::Empty => http::Response::new(Bytes::new()).into_response(),
        Payload::Bytes(b) => http::Response::new(b).into_response(),
        Payload::Stream { len, stream } => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            warp::reply::stream(stream).into_response()
        }
    };
    *response.status_mut() = status;
    if is_head && !status.is_success() {
        headers.remove(CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    response.headers_mut().extend(headers);
    response
}

/// Request ids: a per-process random prefix and a counter, unique and cheap.
struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut b = [0u8; 4];
        // Without randomness ids are still unique within the process.
        let _ = getrandom::fill(&mut b);
        RequestIds {
            prefix: hex::encode(b),
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}
