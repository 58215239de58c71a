//! Webhooks end to end, against the real binary in token mode with the embedded index and
//! a receiver started by each test (a small HTTP server on 127.0.0.1 that records every
//! request and answers as told: 200, an error, a redirect, or not at all when stopped).
//!
//! What is shown: a real `skopeo copy` is announced once to a repository hook and a global
//! hook, each payload signed with its hook's secret (checked here with HMAC-SHA256) and
//! carrying the push's facts; a receiver that fails or is down gets the same delivery (same
//! id) once it is back; a delivery survives holdfast being stopped or killed between the
//! push and the delivery and still arrives exactly once; redirects are not followed; the
//! owner reads the delivery history and redelivers through the API, and nobody else sees
//! a private repository's hooks; deletes reach the hooks that ask for them; and with the
//! default configuration nothing is ever sent.

mod common;
#[allow(dead_code)]
#[path = "support/oci.rs"]
mod oci;
#[allow(dead_code)]
#[path = "support/proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "support/http.rs"]
mod srvlog;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;
use srvlog::ServerLog;
use tokio::task::JoinSet;

type Cred = (&'static str, &'static str);

const ALICE: Cred = ("alice", "alice-Hook-Pw-3Kd8rT");
const BOB: Cred = ("bob", "bob-Hook-Pw-6Vn1zQ");
const ADMIN: Cred = ("root", "root-Hook-Pw-2Xs5mW");
const SERVICE: &str = "holdfast";
const REPO_SECRET: &str = "repo-hook-secret-4f1c9a7e2b";
const GLOBAL_SECRET: &str = "global-hook-secret-8d3e6b0a5c";
/// `[index] public_host`: the `registry` of every payload.
const PUBLIC_HOST: &str = "registry.test:5000";
/// How long a test waits for something the worker should do promptly.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The receiver.

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn delivery(&self) -> String {
        self.header("x-holdfast-delivery")
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// `302 Found` to this location.
    Redirect(String),
}

/// A webhook receiver on 127.0.0.1. Stopping it closes the listener and every open
/// connection, so holdfast finds nothing there; starting it again takes the same port.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

fn listener_on(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // The port is taken again after a stop, with the old connections in TIME_WAIT.
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(64).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = listener_on("127.0.0.1:0".parse().unwrap());
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::new(Mutex::new(Vec::new())),
            answer: Arc::new(Mutex::new(Answer::Status(200))),
            accept: None,
        };
        r.serve(listener);
        r
    }

    /// A receiver that is down from the start (its port is reserved for it).
    async fn down() -> Receiver {
        let mut r = Receiver::start().await;
        r.stop().await;
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (got, answer) = (self.got.clone(), self.answer.clone());
        self.accept = Some(tokio::spawn(async move {
            // Owned by this task: aborting it closes every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        connections.spawn(connection(tcp, got.clone(), answer.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        assert!(self.accept.is_none(), "the receiver is running");
        let listener = listener_on(self.addr);
        self.serve(listener);
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests so far; returns them.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.requests();
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                panic!("receiver: timed out waiting for {what}; got {got:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
) {
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (got, answer) = (got.clone(), answer.clone());
        async move {
            let path = req.uri().path().to_owned();
            let headers = req.headers().clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let answer = answer.lock().unwrap().clone();
            let response = match &answer {
                Answer::Status(s) => http::Response::builder().status(*s),
                Answer::Redirect(to) => http::Response::builder()
                    .status(302)
                    .header(http::header::LOCATION, to.as_str()),
            };
            let response = response
                .body(Full::new(Bytes::from_static(b"receiver says hello")))
                .unwrap();
            got.lock().unwrap().push(Received {
                path,
                headers,
                body,
                answered: response.status().as_u16(),
            });
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

// ---------------------------------------------------------------------------------------
// holdfast and its API.

/// `[index.webhooks]` for the tests: on, http allowed (the receiver is plain HTTP on
/// loopback), quick retries, and `extra` lines (more keys, then global hooks).
fn webhooks_on(extra: &str) -> String {
    format!(
        "[index.webhooks]\nenabled = true\nallow_http = true\nretry_base_secs = 1\nretry_max_secs = 2\ntimeout_secs = 5\n{extra}\n"
    )
}

/// A global hook to `url` whose secret is in a file under `dir`.
fn global_hook(dir: &std::path::Path, name: &str, url: &str, events: &str) -> String {
    let file = dir.join(format!("{name}.secret"));
    std::fs::write(&file, format!("{GLOBAL_SECRET}\n")).unwrap();
    format!(
        "[[index.webhooks.global]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_file = \"{}\"\nevents = {events}\n",
        file.display()
    )
}

/// Token mode with the embedded index, deletes allowed, `webhooks` appended; alice, bob
/// and an admin exist.
fn start(webhooks: &str) -> TestServer {
    let mut server = TestServer::configure(&format!(
        "[auth]\nmode = \"token\"\nallow_delete = true\n\n[auth.throttle]\nmax_failures = 100000\n\n\
         [index]\nenabled = true\npublic_host = \"{PUBLIC_HOST}\"\n\n{webhooks}"
    ));
    server.add_user(ALICE.0, ALICE.1, &[], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.add_user(ADMIN.0, ADMIN.1, &[], true);
    spawn(&mut server);
    server
}

/// (Re)starts holdfast without stalling the receiver (it runs on this runtime).
fn spawn(server: &mut TestServer) {
    tokio::task::block_in_place(|| server.spawn());
}

/// A registry client for `cred` holding a token for `actions` in `repo`. Asking for push
/// creates the repository in the index, owned by alice in her namespace.
async fn registry_as(server: &TestServer, cred: Cred, repo: &str, actions: &str) -> Api {
    let answer = fetch_token(
        server,
        SERVICE,
        Some(cred),
        &[&format!("repository:{repo}:{actions}")],
    )
    .await;
    bearer_api(server, &token_of(&answer))
}

async fn push(server: &TestServer, repo: &str, tag: &str, seed: u64) -> Pushed {
    registry_as(server, ALICE, repo, "pull,push")
        .await
        .push_image(repo, tag, OCI_MANIFEST, seed)
        .await
}

/// An index API request as `cred`.
async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    cred: Cred,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = server.client().request(method, server.url(path)).header(
        reqwest::header::AUTHORIZATION,
        basic_auth_value(cred.0, cred.1),
    );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, value)
}

fn hooks_path(repo: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/webhooks")
}

/// Registers a hook on `repo` as alice; its id.
async fn add_hook(server: &TestServer, repo: &str, url: &str, events: Value) -> i64 {
    let (status, v) = call(
        server,
        reqwest::Method::POST,
        &hooks_path(repo),
        ALICE,
        Some(json!({ "url": url, "secret": REPO_SECRET, "events": events })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["url"], url);
    assert!(v.get("secret").is_none(), "{v}");
    v["id"].as_i64().unwrap()
}

async fn history(server: &TestServer, repo: &str, hook: i64) -> Vec<Value> {
    let (status, v) = call(
        server,
        reqwest::Method::GET,
        &format!("{}/{hook}/deliveries", hooks_path(repo)),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

/// Waits until the hook's history satisfies `done`; returns it.
async fn wait_history(
    server: &TestServer,
    repo: &str,
    hook: i64,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let h = history(server, repo, hook).await;
        if done(&h) {
            return h;
        }
        if Instant::now() > deadline {
            panic!("history: timed out waiting for {what}; have {h:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks a received delivery's headers and signature (HMAC-SHA256 of the body with
/// `secret`); returns its payload.
fn verified(r: &Received, secret: &str) -> Value {
    assert_eq!(r.header("content-type"), "application/json");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-holdfast-signature"), expected, "signature");
    // Another secret does not verify it.
    let mut other = <Hmac<Sha256> as KeyInit>::new_from_slice(b"some-other-secret-value").unwrap();
    other.update(&r.body);
    assert_ne!(
        r.header("x-holdfast-signature"),
        format!("sha256={}", hex::encode(other.finalize().into_bytes()))
    );
    let sent: i64 = r.header("x-holdfast-timestamp").parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - 120..=now + 5).contains(&sent),
        "timestamp {sent}, now {now}"
    );
    let payload: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(payload["id"], r.delivery());
    assert_eq!(payload["event"], r.header("x-holdfast-event"));
    let id = r.delivery();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "delivery id {id}"
    );
    payload
}

fn assert_push_payload(p: &Value, repo: &str, tag: &str, digest: &str, size: usize) {
    assert_eq!(p["event"], "push");
    assert_eq!(p["repository"], repo);
    assert_eq!(p["tag"], tag);
    assert_eq!(p["digest"], digest);
    assert_eq!(p["media_type"], OCI_MANIFEST);
    assert_eq!(p["size"].as_u64(), Some(size as u64));
    assert_eq!(p["pusher"], ALICE.0);
    assert_eq!(p["registry"], PUBLIC_HOST);
    let at = p["pushed_at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.contains('T'),
        "{at}"
    );
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "digest",
        "event",
        "id",
        "media_type",
        "pushed_at",
        "pusher",
        "registry",
        "repository",
        "size",
        "tag",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
}

fn secrets_not_logged(server: &TestServer) {
    let log = server.log_plain();
    for secret in [REPO_SECRET, GLOBAL_SECRET] {
        assert!(!log.contains(secret), "a webhook secret is in the log");
    }
    assert_no_secrets(&log, &[ALICE, BOB, ADMIN]);
}

// ---------------------------------------------------------------------------------------
// Tests.

/// A real `skopeo copy` is announced once to the repository's hook and once to the global
/// hook, each signed with its own secret, with the push's facts; the history says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_is_announced_signed_to_repository_and_global_hooks() {
    let name = "skopeo_copy_is_announced_signed_to_repository_and_global_hooks";
    if !proc::require(name, &["skopeo", "gzip"]) || !proc::require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let receiver = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let server = start(&webhooks_on(&global_hook(
        secrets.path(),
        "everything",
        &receiver.url("/global"),
        "[\"push\"]",
    )));
    let _log = ServerLog(&server);

    // Granting alice's first push creates alice/app; then she adds a hook to it.
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    let hook = add_hook(
        &server,
        "alice/app",
        &receiver.url("/repo"),
        json!(["push"]),
    )
    .await;
    let (status, listed) = call(
        &server,
        reqwest::Method::GET,
        &hooks_path("alice/app"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["webhooks"][0]["id"], hook);
    assert_eq!(listed["webhooks"][0]["events"], json!(["push"]));
    assert!(!listed.to_string().contains(REPO_SECRET), "{listed}");

    let work = tempfile::tempdir().unwrap();
    let img = oci::Image::busybox("amd64", "webhooks");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    let auth = work.path().join("auth.json");
    std::fs::write(&auth, "{\"auths\":{}}").unwrap();
    let certs = server.cert_dir();
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let layout = format!("oci:{}:v1", proc::p(&src));
    let dest = format!("docker://{}/alice/app:v1", server.host);
    tokio::task::block_in_place(|| {
        proc::run(
            std::process::Command::new("skopeo")
                .env("REGISTRY_AUTH_FILE", &auth)
                .args([
                    "copy",
                    "--preserve-digests",
                    "--dest-tls-verify=true",
                    "--dest-cert-dir",
                    proc::p(&certs),
                    "--dest-creds",
                    &creds,
                    &layout,
                    &dest,
                ]),
        )
    });

    let got = receiver
        .wait_until("one delivery per hook", |r| r.len() >= 2)
        .await;
    let repo = got
        .iter()
        .find(|r| r.path == "/repo")
        .expect("repository hook");
    let global = got
        .iter()
        .find(|r| r.path == "/global")
        .expect("global hook");
    let size = img.manifest.bytes.len();
    let p = verified(repo, REPO_SECRET);
    assert_push_payload(&p, "alice/app", "v1", &img.digest(), size);
    let g = verified(global, GLOBAL_SECRET);
    assert_push_payload(&g, "alice/app", "v1", &img.digest(), size);
    assert_ne!(p["id"], g["id"], "one delivery per hook");
    assert_eq!(repo.header("x-holdfast-event"), "push");
    assert!(repo.header("user-agent").starts_with("holdfast"));

    // Nothing more arrives: one push, one delivery per hook.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.requests().len(), 2, "{:#?}", receiver.requests());

    let h = history(&server, "alice/app", hook).await;
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["id"], p["id"]);
    assert_eq!(h[0]["status"], "delivered");
    assert_eq!(h[0]["attempts"], 1);
    assert_eq!(h[0]["last_status_code"], 200);
    assert_eq!(h[0]["event"], "push");
    assert!(h[0]["delivered_at"].is_string());

    // Admins see the global hook and its deliveries; others may not.
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/webhooks/global/deliveries",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deliveries"][0]["id"], g["id"]);
    assert_eq!(v["deliveries"][0]["hook"], "everything");
    assert_eq!(v["deliveries"][0]["status"], "delivered");
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/webhooks/global",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["webhooks"][0]["name"], "everything");
    assert!(!v.to_string().contains(GLOBAL_SECRET));
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/webhooks/global/deliveries",
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 403);
    secrets_not_logged(&server);
    eprintln!("== {name} took {:.1}s", t0.elapsed().as_secs_f64());
}

/// The receiver answers 503, then is down altogether for a while: the event arrives once
/// it is back, as the same delivery (same id), and is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_absent_receiver_gets_the_same_delivery_when_back() {
    let mut receiver = Receiver::start().await;
    receiver.answer(Answer::Status(503));
    let server = start(&webhooks_on("max_attempts = 50\n"));
    let _log = ServerLog(&server);
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    let hook = add_hook(
        &server,
        "alice/app",
        &receiver.url("/hook"),
        json!(["push"]),
    )
    .await;
    let pushed = push(&server, "alice/app", "latest", 1).await;

    let failed = receiver
        .wait_until("two refused attempts", |r| r.len() >= 2)
        .await;
    let id = failed[0].delivery();
    assert!(failed
        .iter()
        .all(|r| r.delivery() == id && r.answered == 503));
    let h = history(&server, "alice/app", hook).await;
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["status"], "pending");
    assert!(h[0]["attempts"].as_u64().unwrap() >= 2, "{h:#?}");
    assert_eq!(h[0]["last_status_code"], 503);
    assert!(h[0]["last_error"].as_str().unwrap().contains("503"));
    assert!(h[0]["next_attempt_at"].is_string());

    // Down: connections refused. The worker keeps trying (the history counts it).
    receiver.stop().await;
    let before = h[0]["attempts"].as_u64().unwrap();
    let h = wait_history(&server, "alice/app", hook, "an attempt while down", |h| {
        h[0]["attempts"].as_u64().unwrap() > before && h[0]["last_status_code"].is_null()
    })
    .await;
    assert!(
        h[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{h:#?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    receiver.answer(Answer::Status(200));
    receiver.restart().await;
    let got = receiver
        .wait_until("the delivery, accepted", |r| r.iter().any(Received::ok))
        .await;
    let ok: Vec<&Received> = got.iter().filter(|r| r.ok()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].delivery(), id, "the same delivery, not a new one");
    let p = verified(ok[0], REPO_SECRET);
    assert_push_payload(
        &p,
        "alice/app",
        "latest",
        &pushed.digest,
        pushed.bytes.len(),
    );
    assert!(
        got.iter().all(|r| r.body == ok[0].body),
        "every attempt sends the same body"
    );
    let h = wait_history(&server, "alice/app", hook, "delivered", |h| {
        h[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["last_status_code"], 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.requests().iter().filter(|r| r.ok()).count(),
        1,
        "delivered once"
    );
    secrets_not_logged(&server);
}

/// holdfast stops (SIGTERM), then is killed (SIGKILL), between a push and its delivery:
/// each event still arrives, exactly once, after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_restarts_and_arrive_exactly_once() {
    let mut receiver = Receiver::down().await;
    let secrets = tempfile::tempdir().unwrap();
    let mut server = start(&webhooks_on(&global_hook(
        secrets.path(),
        "all",
        &receiver.url("/global"),
        "[\"push\"]",
    )));
    // ServerLog would borrow the server, which is restarted here.
    let _log = LogOnPanic(server.log_path());

    // Stopped cleanly with the delivery pending.
    let first = push(&server, "alice/app", "v1", 1).await;
    wait_global_attempt(&server, 1).await;
    tokio::task::block_in_place(|| server.stop());
    receiver.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.requests().is_empty(), "holdfast is down");
    spawn(&mut server);
    let got = receiver
        .wait_until("the first push", |r| !r.is_empty())
        .await;
    let p = verified(&got[0], GLOBAL_SECRET);
    assert_push_payload(&p, "alice/app", "v1", &first.digest, first.bytes.len());

    // Killed with the next delivery pending.
    receiver.stop().await;
    let second = push(&server, "alice/app", "v2", 2).await;
    wait_global_attempt(&server, 2).await;
    server.kill9();
    receiver.restart().await;
    spawn(&mut server);
    let got = receiver
        .wait_until("the second push", |r| r.len() >= 2)
        .await;
    let p2 = verified(&got[1], GLOBAL_SECRET);
    assert_push_payload(&p2, "alice/app", "v2", &second.digest, second.bytes.len());

    // Nothing is sent twice, even after another restart.
    tokio::task::block_in_place(|| server.stop());
    spawn(&mut server);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = receiver.requests();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_ne!(all[0].delivery(), all[1].delivery());
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/webhooks/global/deliveries",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let list = v["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert!(list.iter().all(|d| d["status"] == "delivered"), "{v}");
    secrets_not_logged(&server);
}

/// Prints the server log's tail when the test fails.
struct LogOnPanic(std::path::PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("--- holdfast log (tail) ---\n{}", srvlog::tail(&log, 200));
        }
    }
}

/// Waits until the global hook's newest of `count` deliveries has had a (failed) attempt.
async fn wait_global_attempt(server: &TestServer, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, v) = call(
            server,
            reqwest::Method::GET,
            "/api/v1/webhooks/global/deliveries",
            ADMIN,
            None,
        )
        .await;
        let list = v["deliveries"].as_array().cloned().unwrap_or_default();
        if list.len() == count && list[0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(list[0]["status"], "pending");
            return;
        }
        if Instant::now() > deadline {
            panic!("no failed attempt recorded: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receiver answering 302 to another host: the redirect is not followed, each attempt
/// counts as failed, and after max_attempts the delivery is `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let elsewhere = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Redirect(format!(
        "http://localhost:{}/stolen",
        elsewhere.addr.port()
    )));
    let server = start(&webhooks_on("max_attempts = 2\n"));
    let _log = ServerLog(&server);
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    let hook = add_hook(
        &server,
        "alice/app",
        &receiver.url("/hook"),
        json!(["push"]),
    )
    .await;
    push(&server, "alice/app", "v1", 1).await;
    let h = wait_history(&server, "alice/app", hook, "failed", |h| {
        !h.is_empty() && h[0]["status"] == "failed"
    })
    .await;
    assert_eq!(h[0]["attempts"], 2);
    assert_eq!(h[0]["last_status_code"], 302);
    assert!(
        h[0]["last_error"].as_str().unwrap().contains("redirect"),
        "{h:#?}"
    );
    assert_eq!(receiver.requests().len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    assert_eq!(receiver.requests().len(), 2, "no attempt after failed");
}

/// The owner manages hooks and reads the history; a failed delivery is redelivered with
/// its id; bob sees the public repository but may not manage its hooks (403), and a private
/// repository's hooks do not exist for him (404). Bad registrations are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_redeliver_and_who_may_manage_hooks() {
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    let server = start(&webhooks_on("max_attempts = 1\n"));
    let _log = ServerLog(&server);
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    registry_as(&server, ALICE, "alice/open", "pull,push").await;
    let (status, _) = call(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/repositories/alice/open",
        ALICE,
        Some(json!({"visibility": "public"})),
    )
    .await;
    assert_eq!(status, 200);

    // Refused registrations.
    for (body, why) in [
        (
            json!({"url": "ftp://x.example/", "secret": REPO_SECRET}),
            "url",
        ),
        (
            json!({"url": "https://u:p@x.example/", "secret": REPO_SECRET}),
            "url",
        ),
        (
            json!({"url": receiver.url("/"), "secret": "too-short"}),
            "secret",
        ),
        (
            json!({"url": receiver.url("/"), "secret": REPO_SECRET, "events": ["pull"]}),
            "pull",
        ),
        (
            json!({"url": receiver.url("/"), "secret": REPO_SECRET, "events": []}),
            "events",
        ),
        (
            json!({"url": receiver.url("/"), "secret": REPO_SECRET, "extra": 1}),
            "extra",
        ),
    ] {
        let (status, v) = call(
            &server,
            reqwest::Method::POST,
            &hooks_path("alice/app"),
            ALICE,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v.to_string().contains(why), "{body}: {v}");
        assert!(
            !v.to_string().contains("too-short"),
            "the secret is not echoed: {v}"
        );
    }

    let hook = add_hook(
        &server,
        "alice/app",
        &receiver.url("/hook"),
        json!(["push"]),
    )
    .await;
    push(&server, "alice/app", "v1", 1).await;
    let h = wait_history(&server, "alice/app", hook, "failed", |h| {
        !h.is_empty() && h[0]["status"] == "failed"
    })
    .await;
    let id = h[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(h[0]["attempts"], 1);
    assert_eq!(h[0]["last_status_code"], 500);

    receiver.answer(Answer::Status(204));
    let redeliver = format!(
        "{}/{hook}/deliveries/{id}/redeliver",
        hooks_path("alice/app")
    );
    // Only the owner redelivers.
    let (status, _) = call(&server, reqwest::Method::POST, &redeliver, BOB, None).await;
    assert_eq!(status, 404, "alice/app is private: bob does not see it");
    let (status, v) = call(&server, reqwest::Method::POST, &redeliver, ALICE, None).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["status"], "pending");
    let h = wait_history(&server, "alice/app", hook, "redelivered", |h| {
        h[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(h.len(), 1, "a redelivery is the same delivery");
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["last_status_code"], 204);
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.delivery() == id));
    assert_eq!(got[0].body, got[1].body);
    verified(&got[1], REPO_SECRET);
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        &format!(
            "{}/{hook}/deliveries/{}/redeliver",
            hooks_path("alice/app"),
            "0".repeat(32)
        ),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Who may manage: bob sees alice/open (public) but does not own it; alice/app is
    // private and does not exist for him.
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        &hooks_path("alice/open"),
        BOB,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        &hooks_path("alice/open"),
        BOB,
        Some(json!({"url": receiver.url("/bob"), "secret": REPO_SECRET})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        &hooks_path("alice/app"),
        BOB,
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        &format!("{}/{hook}/deliveries", hooks_path("alice/app")),
        BOB,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // Admins manage every repository's hooks.
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        &hooks_path("alice/app"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 1);

    // Deleting the hook takes its history with it.
    let path = format!("{}/{hook}", hooks_path("alice/app"));
    let (status, _) = call(&server, reqwest::Method::DELETE, &path, BOB, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, reqwest::Method::DELETE, &path, ALICE, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&server, reqwest::Method::DELETE, &path, ALICE, None).await;
    assert_eq!(status, 404);
    let (status, v) = call(
        &server,
        reqwest::Method::GET,
        &hooks_path("alice/app"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["webhooks"], json!([]));
    push(&server, "alice/app", "v2", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests().len(), 2, "a deleted hook gets nothing");
    secrets_not_logged(&server);
}

/// Deletes reach the hooks that subscribe to them, with what was deleted; push-only hooks
/// hear nothing of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_announced_to_hooks_that_ask() {
    let receiver = Receiver::start().await;
    let server = start(&webhooks_on(""));
    let _log = ServerLog(&server);
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    add_hook(
        &server,
        "alice/app",
        &receiver.url("/push"),
        json!(["push"]),
    )
    .await;
    add_hook(
        &server,
        "alice/app",
        &receiver.url("/both"),
        json!(["push", "delete"]),
    )
    .await;
    let pushed = push(&server, "alice/app", "v1", 1).await;
    receiver.wait_until("two pushes", |r| r.len() >= 2).await;
    let api = registry_as(&server, ALICE, "alice/app", "pull,push,delete").await;
    expect_status(api.delete("/v2/alice/app/manifests/v1").await, 202).await;
    let got = receiver.wait_until("the delete", |r| r.len() >= 3).await;
    let deletes: Vec<&Received> = got
        .iter()
        .filter(|r| r.header("x-holdfast-event") == "delete")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, "/both");
    let p = verified(deletes[0], REPO_SECRET);
    assert_eq!(p["event"], "delete");
    assert_eq!(p["repository"], "alice/app");
    assert_eq!(p["tag"], "v1");
    assert_eq!(p["digest"], pushed.digest.as_str());
    assert_eq!(p["size"].as_u64(), Some(pushed.bytes.len() as u64));
    assert_eq!(p["pusher"], ALICE.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests().len(), 3);
}

/// With the default configuration (and even with a global hook listed but `enabled =
/// false`), a push sends nothing, and the webhook API says webhooks are disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_by_default_sends_nothing_and_says_so() {
    let receiver = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let server = start(&format!(
        "[index.webhooks]\nallow_http = true\n{}",
        global_hook(
            secrets.path(),
            "all",
            &receiver.url("/global"),
            "[\"push\", \"delete\"]"
        )
    ));
    let _log = ServerLog(&server);
    registry_as(&server, ALICE, "alice/app", "pull,push").await;
    let (status, v) = call(
        &server,
        reqwest::Method::POST,
        &hooks_path("alice/app"),
        ALICE,
        Some(json!({"url": receiver.url("/repo"), "secret": REPO_SECRET})),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v.to_string().contains("[index.webhooks] enabled = false"),
        "{v}"
    );
    for path in [
        hooks_path("alice/app"),
        "/api/v1/webhooks/global/deliveries".to_owned(),
    ] {
        let (status, v) = call(&server, reqwest::Method::GET, &path, ADMIN, None).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert!(v.to_string().contains("enabled = false"), "{path}: {v}");
    }
    push(&server, "alice/app", "v1", 1).await;
    let api = registry_as(&server, ALICE, "alice/app", "pull,push,delete").await;
    expect_status(api.delete("/v2/alice/app/manifests/v1").await, 202).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.requests().is_empty(), "{:#?}", receiver.requests());

    assert!(!server.log_plain().contains("webhook worker started"));

    // The same with no [index.webhooks] table at all (the shipped default).
    let plain = start("");
    let (status, v) = call(
        &plain,
        reqwest::Method::GET,
        &hooks_path("alice/app"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert!(v.to_string().contains("enabled = false"), "{v}");
    assert!(!plain.log_plain().contains("webhook worker started"));
}
