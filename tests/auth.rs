//! Users and access control, end to end against the real binary over TLS: Basic sign-in,
//! `[[access]]` rules for users, groups and anonymous callers, the catalog filter, mounts,
//! `allow_delete`, hot reload of the config and users files (and SIGHUP), throttling of
//! failed logins, the verification cache (counted in the log, not timed), secrets kept out
//! of the log, the first-run admin, and the `holdfast user` CLI. Users are always created
//! with the real CLI. Every test starts its own server.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

type Cred = (&'static str, &'static str);

// Distinctive passwords, so that finding one in the log cannot be a coincidence.
const ALICE: Cred = ("alice", "alice-Pw-7Rq2xLm9");
const BOB: Cred = ("bob", "bob-Pw-Zt4kN8wq1");
const DAVE: Cred = ("dave", "dave-Pw-Hc6yV3pe0");
const CAROL: Cred = ("carol", "carol-Pw-Ue5sJ1bd8");
const ROOT: Cred = ("root", "root-Pw-Mw9fG2ta6");
const WRONG: &str = "wrong-Pw-Xa8vB5nn3";

const REALM: &str = "holdfast-test";

/// The realm, and a throttle that never gets in the way of tests about something else.
fn auth_header() -> String {
    format!("[auth]\nrealm = \"{REALM}\"\n\n[auth.throttle]\nmax_failures = 100000\n\n")
}

/// An API client that sends Basic credentials on every request (as docker does), or none.
fn api_as(server: &TestServer, cred: Option<Cred>) -> Api {
    let mut builder = server.client_builder();
    if let Some((user, password)) = cred {
        let mut value =
            reqwest::header::HeaderValue::from_str(&basic_auth_value(user, password)).unwrap();
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    Api::with_client(server, builder.build().unwrap())
}

fn who(cred: Option<Cred>) -> &'static str {
    cred.map(|c| c.0).unwrap_or("anonymous")
}

/// Asserts a 401 that asks for Basic credentials in our realm.
async fn expect_challenge(resp: reqwest::Response) {
    let url = resp.url().to_string();
    let www = header(&resp, "www-authenticate");
    expect_error(resp, 401, &["UNAUTHORIZED"]).await;
    let www = www.unwrap_or_else(|| panic!("{url}: 401 without WWW-Authenticate"));
    assert!(
        www.starts_with(&format!("Basic realm=\"{REALM}\"")),
        "{url}: challenge {www:?}"
    );
}

async fn status(api: &Api, path: &str) -> u16 {
    api.get(path).await.status().as_u16()
}

/// Polls `check` every 50 ms until it holds; panics after `limit`. Returns how long it took.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if check().await {
            let took = t0.elapsed();
            eprintln!("{what}: after {:.0} ms", took.as_secs_f64() * 1000.0);
            return took;
        }
        if t0.elapsed() > limit {
            panic!("{what}: still not the case after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a file change may take to apply: the watcher debounces 200 ms.
const RELOAD_LIMIT: Duration = Duration::from_secs(3);

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until the log has more than `before` lines containing `needle`.
async fn wait_log(server: &TestServer, needle: &str, before: usize) {
    let t0 = Instant::now();
    while count(&server.log_plain(), needle) <= before {
        if t0.elapsed() > RELOAD_LIMIT {
            panic!(
                "no new log line with {needle:?} within {RELOAD_LIMIT:?}; log:\n{}",
                tail(&server.log_plain(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A pushed image and the digest of one of its blobs (the config).
#[derive(Clone)]
struct Img {
    repo: String,
    tag: String,
    manifest: Pushed,
    blob: String,
}

async fn push_img(api: &Api, repo: &str, tag: &str, seed: u64) -> Img {
    let manifest = api.push_image(repo, tag, OCI_MANIFEST, seed).await;
    let m: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    Img {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        blob: m["config"]["digest"].as_str().unwrap().to_owned(),
        manifest,
    }
}

// ---------------------------------------------------------------------------------------
// Pull, push and delete checks, each over every endpoint of its kind.

async fn pull_ok(api: &Api, img: &Img, w: &str) {
    eprintln!("{w} may pull {}", img.repo);
    let r = api.get_manifest(&img.repo, &img.tag).await;
    let body = expect_status(r, 200).await;
    assert_eq!(body, img.manifest.bytes, "{w}: manifest of {}", img.repo);
    let r = api
        .head(&format!(
            "/v2/{}/manifests/{}",
            img.repo, img.manifest.digest
        ))
        .await;
    expect_head(r, 200).await;
    api.get_blob(&img.repo, &img.blob).await;
    let r = api
        .head(&format!("/v2/{}/blobs/{}", img.repo, img.blob))
        .await;
    expect_head(r, 200).await;
    let r = api.get(&format!("/v2/{}/tags/list", img.repo)).await;
    let tags: Value = serde_json::from_slice(&expect_status(r, 200).await).unwrap();
    assert!(
        tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == img.tag.as_str()),
        "{w}: tags of {}: {tags}",
        img.repo
    );
}

/// A signed-in caller who may not pull gets the not-found answers (no challenge).
async fn pull_hidden(api: &Api, img: &Img, w: &str) {
    eprintln!("{w} may not pull {}", img.repo);
    let (repo, blob) = (&img.repo, &img.blob);
    for path in [
        format!("/v2/{repo}/manifests/{}", img.tag),
        format!("/v2/{repo}/manifests/{}", img.manifest.digest),
    ] {
        let r = api.get(&path).await;
        assert!(header(&r, "www-authenticate").is_none(), "{w} {path}");
        expect_error(r, 404, &["MANIFEST_UNKNOWN"]).await;
        expect_head(api.head(&path).await, 404).await;
    }
    let path = format!("/v2/{repo}/blobs/{blob}");
    expect_error(api.get(&path).await, 404, &["BLOB_UNKNOWN"]).await;
    expect_head(api.head(&path).await, 404).await;
    let r = api.get(&format!("/v2/{repo}/tags/list")).await;
    expect_error(r, 404, &["NAME_UNKNOWN"]).await;
}

/// A caller without credentials is asked to sign in, whatever it tries.
async fn anonymous_challenged(api: &Api, img: &Img) {
    eprintln!("anonymous is challenged on {}", img.repo);
    let (repo, blob) = (&img.repo, &img.blob);
    expect_challenge(api.get_manifest(repo, &img.tag).await).await;
    let r = api
        .head(&format!("/v2/{repo}/manifests/{}", img.manifest.digest))
        .await;
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate")
        .unwrap_or_default()
        .starts_with("Basic realm="));
    expect_challenge(api.get(&format!("/v2/{repo}/blobs/{blob}")).await).await;
    expect_challenge(api.get(&format!("/v2/{repo}/tags/list")).await).await;
}

async fn push_ok(api: &Api, repo: &str, seed: u64, w: &str) -> Img {
    eprintln!("{w} may push {repo}");
    push_img(api, repo, &format!("by-{w}-{seed}"), seed).await
}

/// Every way of pushing is refused: 403 DENIED when signed in, 401 when not.
async fn push_refused(api: &Api, img: &Img, signed_in: bool, w: &str) {
    eprintln!("{w} may not push {}", img.repo);
    let repo = &img.repo;
    let check = |r: reqwest::Response| async move {
        if signed_in {
            expect_error(r, 403, &["DENIED"]).await;
        } else {
            expect_challenge(r).await;
        }
    };
    // Upload session, monolithic upload, mount, manifest.
    let r = api
        .c
        .post(api.url(&format!("/v2/{repo}/blobs/uploads/")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    check(r).await;
    let data = format!("pushed by {w}").into_bytes();
    let r = api
        .c
        .post(api.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            digest_of(&data)
        )))
        .body(data)
        .send()
        .await
        .unwrap();
    check(r).await;
    let r = api
        .c
        .post(api.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={repo}",
            img.blob
        )))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    check(r).await;
    let r = api
        .put_manifest(repo, "not-allowed", OCI_MANIFEST, &img.manifest.bytes)
        .await;
    check(r).await;
}

async fn delete_ok(api: &Api, img: &Img, w: &str) {
    eprintln!("{w} may delete in {}", img.repo);
    let path = format!("/v2/{}/manifests/{}", img.repo, img.manifest.digest);
    expect_status(api.delete(&path).await, 202).await;
    expect_error(api.get(&path).await, 404, &["MANIFEST_UNKNOWN"]).await;
    let path = format!("/v2/{}/blobs/{}", img.repo, img.blob);
    expect_status(api.delete(&path).await, 202).await;
    expect_error(api.get(&path).await, 404, &["BLOB_UNKNOWN"]).await;
}

/// Deleting by tag, by digest and a blob are all refused; the content stays.
async fn delete_refused(api: &Api, owner: &Api, img: &Img, signed_in: bool, w: &str) {
    eprintln!("{w} may not delete in {}", img.repo);
    for path in [
        format!("/v2/{}/manifests/{}", img.repo, img.tag),
        format!("/v2/{}/manifests/{}", img.repo, img.manifest.digest),
        format!("/v2/{}/blobs/{}", img.repo, img.blob),
    ] {
        let r = api.delete(&path).await;
        if signed_in {
            expect_error(r, 403, &["DENIED"]).await;
        } else {
            expect_challenge(r).await;
        }
    }
    let r = owner.get_manifest(&img.repo, &img.tag).await;
    assert_eq!(expect_status(r, 200).await, img.manifest.bytes);
    owner.get_blob(&img.repo, &img.blob).await;
}

// ---------------------------------------------------------------------------------------
// The shared rule set: two users, a group, an anonymous namespace, an admin.

fn rules_config() -> String {
    format!(
        "{}\
[[access]]
repository = \"team-a/**\"
groups = {{ \"team-a\" = [\"pull\", \"push\", \"delete\"] }}
users = {{ \"bob\" = [\"pull\"] }}

[[access]]
repository = \"public/**\"
anonymous = [\"pull\"]
groups = {{ \"team-a\" = [\"push\"] }}

[[access]]
repository = \"bob/*\"
users = {{ \"bob\" = [\"push\"] }}
",
        auth_header()
    )
}

struct Seeded {
    server: TestServer,
    team: Img,
    nested: Img,
    public: Img,
    secret: Img,
    bobs: Img,
}

/// Users alice (group team-a), bob, dave (no grants) and root (admin), added with the CLI
/// before the first start; root pushes one image into each namespace.
async fn rules_server() -> Seeded {
    let mut server = TestServer::configure(&rules_config());
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.add_user(DAVE.0, DAVE.1, &[], false);
    server.add_user(ROOT.0, ROOT.1, &[], true);
    server.spawn();
    let root = api_as(&server, Some(ROOT));
    let team = push_img(&root, "team-a/app", "v1", 1).await;
    let nested = push_img(&root, "team-a/deep/nested/app", "v1", 2).await;
    let public = push_img(&root, "public/base", "v1", 3).await;
    let secret = push_img(&root, "secret/x", "v1", 4).await;
    let bobs = push_img(&root, "bob/tool", "v1", 5).await;
    Seeded {
        server,
        team,
        nested,
        public,
        secret,
        bobs,
    }
}

fn all_creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ALICE,
        BOB,
        DAVE,
        CAROL,
        ROOT,
        ("alice", WRONG),
        ("bob", WRONG),
    ]
}

// ---------------------------------------------------------------------------------------
// Signing in

/// `GET /v2/`: no credentials → 401 with a Basic challenge; a wrong password, an unknown
/// user, a malformed header or another scheme → 401; the right password → 200.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_on_the_base_endpoint() {
    let mut server = TestServer::configure(&rules_config());
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.spawn();
    let anon = api_as(&server, None);

    let r = anon.get("/v2/").await;
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0"),
        "the API version header comes with the 401 too (docker checks it)"
    );
    expect_challenge(r).await;
    let r = anon.head("/v2/").await;
    assert_eq!(r.status(), 401, "HEAD /v2/ anonymous");

    let wrong = api_as(&server, Some(("alice", WRONG)));
    expect_challenge(wrong.get("/v2/").await).await;
    let unknown = api_as(&server, Some(("nobody", ALICE.1)));
    expect_challenge(unknown.get("/v2/").await).await;
    // The same answer for an unknown user as for a wrong password.
    let a = wrong.get("/v2/").await.text().await.unwrap();
    let b = unknown.get("/v2/").await.text().await.unwrap();
    assert_eq!(a, b, "unknown user and wrong password look the same");
    let upper = api_as(&server, Some(("ALICE", ALICE.1)));
    expect_challenge(upper.get("/v2/").await).await;

    for bad in [
        "Basic",
        "Basic !!!",
        "Basic bm9jb2xvbg==",
        "Bearer abc.def",
        "Digest x",
    ] {
        let r = anon
            .c
            .get(anon.url("/v2/"))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "Authorization: {bad}");
        assert!(
            header(&r, "www-authenticate").is_some(),
            "Authorization: {bad}: 401 without challenge"
        );
    }

    let alice = api_as(&server, Some(ALICE));
    let r = alice.get("/v2/").await;
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    expect_status(r, 200).await;
    expect_head(alice.head("/v2/").await, 200).await;
    // reqwest's own basic_auth, per request.
    let r = anon
        .c
        .get(anon.url("/v2/"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    expect_status(r, 200).await;
    assert_no_secrets(&server.log_plain(), &all_creds());
}

// ---------------------------------------------------------------------------------------
// Rules

/// Pull, push and delete across two users, a group, an anonymous namespace and an admin.
#[tokio::test(flavor = "multi_thread")]
async fn rules_for_users_groups_anonymous_and_admin() {
    let s = rules_server().await;
    let server = &s.server;
    let alice = api_as(server, Some(ALICE));
    let bob = api_as(server, Some(BOB));
    let dave = api_as(server, Some(DAVE));
    let root = api_as(server, Some(ROOT));
    let anon = api_as(server, None);

    // alice, group team-a: everything in team-a/** (any depth), push (so pull) in
    // public/**, nothing in secret/ or bob/.
    pull_ok(&alice, &s.team, "alice").await;
    pull_ok(&alice, &s.nested, "alice").await;
    pull_ok(&alice, &s.public, "alice").await;
    pull_hidden(&alice, &s.secret, "alice").await;
    pull_hidden(&alice, &s.bobs, "alice").await;
    let mine = push_ok(&alice, "team-a/app", 10, "alice").await;
    push_ok(&alice, "team-a/new/deeper", 11, "alice").await;
    push_ok(&alice, "public/from-alice", 12, "alice").await;
    push_refused(&alice, &s.secret, true, "alice").await;
    push_refused(&alice, &s.bobs, true, "alice").await;
    delete_refused(&alice, &root, &s.public, true, "alice").await;
    delete_refused(&alice, &root, &s.secret, true, "alice").await;
    delete_ok(&alice, &mine, "alice").await;

    // bob: pull in team-a/**, push (so pull) in bob/* (one level), no delete anywhere.
    pull_ok(&bob, &s.team, "bob").await;
    pull_ok(&bob, &s.nested, "bob").await;
    pull_ok(&bob, &s.public, "bob").await;
    pull_ok(&bob, &s.bobs, "bob").await;
    pull_hidden(&bob, &s.secret, "bob").await;
    push_refused(&bob, &s.team, true, "bob").await;
    push_refused(&bob, &s.public, true, "bob").await;
    push_refused(&bob, &s.secret, true, "bob").await;
    let bobs_own = push_ok(&bob, "bob/other", 20, "bob").await;
    pull_ok(&bob, &bobs_own, "bob").await;
    let deeper = Img {
        repo: "bob/a/b".into(),
        ..s.bobs.clone()
    };
    push_refused(&bob, &deeper, true, "bob (bob/* is one level)").await;
    delete_refused(&bob, &root, &s.team, true, "bob").await;
    delete_refused(&bob, &root, &s.bobs, true, "bob").await;

    // A signed-in user cannot use someone else's upload session without push there.
    let upload = alice.start_upload("team-a/app").await;
    let r = bob.patch_chunk(&upload, 0, b"bob was here").await;
    expect_error(r, 403, &["DENIED"]).await;
    let r = bob
        .put_upload(&upload, &digest_of(b"x"), Some((0, b"x")))
        .await;
    expect_error(r, 403, &["DENIED"]).await;
    let r = alice.patch_chunk(&upload, 0, b"alice's data").await;
    expect_status(r, 202).await;

    // dave: signed in, no grants of his own; anonymous grants apply to him too.
    expect_status(dave.get("/v2/").await, 200).await;
    pull_ok(&dave, &s.public, "dave").await;
    pull_hidden(&dave, &s.team, "dave").await;
    push_refused(&dave, &s.public, true, "dave").await;
    delete_refused(&dave, &root, &s.public, true, "dave").await;

    // Anonymous: pull public/** with no credentials at all, a challenge for the rest.
    pull_ok(&anon, &s.public, "anonymous").await;
    anonymous_challenged(&anon, &s.team).await;
    anonymous_challenged(&anon, &s.secret).await;
    push_refused(&anon, &s.public, false, "anonymous").await;
    push_refused(&anon, &s.team, false, "anonymous").await;
    delete_refused(&anon, &root, &s.public, false, "anonymous").await;

    // root (admin): everything everywhere.
    pull_ok(&root, &s.secret, "root").await;
    pull_ok(&root, &s.bobs, "root").await;
    push_ok(&root, "anywhere/at/all", 30, "root").await;
    delete_ok(&root, &s.secret, "root").await;
    delete_ok(&root, &s.bobs, "root").await;

    // The access log names who did what; the audit line of a delete carries the user.
    let log = server.log_plain();
    assert!(
        log.lines()
            .any(|l| l.contains("user=\"root\"") && l.contains("audit") && l.contains("delete")),
        "an audit line for root's delete with user=\"root\":\n{}",
        tail(&log, 30)
    );
    assert_no_secrets(&log, &all_creds());
}

/// A signed-in caller who may not pull gets exactly the answers of a repository that does
/// not exist (here: one bob could pull, under team-a/), so names do not leak.
#[tokio::test(flavor = "multi_thread")]
async fn denied_pull_looks_like_a_missing_repository() {
    let s = rules_server().await;
    let bob = api_as(&s.server, Some(BOB));
    let denied = &s.secret;
    let missing = "team-a/does-not-exist";
    let paths = |repo: &str| {
        vec![
            ("GET", format!("/v2/{repo}/manifests/{}", denied.tag)),
            (
                "GET",
                format!("/v2/{repo}/manifests/{}", denied.manifest.digest),
            ),
            ("HEAD", format!("/v2/{repo}/manifests/{}", denied.tag)),
            ("GET", format!("/v2/{repo}/blobs/{}", denied.blob)),
            ("HEAD", format!("/v2/{repo}/blobs/{}", denied.blob)),
            ("GET", format!("/v2/{repo}/tags/list")),
            (
                "GET",
                format!("/v2/{repo}/referrers/{}", denied.manifest.digest),
            ),
        ]
    };
    let mut differences = Vec::new();
    for ((method, a), (_, b)) in paths(&denied.repo).into_iter().zip(paths(missing)) {
        let send = |path: String| {
            let bob = bob.clone();
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            async move {
                let r = bob.c.request(method, bob.url(&path)).send().await.unwrap();
                let status = r.status().as_u16();
                let ct = header(&r, "content-type").unwrap_or_default();
                let www = header(&r, "www-authenticate");
                let body = r.text().await.unwrap();
                (status, ct, www, body)
            }
        };
        let got = send(a.clone()).await;
        let want = send(b.clone()).await;
        eprintln!("{method} {a} -> {} {}", got.0, got.3);
        eprintln!("{method} {b} -> {} {}", want.0, want.3);
        assert!(got.2.is_none(), "{method} {a}: no challenge when signed in");
        if got != want {
            differences.push(format!(
                "{method} {a} (denied) -> {} {:?} {}\n{method} {b} (missing) -> {} {:?} {}",
                got.0, got.1, got.3, want.0, want.1, want.3
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "bob's answers for a repository he may not pull differ from a missing one:\n{}",
        differences.join("\n\n")
    );
}

/// `_catalog` lists only what the caller may pull, also across pages.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_only_what_the_caller_may_pull() {
    let s = rules_server().await;
    let server = &s.server;
    async fn catalog(api: &Api, n: Option<usize>) -> Vec<String> {
        let mut names = Vec::new();
        let mut path = match n {
            Some(n) => format!("/v2/_catalog?n={n}"),
            None => "/v2/_catalog".to_owned(),
        };
        for _ in 0..50 {
            let r = api.get(&path).await;
            let next = link_next(r.headers());
            let v: Value = serde_json::from_slice(&expect_status(r, 200).await).unwrap();
            names.extend(
                v["repositories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_owned()),
            );
            match next {
                Some(next) => path = next,
                None => return names,
            }
        }
        panic!("catalog pagination does not end");
    }
    let all = [
        "bob/tool",
        "public/base",
        "secret/x",
        "team-a/app",
        "team-a/deep/nested/app",
    ];
    let cases: [(Option<Cred>, Vec<&str>); 5] = [
        (None, vec!["public/base"]),
        (Some(DAVE), vec!["public/base"]),
        (
            Some(BOB),
            vec![
                "bob/tool",
                "public/base",
                "team-a/app",
                "team-a/deep/nested/app",
            ],
        ),
        (
            Some(ALICE),
            vec!["public/base", "team-a/app", "team-a/deep/nested/app"],
        ),
        (Some(ROOT), all.to_vec()),
    ];
    for (cred, want) in cases {
        let api = api_as(server, cred);
        for n in [None, Some(1), Some(2)] {
            let got = catalog(&api, n).await;
            assert_eq!(got, want, "catalog of {} with n={n:?}", who(cred));
        }
    }
    // A wrong password is not "anonymous": it is refused.
    let wrong = api_as(server, Some(("bob", WRONG)));
    expect_challenge(wrong.get("/v2/_catalog").await).await;
    assert_no_secrets(&server.log_plain(), &all_creds());
}

/// Mounting needs pull on `from`: without it the caller gets an ordinary upload session
/// (202), so blobs it cannot read are neither copied nor revealed.
#[tokio::test(flavor = "multi_thread")]
async fn mount_needs_pull_on_the_source() {
    let s = rules_server().await;
    let server = &s.server;
    let alice = api_as(server, Some(ALICE));
    let bob = api_as(server, Some(BOB));
    let root = api_as(server, Some(ROOT));
    let anon = api_as(server, None);

    async fn mount(api: &Api, to: &str, digest: &str, from: &str) -> reqwest::Response {
        api.c
            .post(api.url(&format!(
                "/v2/{to}/blobs/uploads/?mount={digest}&from={from}"
            )))
            .header("content-length", "0")
            .send()
            .await
            .unwrap()
    }
    async fn expect_upload_session(r: reqwest::Response, to: &str) {
        let loc = header(&r, "location").unwrap_or_default();
        expect_status(r, 202).await;
        assert!(
            loc.contains(&format!("/v2/{to}/blobs/uploads/")),
            "a 202 mount answer is an upload session in {to}: {loc}"
        );
    }
    async fn expect_mounted(r: reqwest::Response, to: &str, digest: &str) {
        let loc = header(&r, "location").unwrap_or_default();
        let dcd = header(&r, "docker-content-digest");
        expect_status(r, 201).await;
        assert_eq!(loc, format!("/v2/{to}/blobs/{digest}"));
        assert_eq!(dcd.as_deref(), Some(digest));
    }

    // alice may push public/**, pull team-a/** but not secret/.
    let r = mount(&alice, "public/m", &s.secret.blob, "secret/x").await;
    expect_upload_session(r, "public/m").await;
    let head = root
        .head(&format!("/v2/public/m/blobs/{}", s.secret.blob))
        .await;
    expect_head(head, 404).await;
    let r = mount(&alice, "public/m", &s.team.blob, "team-a/app").await;
    expect_mounted(r, "public/m", &s.team.blob).await;
    alice.get_blob("public/m", &s.team.blob).await;

    // bob may push bob/*, pull team-a/** and bob/*.
    let r = mount(&bob, "bob/m", &s.secret.blob, "secret/x").await;
    expect_upload_session(r, "bob/m").await;
    let head = root
        .head(&format!("/v2/bob/m/blobs/{}", s.secret.blob))
        .await;
    expect_head(head, 404).await;
    // A digest that is not there at all looks the same as one he may not read.
    let absent = digest_of(b"not stored anywhere");
    let r = mount(&bob, "bob/m", &absent, "secret/x").await;
    expect_upload_session(r, "bob/m").await;
    let r = mount(&bob, "bob/m", &s.nested.blob, "team-a/deep/nested/app").await;
    expect_mounted(r, "bob/m", &s.nested.blob).await;
    bob.get_blob("bob/m", &s.nested.blob).await;
    // Into a repository bob may not push: denied, whatever the source.
    let r = mount(&bob, "team-a/app", &s.bobs.blob, "bob/tool").await;
    expect_error(r, 403, &["DENIED"]).await;

    // Anonymous: asked to sign in.
    let r = mount(&anon, "public/m", &s.public.blob, "public/base").await;
    expect_challenge(r).await;
    assert_no_secrets(&server.log_plain(), &all_creds());
}

/// `allow_delete = false`: every delete answers 405 UNSUPPORTED, for admins and group
/// members with delete grants alike, and nothing is deleted; cancelling an upload (not a
/// delete of content) still works.
#[tokio::test(flavor = "multi_thread")]
async fn deletes_disabled_answer_405_everywhere() {
    let extra = format!(
        "[auth]
realm = \"{REALM}\"
allow_delete = false

[auth.throttle]
max_failures = 100000

[[access]]
repository = \"team-a/**\"
groups = {{ \"team-a\" = [\"pull\", \"push\", \"delete\"] }}
users = {{ \"bob\" = [\"pull\"] }}
anonymous = [\"pull\"]
"
    );
    let mut server = TestServer::configure(&extra);
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.add_user(ROOT.0, ROOT.1, &[], true);
    server.spawn();
    let root = api_as(&server, Some(ROOT));
    let img = push_img(&root, "team-a/app", "v1", 1).await;
    for cred in [Some(ROOT), Some(ALICE), Some(BOB), None] {
        let api = api_as(&server, cred);
        for path in [
            format!("/v2/team-a/app/manifests/{}", img.tag),
            format!("/v2/team-a/app/manifests/{}", img.manifest.digest),
            format!("/v2/team-a/app/blobs/{}", img.blob),
            // Also where nothing exists.
            "/v2/team-a/none/manifests/latest".to_owned(),
        ] {
            let r = api.delete(&path).await;
            eprintln!("DELETE {path} as {}: {}", who(cred), r.status());
            expect_error(r, 405, &["UNSUPPORTED"]).await;
        }
    }
    pull_ok(&root, &img, "root").await;
    let alice = api_as(&server, Some(ALICE));
    let upload = alice.start_upload("team-a/app").await;
    let r = alice.c.delete(upload.clone()).send().await.unwrap();
    expect_status(r, 204).await;
    assert_no_secrets(&server.log_plain(), &all_creds());
}

/// `push_implies_pull = false`: a drop box where carol may push but not read back; the
/// same grant without it implies pull.
#[tokio::test(flavor = "multi_thread")]
async fn push_without_implied_pull() {
    let extra = format!(
        "{}\
[[access]]
repository = \"drop/**\"
users = {{ \"carol\" = [\"push\"] }}
push_implies_pull = false

[[access]]
repository = \"both/**\"
users = {{ \"carol\" = [\"push\"] }}
",
        auth_header()
    );
    let mut server = TestServer::configure(&extra);
    server.add_user(CAROL.0, CAROL.1, &[], false);
    server.add_user(ROOT.0, ROOT.1, &[], true);
    server.spawn();
    let carol = api_as(&server, Some(CAROL));
    let root = api_as(&server, Some(ROOT));

    let dropped = push_ok(&carol, "drop/box", 1, "carol").await;
    pull_hidden(&carol, &dropped, "carol").await;
    pull_ok(&root, &dropped, "root").await;
    // Mounting out of the drop box needs pull there.
    let r = carol
        .c
        .post(carol.url(&format!(
            "/v2/both/x/blobs/uploads/?mount={}&from=drop/box",
            dropped.blob
        )))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    expect_status(r, 202).await;

    let both = push_ok(&carol, "both/x", 2, "carol").await;
    pull_ok(&carol, &both, "carol").await;
    delete_refused(&carol, &root, &both, true, "carol").await;

    let r = carol.get("/v2/_catalog").await;
    let v: Value = serde_json::from_slice(&expect_status(r, 200).await).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["both/x"]));
    assert_no_secrets(&server.log_plain(), &all_creds());
}

// ---------------------------------------------------------------------------------------
// Hot reload

/// `holdfast user passwd|remove|add` on a running server apply to the next requests, even
/// though successful logins are cached.
#[tokio::test(flavor = "multi_thread")]
async fn user_cli_edits_apply_to_a_running_server() {
    let new_alice = "alice-New-Pw-4Gd7sQ";
    let mut server = TestServer::configure(&rules_config());
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    let old = api_as(&server, Some(ALICE));
    let new = api_as(&server, Some(("alice", new_alice)));
    let bob = api_as(&server, Some(BOB));
    let dave = api_as(&server, Some(DAVE));
    assert_eq!(status(&old, "/v2/").await, 200);
    assert_eq!(status(&old, "/v2/").await, 200, "cached");
    assert_eq!(status(&new, "/v2/").await, 401);
    assert_eq!(status(&bob, "/v2/").await, 200);
    assert_eq!(status(&dave, "/v2/").await, 401);

    // A new password: the old one stops working, the new one works.
    let out = server.user_cmd(
        &["passwd", "alice", "--password-stdin"],
        Some(&format!("{new_alice}\n")),
    );
    assert!(out.status.success(), "{out:?}");
    eventually(
        "old password refused after passwd",
        RELOAD_LIMIT,
        || async { status(&old, "/v2/").await == 401 },
    )
    .await;
    expect_challenge(old.get("/v2/").await).await;
    assert_eq!(status(&new, "/v2/").await, 200);
    assert_eq!(
        status(&old, "/v2/").await,
        401,
        "the old password stays refused"
    );

    // Removing bob ends his access though his login was cached moments ago.
    assert_eq!(status(&bob, "/v2/").await, 200);
    let out = server.user_cmd(&["remove", "bob"], None);
    assert!(out.status.success(), "{out:?}");
    eventually("removed user refused", RELOAD_LIMIT, || async {
        status(&bob, "/v2/").await == 401
    })
    .await;
    expect_challenge(bob.get("/v2/team-a/app/tags/list").await).await;

    // A user added while running can sign in.
    server.add_user(DAVE.0, DAVE.1, &[], false);
    eventually("added user accepted", RELOAD_LIMIT, || async {
        status(&dave, "/v2/").await == 200
    })
    .await;
    let log = server.log_plain();
    assert!(
        count(&log, "reloaded users and access rules") >= 3,
        "{}",
        tail(&log, 30)
    );
    let mut creds = all_creds();
    creds.push(("alice", new_alice));
    assert_no_secrets(&log, &creds);
}

/// Rewriting the main config (rename over it, like an editor) tightens rules for the next
/// requests; a broken config or users file keeps the last good state and logs the error
/// with its line; SIGHUP reloads an edit the watcher did not see.
#[tokio::test(flavor = "multi_thread")]
async fn config_edits_broken_files_and_sighup() {
    let mut server = TestServer::configure(&rules_config());
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    let alice = api_as(&server, Some(ALICE));
    let bob = api_as(&server, Some(BOB));
    let img = push_img(&alice, "team-a/app", "v1", 1).await;
    let manifest = format!("/v2/team-a/app/manifests/{}", img.tag);
    let upload_start = "/v2/team-a/app/blobs/uploads/";
    assert_eq!(status(&bob, &manifest).await, 200);

    // Tighten: bob loses pull in team-a/**.
    let original = server.config_text();
    let bob_grant = "users = { \"bob\" = [\"pull\"] }\n";
    assert!(original.contains(bob_grant));
    let tightened = original.replacen(bob_grant, "", 1);
    server.replace_config(&tightened);
    eventually(
        "bob denied after the rule was removed",
        RELOAD_LIMIT,
        || async { status(&bob, &manifest).await == 404 },
    )
    .await;
    pull_hidden(&bob, &img, "bob").await;
    pull_ok(&alice, &img, "alice").await;

    // Break the config: the last good state keeps serving, the error names the line.
    let errors_before = count(&server.log_plain(), "config reload failed");
    let broken = format!("{tightened}\nthis line is not = = toml\n");
    let bad_line = broken.lines().count();
    server.replace_config(&broken);
    wait_log(&server, "config reload failed", errors_before).await;
    let log = server.log_plain();
    let error = log
        .lines()
        .rev()
        .find(|l| l.contains("config reload failed"))
        .unwrap();
    // The TOML error may span lines after the first; look at the error's whole text.
    let at = log.rfind("config reload failed").unwrap();
    let around = &log[log[..at].rfind("ERROR").unwrap_or(0)..];
    assert!(
        around.contains(&format!("line {bad_line}")),
        "the reload error names line {bad_line}: {error}\n{}",
        tail(&log, 20)
    );
    assert_eq!(status(&alice, &manifest).await, 200, "alice still served");
    assert_eq!(status(&bob, &manifest).await, 404, "bob still denied");
    assert_eq!(status(&api_as(&server, None), "/v2/").await, 401);

    // Fix it (restoring bob's grant).
    server.replace_config(&original);
    eventually("bob allowed again", RELOAD_LIMIT, || async {
        status(&bob, &manifest).await == 200
    })
    .await;

    // Break the users file: both users keep working, the error names the file and line.
    let users_text = std::fs::read_to_string(server.users_file()).unwrap();
    let failures_before = count(&server.log_plain(), "users or rules failed to load");
    let broken_users = format!("{users_text}\n[[users]]\nname = \"eve\"\nbogus = 1\n");
    let bad_user_line = broken_users.lines().count();
    let tmp = server.data_dir().join(".users.edit");
    std::fs::write(&tmp, &broken_users).unwrap();
    std::fs::rename(&tmp, server.users_file()).unwrap();
    wait_log(&server, "users or rules failed to load", failures_before).await;
    let log = server.log_plain();
    let error = log
        .lines()
        .rev()
        .find(|l| l.contains("users or rules failed to load"))
        .unwrap()
        .to_owned();
    assert!(
        error.contains(&format!("users.toml:{bad_user_line}:")) && error.contains("bogus"),
        "the error names the users file and line {bad_user_line}: {error}"
    );
    assert_eq!(status(&alice, &manifest).await, 200);
    assert_eq!(status(&bob, &manifest).await, 200);
    let reloads = count(&server.log_plain(), "reloaded users and access rules");
    std::fs::write(&tmp, &users_text).unwrap();
    std::fs::rename(&tmp, server.users_file()).unwrap();
    wait_log(&server, "reloaded users and access rules", reloads).await;

    // SIGHUP: edit the config through a hard link in another folder, which the watcher
    // (on the config's folder) does not see; only the signal applies it.
    let elsewhere = tempfile::tempdir().unwrap();
    let alias = elsewhere.path().join("alias.toml");
    std::fs::hard_link(&server.config_path, &alias).unwrap();
    // Whatever making the link may trigger is over before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reloads_before = count(&server.log_plain(), "reloaded users and access rules");
    let grant_push =
        original.replacen(bob_grant, "users = { \"bob\" = [\"pull\", \"push\"] }\n", 1);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&alias)
            .unwrap();
        f.write_all(grant_push.as_bytes()).unwrap();
    }
    assert_eq!(
        server.config_text(),
        grant_push,
        "the hard link edits the config"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&server.log_plain(), "reloaded users and access rules"),
        reloads_before,
        "the edit through the hard link was not seen by the watcher (test setup)"
    );
    let r = bob.c.post(bob.url(upload_start)).send().await.unwrap();
    expect_error(r, 403, &["DENIED"]).await;
    let sighups = count(&server.log_plain(), "SIGHUP");
    server.sighup();
    wait_log(&server, "SIGHUP", sighups).await;
    eventually("bob may push after SIGHUP", RELOAD_LIMIT, || async {
        let r = bob
            .c
            .post(bob.url(upload_start))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        r.status() == 202
    })
    .await;
    assert_no_secrets(&server.log_plain(), &all_creds());
}

/// A chunked upload started before a reload finishes after it, on the same connection.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_and_connections_survive_a_reload() {
    let mut server = TestServer::configure(&rules_config());
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.spawn();
    let alice = api_as(&server, Some(ALICE));
    let data = pseudo_random_bytes(7, 300_000);
    let digest = digest_of(&data);
    let (first, rest) = data.split_at(100_000);
    let (second, third) = rest.split_at(100_000);

    let upload = alice.start_upload("team-a/big").await;
    let r = alice.patch_chunk(&upload, 0, first).await;
    let loc = header(&r, "location").unwrap();
    expect_status(r, 202).await;
    let upload = alice.resolve(&loc);

    // Reload through the users file (CLI) and through SIGHUP.
    let reloads = count(&server.log_plain(), "reloaded users and access rules");
    server.add_user(DAVE.0, DAVE.1, &[], false);
    wait_log(&server, "reloaded users and access rules", reloads).await;
    let r = alice.patch_chunk(&upload, 100_000, second).await;
    let loc = header(&r, "location").unwrap();
    expect_status(r, 202).await;
    let upload = alice.resolve(&loc);
    let reloads = count(&server.log_plain(), "reloaded users and access rules");
    server.sighup();
    wait_log(&server, "reloaded users and access rules", reloads).await;
    let r = alice
        .put_upload(&upload, &digest, Some((200_000, third)))
        .await;
    expect_status(r, 201).await;
    assert_eq!(alice.get_blob_bytes("team-a/big", &digest).await, data);

    // Every request of the upload came over one connection (one client port).
    let log = server.log_plain();
    let peers: std::collections::BTreeSet<String> = log
        .lines()
        .filter(|l| l.contains("access") && l.contains("/v2/team-a/big/blobs/uploads/"))
        .filter_map(|l| {
            l.split(['{', ' ', '}'])
                .find_map(|w| w.strip_prefix("peer="))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        peers.len(),
        1,
        "the upload's requests used one connection across the reloads: {peers:?}"
    );
    assert_no_secrets(&log, &all_creds());
}

// ---------------------------------------------------------------------------------------
// Throttling

fn client_from(server: &TestServer, local: [u8; 4], cred: Cred) -> Api {
    let mut value =
        reqwest::header::HeaderValue::from_str(&basic_auth_value(cred.0, cred.1)).unwrap();
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let c = server
        .client_builder()
        .local_address(std::net::IpAddr::from(local))
        .default_headers(headers)
        .build()
        .unwrap();
    Api::with_client(server, c)
}

/// Retry-After of a 429 TOOMANYREQUESTS answer.
async fn expect_429(r: reqwest::Response, max_secs: u64) -> u64 {
    let retry = header(&r, "retry-after");
    expect_error(r, 429, &["TOOMANYREQUESTS"]).await;
    let retry: u64 = retry
        .expect("429 without Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=max_secs).contains(&retry),
        "Retry-After {retry} within 1..={max_secs}"
    );
    retry
}

/// After `max_failures` wrong passwords, attempts for that user name and from that address
/// get 429 with Retry-After (without a password check); after the backoff the right
/// password works. A client that signed in before from its own address is not locked out
/// by guesses from elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_throttled() {
    let extra = "[auth]\n\n[auth.throttle]\nmax_failures = 3\ninitial_backoff_ms = 500\nmax_backoff_seconds = 2\n";
    let mut server = TestServer::configure(extra);
    server.add_user(CAROL.0, CAROL.1, &[], false);
    server.add_user(DAVE.0, DAVE.1, &[], false);
    server.spawn();
    let attacker = client_from(&server, [127, 0, 0, 1], ("carol", WRONG));
    let carol_here = client_from(&server, [127, 0, 0, 1], CAROL);
    let carol_new_place = client_from(&server, [127, 0, 0, 2], CAROL);
    let carol_known_place = client_from(&server, [127, 0, 0, 3], CAROL);
    let dave_elsewhere = client_from(&server, [127, 0, 0, 4], DAVE);
    let dave_here = client_from(&server, [127, 0, 0, 1], DAVE);
    // carol signs in from .3 once: that pair is trusted from now on.
    assert_eq!(status(&carol_known_place, "/v2/").await, 200);

    // Three wrong passwords are checked and refused; the fourth attempt is throttled.
    for i in 0..3 {
        let r = attacker.get("/v2/").await;
        assert_eq!(r.status(), 401, "wrong password {i}");
    }
    let blocked_at = Instant::now();
    let r = attacker.get("/v2/").await;
    let retry = expect_429(r, 2).await;
    // While throttled, not even the right password is checked: by name (from a new
    // address) and by address (for another user). At once, well within the 500 ms block.
    let (a, b, c) = tokio::join!(
        carol_here.get("/v2/"),
        carol_new_place.get("/v2/"),
        dave_here.get("/v2/")
    );
    let took = blocked_at.elapsed();
    for (what, r) in [
        ("carol, right password, same address", a),
        ("carol, right password, new address", b),
        ("dave, right password, same address", c),
    ] {
        assert_eq!(
            r.status(),
            429,
            "{what} while throttled ({took:?} after the block began)"
        );
        expect_429(r, 2).await;
    }
    // Unaffected: another user elsewhere, and carol from where she signed in before.
    assert_eq!(status(&dave_elsewhere, "/v2/").await, 200);
    assert_eq!(status(&carol_known_place, "/v2/").await, 200);
    let log = server.log_plain();
    assert_eq!(
        count(&log, "bad_password"),
        3,
        "three passwords were checked"
    );
    assert!(count(&log, "throttled") >= 4, "{}", tail(&log, 20));

    // After waiting out the backoff, the right password works.
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 100)).await;
    assert_eq!(status(&carol_here, "/v2/").await, 200);

    // A concurrent burst of wrong passwords: only a few are checked, the rest get 429.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let a = attacker.clone();
        tasks.push(tokio::spawn(async move {
            let r = a.get("/v2/").await;
            let code = r.status().as_u16();
            let retry = header(&r, "retry-after");
            (code, retry)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    eprintln!("burst answers: {answers:?}");
    let refused = answers.iter().filter(|a| a.0 == 401).count();
    let throttled: Vec<u64> = answers
        .iter()
        .filter(|a| a.0 == 429)
        .map(|a| a.1.as_deref().unwrap_or("0").parse().unwrap_or(0))
        .collect();
    assert_eq!(refused + throttled.len(), answers.len(), "{answers:?}");
    // The address has 3 failures already: at most verify_concurrency (2) more are
    // checked before the next block applies.
    assert!(
        refused <= 2,
        "{refused} wrong passwords checked in the burst"
    );
    assert!(!throttled.is_empty(), "the burst is throttled");
    assert!(
        throttled.iter().all(|&s| (1..=2).contains(&s)),
        "Retry-After within max_backoff_seconds: {throttled:?}"
    );
    // Waiting out the (capped) backoff lets the right password in again.
    let t0 = Instant::now();
    loop {
        let r = carol_here.get("/v2/").await;
        if r.status() == 200 {
            break;
        }
        let retry = expect_429(r, 2).await;
        assert!(t0.elapsed() < Duration::from_secs(8), "still throttled");
        tokio::time::sleep(Duration::from_millis(retry * 1000 + 100)).await;
    }
    let mut creds = all_creds();
    creds.push(("carol", WRONG));
    assert_no_secrets(&server.log_plain(), &creds);
}

// ---------------------------------------------------------------------------------------
// Cost of authentication (counted, not timed)

/// 1,000 manifest GETs with Basic credentials on every request, 8 at a time: the log shows
/// only a few argon2 verifications ("password verified" on the audit target). With the
/// cache off, every request verifies: the count is a real observable.
#[tokio::test(flavor = "multi_thread")]
async fn basic_on_every_request_verifies_only_a_few_times() {
    let extra = format!(
        "{}[[access]]\nrepository = \"team-a/**\"\ngroups = {{ \"team-a\" = [\"pull\", \"push\"] }}\n",
        auth_header()
    );
    let mut server = TestServer::configure(&extra);
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(ROOT.0, ROOT.1, &[], true);
    server.spawn();
    // root pushes, so alice's first GET finds nothing cached.
    let img = push_img(&api_as(&server, Some(ROOT)), "team-a/app", "v1", 1).await;
    let verified_for = |log: &str, user: &str| {
        log.lines()
            .filter(|l| l.contains("password verified") && l.contains(&format!("\"{user}\"")))
            .count()
    };
    assert!(
        verified_for(&server.log_plain(), "root") >= 1,
        "a successful verification is logged"
    );
    assert_eq!(verified_for(&server.log_plain(), "alice"), 0);

    let workers = 8;
    let per_worker = 125;
    let mut tasks = Vec::new();
    for w in 0..workers {
        // A client per worker, as parallel docker pulls open several connections.
        let api = api_as(&server, Some(ALICE));
        let img = img.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let r = api.get_manifest(&img.repo, &img.tag).await;
                assert_eq!(r.status(), 200, "worker {w} request {i}");
                let body = r.bytes().await.unwrap();
                assert_eq!(body, img.manifest.bytes);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = server.log_plain();
    let verified = verified_for(&log, "alice");
    let failed = count(&log, "login failed");
    let gets = log
        .lines()
        .filter(|l| l.contains("access") && l.contains("method=GET") && l.contains("status=200"))
        .filter(|l| l.contains("/v2/team-a/app/manifests/v1"))
        .count();
    eprintln!("{gets} GETs, {verified} password verifications, {failed} failures");
    assert_eq!(gets, workers * per_worker, "every GET is in the access log");
    assert_eq!(failed, 0);
    assert!(
        (1..=workers).contains(&verified),
        "{verified} argon2 verifications for {gets} requests; expected at most one per \
         concurrent client"
    );
    assert_no_secrets(&log, &all_creds());
    drop(server);

    // Control: with the cache off, 20 requests verify 20 times.
    let extra = format!(
        "{}[[access]]\nrepository = \"team-a/**\"\ngroups = {{ \"team-a\" = [\"pull\", \"push\"] }}\n",
        auth_header().replacen("realm", "cache_seconds = 0\nrealm", 1)
    );
    let mut server = TestServer::configure(&extra);
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.spawn();
    let api = api_as(&server, Some(ALICE));
    for _ in 0..20 {
        assert_eq!(status(&api, "/v2/").await, 200);
    }
    assert_eq!(count(&server.log_plain(), "password verified"), 20);
}

// ---------------------------------------------------------------------------------------
// Secrets

/// With debug logging, a tour of everything that touches credentials (good and bad logins,
/// malformed headers, throttling, password changes, reloads) leaves no password, no
/// `Authorization` value and no base64 of `user:password` in the log.
#[tokio::test(flavor = "multi_thread")]
async fn no_secrets_in_the_log_even_at_debug_level() {
    let new_alice = "alice-Changed-Pw-9Kx2";
    let extra = format!(
        "[log]\nlevel = \"debug\"\n\n{}",
        rules_config().replacen("max_failures = 100000", "max_failures = 4", 1)
    );
    let mut server = TestServer::configure(&extra);
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    let alice = api_as(&server, Some(ALICE));
    let img = push_img(&alice, "team-a/app", "v1", 1).await;
    pull_ok(&api_as(&server, Some(BOB)), &img, "bob").await;
    for (user, password) in [("alice", WRONG), ("nobody", BOB.1), ("bob", ALICE.1)] {
        let api = api_as(&server, Some((user, password)));
        assert_eq!(status(&api, "/v2/").await, 401);
    }
    let raw = format!("Basic {}", "bm9jb2xvbg==");
    let r = alice
        .c
        .get(alice.url("/v2/"))
        .header("authorization", &raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A password change (waiting for the reload, not guessing into the throttle).
    let reloads = count(&server.log_plain(), "reloaded users and access rules");
    let out = server.user_cmd(
        &["passwd", "alice", "--password-stdin"],
        Some(&format!("{new_alice}\n")),
    );
    assert!(out.status.success());
    wait_log(&server, "reloaded users and access rules", reloads).await;
    let changed = api_as(&server, Some(("alice", new_alice)));
    assert_eq!(status(&changed, "/v2/").await, 200);
    // Into the throttle: 3 failures so far, the 4th blocks.
    let wrong = api_as(&server, Some(("bob", WRONG)));
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(status(&wrong, "/v2/").await);
    }
    assert_eq!(answers, [401, 429, 429]);
    server.sighup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log_plain();
    assert!(log.contains("DEBUG"), "debug logging is on");
    let mut creds = all_creds();
    creds.push(("alice", new_alice));
    creds.push(("nobody", BOB.1));
    creds.push(("bob", ALICE.1));
    assert_no_secrets(&log, &creds);
    assert!(
        !log.contains("bm9jb2xvbg=="),
        "the malformed header value is logged"
    );
    // Nor the stored hashes.
    let users = std::fs::read_to_string(server.users_file()).unwrap();
    for line in users.lines().filter(|l| l.contains("$argon2id$")) {
        let hash = line.split('"').nth(1).unwrap();
        let salt_and_hash = hash.rsplit('$').next().unwrap();
        assert!(
            !log.contains(salt_and_hash),
            "a password hash is in the log"
        );
    }
}

// ---------------------------------------------------------------------------------------
// First run

/// `[auth]` basic with no users anywhere: holdfast creates `admin` with a random password,
/// prints it once on stdout and saves it 0600 in `<data>/initial-admin-password`; it works,
/// it is not in the structured log, and a restart creates nothing new.
#[tokio::test(flavor = "multi_thread")]
async fn first_run_creates_one_admin() {
    let mut server = TestServer::start("[auth]\nmode = \"basic\"\n");
    let log = server.log_plain();
    let announced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("created user `admin` with password"))
        .collect();
    assert_eq!(announced.len(), 1, "one announcement:\n{log}");
    assert!(
        announced[0].starts_with("holdfast: "),
        "the announcement is the stdout line, not a log record: {}",
        announced[0]
    );
    let password = announced[0]
        .split("with password ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(password.len() >= 20, "a long random password");
    assert_eq!(
        log.matches(&password).count(),
        1,
        "the password is printed once, and is in no log record:\n{log}"
    );
    let saved_path = server.data_dir().join("initial-admin-password");
    let saved = std::fs::read_to_string(&saved_path).unwrap();
    assert_eq!(saved.trim_end(), password);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "initial-admin-password mode");
    let users_mode = std::fs::metadata(server.users_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(users_mode, 0o600, "users file mode");
    let list = server.user_cmd(&["list"], None);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "admin (admin)\t\n");

    // It works: an admin may do everything, with no [[access]] rules at all.
    let admin = Api::with_client(&server, {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            basic_auth_value("admin", &password).parse().unwrap(),
        );
        server.client_builder().default_headers(h).build().unwrap()
    });
    assert_eq!(status(&admin, "/v2/").await, 200);
    let img = push_img(&admin, "any/repo", "v1", 1).await;
    pull_ok(&admin, &img, "admin").await;
    delete_ok(&admin, &img, "admin").await;
    let r = api_as(&server, None).get("/v2/").await;
    let www = header(&r, "www-authenticate").unwrap_or_default();
    expect_error(r, 401, &["UNAUTHORIZED"]).await;
    assert!(www.starts_with("Basic realm=\"holdfast\""), "{www}");

    // A restart keeps that admin and creates no other.
    let users_before = std::fs::read_to_string(server.users_file()).unwrap();
    server.stop();
    server.spawn();
    let log = server.log_plain();
    assert_eq!(
        count(&log, "created user `admin` with password"),
        1,
        "no second admin on restart:\n{log}"
    );
    assert_eq!(count(&log, "created the initial admin user"), 1);
    assert_eq!(
        std::fs::read_to_string(server.users_file()).unwrap(),
        users_before
    );
    assert_eq!(std::fs::read_to_string(&saved_path).unwrap(), saved);
    assert_eq!(status(&admin, "/v2/").await, 200);
    assert_eq!(log.matches(&password).count(), 1);
    let engine = base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    assert!(!log.contains(&engine.encode(format!("admin:{password}"))));
}

// ---------------------------------------------------------------------------------------
// The `holdfast user` CLI

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `user add` refuses an existing user, a short password and bad names; `user list` shows
/// groups and admins; `passwd`/`remove` refuse unknown users; comments in the users file
/// survive edits; with `--password-stdin` the password is the first line; the result
/// serves logins.
#[tokio::test(flavor = "multi_thread")]
async fn user_cli() {
    let mut server = TestServer::configure(&rules_config());
    let file = server.users_file();
    let ok = |o: &std::process::Output, what: &str| {
        assert!(o.status.success(), "{what}: {}{}", stdout(o), stderr(o));
    };
    let fails = |o: &std::process::Output, what: &str, why: &str| {
        assert!(!o.status.success(), "{what} should fail: {}", stdout(o));
        assert!(
            stderr(o).contains(why),
            "{what}: expected {why:?} in {:?}",
            stderr(o)
        );
    };
    server.add_user(ALICE.0, ALICE.1, &["team-a", "ops"], false);
    // A second line on stdin is ignored (no confirmation with --password-stdin).
    let o = server.user_cmd(
        &["add", "bob", "--password-stdin"],
        Some(&format!("{}\nsomething else\n", BOB.1)),
    );
    ok(&o, "add bob");
    assert!(stdout(&o).contains("added user bob"), "{}", stdout(&o));
    // No trailing newline at all.
    let o = server.user_cmd(
        &["add", "root", "--admin", "--password-stdin"],
        Some(ROOT.1),
    );
    ok(&o, "add root");

    let before = std::fs::read_to_string(&file).unwrap();
    let o = server.user_cmd(
        &["add", "alice", "--password-stdin"],
        Some("another-password\n"),
    );
    fails(&o, "add alice again", "already exists");
    for short in ["", "1234567", "short"] {
        let o = server.user_cmd(
            &["add", "erin", "--password-stdin"],
            Some(&format!("{short}\n")),
        );
        fails(&o, &format!("password {short:?}"), "shorter than 8");
    }
    let o = server.user_cmd(&["add", "erin", "--password-stdin"], None);
    fails(&o, "no password at all", "shorter than 8");
    let o = server.user_cmd(
        &["add", "Erin", "--password-stdin"],
        Some("long-enough-1\n"),
    );
    fails(&o, "upper-case name", "invalid user name");
    let o = server.user_cmd(
        &["add", "erin", "--group", "Bad Group", "--password-stdin"],
        Some("long-enough-1\n"),
    );
    fails(&o, "bad group", "invalid group name");
    let o = server.user_cmd(
        &["passwd", "nobody", "--password-stdin"],
        Some("long-enough-1\n"),
    );
    fails(&o, "passwd of an unknown user", "no user `nobody`");
    let o = server.user_cmd(&["passwd", "alice", "--password-stdin"], Some("short\n"));
    fails(&o, "short new password", "shorter than 8");
    let o = server.user_cmd(&["remove", "nobody"], None);
    fails(&o, "remove an unknown user", "no user `nobody`");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "refused commands leave the file alone"
    );
    // Exactly eight characters is enough.
    ok(
        &server.user_cmd(&["add", "erin", "--password-stdin"], Some("12345678\n")),
        "eight characters",
    );

    let list = server.user_cmd(&["list"], None);
    ok(&list, "list");
    assert_eq!(
        stdout(&list),
        "alice\tteam-a,ops\nbob\t\nroot (admin)\t\nerin\t\n",
        "user list"
    );

    // Hand-written comments survive add, passwd and remove.
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replacen(
        "[[users]]\nname = \"alice\"\n",
        "# Alice runs releases for team A.\n[[users]]\nname = \"alice\" # the release manager\n",
        1,
    );
    let text = text.replacen(
        "[[users]]\nname = \"erin\"\n",
        "# Erin is temporary: this comment goes with her.\n[[users]]\nname = \"erin\"\n",
        1,
    );
    let text = format!("{text}\n# Trailing note: keep this file 0600.\n");
    std::fs::write(&file, &text).unwrap();
    let new_alice = "alice-Changed-8Ujm3";
    ok(
        &server.user_cmd(
            &["passwd", "alice", "--password-stdin"],
            Some(&format!("{new_alice}\n")),
        ),
        "passwd alice",
    );
    ok(&server.user_cmd(&["remove", "erin"], None), "remove erin");
    server.add_user(CAROL.0, CAROL.1, &["team-a"], false);
    let after = std::fs::read_to_string(&file).unwrap();
    eprintln!("users file after edits:\n{after}");
    for kept in [
        "# holdfast users: one [[users]] table per user.",
        "# Alice runs releases for team A.",
        "name = \"alice\" # the release manager",
        "# Trailing note: keep this file 0600.",
    ] {
        assert!(after.contains(kept), "{kept:?} survives edits:\n{after}");
    }
    assert!(
        !after.contains("Erin is temporary") && !after.contains("name = \"erin\""),
        "erin and the comment above her are gone:\n{after}"
    );
    assert!(!text.contains(new_alice) && !after.contains(new_alice));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = server.user_cmd(&["list"], None);
    assert_eq!(
        stdout(&list),
        "alice\tteam-a,ops\nbob\t\nroot (admin)\t\ncarol\tteam-a\n"
    );

    // The server accepts what the CLI wrote: the first stdin line was bob's password.
    server.spawn();
    let check = |cred: Cred| {
        let api = api_as(&server, Some(cred));
        async move { status(&api, "/v2/").await }
    };
    assert_eq!(check(("alice", new_alice)).await, 200);
    assert_eq!(check(ALICE).await, 401, "the old password is gone");
    assert_eq!(check(BOB).await, 200);
    assert_eq!(check(("bob", "something else")).await, 401);
    assert_eq!(check(ROOT).await, 200);
    assert_eq!(check(CAROL).await, 200);
    assert_eq!(check(("erin", "12345678")).await, 401, "removed");
    let carol = api_as(&server, Some(CAROL));
    push_ok(&carol, "team-a/from-carol", 1, "carol").await;
}

/// `holdfast user add` before the server ever ran (the data folder does not exist yet)
/// works, so an operator can set up users before the first start.
#[test]
fn user_add_before_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet").join("data");
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        format!("[storage]\npath = \"{}\"\n", data.display()),
    )
    .unwrap();
    let o = holdfast_user(
        &config,
        &["add", "alice", "--password-stdin"],
        Some(&format!("{}\n", ALICE.1)),
    );
    assert!(
        o.status.success(),
        "`holdfast user add` before the first start failed: {}",
        stderr(&o)
    );
    assert!(data.join("users.toml").exists());
}
