//! Real clients against a registry in token mode (`[auth] mode = "token"` with the embedded
//! index): docker (private dockerd), podman and skopeo follow the Bearer challenge to
//! `/token`, fetch tokens with their credentials (or anonymously), and the access rules
//! hold through the tokens: alice pushes to team-a, bob may only pull there, wrong
//! passwords are refused, and everyone pulls public/ without any login — docker included,
//! which Basic mode cannot offer. TLS verification stays on throughout.
//!
//! Logging in (`docker|podman|skopeo login`) is tested apart from pushing and pulling with
//! credentials given directly (a stored config, `--creds`), so a problem with one does not
//! hide the other. A missing client program is a failure when `CI` is set and a printed
//! skip otherwise. Every test starts its own server; users are created with the real
//! `holdfast user add`.

mod common;
#[allow(dead_code)]
#[path = "support/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "support/oci.rs"]
mod oci;
#[allow(dead_code)]
#[path = "support/proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use common::{assert_no_secrets, TestServer};
use http::ServerLog;
use oci::Image;
use proc::{exec, exec_input, p, require, require_busybox, run, run_fails, stderr, stdout};
use tools::{lowercase_tempdir, Dockerd, Podman};

const ALICE: (&str, &str) = ("alice", "alice-TokClient-Pw-4Wm8");
const BOB: (&str, &str) = ("bob", "bob-TokClient-Pw-7Jc2");
const WRONG: &str = "wrong-TokClient-Pw-5Ny6";

/// Token mode with the embedded index. alice is in group team-a (everything in team-a/**,
/// push in public/**); bob may only pull in team-a/**; everyone may pull public/**.
fn start_server() -> TestServer {
    let mut server = TestServer::configure(
        r#"[auth]
mode = "token"

[auth.throttle]
max_failures = 100000

[index]
enabled = true

[[access]]
repository = "public/**"
anonymous = ["pull"]
groups = { "team-a" = ["push"] }

[[access]]
repository = "team-a/**"
groups = { "team-a" = ["pull", "push", "delete"] }
users = { "bob" = ["pull"] }
"#,
    );
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    server
}

fn elapsed(test: &str, t0: Instant) {
    eprintln!("== {test} took {:.1}s", t0.elapsed().as_secs_f64());
}

/// Both outputs, lower-cased, for matching error messages.
fn said(o: &Output) -> String {
    format!("{}\n{}", stdout(o), stderr(o)).to_lowercase()
}

/// The client failed because of the credentials.
fn assert_auth_error(o: &Output, what: &str) {
    let s = said(o);
    assert!(
        s.contains("unauthorized")
            || s.contains("401")
            || s.contains("authentication required")
            || s.contains("invalid username/password"),
        "{what}: expected an authentication error, got:\n{s}"
    );
}

/// The client failed because its token did not allow the push: holdfast answers 401 with
/// `error="insufficient_scope"`, which clients print as unauthorized or denied.
fn assert_not_allowed(o: &Output, what: &str) {
    let s = said(o);
    assert!(
        s.contains("denied")
            || s.contains("unauthorized")
            || s.contains("insufficient_scope")
            || s.contains("authentication required")
            || s.contains("401")
            || s.contains("403"),
        "{what}: expected a denied/unauthorized error, got:\n{s}"
    );
}

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![ALICE, BOB, ("alice", WRONG), ("bob", WRONG)]
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Pushes `img` as `repo:tag` over the HTTP API with a token fetched for `cred` (for tests
/// whose subject is pulling, so that no client program is needed to seed the registry).
fn seed(server: &TestServer, cred: (&str, &str), repo: &str, tag: &str, img: &Image) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let answer = common::fetch_token(
            server,
            "holdfast",
            Some(cred),
            &[&format!("repository:{repo}:pull,push")],
        )
        .await;
        let api = common::bearer_api(server, &common::token_of(&answer));
        for b in &img.manifest.blobs {
            api.push_blob(repo, &b.bytes).await;
        }
        api.push_manifest(repo, tag, &img.manifest.media_type, &img.manifest.bytes)
            .await;
    });
}

/// The access-log lines (`METHOD PATH -> STATUS`) of requests holdfast attributed to
/// `user` (a token's subject, or `anonymous` for an anonymous token), under `prefix`.
fn requests_by(server: &TestServer, user: &str, prefix: &str) -> Vec<String> {
    let needle = format!("user=\"{user}\"");
    server
        .log_plain()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(" access "))
        .map(|l| http::access_summary(l).trim().to_owned())
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with(prefix))
        })
        .collect()
}

/// How many `/token` requests (any method) holdfast answered with `status`.
fn token_requests(server: &TestServer, method: &str, status: u16) -> usize {
    let want = format!("{method} /token -> {status}");
    http::access_summary(&server.log_plain())
        .lines()
        .filter(|l| l.trim() == want)
        .count()
}

fn write_authfile(path: &Path, host: &str, cred: Option<(&str, &str)>) {
    let v = match cred {
        Some((u, pw)) => {
            serde_json::json!({"auths": {host: {"auth": b64(&format!("{u}:{pw}"))}}})
        }
        None => serde_json::json!({"auths": {}}),
    };
    std::fs::write(path, v.to_string()).unwrap();
}

// ---------------------------------------------------------------------------------------
// docker

/// A docker `--config` folder with (or without) stored credentials for `host`, as
/// `docker login` leaves it when no credential helper is configured.
fn docker_config(root: &Path, who: &str, host: &str, cred: Option<(&str, &str)>) -> String {
    let d = root.join(format!("docker-{who}"));
    std::fs::create_dir_all(&d).unwrap();
    write_authfile(&d.join("config.json"), host, cred);
    p(&d).to_owned()
}

/// docker with no login at all pulls from public/ (it fetches an anonymous token), but
/// neither pulls team-a nor pushes to public/.
#[test]
fn docker_anonymous_pull_of_public() {
    let name = "docker_anonymous_pull_of_public";
    if !require(name, &["docker", "dockerd", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let host = server.host.as_str();
    let img = Image::busybox("amd64", "docker token anonymous");
    seed(&server, ALICE, "public/base", "v1", &img);
    seed(&server, ALICE, "team-a/app", "v1", &img);
    let work = tempfile::tempdir().unwrap();
    let anon = docker_config(work.path(), "anon", host, None);
    let dk = Dockerd::start(&server);
    eprintln!("dockerd ready after {:.1}s", t0.elapsed().as_secs_f64());
    let as_anon = |args: &[&str]| {
        let mut all = vec!["--config", anon.as_str()];
        all.extend_from_slice(args);
        dk.cmd(&all)
    };

    let public = format!("{host}/public/base:v1");
    let o = exec(&mut as_anon(&["pull", &public]));
    assert!(
        o.status.success(),
        "docker could not pull public/base without a login: {}\nrequests with an anonymous \
         token: {:?}",
        said(&o),
        requests_by(&server, "anonymous", "/v2/public/")
    );
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &public]);
    assert_eq!(id.trim(), img.id(), "anonymous docker pull");
    let seen = requests_by(&server, "anonymous", "/v2/public/base/");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET /v2/public/base/manifests/") && l.ends_with("200")),
        "the manifest was fetched with an anonymous token: {seen:?}"
    );
    assert!(
        token_requests(&server, "GET", 200) >= 1,
        "an anonymous token was fetched"
    );

    // team-a is not anonymous: refused. (dockerd then retries 127.0.0.0/8 over plain
    // HTTP, whose error is what it prints, so look at what holdfast answered.)
    run_fails(&mut as_anon(&["pull", &format!("{host}/team-a/app:v1")]));
    let seen = requests_by(&server, "anonymous", "/v2/team-a/");
    assert!(
        seen.iter().all(|l| l.ends_with("-> 401")),
        "anonymous requests for team-a are all refused: {seen:?}"
    );
    // Nor may anonymous push to public/.
    let by_anon = format!("{host}/public/base:by-anon");
    dk.run(&["tag", &public, &by_anon]);
    let o = run_fails(&mut as_anon(&["push", &by_anon]));
    assert_not_allowed(&o, "anonymous push to public");
    elapsed(name, t0);
}

/// docker with stored credentials (no `docker login`): alice pushes to team-a and public/
/// through tokens fetched with her password; bob pulls team-a but may not push there;
/// a stored wrong password is refused.
#[test]
fn docker_push_and_pull_with_stored_credentials() {
    let name = "docker_push_and_pull_with_stored_credentials";
    if !require(name, &["docker", "dockerd", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let host = server.host.as_str();
    let work = tempfile::tempdir().unwrap();
    let alice_cfg = docker_config(work.path(), "alice", host, Some(ALICE));
    let bob_cfg = docker_config(work.path(), "bob", host, Some(BOB));
    let wrong_cfg = docker_config(work.path(), "wrong", host, Some(("alice", WRONG)));
    let dk = Dockerd::start(&server);
    eprintln!("dockerd ready after {:.1}s", t0.elapsed().as_secs_f64());
    let as_ = |config: &str, args: &[&str]| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        dk.cmd(&all)
    };

    let img = Image::busybox("amd64", "docker token stored");
    let team = format!("{host}/team-a/app:v1");
    let public = format!("{host}/public/base:v1");
    let by_bob = format!("{host}/team-a/app:from-bob");
    let archive = work.path().join("image.tar");
    oci::write_docker_archive(&archive, &team, &img);
    dk.run(&["load", "-i", p(&archive)]);
    dk.run(&["tag", &team, &public]);
    dk.run(&["tag", &team, &by_bob]);

    run(&mut as_(&alice_cfg, &["push", &team]));
    run(&mut as_(&alice_cfg, &["push", &public]));
    assert!(
        !requests_by(&server, "alice", "/v2/team-a/app/manifests/").is_empty(),
        "the manifest was pushed with alice's token"
    );
    let o = run_fails(&mut as_(&bob_cfg, &["push", &by_bob]));
    assert_not_allowed(&o, "bob pushes to team-a");
    let o = run_fails(&mut as_(&wrong_cfg, &["push", &team]));
    assert_auth_error(&o, "push with a stored wrong password");

    dk.run(&["rmi", &team, &public, &by_bob]);
    run(&mut as_(&bob_cfg, &["pull", &team]));
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &team]);
    assert_eq!(id.trim(), img.id(), "bob pulled alice's image");
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}

/// `docker login`: alice's right password is accepted (docker checks it by fetching a token
/// and calling `GET /v2/` with it) and her push to team-a then works with what login
/// stored; bob logs in but may not push; a wrong password fails to log in.
#[test]
fn docker_login() {
    let name = "docker_login";
    if !require(name, &["docker", "dockerd", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let host = server.host.as_str();
    let work = tempfile::tempdir().unwrap();
    let alice_cfg = docker_config(work.path(), "alice", host, None);
    let bob_cfg = docker_config(work.path(), "bob", host, None);
    let wrong_cfg = docker_config(work.path(), "wrong", host, None);
    let dk = Dockerd::start(&server);
    eprintln!("dockerd ready after {:.1}s", t0.elapsed().as_secs_f64());
    let as_ = |config: &str, args: &[&str]| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        dk.cmd(&all)
    };
    let login = |config: &str, user: &str, password: &str| {
        let mut c = as_(config, &["login", host, "-u", user, "--password-stdin"]);
        exec_input(&mut c, &format!("{password}\n"))
    };

    let o = login(&wrong_cfg, ALICE.0, WRONG);
    assert!(!o.status.success(), "docker login with a wrong password");
    assert_auth_error(&o, "docker login with a wrong password");

    let o = login(&alice_cfg, ALICE.0, ALICE.1);
    assert!(
        o.status.success(),
        "docker login alice: {}\nholdfast answered: {}",
        said(&o),
        http::access_summary(&server.log_plain())
    );
    assert!(said(&o).contains("login succeeded"), "{}", said(&o));
    let stored = std::fs::read_to_string(Path::new(&alice_cfg).join("config.json")).unwrap();
    assert!(
        stored.contains(host),
        "config.json names the registry: {stored}"
    );
    // Login asked for offline access: docker keeps the refresh token as `identitytoken`
    // and uses it (OAuth2 `grant_type=refresh_token`) instead of the password from now on.
    let config: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let identity = config["auths"][host]["identitytoken"]
        .as_str()
        .unwrap_or("");
    assert!(
        identity.starts_with("hfrt_"),
        "docker stored no refresh token (identitytoken) after login"
    );
    let posts_before = token_requests(&server, "POST", 200);

    let img = Image::busybox("amd64", "docker token login");
    let team = format!("{host}/team-a/app:v1");
    let by_bob = format!("{host}/team-a/app:from-bob");
    let archive = work.path().join("image.tar");
    oci::write_docker_archive(&archive, &team, &img);
    dk.run(&["load", "-i", p(&archive)]);
    dk.run(&["tag", &team, &by_bob]);
    run(&mut as_(&alice_cfg, &["push", &team]));
    assert!(
        token_requests(&server, "POST", 200) > posts_before,
        "docker's push used the refresh token (POST /token): {}",
        http::access_summary(&server.log_plain())
    );
    assert!(
        !server.log_plain().contains(identity),
        "the server log contains a refresh token"
    );

    let o = login(&bob_cfg, BOB.0, BOB.1);
    assert!(o.status.success(), "docker login bob: {}", said(&o));
    let o = run_fails(&mut as_(&bob_cfg, &["push", &by_bob]));
    assert_not_allowed(&o, "bob pushes to team-a");
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}

// ---------------------------------------------------------------------------------------
// podman

/// podman with `--creds` (no login): alice pushes to team-a; bob pulls it into a fresh
/// store but may not push; a wrong password is refused; with no credentials at all,
/// public/ pulls and team-a does not.
#[test]
fn podman_push_and_pull_with_credentials() {
    let name = "podman_push_and_pull_with_credentials";
    if !require(name, &["podman", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let certs = server.cert_dir();
    let certs = p(&certs);
    let host = server.host.as_str();
    let work = lowercase_tempdir();
    let alice = format!("{}:{}", ALICE.0, ALICE.1);
    let bob = format!("{}:{}", BOB.0, BOB.1);
    let wrong = format!("alice:{WRONG}");

    let pm = Podman::new();
    let img = Image::busybox("amd64", "podman token");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    let o = run(&mut pm.cmd(&["pull", "-q", &format!("oci:{}:v1", p(&src))]));
    let id = stdout(&o).trim().to_string();
    let team = format!("{host}/team-a/app:v1");
    let public = format!("{host}/public/base:v1");
    let by_bob = format!("{host}/team-a/app:from-bob");
    for t in [&team, &public, &by_bob] {
        run(&mut pm.cmd(&["tag", &id, t]));
    }
    let push = |creds: &str, target: &str| {
        pm.cmd(&[
            "push",
            "--tls-verify=true",
            "--cert-dir",
            certs,
            "--creds",
            creds,
            target,
        ])
    };
    run(&mut push(&alice, &team));
    run(&mut push(&alice, &public));
    let o = run_fails(&mut push(&bob, &by_bob));
    assert_not_allowed(&o, "bob pushes to team-a");
    let o = run_fails(&mut push(&wrong, &team));
    assert_auth_error(&o, "push with a wrong password");

    let pull = |pm: &Podman, creds: Option<&str>, target: &str| {
        let mut args = vec!["pull", "--tls-verify=true", "--cert-dir", certs];
        if let Some(c) = creds {
            args.extend_from_slice(&["--creds", c]);
        }
        args.push(target);
        pm.cmd(&args)
    };
    let pm_bob = Podman::new();
    run(&mut pull(&pm_bob, Some(&bob), &team));
    assert_eq!(
        format!("sha256:{}", pm_bob.inspect(&team, "{{.Id}}")),
        img.id()
    );

    // No credentials: public/ yes (anonymous token), team-a no.
    let pm_anon = Podman::new();
    let o = exec(&mut pull(&pm_anon, None, &public));
    assert!(
        o.status.success(),
        "podman could not pull public/base anonymously: {}",
        said(&o)
    );
    assert_eq!(
        format!("sha256:{}", pm_anon.inspect(&public, "{{.Id}}")),
        img.id()
    );
    assert!(
        !requests_by(&server, "anonymous", "/v2/public/base/").is_empty(),
        "public/base was read with an anonymous token"
    );
    let o = run_fails(&mut pull(&pm_anon, None, &team));
    assert_auth_error(&o, "anonymous pull of team-a");
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}

/// `podman login`: right passwords are accepted and stored, a wrong one refused (nothing
/// stored); alice pushes and bob pulls with what login stored.
#[test]
fn podman_login() {
    let name = "podman_login";
    if !require(name, &["podman", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let certs = server.cert_dir();
    let certs = p(&certs);
    let host = server.host.as_str();
    let work = lowercase_tempdir();
    let alice_auth = work.path().join("alice.json");
    let bob_auth = work.path().join("bob.json");
    let wrong_auth = work.path().join("wrong.json");
    let pm = Podman::new();
    let login = |authfile: &Path, user: &str, password: &str| {
        let mut c = pm.cmd(&[
            "login",
            "--tls-verify=true",
            "--cert-dir",
            certs,
            "--authfile",
            p(authfile),
            "-u",
            user,
            "--password-stdin",
            host,
        ]);
        exec_input(&mut c, &format!("{password}\n"))
    };
    let o = login(&wrong_auth, ALICE.0, WRONG);
    assert!(!o.status.success(), "podman login with a wrong password");
    assert_auth_error(&o, "podman login with a wrong password");
    assert!(!wrong_auth.exists(), "a failed login stores nothing");
    let o = login(&alice_auth, ALICE.0, ALICE.1);
    assert!(
        o.status.success(),
        "podman login alice: {}\nholdfast answered: {}",
        said(&o),
        http::access_summary(&server.log_plain())
    );
    let o = login(&bob_auth, BOB.0, BOB.1);
    assert!(o.status.success(), "podman login bob: {}", said(&o));

    let img = Image::busybox("amd64", "podman token login");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    let o = run(&mut pm.cmd(&["pull", "-q", &format!("oci:{}:v1", p(&src))]));
    let id = stdout(&o).trim().to_string();
    let team = format!("{host}/team-a/app:v1");
    run(&mut pm.cmd(&["tag", &id, &team]));
    run(&mut pm.cmd(&[
        "push",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--authfile",
        p(&alice_auth),
        &team,
    ]));
    let pm_bob = Podman::new();
    run(&mut pm_bob.cmd(&[
        "pull",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--authfile",
        p(&bob_auth),
        &team,
    ]));
    assert_eq!(
        format!("sha256:{}", pm_bob.inspect(&team, "{{.Id}}")),
        img.id()
    );
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}

// ---------------------------------------------------------------------------------------
// skopeo

fn skopeo(authfile: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    // Never the machine's own credentials.
    c.env("REGISTRY_AUTH_FILE", authfile).args(args);
    c
}

/// skopeo with `--dest-creds`/`--creds` (no login): alice copies to team-a and public/;
/// bob inspects team-a but may neither copy to it nor delete in it; a wrong password is
/// refused; with no credentials, public/ is inspected and copied, team-a is not.
#[test]
fn skopeo_copy_and_inspect_with_credentials() {
    let name = "skopeo_copy_and_inspect_with_credentials";
    if !require(name, &["skopeo", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let work = tempfile::tempdir().unwrap();
    let certs = server.cert_dir();
    let certs = p(&certs);
    let host = server.host.as_str();
    let none = work.path().join("none.json");
    write_authfile(&none, host, None);
    let sk = |args: &[&str]| skopeo(&none, args);

    let img = Image::busybox("amd64", "skopeo token");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    let layout = format!("oci:{}:v1", p(&src));
    let team = format!("docker://{host}/team-a/app");
    let public = format!("docker://{host}/public/base");
    let alice = format!("{}:{}", ALICE.0, ALICE.1);
    let bob = format!("{}:{}", BOB.0, BOB.1);
    let wrong = format!("alice:{WRONG}");
    let copy_to = |creds: &str, dest: &str| {
        sk(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            certs,
            "--dest-creds",
            creds,
            &layout,
            dest,
        ])
    };
    let inspect = |creds: &[&str], reference: &str| {
        let mut args = vec!["inspect", "--raw", "--tls-verify=true", "--cert-dir", certs];
        args.extend_from_slice(creds);
        args.push(reference);
        sk(&args)
    };

    run(&mut copy_to(&alice, &format!("{team}:v1")));
    run(&mut copy_to(&alice, &format!("{public}:v1")));
    let o = run_fails(&mut copy_to(&bob, &format!("{team}:from-bob")));
    assert_not_allowed(&o, "bob copies to team-a");
    let o = run_fails(&mut copy_to(&wrong, &format!("{team}:v2")));
    assert_auth_error(&o, "copy with a wrong password");
    let o = run_fails(&mut inspect(&["--creds", &wrong], &format!("{team}:v1")));
    assert_auth_error(&o, "inspect with a wrong password");

    let raw = run(&mut inspect(&["--creds", &bob], &format!("{team}:v1")));
    assert_eq!(raw.stdout, img.manifest.bytes, "bob reads alice's image");
    let o = run_fails(&mut sk(&[
        "delete",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--creds",
        &bob,
        &format!("{team}:v1"),
    ]));
    assert_not_allowed(&o, "bob deletes in team-a");
    let still = run(&mut inspect(&["--creds", &bob], &format!("{team}:v1")));
    assert_eq!(
        still.stdout, img.manifest.bytes,
        "bob's delete changed nothing"
    );

    // No credentials: public/ inspected and copied, team-a refused.
    let raw = exec(&mut inspect(&["--no-creds"], &format!("{public}:v1")));
    let back = work.path().join("back");
    let copy = exec(&mut sk(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=true",
        "--src-cert-dir",
        certs,
        "--src-no-creds",
        &format!("{public}:v1"),
        &format!("oci:{}:v1", p(&back)),
    ]));
    assert!(
        raw.status.success() && copy.status.success(),
        "skopeo could not read public/base anonymously.\ninspect: {}\ncopy: {}",
        said(&raw),
        said(&copy)
    );
    assert_eq!(raw.stdout, img.manifest.bytes);
    assert_eq!(oci::layout_refs(&back)["v1"]["digest"], img.digest());
    let o = run_fails(&mut inspect(&["--no-creds"], &format!("{team}:v1")));
    assert_auth_error(&o, "anonymous inspect of team-a");

    // alice deletes (her token is asked for with delete).
    run(&mut sk(&[
        "delete",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--creds",
        &alice,
        &format!("{team}:v1"),
    ]));
    let o = run_fails(&mut inspect(&["--creds", &alice], &format!("{team}:v1")));
    let s = said(&o);
    assert!(
        s.contains("manifest unknown") || s.contains("not found"),
        "deleted: {s}"
    );
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}

/// `skopeo login`: the right password is accepted and stored, a wrong one refused; the
/// stored login then copies to team-a.
#[test]
fn skopeo_login() {
    let name = "skopeo_login";
    if !require(name, &["skopeo", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let work = tempfile::tempdir().unwrap();
    let certs = server.cert_dir();
    let certs = p(&certs);
    let host = server.host.as_str();
    let none = work.path().join("none.json");
    write_authfile(&none, host, None);
    let alice_auth = work.path().join("alice.json");
    let wrong_auth = work.path().join("wrong.json");
    let login = |authfile: &Path, password: &str| {
        let mut c = skopeo(
            &none,
            &[
                "login",
                "--tls-verify=true",
                "--cert-dir",
                certs,
                "--authfile",
                p(authfile),
                "-u",
                "alice",
                "--password-stdin",
                host,
            ],
        );
        exec_input(&mut c, &format!("{password}\n"))
    };
    let o = login(&wrong_auth, WRONG);
    assert!(!o.status.success(), "skopeo login with a wrong password");
    assert_auth_error(&o, "skopeo login with a wrong password");
    let o = login(&alice_auth, ALICE.1);
    assert!(
        o.status.success(),
        "skopeo login alice: {}\nholdfast answered: {}",
        said(&o),
        http::access_summary(&server.log_plain())
    );
    let stored = std::fs::read_to_string(&alice_auth).unwrap();
    assert!(
        stored.contains(host),
        "authfile names the registry: {stored}"
    );

    let img = Image::busybox("amd64", "skopeo token login");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    run(&mut skopeo(
        &none,
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            certs,
            "--dest-authfile",
            p(&alice_auth),
            &format!("oci:{}:v1", p(&src)),
            &format!("docker://{host}/team-a/app:v1"),
        ],
    ));
    assert_no_secrets(&server.log_plain(), &secrets());
    elapsed(name, t0);
}
