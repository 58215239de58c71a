//! The web UI end to end, against the real binary in token mode with the embedded index.
//!
//! `browser_scenarios` drives headless Chromium (Debian's `chromium`) with Playwright
//! (`tests/ui/run.mjs`, `playwright-core` pinned in `tests/ui/package-lock.json`): sign-in,
//! search, visibility, collaborators, a tag delete, descriptions with XSS attempts, stars,
//! comments (with XSS attempts, and deleted by the owner), webhooks added in the settings
//! and delivered to a receiver started here (then redelivered), what a stranger can see,
//! CSRF refusals and sign-out; it saves a screenshot of a repository page to
//! `target/ui-artifacts/repository.png` (and to `tests/ui/repository-page.png` with
//! `HOLDFAST_UI_SCREENSHOT_UPDATE=1`). Without Chromium, node or npm the test is skipped
//! with a message, or fails when `HOLDFAST_REQUIRE_CLIENTS` (or `CI`) is set.
//!
//! The other tests speak HTTP with reqwest: headers, cookies, CSRF, throttling, that the
//! UI never shadows the registry, token or API routes, and who may use the star, comment
//! and webhook forms.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;

type Cred = (&'static str, &'static str);

const ALICE: Cred = ("alice", "alice-Ui-Pw-5Rk8pQ");
const BOB: Cred = ("bob", "bob-Ui-Pw-2Wd7nM");
const CAROL: Cred = ("carol", "carol-Ui-Pw-9Ts3vB");
const SERVICE: &str = "holdfast";

/// The repository the browser test manages: tags `v1`, `latest` and `old`.
const APP: &str = "alice/app";
/// Public, with a description the search finds.
const TOOLS: &str = "alice/tools";
const TOOLS_WORD: &str = "zanzibar";
/// Private throughout: a stranger must never see it.
const SECRET: &str = "alice/secret";
/// An image index of two platforms: public, starred and commented on (the screenshot's).
const MULTI: &str = "alice/multi";
/// bob's question on TOOLS, which its owner deletes in the browser.
const BOB_QUESTION: &str = "Could the toolbox ship jq as well?";
/// `[index.webhooks]` on, for a receiver on plain-HTTP loopback.
const WEBHOOKS_ON: &str = "[index.webhooks]\nenabled = true\nallow_http = true\n";
/// The secret of the hook the browser adds.
const HOOK_SECRET: &str = "ui-hook-secret-7Qm2xV9c";

fn start(extra: &str) -> TestServer {
    start_with(extra, "")
}

/// `auth` lines go in `[auth]`; `tail` follows `[index]` (more tables).
fn start_with(auth: &str, tail: &str) -> TestServer {
    let mut server = TestServer::configure(&format!(
        "[auth]\nmode = \"token\"\nallow_delete = true\n{auth}\n\n[index]\nenabled = true\n\n{tail}"
    ));
    server.add_user(ALICE.0, ALICE.1, &[], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.add_user(CAROL.0, CAROL.1, &[], false);
    server.spawn();
    server
}

/// A registry client for `cred` holding a push token for `repo`.
async fn pusher(server: &TestServer, cred: Cred, repo: &str) -> Api {
    let answer = fetch_token(
        server,
        SERVICE,
        Some(cred),
        &[&format!("repository:{repo}:pull,push")],
    )
    .await;
    bearer_api(server, &token_of(&answer))
}

/// An index API request as `cred`.
fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    cred: Cred,
) -> reqwest::RequestBuilder {
    server.client().request(method, server.url(path)).header(
        reqwest::header::AUTHORIZATION,
        basic_auth_value(cred.0, cred.1),
    )
}

/// One webhook request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: http::HeaderMap,
    body: Bytes,
}

/// A webhook receiver on 127.0.0.1 that records every request and answers 200.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let record = record.clone();
                            async move {
                                let headers = req.headers().clone();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                record.lock().unwrap().push(Received { headers, body });
                                Ok::<_, Infallible>(http::Response::new(Full::new(
                                    Bytes::from_static(b"thanks"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Receiver { port, got, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let body = expect_status(resp, status).await;
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

/// The content the scenarios need: alice's repositories (see the constants).
async fn seed(server: &TestServer) -> Value {
    let app = pusher(server, ALICE, APP).await;
    let v1 = app.push_image(APP, "v1", OCI_MANIFEST, 1).await;
    app.push_image(APP, "latest", OCI_MANIFEST, 2).await;
    app.push_image(APP, "old", DOCKER_MANIFEST, 3).await;

    let tools = pusher(server, ALICE, TOOLS).await;
    tools.push_image(TOOLS, "1.0", OCI_MANIFEST, 4).await;
    let r = api(
        server,
        reqwest::Method::PATCH,
        &format!("/api/v1/repositories/{TOOLS}"),
        ALICE,
    )
    .json(&json!({
        "visibility": "public",
        "description": format!("A {TOOLS_WORD} toolbox for debugging.\nSecond line."),
    }))
    .send()
    .await
    .unwrap();
    expect_status(r, 200).await;

    let secret = pusher(server, ALICE, SECRET).await;
    let secret_image = secret.push_image(SECRET, "v1", OCI_MANIFEST, 5).await;

    let multi = pusher(server, ALICE, MULTI).await;
    let amd = multi
        .push_image(MULTI, "linux-amd64", OCI_MANIFEST, 6)
        .await;
    let arm = multi
        .push_image(MULTI, "linux-arm64", OCI_MANIFEST, 7)
        .await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.bytes.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    });
    let index_bytes = manifest_bytes(&index);
    let index = multi
        .push_manifest(MULTI, "latest", OCI_INDEX, &index_bytes)
        .await;
    multi
        .push_manifest(MULTI, "1.4.2", OCI_INDEX, &index_bytes)
        .await;
    let r = api(
        server,
        reqwest::Method::PATCH,
        &format!("/api/v1/repositories/{MULTI}"),
        ALICE,
    )
    .json(&json!({
        "visibility": "public",
        "description": "The demo service, built for linux/amd64 and linux/arm64.\n\nPull `latest`; the platform-specific tags are for debugging.",
    }))
    .send()
    .await
    .unwrap();
    expect_status(r, 200).await;
    // Starred and discussed, as a repository people use is.
    for cred in [ALICE, BOB, CAROL] {
        let r = api(
            server,
            reqwest::Method::PUT,
            &format!("/api/v1/repositories/{MULTI}/-/stars"),
            cred,
        )
        .send()
        .await
        .unwrap();
        expect_status(r, 200).await;
    }
    for (cred, repo, body) in [
        (
            BOB,
            MULTI,
            "Pulled 1.4.2 on a Raspberry Pi 4 (linux/arm64/v8): it starts in under a second. Thanks!",
        ),
        (
            ALICE,
            MULTI,
            "Thanks! 1.5 adds linux/riscv64.\nUntil then, pin 1.4.2 rather than latest in production.",
        ),
        (BOB, TOOLS, BOB_QUESTION),
    ] {
        let r = api(
            server,
            reqwest::Method::POST,
            &format!("/api/v1/repositories/{repo}/-/comments"),
            cred,
        )
        .json(&json!({ "body": body }))
        .send()
        .await
        .unwrap();
        expect_status(r, 201).await;
    }
    json!({
        "app_v1": v1.digest,
        "secret_v1": secret_image.digest,
        "multi_latest": index.digest,
    })
}

/// Whether a missing browser tool is a failure rather than a skip.
fn require_clients() -> bool {
    ["CI", "HOLDFAST_REQUIRE_CLIENTS"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")))
}

/// Skips (or, when clients are required, fails) the browser test with `why`.
fn unavailable(why: &str) -> bool {
    if require_clients() {
        panic!("browser_scenarios: {why}, and HOLDFAST_REQUIRE_CLIENTS/CI is set: tests/run must install it");
    }
    eprintln!(
        "SKIP browser_scenarios: {why} (set HOLDFAST_REQUIRE_CLIENTS=1 to make this a failure)"
    );
    false
}

/// `tests/ui` with `playwright-core` installed (`npm ci` when node_modules is missing),
/// or `None` after a skip message.
fn browser_tools() -> Option<PathBuf> {
    if !Path::new("/usr/bin/chromium").exists() {
        unavailable("/usr/bin/chromium is not installed (Debian package `chromium`)");
        return None;
    }
    for tool in ["node", "npm"] {
        if !have(tool) {
            unavailable(&format!("`{tool}` is not on PATH"));
            return None;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let module = dir.join("node_modules/playwright-core/package.json");
    if !module.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) || !module.exists() {
            unavailable("`npm ci` in tests/ui could not install playwright-core");
            return None;
        }
    }
    Some(dir)
}

// Two workers: the receiver answers while the test waits for the browser script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_scenarios() {
    let Some(ui_dir) = browser_tools() else {
        return;
    };
    let receiver = Receiver::start().await;
    let server = tokio::task::block_in_place(|| start_with("", WEBHOOKS_ON));
    let seeded = seed(&server).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let started = std::time::Instant::now();
    let mut node = Command::new("node");
    node.arg(ui_dir.join("run.mjs"))
        .current_dir(&ui_dir)
        .env("HOLDFAST_UI_URL", &server.base)
        .env("HOLDFAST_UI_HOST", &server.host)
        .env(
            "HOLDFAST_UI_CERT",
            server.data_dir().join("tls").join("server.crt"),
        )
        .env("HOLDFAST_UI_ARTIFACTS", &artifacts)
        // Node's own requests (the CSRF checks) trust the server's CA, nothing else.
        .env("NODE_EXTRA_CA_CERTS", server.ca_path())
        .env("HOLDFAST_UI_OWNER", format!("{}:{}", ALICE.0, ALICE.1))
        .env("HOLDFAST_UI_STRANGER", format!("{}:{}", BOB.0, BOB.1))
        .env("HOLDFAST_UI_COLLABORATOR", CAROL.0)
        .env("HOLDFAST_UI_REPO", APP)
        .env("HOLDFAST_UI_PUBLIC_REPO", TOOLS)
        .env("HOLDFAST_UI_PUBLIC_WORD", TOOLS_WORD)
        .env("HOLDFAST_UI_PRIVATE_REPO", SECRET)
        .env(
            "HOLDFAST_UI_PRIVATE_DIGEST",
            seeded["secret_v1"].as_str().unwrap(),
        )
        .env("HOLDFAST_UI_MULTI_REPO", MULTI)
        .env(
            "HOLDFAST_UI_MULTI_DIGEST",
            seeded["multi_latest"].as_str().unwrap(),
        )
        .env("HOLDFAST_UI_PUBLIC_COMMENT", BOB_QUESTION)
        .env("HOLDFAST_UI_SERVICE", SERVICE)
        .env("HOLDFAST_UI_HOOK_URL", receiver.url())
        .env("HOLDFAST_UI_HOOK_SECRET", HOOK_SECRET);
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("run node tests/ui/run.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "tests/ui/run.mjs failed ({}) after {:?}:\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        started.elapsed(),
        server.log_plain()
    );
    assert!(artifacts.join("repository.png").is_file());

    // What the browser did reached the registry and the index.
    let details = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/repositories/{APP}"),
            ALICE,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    let tags: Vec<&str> = details["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        ["hooked", "latest", "v1"],
        "the browser deleted `old` and pushed `hooked`"
    );
    assert_eq!(details["visibility"], "private");
    assert_eq!(
        details["description"],
        "<script>alert(1)</script><img src=x onerror=alert(2)>"
    );
    assert_eq!(details["collaborators"][0]["user"], CAROL.0);
    assert_eq!(details["collaborators"][0]["access"], "push");
    let registry = pusher(&server, ALICE, APP).await;
    expect_error(
        registry.get_manifest(APP, "old").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_status(registry.get_manifest(APP, "v1").await, 200).await;
    // carol may now push there, as the collaborator the browser added.
    let granted = fetch_token(
        &server,
        SERVICE,
        Some(CAROL),
        &[&format!("repository:{APP}:pull,push")],
    )
    .await;
    let (_, claims) = jwt_decode(&token_of(&granted));
    assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
    // The comments the browser posted are stored as typed; the one it deleted is gone.
    let comments = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/repositories/{APP}/-/comments"),
            ALICE,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    let bodies: Vec<&str> = comments["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "<script>alert(1)</script><img src=x onerror=alert(3)>",
            "Rebuilt on the new base image.\nBoth tags pass the smoke tests."
        ]
    );
    let tools = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/repositories/{TOOLS}/-/comments"),
            ALICE,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        tools["comments"],
        json!([]),
        "the owner deleted bob's question"
    );
    // The hook the browser added got the push of `hooked`, signed with its secret, then
    // the same delivery again when the browser asked for it.
    let got = receiver.requests();
    assert_eq!(got.len(), 2, "one delivery and one redelivery: {got:#?}");
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["x-holdfast-delivery"].to_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "a redelivery keeps the delivery's id");
    for r in &got {
        let payload: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(payload["event"], "push");
        assert_eq!(payload["repository"], APP);
        assert_eq!(payload["tag"], "hooked");
        let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(&r.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            r.headers["x-holdfast-signature"].to_str().unwrap(),
            expected
        );
    }
    // Neither passwords, session cookies nor hook secrets reach the log.
    let log = server.log_plain();
    assert_no_secrets(&log, &[ALICE, BOB]);
    assert!(!log.contains(HOOK_SECRET), "a hook secret was logged");
    assert!(
        !log.contains("holdfast-session="),
        "a session cookie was logged"
    );
    assert!(log.contains("web_signin"), "sign-ins are audited");
}

// ---------------------------------------------------------------------------------------
// HTTP-level checks (no browser needed).
// ---------------------------------------------------------------------------------------

fn header_of(r: &reqwest::Response, name: &str) -> String {
    header(r, name).unwrap_or_default()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `form` as an `application/x-www-form-urlencoded` body (reqwest is built without its
/// `form` feature).
trait FormBody {
    fn form_body<T: serde::Serialize + ?Sized>(self, form: &T) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<T: serde::Serialize + ?Sized>(self, form: &T) -> Self {
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(serde_urlencoded::to_string(form).expect("encode a form"))
    }
}

/// The value `cookie=` of the first `Set-Cookie` for `cookie`.
fn cookie_value(r: &reqwest::Response, cookie: &str) -> Option<String> {
    set_cookies(r).iter().find_map(|c| {
        c.strip_prefix(&format!("{cookie}="))
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    })
}

/// The `value` of the hidden `csrf` input of an HTML page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in:\n{html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn text_of(r: reqwest::Response, status: u16) -> String {
    String::from_utf8(expect_status(r, status).await.to_vec()).unwrap()
}

/// Signs in through the form; returns the session cookie header value (`name=value`).
async fn sign_in(server: &TestServer, cred: Cred) -> String {
    let c = server.client();
    let r = c.get(server.url("/-/signin")).send().await.unwrap();
    let pre = cookie_value(&r, "__Host-holdfast-signin").expect("sign-in cookie");
    let token = csrf_of(&text_of(r, 200).await);
    assert_eq!(pre, token, "double-submit token");
    let r = c
        .post(server.url("/-/signin"))
        .header("cookie", format!("__Host-holdfast-signin={pre}"))
        .form_body(&[
            ("csrf", token.as_str()),
            ("username", cred.0),
            ("password", cred.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "sign-in redirects");
    let id = cookie_value(&r, "__Host-holdfast-session").expect("session cookie");
    format!("__Host-holdfast-session={id}")
}

#[tokio::test]
async fn pages_headers_sessions_and_csrf() {
    let server = start("");
    let seeded = seed(&server).await;
    let c = server.client();

    // Every UI answer carries the security headers; pages are not cached.
    let r = c.get(server.url("/")).send().await.unwrap();
    assert_eq!(
        header_of(&r, "content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(header_of(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header_of(&r, "referrer-policy"), "same-origin");
    assert_eq!(header_of(&r, "cache-control"), "no-store");
    assert!(header_of(&r, "content-type").starts_with("text/html"));
    let home = text_of(r, 200).await;
    assert!(
        home.contains(TOOLS),
        "anonymous callers see public repositories"
    );
    assert!(!home.contains(SECRET) && !home.contains(APP));
    assert!(!home.contains("<script"), "no scripts at all");
    // The stylesheet: a fixed path, cached for a year.
    let css_href = home
        .split("href=\"")
        .find(|s| s.starts_with("/-/static/style.css"))
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .expect("stylesheet link");
    let r = c.get(server.url(&css_href)).send().await.unwrap();
    assert!(header_of(&r, "cache-control").contains("max-age=31536000"));
    assert!(header_of(&r, "content-type").starts_with("text/css"));
    expect_status(r, 200).await;

    // The sign-in form: wrong password, a generic message; then the right one.
    let r = c.get(server.url("/-/signin")).send().await.unwrap();
    let pre = cookie_value(&r, "__Host-holdfast-signin").unwrap();
    let pre_cookie = set_cookies(&r)[0].clone();
    for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(pre_cookie.contains(part), "{pre_cookie}");
    }
    let r = c
        .post(server.url("/-/signin"))
        .header("cookie", format!("__Host-holdfast-signin={pre}"))
        .form_body(&[
            ("csrf", pre.as_str()),
            ("username", "alice"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    let page = text_of(r, 403).await;
    assert!(page.contains("Wrong user name or password."));
    // Without the double-submit cookie the form is refused before any password check.
    let r = c
        .post(server.url("/-/signin"))
        .form_body(&[
            ("csrf", pre.as_str()),
            ("username", ALICE.0),
            ("password", ALICE.1),
        ])
        .send()
        .await
        .unwrap();
    assert!(text_of(r, 403).await.contains("Form refused"));
    let r = c
        .post(server.url("/-/signin"))
        .header("cookie", format!("__Host-holdfast-signin={pre}"))
        .form_body(&[
            ("csrf", pre.as_str()),
            ("username", ALICE.0),
            ("password", ALICE.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let session_cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("__Host-holdfast-session="))
        .unwrap();
    for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(part), "{session_cookie}");
    }
    let alice = format!(
        "__Host-holdfast-session={}",
        cookie_value(&r, "__Host-holdfast-session").unwrap()
    );

    // Signed in, alice sees her private repository, its manifest page and its settings.
    let page = |path: &str, cookie: &str| {
        c.get(server.url(path))
            .header("cookie", cookie.to_owned())
            .send()
    };
    let repo_page = text_of(page(&format!("/r/{SECRET}"), &alice).await.unwrap(), 200).await;
    assert!(repo_page.contains(&format!("docker pull {}/{SECRET}:v1", server.host)));
    let secret_manifest = format!(
        "/r/{SECRET}/-/manifests/{}",
        seeded["secret_v1"].as_str().unwrap()
    );
    let manifest_page = text_of(page(&secret_manifest, &alice).await.unwrap(), 200).await;
    assert!(manifest_page.contains("linux/amd64"), "config facts shown");
    assert!(manifest_page.contains("Layers"));
    let settings = text_of(
        page(&format!("/r/{SECRET}/-/settings"), &alice)
            .await
            .unwrap(),
        200,
    )
    .await;
    let token = csrf_of(&settings);
    // The image index shows its platforms on the repository page.
    let multi = text_of(page(&format!("/r/{MULTI}"), &alice).await.unwrap(), 200).await;
    assert!(multi.contains("linux/amd64") && multi.contains("linux/arm64/v8"));

    // A stranger (and anonymous callers): the private repository is nowhere, and its
    // pages answer exactly what a missing repository answers.
    let bob = sign_in(&server, BOB).await;
    for cookie in [bob.as_str(), ""] {
        let missing = text_of(page("/r/alice/nothing-here", cookie).await.unwrap(), 404).await;
        for path in [
            format!("/r/{SECRET}"),
            secret_manifest.clone(),
            format!("/r/{SECRET}/-/settings"),
            format!("/r/{SECRET}/-/tags/v1/delete"),
        ] {
            let body = text_of(page(&path, cookie).await.unwrap(), 404).await;
            assert_eq!(body, missing, "{path} differs from a missing repository");
            assert!(!body.contains(SECRET), "{path} names the repository");
        }
    }
    for q in ["/", "/?q=secret", "/?q=alice"] {
        let body = text_of(page(q, &bob).await.unwrap(), 200).await;
        assert!(!body.contains(SECRET), "{q} lists the private repository");
    }
    // bob sees the public repository but may not manage it.
    expect_status(
        page(&format!("/r/{TOOLS}/-/settings"), &bob).await.unwrap(),
        403,
    )
    .await;

    // CSRF: a POST without the token, or with another session's, is refused and changes
    // nothing; bob's own token does not work for alice's session.
    let post = |path: &str, cookie: &str, form: Vec<(&str, &str)>| {
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        c.post(server.url(path))
            .header("cookie", cookie.to_owned())
            .form_body(&form)
            .send()
    };
    let visibility = format!("/r/{SECRET}/-/visibility");
    let r = post(&visibility, &alice, vec![("visibility", "public")])
        .await
        .unwrap();
    assert!(text_of(r, 403).await.contains("Form refused"));
    let bob_token = csrf_of(&text_of(page("/", &bob).await.unwrap(), 200).await);
    let r = post(
        &visibility,
        &alice,
        vec![("visibility", "public"), ("csrf", bob_token.as_str())],
    )
    .await
    .unwrap();
    expect_status(r, 403).await;
    // A cross-site request is refused even with the right token.
    let r = c
        .post(server.url(&visibility))
        .header("cookie", alice.clone())
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("visibility", "public"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    expect_status(r, 403).await;
    expect_status(page(&format!("/r/{SECRET}"), "").await.unwrap(), 404).await;
    // bob, with his own valid token, is 404 on a repository he cannot see.
    let r = post(
        &visibility,
        &bob,
        vec![("visibility", "public"), ("csrf", bob_token.as_str())],
    )
    .await
    .unwrap();
    expect_status(r, 404).await;
    // With alice's token it works, and redirects with a notice.
    let r = post(
        &format!("/r/{SECRET}/-/description"),
        &alice,
        vec![
            ("description", "line one\r\nline two"),
            ("csrf", token.as_str()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        header_of(&r, "location"),
        format!("/r/{SECRET}/-/settings?done=description")
    );
    let details = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/repositories/{SECRET}"),
            ALICE,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(details["description"], "line one\nline two");
    assert_eq!(details["visibility"], "private");
    // An over-long description is refused with the settings page and the reason.
    let long = "x".repeat(4097);
    let r = post(
        &format!("/r/{SECRET}/-/description"),
        &alice,
        vec![("description", long.as_str()), ("csrf", token.as_str())],
    )
    .await
    .unwrap();
    assert!(text_of(r, 400).await.contains("longer than 4096"));
    // Deleting the repository needs its name typed.
    let r = post(
        &format!("/r/{SECRET}/-/delete"),
        &alice,
        vec![("confirm", "alice/secre"), ("csrf", token.as_str())],
    )
    .await
    .unwrap();
    assert!(text_of(r, 400).await.contains("to confirm"));
    let r = post(
        &format!("/r/{SECRET}/-/delete"),
        &alice,
        vec![("confirm", SECRET), ("csrf", token.as_str())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(header_of(&r, "location"), "/?done=repository-deleted");
    expect_status(page(&format!("/r/{SECRET}"), &alice).await.unwrap(), 404).await;
    // (A pull token: a push grant would record the name again.)
    let answer = fetch_token(
        &server,
        SERVICE,
        Some(ALICE),
        &[&format!("repository:{SECRET}:pull")],
    )
    .await;
    let registry = bearer_api(&server, &token_of(&answer));
    expect_error(
        registry.get_manifest(SECRET, "v1").await,
        404,
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
    )
    .await;

    // Sign-out needs the token too, and ends the session on the server.
    let r = post("/-/signout", &alice, vec![]).await.unwrap();
    expect_status(r, 403).await;
    let r = post("/-/signout", &alice, vec![("csrf", token.as_str())])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(set_cookies(&r)
        .iter()
        .any(|c| c.starts_with("__Host-holdfast-session=;") && c.contains("Max-Age=0")));
    let after = page(&format!("/r/{APP}"), &alice).await.unwrap();
    assert!(
        set_cookies(&after).iter().any(|c| c.contains("Max-Age=0")),
        "a stale cookie is cleared"
    );
    expect_status(after, 404).await;
}

#[tokio::test]
async fn sign_in_is_throttled_like_basic_auth() {
    let server = start("\n[auth.throttle]\nmax_failures = 2\nmax_backoff_seconds = 60\n");
    let c = server.client();
    let r = c.get(server.url("/-/signin")).send().await.unwrap();
    let pre = cookie_value(&r, "__Host-holdfast-signin").unwrap();
    let attempt = |password: &'static str| {
        c.post(server.url("/-/signin"))
            .header("cookie", format!("__Host-holdfast-signin={pre}"))
            .form_body(&[
                ("csrf", pre.as_str()),
                ("username", "alice"),
                ("password", password),
            ])
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(attempt("wrong").await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Even the right password is refused while throttled.
    let r = attempt(ALICE.1).await.unwrap();
    assert!(header(&r, "retry-after").is_some());
    assert!(text_of(r, 429).await.contains("Try again later"));
    // Basic auth on the API shares the throttle.
    let r = api(&server, reqwest::Method::GET, "/api/v1/repositories", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
}

#[tokio::test]
async fn the_ui_never_shadows_other_routes() {
    let server = start("");
    let c = server.client();
    // Registry, token, API, search and health answer as before.
    let r = c.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(header_of(&r, "content-security-policy").is_empty());
    let r = c
        .get(server.url("/token?service=holdfast"))
        .send()
        .await
        .unwrap();
    assert!(header_of(&r, "content-type").starts_with("application/json"));
    expect_status(r, 200).await;
    let r = c
        .get(server.url("/api/v1/repositories"))
        .send()
        .await
        .unwrap();
    assert!(header_of(&r, "content-type").starts_with("application/json"));
    let r = c.get(server.url("/v1/search?q=x")).send().await.unwrap();
    assert!(header_of(&r, "content-type").starts_with("application/json"));
    expect_status(c.get(server.url("/healthz")).send().await.unwrap(), 200).await;
    // Unknown UI paths are HTML 404s; HEAD has no body.
    let r = c.get(server.url("/-/nothing")).send().await.unwrap();
    assert!(header_of(&r, "content-type").starts_with("text/html"));
    expect_status(r, 404).await;
    let r = c.head(server.url("/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.delete(server.url("/")).send().await.unwrap();
    assert_eq!(header_of(&r, "allow"), "GET");
    expect_status(r, 405).await;
}

#[tokio::test]
async fn long_lists_are_paged_and_collaborators_see_without_managing() {
    let server = start("");
    let app = pusher(&server, ALICE, APP).await;
    let image = app.push_image(APP, "tag-00", OCI_MANIFEST, 1).await;
    // 30 tags on one manifest: 25 on the first page, 5 on the second.
    for i in 1..30 {
        app.push_manifest(APP, &format!("tag-{i:02}"), OCI_MANIFEST, &image.bytes)
            .await;
    }
    let r = api(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/repositories/{APP}/-/collaborators/{}", CAROL.0),
        ALICE,
    )
    .json(&json!({"access": "pull"}))
    .send()
    .await
    .unwrap();
    expect_status(r, 200).await;

    let carol = sign_in(&server, CAROL).await;
    let get = |path: String, cookie: String| {
        server
            .client()
            .get(server.url(&path))
            .header("cookie", cookie)
            .send()
    };
    let first = text_of(get(format!("/r/{APP}"), carol.clone()).await.unwrap(), 200).await;
    let row = |tag: &str| format!("class=\"tag\">{tag}<");
    assert!(first.contains(&row("tag-00")) && first.contains(&row("tag-24")));
    assert!(!first.contains(&row("tag-25")));
    assert!(
        first.contains("tag-09 and 20 more"),
        "a manifest's tags are cut short"
    );
    assert!(first.contains("Page 1 of 2"));
    assert!(first.contains(&format!(
        "href=\"/r/{APP}?page=2&#38;mpage=1#tags-heading\""
    )));
    let second = text_of(
        get(format!("/r/{APP}?page=2"), carol.clone())
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(second.contains(&row("tag-29")) && !second.contains(&row("tag-24")));
    assert!(second.contains("Page 2 of 2"));
    // A page number past the end shows the last page; nonsense shows the first.
    let past = text_of(
        get(format!("/r/{APP}?page=99"), carol.clone())
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(past.contains("Page 2 of 2"));
    let nonsense = text_of(
        get(format!("/r/{APP}?page=x"), carol.clone())
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(nonsense.contains("Page 1 of 2"));
    // A pull collaborator sees the repository, but neither settings nor delete links.
    assert!(!first.contains("/-/settings") && !first.contains("/delete\""));
    expect_status(
        get(format!("/r/{APP}/-/settings"), carol.clone())
            .await
            .unwrap(),
        403,
    )
    .await;
    expect_status(
        get(format!("/r/{APP}/-/tags/tag-01/delete"), carol.clone())
            .await
            .unwrap(),
        403,
    )
    .await;

    // A password change ends the user's sessions; so does removing the user.
    let out = server.user_cmd(
        &["passwd", CAROL.0, "--password-stdin"],
        Some("carol-New-Pw-4Hq8zL\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = text_of(get("/".to_owned(), carol.clone()).await.unwrap(), 200).await;
        if !page.contains("Signed in as") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "carol is still signed in after her password changed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bob = sign_in(&server, BOB).await;
    let out = server.user_cmd(&["remove", BOB.0], None);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = text_of(get("/".to_owned(), bob.clone()).await.unwrap(), 200).await;
        if !page.contains("Signed in as") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob is still signed in after his removal"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = server.log_plain();
    assert!(
        log.contains("web_sessions_ended"),
        "session ends are audited"
    );
}

/// The star, comment and webhook forms over HTTP: the CSRF token is required, a stranger
/// finds nothing of a private repository (404), a viewer who does not manage a repository
/// may not touch its hooks (403), and comments follow the API's rules and rate limit.
#[tokio::test]
async fn star_comment_and_webhook_forms() {
    let server = start_with("", WEBHOOKS_ON);
    seed(&server).await;
    let c = server.client();
    let alice = sign_in(&server, ALICE).await;
    let bob = sign_in(&server, BOB).await;
    let carol = sign_in(&server, CAROL).await;
    let page = |path: String, cookie: &str| {
        c.get(server.url(&path))
            .header("cookie", cookie.to_owned())
            .send()
    };
    let token_of_page = |html: String| csrf_of(&html);
    let alice_token = token_of_page(text_of(page("/".into(), &alice).await.unwrap(), 200).await);
    let bob_token = token_of_page(text_of(page("/".into(), &bob).await.unwrap(), 200).await);
    let carol_token = token_of_page(text_of(page("/".into(), &carol).await.unwrap(), 200).await);
    let post = |path: String, cookie: &str, form: Vec<(&str, String)>| {
        c.post(server.url(&path))
            .header("cookie", cookie.to_owned())
            .form_body(&form)
            .send()
    };
    let star_count = |repo: &'static str| {
        let server = &server;
        async move {
            json_of(
                api(
                    server,
                    reqwest::Method::GET,
                    &format!("/api/v1/repositories/{repo}"),
                    ALICE,
                )
                .send()
                .await
                .unwrap(),
                200,
            )
            .await["star_count"]
                .as_u64()
                .unwrap()
        }
    };
    let comments_of = |repo: &'static str| {
        let server = &server;
        async move {
            json_of(
                api(
                    server,
                    reqwest::Method::GET,
                    &format!("/api/v1/repositories/{repo}/-/comments?limit=100"),
                    ALICE,
                )
                .send()
                .await
                .unwrap(),
                200,
            )
            .await["comments"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let secret_comment = api(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/repositories/{SECRET}/-/comments"),
        ALICE,
    )
    .json(&json!({"body": "private note"}))
    .send()
    .await
    .unwrap();
    let secret_comment = json_of(secret_comment, 201).await["id"].as_i64().unwrap();

    // Without the token (or with another session's), every new form is refused.
    let hook_form = |token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("url", "https://hooks.example/ci".to_owned()),
            ("secret", HOOK_SECRET.to_owned()),
            ("events", "push".to_owned()),
        ]
    };
    for (path, form) in [
        (format!("/r/{TOOLS}/-/star"), vec![]),
        (format!("/r/{TOOLS}/-/unstar"), vec![]),
        (
            format!("/r/{TOOLS}/-/comments"),
            vec![("body", "forged".to_owned())],
        ),
        (
            format!("/r/{SECRET}/-/comments/{secret_comment}/delete"),
            vec![],
        ),
        (
            format!("/r/{TOOLS}/-/webhooks"),
            hook_form("")[1..].to_vec(),
        ),
        (format!("/r/{TOOLS}/-/webhooks/1/delete"), vec![]),
    ] {
        let r = post(path.clone(), &alice, form.clone()).await.unwrap();
        assert!(text_of(r, 403).await.contains("Form refused"), "{path}");
        let mut wrong = form;
        wrong.push(("csrf", bob_token.clone()));
        let r = post(path.clone(), &alice, wrong).await.unwrap();
        expect_status(r, 403).await;
    }
    assert_eq!(star_count(TOOLS).await, 0);
    assert_eq!(comments_of(TOOLS).await.len(), 1, "only bob's question");

    // A stranger, with his own valid token, finds nothing of the private repository.
    let missing = text_of(
        post(
            "/r/alice/nothing-here/-/star".into(),
            &bob,
            vec![("csrf", bob_token.clone())],
        )
        .await
        .unwrap(),
        404,
    )
    .await;
    for (path, form) in [
        (format!("/r/{SECRET}/-/star"), vec![]),
        (format!("/r/{SECRET}/-/unstar"), vec![]),
        (
            format!("/r/{SECRET}/-/comments"),
            vec![("body", "hello?".to_owned())],
        ),
        // An empty comment too: refused for what it is only where the page may be seen.
        (
            format!("/r/{SECRET}/-/comments"),
            vec![("body", " ".to_owned())],
        ),
        (
            format!("/r/{SECRET}/-/comments/{secret_comment}/delete"),
            vec![],
        ),
        (
            format!("/r/{SECRET}/-/webhooks"),
            hook_form(&bob_token)[1..].to_vec(),
        ),
        (format!("/r/{SECRET}/-/webhooks/1/delete"), vec![]),
        (
            format!("/r/{SECRET}/-/webhooks/1/deliveries/00ff/redeliver"),
            vec![],
        ),
    ] {
        let mut form = form;
        form.push(("csrf", bob_token.clone()));
        let body = text_of(post(path.clone(), &bob, form).await.unwrap(), 404).await;
        assert_eq!(body, missing, "{path} differs from a missing repository");
    }
    let secret_comments = comments_of(SECRET).await;
    assert_eq!(
        secret_comments.len(),
        1,
        "the private comment is still there"
    );
    assert_eq!(star_count(SECRET).await, 0);

    // Stars: bob stars the public repository; its page and the list count it, and his
    // home page lists it under "Your stars".
    let r = post(
        format!("/r/{TOOLS}/-/star"),
        &bob,
        vec![("csrf", bob_token.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        header_of(&r, "location"),
        format!("/r/{TOOLS}?done=starred")
    );
    assert_eq!(star_count(TOOLS).await, 1);
    let tools_page = text_of(page(format!("/r/{TOOLS}"), &bob).await.unwrap(), 200).await;
    assert!(tools_page.contains(">1 star<") && tools_page.contains("Unstar"));
    let home = text_of(page("/".into(), &bob).await.unwrap(), 200).await;
    let stars_section = &home[home.find("id=\"your-stars\"").expect("Your stars")..];
    let stars_section = &stars_section[..stars_section.find("</section>").unwrap()];
    assert!(stars_section.contains(TOOLS) && stars_section.contains(MULTI));
    assert!(!home.contains(SECRET));
    // Anonymous callers see the counts but neither the form nor a "Your stars".
    let anonymous = text_of(page(format!("/r/{TOOLS}"), "").await.unwrap(), 200).await;
    assert!(anonymous.contains(">1 star<") && anonymous.contains("Sign in to star it"));
    assert!(!anonymous.contains("/-/star\""));
    let anonymous_home = text_of(page("/".into(), "").await.unwrap(), 200).await;
    assert!(!anonymous_home.contains("Your stars"));
    assert!(
        anonymous_home.contains("<td class=\"stars\">3</td>"),
        "MULTI's count"
    );
    let r = post(
        format!("/r/{TOOLS}/-/unstar"),
        &bob,
        vec![("csrf", bob_token.clone())],
    )
    .await
    .unwrap();
    assert_eq!(
        header_of(&r, "location"),
        format!("/r/{TOOLS}?done=unstarred")
    );
    assert_eq!(star_count(TOOLS).await, 0);

    // Comments follow the API's rules: refused with the reason and the text kept.
    for (body, status, why) in [
        ("  \r\n ".to_owned(), 400, "the comment is empty"),
        ("x".repeat(2001), 400, "longer than 2000 characters"),
        ("bell\u{7}".to_owned(), 400, "control characters"),
    ] {
        let r = post(
            format!("/r/{TOOLS}/-/comments"),
            &bob,
            vec![("body", body.clone()), ("csrf", bob_token.clone())],
        )
        .await
        .unwrap();
        let html = text_of(r, status).await;
        assert!(html.contains(why), "{why}: {html}");
        assert!(html.contains("id=\"comment-error\""));
    }
    let r = post(
        format!("/r/{TOOLS}/-/comments"),
        &bob,
        vec![
            ("body", "keep <this> text".to_owned()),
            ("csrf", bob_token.clone()),
            ("body", "a second field is ignored".to_owned()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let id = comments_of(TOOLS).await[0]["id"].as_i64().unwrap();
    assert_eq!(
        header_of(&r, "location"),
        format!("/r/{TOOLS}?done=comment-posted#comment-{id}")
    );
    assert_eq!(comments_of(TOOLS).await[0]["body"], "keep <this> text");
    // CRLF from a textarea is stored as LF.
    let r = post(
        format!("/r/{TOOLS}/-/comments"),
        &carol,
        vec![
            ("body", "line one\r\nline two".to_owned()),
            ("csrf", carol_token.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let carols = comments_of(TOOLS).await[0].clone();
    assert_eq!(carols["body"], "line one\nline two");
    let carols = carols["id"].as_i64().unwrap();

    // Only its author, the repository's managers and admins delete a comment.
    let r = post(
        format!("/r/{TOOLS}/-/comments/{carols}/delete"),
        &bob,
        vec![("csrf", bob_token.clone())],
    )
    .await
    .unwrap();
    assert!(text_of(r, 403)
        .await
        .contains("Only the comment&#39;s author"));
    let bob_page = text_of(page(format!("/r/{TOOLS}"), &bob).await.unwrap(), 200).await;
    assert!(bob_page.contains(&format!("/-/comments/{id}/delete")));
    assert!(!bob_page.contains(&format!("/-/comments/{carols}/delete")));
    let r = post(
        format!("/r/{TOOLS}/-/comments/{carols}/delete"),
        &alice,
        vec![("csrf", alice_token.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let r = post(
        format!("/r/{TOOLS}/-/comments/{carols}/delete"),
        &alice,
        vec![("csrf", alice_token.clone())],
    )
    .await
    .unwrap();
    assert!(text_of(r, 404).await.contains("no such comment"));
    let log = server.log_plain();
    assert!(log
        .lines()
        .any(|l| l.contains("comment_deleted") && l.contains("author=\"carol\"")));

    // Paging: newest first, 25 a page, "Older comments" continues before the last one.
    // (Three authors, as each may post 10 a minute: alice has 2 already, bob 3, carol 0.)
    for (who, cookie, token, n) in [
        ("alice", &alice, &alice_token, 8),
        ("carol", &carol, &carol_token, 9),
        ("bob", &bob, &bob_token, 7),
    ] {
        for i in 0..n {
            let r = post(
                format!("/r/{TOOLS}/-/comments"),
                cookie,
                vec![
                    ("body", format!("note {i} from {who}")),
                    ("csrf", token.clone()),
                ],
            )
            .await
            .unwrap();
            assert_eq!(r.status().as_u16(), 303, "note {i} from {who}");
        }
    }
    let all = comments_of(TOOLS).await;
    assert_eq!(all.len(), 26);
    let first = text_of(page(format!("/r/{TOOLS}"), &bob).await.unwrap(), 200).await;
    assert_eq!(first.matches("<li class=\"comment\"").count(), 25);
    let older_id = all[24]["id"].as_i64().unwrap();
    let older = format!("/r/{TOOLS}?page=1&#38;mpage=1&#38;before={older_id}#comments-heading");
    assert!(first.contains(&older), "an older-comments link: {first}");
    let second = text_of(
        page(format!("/r/{TOOLS}?before={older_id}"), &bob)
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(second.matches("<li class=\"comment\"").count(), 1);
    assert!(
        second.contains(BOB_QUESTION),
        "the oldest comment is on the last page"
    );
    assert!(second.contains("Newest comments") && !second.contains("Older comments"));
    // The rate limit: bob has posted 10 within the minute (unless this test was slow, so
    // he may post until refused), and is then refused with the reason, Retry-After and
    // his text kept.
    let mut refused = None;
    for i in 0..11 {
        let r = post(
            format!("/r/{TOOLS}/-/comments"),
            &bob,
            vec![
                ("body", format!("one more ({i}), too soon")),
                ("csrf", bob_token.clone()),
            ],
        )
        .await
        .unwrap();
        if r.status().as_u16() == 429 {
            refused = Some((i, r));
            break;
        }
        assert_eq!(r.status().as_u16(), 303);
    }
    let (i, refused) = refused.expect("bob was never refused");
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let html = text_of(refused, 429).await;
    assert!(
        html.contains("at most 10 comments per 60 seconds"),
        "{html}"
    );
    assert!(html.contains(&format!(">one more ({i}), too soon</textarea>")));

    // Webhooks: a viewer who sees the repository but does not manage it is refused, a
    // manager adds, lists and removes hooks under the API's rules.
    let r = post(
        format!("/r/{TOOLS}/-/webhooks"),
        &bob,
        hook_form(&bob_token),
    )
    .await
    .unwrap();
    expect_status(r, 403).await;
    let r = post(
        format!("/r/{TOOLS}/-/webhooks"),
        &alice,
        hook_form(&alice_token),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let hook = header_of(&r, "location");
    let hook_id: i64 = hook
        .rsplit_once("#hook-")
        .expect("the redirect points at the new hook")
        .1
        .parse()
        .unwrap();
    for path in [
        format!("/r/{TOOLS}/-/webhooks/{hook_id}/delete"),
        format!("/r/{TOOLS}/-/webhooks/{hook_id}/deliveries/00ff/redeliver"),
    ] {
        let r = post(path.clone(), &bob, vec![("csrf", bob_token.clone())])
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
    expect_status(
        page(format!("/r/{TOOLS}/-/settings"), &bob).await.unwrap(),
        403,
    )
    .await;
    let settings = text_of(
        page(format!("/r/{TOOLS}/-/settings"), &alice)
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(settings.contains("https://hooks.example/ci"));
    assert!(!settings.contains(HOOK_SECRET), "a hook secret on the page");
    // http:// is allowed here, but not credentials in the URL, a short secret, or no
    // events; each says why, and the URL and events come back for another try.
    for (form, why) in [
        (
            vec![
                ("url", "https://user:pw@hooks.example/"),
                ("secret", HOOK_SECRET),
                ("events", "push"),
            ],
            "must not contain credentials",
        ),
        (
            vec![
                ("url", "https://hooks.example/x"),
                ("secret", "short"),
                ("events", "push"),
            ],
            "at least 16 characters",
        ),
        (
            vec![
                ("url", "https://hooks.example/x"),
                ("secret", HOOK_SECRET),
                ("events", "nonsense"),
            ],
            "at least one of",
        ),
        (
            vec![
                ("url", "https://hooks.example/x"),
                ("secret", HOOK_SECRET),
                ("events", "delete"),
                ("events", "delete"),
            ],
            "listed twice",
        ),
    ] {
        let mut form: Vec<(&str, String)> =
            form.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        form.push(("csrf", alice_token.clone()));
        let html = text_of(
            post(format!("/r/{TOOLS}/-/webhooks"), &alice, form)
                .await
                .unwrap(),
            400,
        )
        .await;
        assert!(html.contains(why), "{why}: {html}");
        assert!(html.contains("The webhook was not added"));
        assert!(!html.contains(HOOK_SECRET), "the secret came back");
    }
    let r = post(
        format!("/r/{TOOLS}/-/webhooks/{hook_id}/deliveries/00ff/redeliver"),
        &alice,
        vec![("csrf", alice_token.clone())],
    )
    .await
    .unwrap();
    assert!(text_of(r, 404).await.contains("no such delivery"));
    let r = post(
        format!("/r/{TOOLS}/-/webhooks/{hook_id}/delete"),
        &alice,
        vec![("csrf", alice_token.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let hooks = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/repositories/{TOOLS}/-/webhooks"),
            ALICE,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(hooks["webhooks"], json!([]));
    let log = server.log_plain();
    assert!(log.contains("webhook_created") && log.contains("webhook_deleted"));
    assert!(!log.contains(HOOK_SECRET), "a hook secret was logged");
    assert!(
        !log.contains("holdfast-session="),
        "a session cookie was logged"
    );
}

/// With webhooks off (the default), the settings page says who can turn them on, and the
/// forms are refused saying the same.
#[tokio::test]
async fn webhooks_off_are_explained() {
    let server = start("");
    let app = pusher(&server, ALICE, APP).await;
    app.push_image(APP, "v1", OCI_MANIFEST, 1).await;
    let alice = sign_in(&server, ALICE).await;
    let c = server.client();
    let settings = text_of(
        c.get(server.url(&format!("/r/{APP}/-/settings")))
            .header("cookie", alice.clone())
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(settings.contains("id=\"webhooks-disabled\""));
    assert!(settings.contains("An administrator can enable them"));
    assert!(!settings.contains("id=\"webhook-form\""));
    let token = csrf_of(&settings);
    let r = c
        .post(server.url(&format!("/r/{APP}/-/webhooks")))
        .header("cookie", alice)
        .form_body(&[
            ("csrf", token.as_str()),
            ("url", "https://hooks.example/x"),
            ("secret", HOOK_SECRET),
            ("events", "push"),
        ])
        .send()
        .await
        .unwrap();
    assert!(text_of(r, 403).await.contains("Webhooks are turned off"));
}
