//! The registry role: the Distribution API under `/v2/`. This module owns the request and
//! reply types handlers work with and dispatches a request to the handler of its endpoint;
//! one file per resource does the work. It never parses credentials or touches sockets: the
//! server layer hands in a `Request` and sends back the `Reply`.

pub mod blobs;
pub mod catalog;
pub mod errors;
pub mod manifest_format;
pub mod manifests;
pub mod names;
pub mod negotiate;
pub mod range;
pub mod referrers;
pub mod routes;
pub mod tags;
pub mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use crate::auth::Action;
use crate::config::LimitsConfig;
use crate::events::{Event, EventKind, EventSink};
use crate::storage::{BodyStream, ByteStream, Storage};
use errors::RegistryError;
use routes::Route;

/// What the caller may do. The server builds it from the authenticated identity; the
/// registry only asks questions of it and never sees credentials.
pub trait AccessPolicy: Send + Sync {
    /// May the caller do `action` in `repository`?
    fn allowed(&self, repository: &str, action: Action) -> bool;
    /// The `WWW-Authenticate` challenge for a request the caller may not make as it is
    /// (`need`: the repository and action it needs, if any): for a caller who has not
    /// signed in (Basic), or whose token lacks the scope (Bearer). `None` when asking again
    /// would not help: signed in with Basic, or authentication off.
    fn challenge(&self, need: Option<(&str, Action)>) -> Option<String>;
    /// For the catalog: a challenge when the caller must first obtain catalog access.
    fn catalog_challenge(&self) -> Option<String> {
        None
    }
    /// Whether `_catalog` shows `repository` to the caller: by default, when it may pull it.
    fn lists(&self, repository: &str) -> bool {
        self.allowed(repository, Action::Pull)
    }
    /// Whether deletes are enabled on this registry at all.
    fn deletes_enabled(&self) -> bool;
    /// Whether the caller administers this registry (may read metrics on the main port).
    fn is_admin(&self) -> bool {
        false
    }
}

/// Everyone may do everything (`[auth] mode = "none"`).
pub struct OpenAccess {
    pub deletes_enabled: bool,
}

impl AccessPolicy for OpenAccess {
    fn allowed(&self, _: &str, action: Action) -> bool {
        action != Action::Delete || self.deletes_enabled
    }
    fn challenge(&self, _: Option<(&str, Action)>) -> Option<String> {
        None
    }
    fn deletes_enabled(&self) -> bool {
        self.deletes_enabled
    }
    fn is_admin(&self) -> bool {
        true
    }
}

/// A request as the registry sees it: already routed to `/v2/`, body still streaming.
pub struct Request {
    /// What the caller may do.
    pub access: Arc<dyn AccessPolicy>,
    /// The signed-in user, for audit and events (`None`: anonymous or auth off).
    pub user: Option<String>,
    pub method: Method,
    /// Percent-decoded path.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The declared body length, if the client sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.header(http::header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse().ok())
    }

    /// Takes the body, leaving an empty one.
    pub fn take_body(&mut self) -> BodyStream {
        std::mem::replace(&mut self.body, Box::pin(futures_util::stream::empty()))
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes (used for
    /// manifests only; blobs always stream).
    pub async fn read_body(&mut self, limit: u64) -> Result<Bytes, RegistryError> {
        let too_large = || {
            RegistryError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                errors::Code::SizeInvalid,
                format!("body exceeds the limit of {limit} bytes"),
            )
        };
        if self.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = self.take_body();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::new(
                    StatusCode::BAD_REQUEST,
                    errors::Code::Unsupported,
                    "request body ended before it was complete",
                )
                .with_detail(serde_json::json!({ "reason": e.to_string() }))
            })?;
            if buf.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// What a response carries.
pub enum Payload {
    Empty,
    Bytes(Bytes),
    Stream { len: u64, stream: ByteStream },
}

/// A response before it is turned into HTTP by the server layer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub payload: Payload,
}

impl Reply {
    pub fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            payload: Payload::Empty,
        }
    }

    /// Adds a header; values we build are always valid header text, and one that is not
    /// (never expected) is dropped rather than failing the request.
    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.append(name, v);
        }
        self
    }

    pub fn bytes(mut self, content_type: &str, body: Bytes) -> Reply {
        self = self.header(http::header::CONTENT_TYPE, content_type);
        self.payload = Payload::Bytes(body);
        self
    }

    pub fn json(self, value: &serde_json::Value) -> Reply {
        self.bytes("application/json", Bytes::from(value.to_string()))
    }

    pub fn stream(mut self, len: u64, stream: ByteStream) -> Reply {
        self.payload = Payload::Stream { len, stream };
        self
    }

    /// The spec's error JSON for `err`.
    pub fn error(err: &RegistryError) -> Reply {
        let mut r = Reply::new(err.status).bytes("application/json", Bytes::from(err.body()));
        for (name, value) in &err.headers {
            r = r.header(name.clone(), value);
        }
        r
    }
}

pub type HandlerResult = Result<Reply, RegistryError>;

/// The registry: storage plus the limits handlers enforce.
pub struct Registry<S: Storage> {
    pub storage: S,
    pub limits: LimitsConfig,
    /// Maintenance mode: every push and delete is refused.
    pub read_only: bool,
    /// Uploads are refused while the storage has less free space than this.
    pub min_free_bytes: u64,
    /// Where committed pushes and deletes are reported (the index), if anywhere.
    pub events: Option<Arc<dyn EventSink>>,
    /// This registry's service name, the sender of its events.
    pub service: String,
}

/// Header names the spec defines beyond the standard ones.
pub mod header {
    use http::HeaderName;
    pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
    pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
    pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
    pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
    pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
    pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
}

impl<S: Storage> Registry<S> {
    pub fn new(storage: S, limits: LimitsConfig) -> Self {
        Registry {
            storage,
            limits,
            read_only: false,
            min_free_bytes: 0,
            events: None,
            service: String::new(),
        }
    }

    /// Reports a committed change to the index. The change is already stored, so a report
    /// that fails is logged, not turned into an error for the client.
    pub async fn publish(&self, actor: Option<&str>, kind: EventKind) {
        let Some(sink) = &self.events else { return };
        match Event::new(&self.service, actor, kind) {
            Ok(event) => {
                if let Err(e) = sink.publish(event).await {
                    tracing::error!(error = %e, "reporting a change to the index failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "making an event failed"),
        }
    }

    /// Refuses writes in read-only mode, and pushes while the disk is below its watermark
    /// (reads go on; pushes are accepted again as soon as space returns).
    async fn check_write(&self, action: Action) -> Result<(), RegistryError> {
        if self.read_only {
            return Err(RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "the registry is in read-only maintenance mode",
            ));
        }
        if action == Action::Push && self.min_free_bytes > 0 {
            if let Some(free) = self.storage.free_space().await? {
                if free < self.min_free_bytes {
                    tracing::warn!(
                        free,
                        watermark = self.min_free_bytes,
                        "upload refused: disk below its free-space watermark"
                    );
                    return Err(errors::insufficient_storage());
                }
            }
        }
        Ok(())
    }

    /// Largest blob accepted (the config's 0 means unlimited).
    pub fn blob_limit(&self) -> u64 {
        match self.limits.blob_max_bytes {
            0 => u64::MAX,
            n => n,
        }
    }

    /// Handles one `/v2/` request; errors become the spec's JSON here.
    pub async fn handle(&self, req: Request) -> Reply {
        let result = self.dispatch(req).await;
        let mut reply = result.unwrap_or_else(|e| Reply::error(&e));
        reply.headers.insert(
            header::API_VERSION,
            HeaderValue::from_static("registry/2.0"),
        );
        reply
    }

    async fn dispatch(&self, req: Request) -> HandlerResult {
        let path = req.path.clone();
        let Some(route) = routes::route(&path) else {
            return Err(RegistryError::unsupported(
                StatusCode::NOT_FOUND,
                "no such endpoint",
            ));
        };
        let m = req.method.clone();
        let not_allowed = || {
            Err(RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not supported on this endpoint"),
            ))
        };
        // Validate names before anything else: a bad name is a bad name for everyone.
        let name = match &route {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(names::RepoName::parse(name)?),
        };
        if let Some(name) = &name {
            let (action, not_found): (Action, fn() -> RegistryError) = match (&route, &m) {
                (Route::Tags { .. } | Route::Referrers { .. }, _) => {
                    (Action::Pull, RegistryError::name_unknown)
                }
                (Route::Manifest { .. }, &Method::PUT) => {
                    (Action::Push, RegistryError::name_unknown)
                }
                (Route::Manifest { .. } | Route::Blob { .. }, &Method::DELETE) => {
                    (Action::Delete, RegistryError::name_unknown)
                }
                (Route::Manifest { .. }, _) => (Action::Pull, RegistryError::manifest_unknown),
                (Route::Blob { .. }, _) => (Action::Pull, RegistryError::blob_unknown),
                (Route::UploadStart { .. } | Route::Upload { .. }, _) => {
                    (Action::Push, RegistryError::upload_unknown)
                }
                (Route::Base | Route::Catalog, _) => (Action::Pull, RegistryError::name_unknown),
            };
            // The referrers API answers an empty index for a subject nobody referred to,
            // so a signed-in caller who may not pull gets exactly that (not a 404 that
            // would set the repository apart from ones that hold nothing).
            if matches!(route, Route::Referrers { .. })
                && !req.access.allowed(name.as_str(), Action::Pull)
                && req
                    .access
                    .challenge(Some((name.as_str(), Action::Pull)))
                    .is_none()
            {
                return Ok(referrers::empty_index());
            }
            authorize(req.access.as_ref(), name.as_str(), action, not_found)?;
            if action != Action::Pull {
                self.check_write(action).await?;
            }
        }
        match route {
            Route::Base => match m {
                Method::GET | Method::HEAD => {
                    // `docker login` checks its credentials here: a caller who could sign
                    // in but did not is asked to.
                    if let Some(challenge) = req.access.challenge(None) {
                        return Err(unauthorized(challenge));
                    }
                    Ok(Reply::new(StatusCode::OK).json(&serde_json::json!({})))
                }
                _ => not_allowed(),
            },
            Route::Catalog => match m {
                Method::GET => {
                    if let Some(challenge) = req.access.catalog_challenge() {
                        return Err(unauthorized(challenge));
                    }
                    catalog::list(self, &req).await
                }
                _ => not_allowed(),
            },
            Route::Tags { name } => match m {
                Method::GET => tags::list(self, name, &req).await,
                _ => not_allowed(),
            },
            Route::Manifest { name, reference } => match m {
                Method::GET | Method::HEAD => manifests::get(self, name, reference, &req).await,
                Method::PUT => manifests::put(self, name, reference, req).await,
                Method::DELETE => {
                    manifests::delete(self, name, reference, req.user.as_deref()).await
                }
                _ => not_allowed(),
            },
            Route::Blob { name, digest } => match m {
                Method::GET | Method::HEAD => blobs::get(self, name, digest, &req).await,
                Method::DELETE => blobs::delete(self, name, digest).await,
                _ => not_allowed(),
            },
            Route::UploadStart { name } => match m {
                Method::POST => uploads::start(self, name, req).await,
                _ => not_allowed(),
            },
            Route::Upload { name, id } => match m {
                Method::GET => uploads::status(self, name, id).await,
                Method::PATCH => uploads::patch(self, name, id, req).await,
                Method::PUT => uploads::finish(self, name, id, req).await,
                Method::DELETE => uploads::cancel(self, name, id).await,
                _ => not_allowed(),
            },
            Route::Referrers { name, digest } => match m {
                Method::GET => referrers::list(self, name, digest, &req).await,
                _ => not_allowed(),
            },
        }
    }
}

fn unauthorized(challenge: String) -> RegistryError {
    RegistryError::new(
        StatusCode::UNAUTHORIZED,
        errors::Code::Unauthorized,
        "authentication required",
    )
    .with_header(http::header::WWW_AUTHENTICATE, challenge)
}

/// Decides whether the caller may do `action` in `repository`. A caller who has not
/// signed in is asked to (401 with a challenge); a signed-in caller who may not pull gets
/// the same answer as for a repository that does not exist, so private names do not leak;
/// one who may not push or delete is denied (403).
fn authorize(
    access: &dyn AccessPolicy,
    repository: &str,
    action: Action,
    not_found: fn() -> RegistryError,
) -> Result<(), RegistryError> {
    if action == Action::Delete && !access.deletes_enabled() {
        return Err(RegistryError::unsupported(
            StatusCode::METHOD_NOT_ALLOWED,
            "deletes are disabled on this registry",
        ));
    }
    if access.allowed(repository, action) {
        return Ok(());
    }
    if let Some(challenge) = access.challenge(Some((repository, action))) {
        return Err(unauthorized(challenge));
    }
    if action == Action::Pull {
        return Err(not_found());
    }
    Err(RegistryError::new(
        StatusCode::FORBIDDEN,
        errors::Code::Denied,
        format!("{action} access to this repository is denied"),
    ))
}

/// Parses the `n` query parameter of paginated lists: absent means "all" (bounded by
/// `max`), and anything that is not a number is the spec's pagination error.
pub fn page_size(req: &Request, max: usize) -> Result<usize, RegistryError> {
    match req.query("n") {
        None | Some("") => Ok(max),
        Some(v) => v.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                errors::Code::PaginationNumberInvalid,
                "n must be a non-negative integer",
            )
        }),
    }
}

/// The `Link` header of a page whose last entry is `last`.
pub fn next_link(path: &str, n: usize, last: &str) -> String {
    format!(
        "<{path}?n={n}&last={}>; rel=\"next\"",
        percent_encode_query(last)
    )
}

fn percent_encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `0-<last byte>` as the spec's upload `Range` header writes it.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
