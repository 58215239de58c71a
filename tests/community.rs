//! Stars and comments end to end, against the real binary in token mode with the embedded
//! index: starring is idempotent and counted in the API list, details and `/v1/search`;
//! comments are posted, paged, checked (length, control characters), returned verbatim
//! as JSON, rate-limited and deleted by those allowed to; a private repository's stars
//! and comments do not exist for those who cannot pull it; deleting a repository takes
//! its stars and comments with it. Every test starts its own server.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

type Cred = (&'static str, &'static str);

const ALICE: Cred = ("alice", "alice-Com-Pw-3Rk8vQ");
const BOB: Cred = ("bob", "bob-Com-Pw-6Jd1zM");
const CAROL: Cred = ("carol", "carol-Com-Pw-2Ws7nB");
const DAVE: Cred = ("dave", "dave-Com-Pw-5Yt4pL");
const ADMIN: Cred = ("root", "root-Com-Pw-8Gx9cH");
const SERVICE: &str = "holdfast";

/// Token mode with the embedded index, deletes allowed; every user owns the namespace of
/// their name, and new repositories are private.
fn start() -> TestServer {
    let mut server = TestServer::configure(
        "[auth]\nmode = \"token\"\nallow_delete = true\n\n[auth.throttle]\nmax_failures = 100000\n\n\
         [index]\nenabled = true\n",
    );
    for (user, password) in [ALICE, BOB, CAROL, DAVE] {
        server.add_user(user, password, &[], false);
    }
    server.add_user(ADMIN.0, ADMIN.1, &[], true);
    server.spawn();
    server
}

/// Pushes a small image as `cred` with a token for the repository (asserting success).
async fn push(server: &TestServer, cred: Cred, repo: &str, seed: u64) {
    let scope = format!("repository:{repo}:pull,push");
    let answer = fetch_token(server, SERVICE, Some(cred), &[&scope]).await;
    bearer_api(server, &token_of(&answer))
        .push_image(repo, "v1", OCI_MANIFEST, seed)
        .await;
}

/// An index API request as `cred` (`None`: anonymous), with an optional JSON body.
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    cred: Option<Cred>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = server.client().request(method, server.url(path));
    if let Some((u, p)) = cred {
        rb = rb.header(reqwest::header::AUTHORIZATION, basic_auth_value(u, p));
    }
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    rb.send().await.unwrap()
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let ct = header(&resp, "content-type").unwrap_or_default();
    let body = expect_status(resp, status).await;
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

fn repo_path(repo: &str) -> String {
    format!("/api/v1/repositories/{repo}")
}

async fn set_visibility(server: &TestServer, repo: &str, visibility: &str) {
    json_of(
        call(
            server,
            Method::PATCH,
            &repo_path(repo),
            Some(ALICE),
            Some(json!({ "visibility": visibility })),
        )
        .await,
        200,
    )
    .await;
}

/// Stars (`PUT`) or unstars (`DELETE`) as `cred`; the raw response.
async fn star(
    server: &TestServer,
    method: Method,
    repo: &str,
    cred: Option<Cred>,
) -> reqwest::Response {
    call(
        server,
        method,
        &format!("{}/-/stars", repo_path(repo)),
        cred,
        None,
    )
    .await
}

/// Stars or unstars as `cred`, expecting success; the star count answered.
async fn star_ok(server: &TestServer, method: Method, repo: &str, cred: Cred) -> u64 {
    let starring = method == Method::PUT;
    let v = json_of(star(server, method, repo, Some(cred)).await, 200).await;
    assert_eq!(v["starred"], starring, "{v}");
    v["star_count"].as_u64().unwrap()
}

async fn starred_list(server: &TestServer, cred: Cred) -> Vec<String> {
    let v = json_of(
        call(
            server,
            Method::GET,
            "/api/v1/user/starred",
            Some(cred),
            None,
        )
        .await,
        200,
    )
    .await;
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The star count of `repo` in the list, details and `/v1/search` as `cred` sees them,
/// asserting the three agree.
async fn shown_star_count(server: &TestServer, repo: &str, cred: Option<Cred>) -> u64 {
    let list = json_of(
        call(
            server,
            Method::GET,
            &format!("/api/v1/repositories?q={repo}"),
            cred,
            None,
        )
        .await,
        200,
    )
    .await;
    let listed = list["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == repo)
        .unwrap_or_else(|| panic!("{repo} not listed: {list}"))["star_count"]
        .as_u64()
        .unwrap();
    let details = json_of(
        call(server, Method::GET, &repo_path(repo), cred, None).await,
        200,
    )
    .await["star_count"]
        .as_u64()
        .unwrap();
    let search = json_of(
        call(
            server,
            Method::GET,
            &format!("/v1/search?q={repo}&n=100"),
            cred,
            None,
        )
        .await,
        200,
    )
    .await;
    let searched = search["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == repo)
        .unwrap_or_else(|| panic!("{repo} not found by search: {search}"))["star_count"]
        .as_u64()
        .unwrap();
    assert_eq!(
        (listed, details),
        (searched, searched),
        "list, details, search"
    );
    searched
}

fn comments_path(repo: &str) -> String {
    format!("{}/-/comments", repo_path(repo))
}

async fn post_comment(
    server: &TestServer,
    repo: &str,
    cred: Option<Cred>,
    body: &str,
) -> reqwest::Response {
    call(
        server,
        Method::POST,
        &comments_path(repo),
        cred,
        Some(json!({ "body": body })),
    )
    .await
}

/// Posts a comment expecting 201; its id.
async fn comment_ok(server: &TestServer, repo: &str, cred: Cred, body: &str) -> i64 {
    let v = json_of(post_comment(server, repo, Some(cred), body).await, 201).await;
    assert_eq!(v["author"], cred.0);
    v["id"].as_i64().unwrap()
}

async fn delete_comment(
    server: &TestServer,
    repo: &str,
    id: i64,
    cred: Option<Cred>,
) -> reqwest::Response {
    call(
        server,
        Method::DELETE,
        &format!("{}/{id}", comments_path(repo)),
        cred,
        None,
    )
    .await
}

/// One page of comments as `cred`: (ids, bodies, next).
async fn comment_page(
    server: &TestServer,
    repo: &str,
    cred: Option<Cred>,
    query: &str,
) -> (Vec<i64>, Vec<String>, Option<i64>) {
    let v = json_of(
        call(
            server,
            Method::GET,
            &format!("{}{query}", comments_path(repo)),
            cred,
            None,
        )
        .await,
        200,
    )
    .await;
    let list = v["comments"].as_array().unwrap();
    (
        list.iter().map(|c| c["id"].as_i64().unwrap()).collect(),
        list.iter()
            .map(|c| c["body"].as_str().unwrap().to_owned())
            .collect(),
        v["next"].as_i64(),
    )
}

#[tokio::test]
async fn stars_are_counted_and_follow_visibility() {
    let server = start();
    push(&server, ALICE, "alice/app", 1).await;

    // Private: a stranger can neither star it nor see its stars; anonymous callers must
    // sign in first.
    for method in [Method::PUT, Method::DELETE] {
        expect_error(
            star(&server, method.clone(), "alice/app", Some(CAROL)).await,
            404,
            &["NAME_UNKNOWN"],
        )
        .await;
        expect_error(
            star(&server, method, "alice/app", None).await,
            401,
            &["UNAUTHORIZED"],
        )
        .await;
    }
    expect_error(
        call(&server, Method::GET, "/api/v1/user/starred", None, None).await,
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    expect_error(
        star(&server, Method::POST, "alice/app", Some(ALICE)).await,
        405,
        &["UNSUPPORTED"],
    )
    .await;
    assert!(starred_list(&server, CAROL).await.is_empty());

    // Collaborator bob may pull it, so he may star it; twice is once.
    json_of(
        call(
            &server,
            Method::PUT,
            &format!("{}/-/collaborators/bob", repo_path("alice/app")),
            Some(ALICE),
            Some(json!({"access": "pull"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(star_ok(&server, Method::PUT, "alice/app", BOB).await, 1);
    assert_eq!(star_ok(&server, Method::PUT, "alice/app", BOB).await, 1);
    assert_eq!(starred_list(&server, BOB).await, ["alice/app"]);
    assert_eq!(shown_star_count(&server, "alice/app", Some(ALICE)).await, 1);

    // Public: anyone sees the count, signed-in users star it.
    set_visibility(&server, "alice/app", "public").await;
    assert_eq!(star_ok(&server, Method::PUT, "alice/app", CAROL).await, 2);
    assert_eq!(star_ok(&server, Method::PUT, "alice/app", DAVE).await, 3);
    // Unstarring is idempotent too.
    assert_eq!(star_ok(&server, Method::DELETE, "alice/app", DAVE).await, 2);
    assert_eq!(star_ok(&server, Method::DELETE, "alice/app", DAVE).await, 2);
    assert_eq!(shown_star_count(&server, "alice/app", None).await, 2);
    assert_eq!(shown_star_count(&server, "alice/app", Some(DAVE)).await, 2);
    // Details say whether a signed-in caller starred it; anonymous callers get no answer.
    let details = |cred| {
        call(
            &server,
            Method::GET,
            "/api/v1/repositories/alice/app",
            cred,
            None,
        )
    };
    assert_eq!(
        json_of(details(Some(CAROL)).await, 200).await["starred"],
        true
    );
    assert_eq!(
        json_of(details(Some(DAVE)).await, 200).await["starred"],
        false
    );
    assert!(json_of(details(None).await, 200)
        .await
        .get("starred")
        .is_none());
    let starred = json_of(
        call(
            &server,
            Method::GET,
            "/api/v1/user/starred",
            Some(CAROL),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(starred["repositories"][0]["name"], "alice/app");
    assert_eq!(starred["repositories"][0]["star_count"], 2);

    // bob stops being a collaborator: he still sees the public repository and his star.
    expect_status(
        call(
            &server,
            Method::DELETE,
            &format!("{}/-/collaborators/bob", repo_path("alice/app")),
            Some(ALICE),
            None,
        )
        .await,
        204,
    )
    .await;
    assert_eq!(starred_list(&server, BOB).await, ["alice/app"]);

    // Private again: it vanishes from the starred lists of those who cannot pull it, and
    // they can no longer star or unstar it; its owner still sees both stars.
    set_visibility(&server, "alice/app", "private").await;
    for who in [BOB, CAROL] {
        assert!(starred_list(&server, who).await.is_empty(), "{}", who.0);
        for method in [Method::PUT, Method::DELETE] {
            expect_error(
                star(&server, method, "alice/app", Some(who)).await,
                404,
                &["NAME_UNKNOWN"],
            )
            .await;
        }
    }
    let search = json_of(
        call(&server, Method::GET, "/v1/search?q=alice", Some(BOB), None).await,
        200,
    )
    .await;
    assert_eq!(search["num_results"], 0, "{search}");
    assert_eq!(shown_star_count(&server, "alice/app", Some(ALICE)).await, 2);
    assert_eq!(shown_star_count(&server, "alice/app", Some(ADMIN)).await, 2);
}

#[tokio::test]
async fn comments_are_checked_paged_and_deleted_by_those_allowed() {
    let server = start();
    push(&server, ALICE, "alice/app", 2).await;
    push(&server, ALICE, "alice/secret", 3).await;
    set_visibility(&server, "alice/app", "public").await;
    let secret_note = comment_ok(&server, "alice/secret", ALICE, "private note").await;

    // A stranger learns nothing about the private repository's comments.
    expect_error(
        call(
            &server,
            Method::GET,
            &comments_path("alice/secret"),
            Some(BOB),
            None,
        )
        .await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    expect_error(
        call(
            &server,
            Method::GET,
            &comments_path("alice/secret"),
            None,
            None,
        )
        .await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    expect_error(
        post_comment(&server, "alice/secret", Some(BOB), "hello?").await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    expect_error(
        delete_comment(&server, "alice/secret", secret_note, Some(BOB)).await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;

    // Posting needs a signed-in caller; reading a public repository's does not.
    expect_error(
        post_comment(&server, "alice/app", None, "hi").await,
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    let first = json_of(
        post_comment(&server, "alice/app", Some(BOB), "  first!\n\twith a tab  ").await,
        201,
    )
    .await;
    assert_eq!(first["author"], "bob");
    assert_eq!(first["body"], "first!\n\twith a tab");
    let created = first["created_at"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );

    // Markup is text: the JSON API returns it exactly as posted.
    let xss = "<script>alert(\"x\")</script> & <img src=x onerror=alert(1)>";
    let posted = json_of(
        post_comment(&server, "alice/app", Some(CAROL), xss).await,
        201,
    )
    .await;
    assert_eq!(posted["body"], xss);

    // Length and characters.
    let longest = "x".repeat(2000);
    comment_ok(&server, "alice/app", CAROL, &longest).await;
    for (body, why) in [
        ("x".repeat(2001), "too long"),
        ("   \n ".to_owned(), "empty"),
        ("bell\u{7}".to_owned(), "control character"),
        ("a\rb".to_owned(), "carriage return"),
        ("\u{1b}[31mred".to_owned(), "escape sequence"),
    ] {
        let e = expect_error(
            post_comment(&server, "alice/app", Some(CAROL), &body).await,
            400,
            &["UNSUPPORTED"],
        )
        .await;
        assert!(e["errors"][0]["message"].is_string(), "{why}");
    }
    expect_error(
        call(
            &server,
            Method::POST,
            &comments_path("alice/app"),
            Some(CAROL),
            Some(json!({"body": "hi", "author": "alice"})),
        )
        .await,
        400,
        &["UNSUPPORTED"],
    )
    .await;

    // Pages, newest first, for anonymous readers too. 3 so far plus 7 = 10.
    for i in 0..7 {
        let who = if i % 2 == 0 { ALICE } else { DAVE };
        comment_ok(&server, "alice/app", who, &format!("note {i}")).await;
    }
    let mut ids = Vec::new();
    let mut bodies = Vec::new();
    let mut query = "?limit=4".to_owned();
    let mut pages = 0;
    loop {
        let (page_ids, page_bodies, next) = comment_page(&server, "alice/app", None, &query).await;
        assert!(page_ids.len() <= 4);
        pages += 1;
        ids.extend(page_ids);
        bodies.extend(page_bodies);
        match next {
            Some(next) => {
                assert_eq!(Some(&next), ids.last());
                query = format!("?limit=4&before={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 10);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(bodies[0], "note 6");
    assert_eq!(bodies[7], longest);
    assert_eq!(bodies[8], xss);
    assert_eq!(bodies[9], "first!\n\twith a tab");
    // The default page holds them all; a limit above 100 is capped, not refused.
    let (all, _, next) = comment_page(&server, "alice/app", None, "?limit=1000").await;
    assert_eq!((all.len(), next), (10, None));
    expect_error(
        call(
            &server,
            Method::GET,
            &format!("{}?before=abc", comments_path("alice/app")),
            None,
            None,
        )
        .await,
        400,
        &["PAGINATION_NUMBER_INVALID"],
    )
    .await;
    // The list is JSON, bodies verbatim.
    let raw = call(
        &server,
        Method::GET,
        &comments_path("alice/app"),
        None,
        None,
    )
    .await;
    assert!(header(&raw, "content-type")
        .unwrap_or_default()
        .starts_with("application/json"));
    let v: Value = serde_json::from_slice(&expect_status(raw, 200).await).unwrap();
    assert_eq!(v["comments"][8]["body"], xss);

    // Deleting: not by another user; by the author, the owner and an admin.
    let (bob_first, carol_xss) = (ids[9], ids[8]);
    let (alice_note, dave_note) = (ids[0], ids[1]);
    expect_error(
        delete_comment(&server, "alice/app", bob_first, Some(DAVE)).await,
        403,
        &["DENIED"],
    )
    .await;
    expect_error(
        delete_comment(&server, "alice/app", bob_first, None).await,
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    expect_status(
        delete_comment(&server, "alice/app", bob_first, Some(BOB)).await,
        204,
    )
    .await;
    expect_status(
        delete_comment(&server, "alice/app", carol_xss, Some(ALICE)).await,
        204,
    )
    .await;
    expect_status(
        delete_comment(&server, "alice/app", dave_note, Some(ADMIN)).await,
        204,
    )
    .await;
    // A user who is not the author may not delete even the owner's comment.
    expect_error(
        delete_comment(&server, "alice/app", alice_note, Some(BOB)).await,
        403,
        &["DENIED"],
    )
    .await;
    // Gone, unknown or not a number: 404.
    for path in [
        format!("{}/{bob_first}", comments_path("alice/app")),
        format!("{}/999999", comments_path("alice/app")),
        format!("{}/abc", comments_path("alice/app")),
        // A comment of another repository is not found through this one.
        format!("{}/{secret_note}", comments_path("alice/app")),
    ] {
        expect_status(
            call(&server, Method::DELETE, &path, Some(ADMIN), None).await,
            404,
        )
        .await;
    }
    let (left, _, _) = comment_page(&server, "alice/app", None, "").await;
    assert_eq!(left.len(), 7);
    assert!(!left.contains(&bob_first) && !left.contains(&carol_xss) && !left.contains(&dave_note));
    let log = server.log_plain();
    assert!(
        log.lines().any(|l| l.contains("comment_deleted")
            && l.contains("user=\"root\"")
            && l.contains("author=\"dave\"")),
        "an audit line for the admin's comment delete:\n{log}"
    );
}

#[tokio::test]
async fn comments_are_rate_limited_per_user() {
    let server = start();
    push(&server, ALICE, "alice/app", 4).await;
    set_visibility(&server, "alice/app", "public").await;
    for i in 0..10 {
        comment_ok(&server, "alice/app", BOB, &format!("spam {i}")).await;
    }
    let refused = post_comment(&server, "alice/app", Some(BOB), "one more").await;
    let retry: u64 = header(&refused, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    expect_error(refused, 429, &["TOOMANYREQUESTS"]).await;
    // Refused posts are not stored; other users are not limited by bob's.
    let (ids, _, _) = comment_page(&server, "alice/app", None, "?limit=100").await;
    assert_eq!(ids.len(), 10);
    comment_ok(&server, "alice/app", CAROL, "unaffected").await;
}

#[tokio::test]
async fn deleting_a_repository_takes_its_stars_and_comments() {
    let server = start();
    push(&server, ALICE, "alice/app", 5).await;
    set_visibility(&server, "alice/app", "public").await;
    star_ok(&server, Method::PUT, "alice/app", BOB).await;
    star_ok(&server, Method::PUT, "alice/app", ALICE).await;
    let old = comment_ok(&server, "alice/app", BOB, "nice").await;
    assert_eq!(shown_star_count(&server, "alice/app", None).await, 2);

    json_of(
        call(
            &server,
            Method::DELETE,
            &repo_path("alice/app"),
            Some(ALICE),
            None,
        )
        .await,
        202,
    )
    .await;
    assert!(starred_list(&server, BOB).await.is_empty());
    expect_error(
        call(
            &server,
            Method::GET,
            &comments_path("alice/app"),
            Some(ALICE),
            None,
        )
        .await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;

    // Pushed again: a new repository with no stars and no comments.
    push(&server, ALICE, "alice/app", 6).await;
    assert_eq!(shown_star_count(&server, "alice/app", Some(ALICE)).await, 0);
    let d = json_of(
        call(
            &server,
            Method::GET,
            &repo_path("alice/app"),
            Some(BOB),
            None,
        )
        .await,
        404,
    )
    .await;
    assert!(d["errors"].is_array());
    let d = json_of(
        call(
            &server,
            Method::GET,
            &repo_path("alice/app"),
            Some(ALICE),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(d["starred"], false);
    let (ids, _, next) = comment_page(&server, "alice/app", Some(ALICE), "").await;
    assert!(ids.is_empty() && next.is_none());
    expect_status(
        delete_comment(&server, "alice/app", old, Some(ALICE)).await,
        404,
    )
    .await;
    // Comment ids are never reused.
    assert!(comment_ok(&server, "alice/app", ALICE, "fresh start").await > old);
}
