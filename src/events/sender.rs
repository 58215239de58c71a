//! Delivery of outbox events to a custom index: one worker task per outbox posts the oldest
//! batch over HTTPS with the shared secret as a Bearer token, removes it from the outbox
//! once the index answers 2xx, and otherwise retries the same batch with jittered
//! exponential backoff, forever: events are never dropped, and never overtake each other.
//! This module also owns the HTTP client (explicit CA roots, explicit proxy or none) and
//! the secret, which is never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::StatusCode;
use reqwest::Url;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::outbox::{Batch, SenderClaim};
use super::{EventError, EventsConfig, Outbox};

/// First retry delay after a failed delivery; doubles per failure up to `MAX_BACKOFF`.
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How much of an error answer's body goes into the log.
const MAX_LOGGED_BODY: usize = 512;
/// Connecting gets at most this long even with a longer request timeout, so a dead host
/// is noticed quickly.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The secret shared with the index. Its `Debug` is `<redacted>`, and it has no `Display`,
/// so it cannot end up in a log by accident.
#[derive(Clone)]
pub struct SharedSecret(String);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SharedSecret {
    /// Reads the secret from `path`, ignoring trailing whitespace (the newline editors
    /// add). An empty secret is refused: it would authenticate nothing.
    pub fn read(path: &Path) -> Result<SharedSecret, EventError> {
        let err = |message: String| EventError::Secret {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let secret = text.trim_end();
        if secret.is_empty() {
            return Err(err("is empty".into()));
        }
        // Checked here so a bad character is a startup error, not a failure per request.
        // The message says what is wrong without quoting any of the secret.
        if !secret.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(err(
                "must be printable ASCII (it is sent in an HTTP header)".into(),
            ));
        }
        Ok(SharedSecret(secret.to_owned()))
    }

    /// The `Authorization` header value, marked sensitive so HTTP layers do not show it.
    fn authorization(&self) -> Result<HeaderValue, EventError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).map_err(|_| {
            EventError::Config("the events secret is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Delivers one outbox's events to the index. Build it with [`EventSender::new`], adjust
/// the backoff if needed, then [`EventSender::spawn`] it.
pub struct EventSender {
    outbox: Arc<Outbox>,
    client: reqwest::Client,
    endpoint: Url,
    authorization: HeaderValue,
    base_backoff: Duration,
    max_backoff: Duration,
    /// This registry's service name, sent as `X-Holdfast-Service` so the index knows who
    /// checks in even with an empty batch.
    service: Option<HeaderValue>,
    /// How often to check in with the index while idle (for repository deletions it asks
    /// of this registry). `None`: only when there are events.
    poll: Option<Duration>,
    /// Carries out a repository deletion the index asks for.
    on_delete: Option<DeletionHandler>,
}

/// Deletes one repository the index asked this registry to delete (and reports it back
/// as an event). Called by the sender, one at a time.
pub type DeletionHandler = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// Header naming the registry that reports.
pub const SERVICE_HEADER: &str = "x-holdfast-service";

/// The index's answer to a batch: deletions waiting for this registry.
#[derive(serde::Deserialize, Default)]
struct Acknowledgement {
    #[serde(default)]
    delete_repositories: Vec<String>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("outbox", &self.outbox)
            .field("endpoint", &self.endpoint.as_str())
            .field("authorization", &"<redacted>")
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Why a delivery attempt did not get an acknowledgement.
enum Failure {
    /// No HTTP answer: connection, TLS, timeout.
    Network(String),
    /// The index answered, but not 2xx.
    Status { status: StatusCode, body: String },
}

impl Failure {
    fn summary(&self) -> String {
        match self {
            Failure::Network(e) => e.clone(),
            Failure::Status { status, .. } => status.to_string(),
        }
    }
}

impl EventSender {
    /// Checks `config`, reads the secret and CA files and builds the HTTP client. Errors
    /// when events are not configured (`index_url` unset).
    pub fn new(outbox: Arc<Outbox>, config: &EventsConfig) -> Result<EventSender, EventError> {
        config.validate().map_err(EventError::Config)?;
        let endpoint = config.endpoint().map_err(EventError::Config)?;
        let secret_file = config
            .secret_file
            .as_deref()
            .ok_or_else(|| EventError::Config("events.secret_file: not set".into()))?;
        let authorization = SharedSecret::read(secret_file)?.authorization()?;

        let timeout = config.timeout();
        let proxy = match &config.proxy {
            Some(p) => {
                Some(crate::client::parse_proxy(p, "events.proxy").map_err(EventError::Config)?)
            }
            None => None,
        };
        let client = crate::client::build(&crate::client::Outbound {
            timeout,
            connect_timeout: timeout.min(MAX_CONNECT_TIMEOUT),
            https_only: endpoint.scheme() == "https",
            user_agent: concat!("holdfast/", env!("CARGO_PKG_VERSION")),
            // Only this CA when given: the index's certificate usually comes from its own
            // local CA, and nothing else should be able to impersonate it.
            roots: match &config.ca_file {
                Some(path) => crate::client::Roots::Only(path),
                None => crate::client::Roots::System,
            },
            proxy: proxy.as_ref(),
        })
        .map_err(|e| match e {
            crate::client::OutboundError::Ca { path, message } => EventError::Ca { path, message },
            crate::client::OutboundError::Proxy(m) => {
                EventError::Config(format!("events.proxy: {m}"))
            }
            crate::client::OutboundError::Client(m) => EventError::Client(m),
        })?;

        Ok(EventSender {
            outbox,
            client,
            endpoint,
            authorization,
            base_backoff: BASE_BACKOFF,
            max_backoff: MAX_BACKOFF,
            service: None,
            poll: None,
            on_delete: None,
        })
    }

    /// Names this registry in every request, checks in every `poll` while idle, and
    /// passes the repository deletions the index answers with to `on_delete`.
    pub fn with_check_in(
        mut self,
        service: &str,
        poll: Duration,
        on_delete: DeletionHandler,
    ) -> Result<EventSender, EventError> {
        self.service = Some(
            HeaderValue::from_str(service)
                .map_err(|_| EventError::Config(format!("service name {service:?}")))?,
        );
        self.poll = Some(poll.max(Duration::from_millis(100)));
        self.on_delete = Some(on_delete);
        Ok(self)
    }

    /// Sets the first retry delay and its cap (defaults `BASE_BACKOFF`, `MAX_BACKOFF`).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> EventSender {
        self.base_backoff = base.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.base_backoff);
        self
    }

    /// Starts delivering on the current tokio runtime until `shutdown` turns true (or its
    /// sender is dropped). Errors outside a runtime, or when this outbox already has a
    /// running sender.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Result<JoinHandle<()>, EventError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| EventError::Task(format!("no tokio runtime: {e}")))?;
        let claim = self.outbox.claim_sender()?;
        Ok(runtime.spawn(self.run(shutdown, claim)))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>, _claim: SenderClaim) {
        tracing::info!(
            url = %self.endpoint,
            pending = self.outbox.pending(),
            "event sender started"
        );
        let mut backoff = Backoff::new(self.base_backoff, self.max_backoff);
        loop {
            let next = tokio::select! {
                next = self.outbox.next_batch() => next,
                () = stopped(&mut shutdown) => break,
            };
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    let poll = self.poll.unwrap_or(Duration::MAX);
                    let check_in = tokio::select! {
                        () = self.outbox.published() => false,
                        () = tokio::time::sleep(poll) => true,
                        () = stopped(&mut shutdown) => break,
                    };
                    if check_in {
                        let outcome = tokio::select! {
                            outcome = self.post(Bytes::from_static(b"{\"events\":[]}")) => outcome,
                            () = stopped(&mut shutdown) => break,
                        };
                        match outcome {
                            Ok((_, deletions)) => self.carry_out(deletions).await,
                            Err(failure) => {
                                tracing::debug!(attempt_failed = %failure.summary(), "event sender: check-in failed");
                            }
                        }
                    }
                    continue;
                }
                Err(e) => {
                    let wait = backoff.fail();
                    tracing::warn!(
                        error = %e,
                        attempt = backoff.failures,
                        retry_in_ms = millis(wait),
                        "event sender: cannot read the outbox"
                    );
                    if !pause(wait, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            };

            let outcome = tokio::select! {
                outcome = self.deliver(&batch) => outcome,
                // Abandoning the request is safe: the batch stays in the outbox, and the
                // index de-duplicates it if it did arrive.
                () = stopped(&mut shutdown) => break,
            };
            match outcome {
                Ok((status, deletions)) => {
                    if backoff.failures > 0 {
                        tracing::info!(
                            url = %self.endpoint,
                            failed_attempts = backoff.failures,
                            "event sender: index reachable again"
                        );
                    }
                    backoff.reset();
                    tracing::debug!(
                        events = batch.ids.len(),
                        status = status.as_u16(),
                        first = batch.ids.first().map(String::as_str).unwrap_or(""),
                        "event sender: batch acknowledged"
                    );
                    if let Err(e) = self.outbox.acknowledge(batch).await {
                        tracing::warn!(
                            error = %e,
                            "event sender: acknowledged events not fully cleaned up"
                        );
                    }
                    self.carry_out(deletions).await;
                }
                Err(failure) => {
                    let wait = backoff.fail();
                    self.log_failure(&failure, batch.ids.len(), backoff.failures, wait);
                    if !pause(wait, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(pending = self.outbox.pending(), "event sender stopped");
    }

    /// One attempt: POST the batch; `Ok` only for a 2xx answer.
    async fn deliver(&self, batch: &Batch) -> Result<(StatusCode, Vec<String>), Failure> {
        self.post(batch.body.clone()).await
    }

    /// Runs the deletions the index asked for, one at a time (each reports back through
    /// the outbox, which is how the index learns it was done).
    async fn carry_out(&self, deletions: Vec<String>) {
        let Some(handler) = &self.on_delete else {
            return;
        };
        for name in deletions {
            handler(name).await;
        }
    }

    /// POSTs `body`; for a 2xx answer, the status and the deletions the index asks for.
    async fn post(&self, body: Bytes) -> Result<(StatusCode, Vec<String>), Failure> {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(service) = &self.service {
            request = request.header(SERVICE_HEADER, service.clone());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Network(crate::client::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            // An index that asks nothing (or an older one) answers without the list.
            let ack: Acknowledgement = match response.bytes().await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                Err(_) => Acknowledgement::default(),
            };
            return Ok((status, ack.delete_repositories));
        }
        Err(Failure::Status {
            status,
            body: body_excerpt(response).await,
        })
    }

    fn log_failure(&self, failure: &Failure, events: usize, attempt: u32, wait: Duration) {
        let retry_in_ms = millis(wait);
        match failure {
            Failure::Network(error) => tracing::warn!(
                url = %self.endpoint,
                events,
                attempt,
                retry_in_ms,
                error = %error,
                "event sender: index unreachable; will retry"
            ),
            // The index refuses the batch itself (or our secret): retrying will not help
            // until someone fixes it, but dropping events would lose changes.
            Failure::Status { status, body }
                if status.is_client_error()
                    && *status != StatusCode::REQUEST_TIMEOUT
                    && *status != StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::error!(
                    url = %self.endpoint,
                    events,
                    attempt,
                    retry_in_ms,
                    status = status.as_u16(),
                    body = %body,
                    "event sender: index rejected the batch; retrying until it is accepted"
                )
            }
            Failure::Status { status, body } => tracing::warn!(
                url = %self.endpoint,
                events,
                attempt,
                retry_in_ms,
                status = status.as_u16(),
                body = %body,
                "event sender: index did not acknowledge; will retry"
            ),
        }
    }
}

/// Exponential backoff between failed attempts: `base`, doubling per failure, capped.
struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
    /// Failed attempts in a row.
    failures: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            next: base,
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = jittered(self.next).min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.base;
        self.failures = 0;
    }
}

/// Sleeps `wait`; false when shut down meanwhile.
async fn pause(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = stopped(shutdown) => false,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks `config`, builds an [`EventSender`] for `outbox` with the default backoff and
/// starts it (see [`EventSender::spawn`]).
pub fn spawn_sender(
    outbox: Arc<Outbox>,
    config: &EventsConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, EventError> {
    EventSender::new(outbox, config)?.spawn(shutdown)
}

/// Resolves once shutdown is requested or can no longer be requested (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// `delay` ±20%, so registries that lost the same index do not all retry in step.
fn jittered(delay: Duration) -> Duration {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u32::MAX));
    delay.mul_f64(factor)
}

/// The start of an error answer's body, for the log.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_LOGGED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_LOGGED_BODY);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Mutex;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::*;
    use crate::events::{Event, EventBatch, EventKind, EventSink};

    const SECRET: &str = "s3cret-Token_value";

    /// One request the test index received.
    #[derive(Debug, Clone)]
    struct Received {
        uri: String,
        method: String,
        authorization: Option<String>,
        content_type: Option<String>,
        body: Bytes,
        answered: u16,
    }

    /// A stand-in index: records every request and answers with `status`.
    struct Receiver {
        addr: SocketAddr,
        status: Arc<AtomicU16>,
        requests: Arc<Mutex<Vec<Received>>>,
    }

    impl Receiver {
        async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let status = Arc::new(AtomicU16::new(200));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (s, r) = (status.clone(), requests.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let (s, r) = (s.clone(), r.clone());
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve(tcp, s, r).await,
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    serve(stream, s, r).await;
                                }
                            }
                        }
                    });
                }
            });
            Receiver {
                addr,
                status,
                requests,
            }
        }

        fn url(&self, scheme: &str, host: &str) -> String {
            format!("{scheme}://{host}:{}", self.addr.port())
        }

        fn answer(&self, status: u16) {
            self.status.store(status, Ordering::SeqCst);
        }

        fn requests(&self) -> Vec<Received> {
            self.requests.lock().unwrap().clone()
        }

        /// Events from acknowledged requests, in arrival order.
        fn acknowledged(&self) -> Vec<Event> {
            self.requests()
                .iter()
                .filter(|r| (200..300).contains(&r.answered))
                .flat_map(|r| {
                    serde_json::from_slice::<EventBatch>(&r.body)
                        .unwrap()
                        .events
                })
                .collect()
        }
    }

    async fn serve<S>(stream: S, status: Arc<AtomicU16>, requests: Arc<Mutex<Vec<Received>>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let status = status.clone();
            let requests = requests.clone();
            async move {
                let header = |name| {
                    req.headers()
                        .get(name)
                        .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
                };
                let mut received = Received {
                    uri: req.uri().to_string(),
                    method: req.method().to_string(),
                    authorization: header(AUTHORIZATION),
                    content_type: header(CONTENT_TYPE),
                    body: Bytes::new(),
                    answered: 0,
                };
                received.body = req.into_body().collect().await.unwrap().to_bytes();
                let answer = status.load(Ordering::SeqCst);
                received.answered = answer;
                requests.lock().unwrap().push(received);
                let response = http::Response::builder()
                    .status(answer)
                    .body(Full::new(Bytes::from_static(b"test index says hello")))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        outbox_dir: PathBuf,
        outbox: Arc<Outbox>,
        config: EventsConfig,
        shutdown: watch::Sender<bool>,
    }

    fn setup(index_url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let secret_file = tmp.path().join("secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let outbox_dir = tmp.path().join("outbox");
        let outbox = Arc::new(Outbox::open(&outbox_dir).unwrap());
        let config = EventsConfig {
            index_url: Some(index_url.to_owned()),
            secret_file: Some(secret_file),
            timeout_secs: 5,
            ..EventsConfig::default()
        };
        let (shutdown, _) = watch::channel(false);
        Setup {
            _tmp: tmp,
            outbox_dir,
            outbox,
            config,
            shutdown,
        }
    }

    impl Setup {
        fn start(&self) -> JoinHandle<()> {
            EventSender::new(self.outbox.clone(), &self.config)
                .unwrap()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
                .spawn(self.shutdown.subscribe())
                .unwrap()
        }

        fn json_files(&self) -> usize {
            std::fs::read_dir(&self.outbox_dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".json")
                })
                .count()
        }
    }

    fn pushed(tag: &str) -> Event {
        Event::new(
            "registry.test",
            Some("alice"),
            EventKind::ManifestPushed {
                repository: "team/app".into(),
                tag: Some(tag.into()),
                digest: format!("sha256:{}", "ab".repeat(32)),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 527,
            },
        )
        .unwrap()
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn events_are_delivered_in_order_with_the_secret_as_bearer_token() {
        let index = Receiver::start(None).await;
        let s = setup(&index.url("http", "127.0.0.1"));
        let task = s.start();
        let mut published = Vec::new();
        for i in 0..30 {
            let e = pushed(&format!("v{i}"));
            s.outbox.publish(e.clone()).await.unwrap();
            published.push(e);
        }
        eventually("all delivered", || index.acknowledged().len() == 30).await;
        assert_eq!(index.acknowledged(), published);
        eventually("outbox emptied", || s.outbox.pending() == 0).await;
        assert_eq!(s.json_files(), 0);

        for r in index.requests() {
            assert_eq!(r.method, "POST");
            assert_eq!(r.uri, "/api/v1/events");
            assert_eq!(
                r.authorization.as_deref(),
                Some("Bearer s3cret-Token_value")
            );
            assert_eq!(r.content_type.as_deref(), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let events = v["events"].as_array().unwrap();
            assert!(!events.is_empty() && events.len() <= 100);
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
            assert_eq!(events[0]["action"], "manifest_pushed");
            assert_eq!(events[0]["repository"], "team/app");
            assert_eq!(events[0]["service"], "registry.test");
            assert_eq!(events[0]["size"], 527);
        }

        s.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn unavailable_index_is_retried_and_files_stay_until_acknowledged() {
        let index = Receiver::start(None).await;
        index.answer(503);
        let s = setup(&index.url("http", "localhost"));
        let _task = s.start();
        let (a, b) = (pushed("a"), pushed("b"));
        s.outbox.publish(a.clone()).await.unwrap();
        s.outbox.publish(b.clone()).await.unwrap();
        eventually("several attempts", || index.requests().len() >= 4).await;
        assert_eq!(s.outbox.pending(), 2);
        assert_eq!(s.json_files(), 2);
        assert!(index.acknowledged().is_empty());

        index.answer(200);
        eventually("delivered", || s.outbox.pending() == 0).await;
        assert_eq!(s.json_files(), 0);
        // Acknowledged exactly once: the sender stops sending a batch once it is taken.
        assert_eq!(index.acknowledged(), vec![a, b]);
        let attempts = index.requests().len();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(index.requests().len(), attempts);
    }

    #[tokio::test]
    async fn a_rejected_batch_is_kept_and_retried_not_dropped() {
        for status in [400, 401, 404, 429] {
            let index = Receiver::start(None).await;
            index.answer(status);
            let s = setup(&index.url("http", "127.0.0.1"));
            let _task = s.start();
            let e = pushed("v1");
            s.outbox.publish(e.clone()).await.unwrap();
            eventually("retried", || index.requests().len() >= 3).await;
            assert_eq!(s.outbox.pending(), 1, "{status}");
            index.answer(204);
            eventually("delivered", || s.outbox.pending() == 0).await;
            assert_eq!(index.acknowledged(), vec![e]);
        }
    }

    #[tokio::test]
    async fn a_redirect_is_not_an_acknowledgement() {
        let index = Receiver::start(None).await;
        index.answer(307);
        let s = setup(&index.url("http", "127.0.0.1"));
        let _task = s.start();
        s.outbox.publish(pushed("v1")).await.unwrap();
        eventually("retried", || index.requests().len() >= 3).await;
        assert_eq!(s.outbox.pending(), 1);
    }

    #[tokio::test]
    async fn events_left_by_a_previous_run_are_delivered_after_restart() {
        let index = Receiver::start(None).await;
        let s = setup(&index.url("http", "127.0.0.1"));
        let mut published = Vec::new();
        for i in 0..5 {
            let e = pushed(&format!("v{i}"));
            s.outbox.publish(e.clone()).await.unwrap();
            published.push(e);
        }
        // The "crash": no sender ever ran, and the outbox is dropped.
        let Setup {
            _tmp,
            outbox_dir,
            outbox,
            config,
            shutdown,
        } = s;
        drop(outbox);
        std::fs::write(outbox_dir.join(".tmp-00000000000000000009-dead"), b"{").unwrap();

        let outbox = Arc::new(Outbox::open(&outbox_dir).unwrap());
        assert_eq!(outbox.pending(), 5);
        let restarted = Setup {
            _tmp,
            outbox_dir,
            outbox,
            config,
            shutdown,
        };
        let _task = restarted.start();
        eventually("delivered", || restarted.outbox.pending() == 0).await;
        assert_eq!(index.acknowledged(), published);
        assert_eq!(restarted.json_files(), 0);
        assert!(std::fs::read_dir(&restarted.outbox_dir)
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn unreachable_index_keeps_events() {
        // Nothing listens on port 9 of the loopback (discard, not run in test setups).
        let s = setup("http://127.0.0.1:9");
        let task = s.start();
        s.outbox.publish(pushed("v1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.outbox.pending(), 1);
        assert!(!task.is_finished());
    }

    fn tls_acceptor(dir: &Path) -> (tokio_rustls::TlsAcceptor, PathBuf) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let generated = crate::server::certgen::generate(dir, &names).unwrap();
        let config =
            crate::server::tls::load_server_config(&generated.cert, &generated.key).unwrap();
        (tokio_rustls::TlsAcceptor::from(config), generated.ca_cert)
    }

    #[tokio::test]
    async fn https_with_the_configured_ca_is_trusted_and_another_ca_is_not() {
        let certs = tempfile::tempdir().unwrap();
        let (acceptor, ca) = tls_acceptor(&certs.path().join("index"));
        let (_, other_ca) = tls_acceptor(&certs.path().join("other"));
        let index = Receiver::start(Some(acceptor)).await;

        // Trusting some other CA only: the index's certificate must be refused.
        let mut wrong = setup(&index.url("https", "localhost"));
        wrong.config.ca_file = Some(other_ca);
        let _wrong_task = wrong.start();
        wrong.outbox.publish(pushed("wrong")).await.unwrap();

        let mut right = setup(&index.url("https", "localhost"));
        right.config.ca_file = Some(ca);
        let _task = right.start();
        let e = pushed("right");
        right.outbox.publish(e.clone()).await.unwrap();
        eventually("delivered over TLS", || right.outbox.pending() == 0).await;
        assert_eq!(index.acknowledged(), vec![e]);

        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(wrong.outbox.pending(), 1);
        assert_eq!(index.requests().len(), 1);
    }

    #[tokio::test]
    async fn the_configured_proxy_carries_the_request() {
        // The test index plays the proxy: a plain-HTTP proxy gets the absolute URL.
        let proxy = Receiver::start(None).await;
        let mut s = setup("http://127.0.0.1:9/prefix");
        s.config.proxy = Some(proxy.url("http", "127.0.0.1"));
        let _task = s.start();
        let e = pushed("v1");
        s.outbox.publish(e.clone()).await.unwrap();
        eventually("delivered via proxy", || s.outbox.pending() == 0).await;
        let requests = proxy.requests();
        assert_eq!(requests[0].uri, "http://127.0.0.1:9/prefix/api/v1/events");
        assert_eq!(proxy.acknowledged(), vec![e]);
    }

    #[tokio::test]
    async fn shutdown_stops_the_sender_even_while_retrying() {
        let index = Receiver::start(None).await;
        index.answer(500);
        let s = setup(&index.url("http", "127.0.0.1"));
        let task = EventSender::new(s.outbox.clone(), &s.config)
            .unwrap()
            .with_backoff(Duration::from_secs(60), Duration::from_secs(60))
            .spawn(s.shutdown.subscribe())
            .unwrap();
        s.outbox.publish(pushed("v1")).await.unwrap();
        eventually("first attempt", || !index.requests().is_empty()).await;
        s.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("sender did not stop")
            .unwrap();
        assert_eq!(s.outbox.pending(), 1);
        // The claim is released with the task: a new sender may start.
        let (_tx, rx) = watch::channel(false);
        EventSender::new(s.outbox.clone(), &s.config)
            .unwrap()
            .spawn(rx)
            .unwrap()
            .abort();
    }

    #[tokio::test]
    async fn a_second_sender_for_the_same_outbox_is_refused() {
        let s = setup("http://127.0.0.1:9");
        let _task = s.start();
        let second = EventSender::new(s.outbox.clone(), &s.config)
            .unwrap()
            .spawn(s.shutdown.subscribe());
        assert!(matches!(second, Err(EventError::SenderRunning)));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output_or_errors() {
        let s = setup("https://index.example");
        let secret = SharedSecret::read(s.config.secret_file.as_ref().unwrap()).unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
        let sender = EventSender::new(s.outbox.clone(), &s.config).unwrap();
        let text = format!("{sender:?} {sender:#?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");

        let bad = s._tmp.path().join("bad-secret");
        std::fs::write(&bad, "tab\tinside-s3cret").unwrap();
        let err = SharedSecret::read(&bad).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn secret_file_is_trimmed_and_must_not_be_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        std::fs::write(&path, " lead-kept  \r\n\n").unwrap();
        let secret = SharedSecret::read(&path).unwrap();
        assert_eq!(secret.0, " lead-kept");
        for empty in ["", "\n", "  \t\n"] {
            std::fs::write(&path, empty).unwrap();
            assert!(
                matches!(SharedSecret::read(&path), Err(EventError::Secret { .. })),
                "{empty:?}"
            );
        }
        assert!(SharedSecret::read(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn sender_setup_errors_are_reported() {
        let s = setup("https://index.example");

        let unset = EventsConfig::default();
        assert!(matches!(
            EventSender::new(s.outbox.clone(), &unset),
            Err(EventError::Config(_))
        ));

        let mut plain = s.config.clone();
        plain.index_url = Some("http://index.example".into());
        assert!(matches!(
            EventSender::new(s.outbox.clone(), &plain),
            Err(EventError::Config(_))
        ));

        let not_pem = s._tmp.path().join("ca.crt");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let mut bad_ca = s.config.clone();
        bad_ca.ca_file = Some(not_pem);
        assert!(matches!(
            EventSender::new(s.outbox.clone(), &bad_ca),
            Err(EventError::Ca { .. })
        ));
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
        let s = setup("https://index.example");
        let (_tx, rx) = watch::channel(false);
        assert!(matches!(
            spawn_sender(s.outbox.clone(), &s.config, rx),
            Err(EventError::Task(_))
        ));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<Duration> = (0..12).map(|_| b.fail()).collect();
        for (i, w) in waits.iter().enumerate() {
            let nominal = Duration::from_secs(1 << i.min(9)).min(Duration::from_secs(300));
            assert!(*w >= nominal.mul_f64(0.8), "{i}: {w:?}");
            assert!(
                *w <= nominal.mul_f64(1.2).min(Duration::from_secs(300)),
                "{i}: {w:?}"
            );
        }
        assert_eq!(b.failures, 12);
        assert!(waits[11] >= Duration::from_secs(240), "{:?}", waits[11]);
        b.reset();
        assert_eq!(b.failures, 0);
        assert!(b.fail() <= Duration::from_millis(1200));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }
}
