//! The index's metadata end to end, against the real binary in token mode with the
//! embedded index: namespaces (users own theirs, organisations from the config), private
//! repositories by default, collaborators, the `/api/v1/` API (details with the checksums
//! the registry reported, visibility, description, collaborators, whole-repository
//! delete), `/v1/search`, and that the index's records survive a restart. Every test
//! starts its own server; users come from the real `holdfast user add`.

mod common;

use common::*;
use serde_json::{json, Value};

type Cred = (&'static str, &'static str);

const ALICE: Cred = ("alice", "alice-Idx-Pw-4Tn8qZ");
const BOB: Cred = ("bob", "bob-Idx-Pw-7Hc2wX");
const CAROL: Cred = ("carol", "carol-Idx-Pw-1Vb6sK");
const ADMIN: Cred = ("root", "root-Idx-Pw-9Lm3dF");
const SERVICE: &str = "holdfast";

/// Token mode with the embedded index; `team` is an organisation of alice and the group
/// `devs` (carol) whose new repositories are public; deletes allowed.
fn start() -> TestServer {
    let mut server = TestServer::configure(
        "[auth]\nmode = \"token\"\nallow_delete = true\n\n[auth.throttle]\nmax_failures = 100000\n\n\
         [index]\nenabled = true\n\n\
         [[index.namespaces]]\nname = \"team\"\nmembers = [\"alice\"]\ngroups = [\"devs\"]\nvisibility = \"public\"\n",
    );
    server.add_user(ALICE.0, ALICE.1, &[], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.add_user(CAROL.0, CAROL.1, &["devs"], false);
    server.add_user(ADMIN.0, ADMIN.1, &[], true);
    server.spawn();
    server
}

/// A registry client for `cred` holding a token for `scopes`.
async fn registry_as(server: &TestServer, cred: Option<Cred>, scopes: &[&str]) -> Api {
    let answer = fetch_token(server, SERVICE, cred, scopes).await;
    bearer_api(server, &token_of(&answer))
}

/// What a token for `cred` grants of `repository:REPO:pull,push,delete`, sorted.
async fn granted(server: &TestServer, cred: Option<Cred>, repo: &str) -> Vec<String> {
    let scope = format!("repository:{repo}:pull,push,delete");
    let token = token_of(&fetch_token(server, SERVICE, cred, &[&scope]).await);
    let (_, claims) = jwt_decode(&token);
    let mut actions: Vec<String> = claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == repo)
        .flat_map(|a| a["actions"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    actions.sort();
    actions
}

/// Pushes a small image as `cred` (asserting success); returns its manifest digest.
async fn push(server: &TestServer, cred: Cred, repo: &str, tag: &str, seed: u64) -> Pushed {
    let api = registry_as(
        server,
        Some(cred),
        &[&format!("repository:{repo}:pull,push")],
    )
    .await;
    api.push_image(repo, tag, OCI_MANIFEST, seed).await
}

/// An index API request as `cred` (`None`: anonymous).
fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    cred: Option<Cred>,
) -> reqwest::RequestBuilder {
    let rb = server.client().request(method, server.url(path));
    match cred {
        Some((u, p)) => rb.header(reqwest::header::AUTHORIZATION, basic_auth_value(u, p)),
        None => rb,
    }
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let body = expect_status(resp, status).await;
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

async fn catalog(server: &TestServer, cred: Option<Cred>) -> Vec<String> {
    let api = registry_as(server, cred, &["registry:catalog:*"]).await;
    let v = json_of(api.get("/v2/_catalog?n=1000").await, 200).await;
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

async fn search(server: &TestServer, cred: Option<Cred>, q: &str) -> Vec<String> {
    let v = json_of(
        api(
            server,
            reqwest::Method::GET,
            &format!("/v1/search?q={q}&n=100"),
            cred,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(v["query"], q);
    assert_eq!(
        v["num_results"].as_u64().unwrap() as usize,
        v["results"].as_array().unwrap().len()
    );
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["is_official"], false);
            assert!(r["star_count"].is_u64());
            r["name"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn namespaces_decide_who_pushes_and_new_repositories_are_private() {
    let server = start();
    // Each user owns the namespace of their name.
    assert_eq!(
        granted(&server, Some(ALICE), "alice/app").await,
        ["delete", "pull", "push"]
    );
    assert_eq!(
        granted(&server, Some(BOB), "alice/app").await,
        Vec::<String>::new()
    );
    assert_eq!(
        granted(&server, None, "alice/app").await,
        Vec::<String>::new()
    );
    // Organisation members, directly or through a group.
    assert_eq!(
        granted(&server, Some(ALICE), "team/web").await,
        ["delete", "pull", "push"]
    );
    assert_eq!(
        granted(&server, Some(CAROL), "team/web").await,
        ["delete", "pull", "push"]
    );
    // alice's grant just created team/web, public as its namespace says: bob may pull.
    assert_eq!(granted(&server, Some(BOB), "team/web").await, ["pull"]);
    // No namespace: only the rules (here: the admin).
    assert_eq!(
        granted(&server, Some(ALICE), "toplevel").await,
        Vec::<String>::new()
    );
    assert_eq!(
        granted(&server, Some(ADMIN), "toplevel").await,
        ["delete", "pull", "push"]
    );

    let pushed = push(&server, ALICE, "alice/app", "v1", 1).await;
    push(&server, CAROL, "team/web", "latest", 2).await;

    // alice/app is private by default: bob and anonymous callers neither pull it nor see it.
    let bob = registry_as(&server, Some(BOB), &["repository:alice/app:pull"]).await;
    expect_error(
        bob.get_manifest("alice/app", "v1").await,
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    assert_eq!(catalog(&server, Some(BOB)).await, ["team/web"]);
    assert_eq!(search(&server, None, "app").await, Vec::<String>::new());
    assert_eq!(
        search(&server, Some(BOB), "app").await,
        Vec::<String>::new()
    );
    // team/web is public (its namespace says so): anyone pulls it.
    assert_eq!(granted(&server, None, "team/web").await, ["pull"]);
    assert_eq!(search(&server, None, "web").await, ["team/web"]);
    // The owner sees everything of hers.
    assert_eq!(
        catalog(&server, Some(ALICE)).await,
        ["alice/app", "team/web"]
    );
    assert_eq!(
        search(&server, Some(ALICE), "").await,
        ["alice/app", "team/web"]
    );
    let mine = registry_as(&server, Some(ALICE), &["repository:alice/app:pull"]).await;
    expect_status(mine.get_manifest("alice/app", "v1").await, 200).await;

    // The index recorded the push: owner, visibility, the tag with digest and size.
    let d = json_of(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(d["owner"], "alice");
    assert_eq!(d["visibility"], "private");
    assert_eq!(d["tags"][0]["tag"], "v1");
    assert_eq!(d["tags"][0]["digest"], pushed.digest.as_str());
    assert_eq!(d["tags"][0]["size"], pushed.bytes.len() as u64);
    assert_eq!(d["tags"][0]["media_type"], OCI_MANIFEST);
    assert_eq!(d["tags"][0]["pusher"], "alice");
    assert_eq!(d["manifests"][0]["digest"], pushed.digest.as_str());
    assert_eq!(d["permissions"]["manage"], true);
    // Others: as if it did not exist.
    for who in [Some(BOB), None] {
        expect_error(
            api(
                &server,
                reqwest::Method::GET,
                "/api/v1/repositories/alice/app",
                who,
            )
            .send()
            .await
            .unwrap(),
            404,
            &["NAME_UNKNOWN"],
        )
        .await;
    }
}

#[tokio::test]
async fn visibility_description_and_collaborators_through_the_api() {
    let server = start();
    push(&server, ALICE, "alice/app", "v1", 3).await;
    let path = "/api/v1/repositories/alice/app";

    // Only the owner (or an admin) manages; a stranger cannot even see it; anonymous: 401.
    let patch = |cred, body: Value| api(&server, reqwest::Method::PATCH, path, cred).json(&body);
    expect_error(
        patch(Some(BOB), json!({"visibility": "public"}))
            .send()
            .await
            .unwrap(),
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    expect_error(
        patch(None, json!({"visibility": "public"}))
            .send()
            .await
            .unwrap(),
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    expect_error(
        patch(Some(ALICE), json!({"visibility": "secret"}))
            .send()
            .await
            .unwrap(),
        400,
        &["UNSUPPORTED"],
    )
    .await;
    expect_error(
        patch(Some(ALICE), json!({"nonsense": 1}))
            .send()
            .await
            .unwrap(),
        400,
        &["UNSUPPORTED"],
    )
    .await;

    // Collaborator bob (pull): sees it, pulls it, cannot push or manage.
    expect_error(
        api(
            &server,
            reqwest::Method::PUT,
            &format!("{path}/-/collaborators/nobody"),
            Some(ALICE),
        )
        .json(&json!({"access": "pull"}))
        .send()
        .await
        .unwrap(),
        400,
        &["UNSUPPORTED"],
    )
    .await;
    json_of(
        api(
            &server,
            reqwest::Method::PUT,
            &format!("{path}/-/collaborators/bob"),
            Some(ALICE),
        )
        .json(&json!({"access": "pull"}))
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(granted(&server, Some(BOB), "alice/app").await, ["pull"]);
    assert_eq!(catalog(&server, Some(BOB)).await, ["alice/app"]);
    assert_eq!(search(&server, Some(BOB), "app").await, ["alice/app"]);
    assert_eq!(
        search(&server, Some(CAROL), "app").await,
        Vec::<String>::new()
    );
    let bob = registry_as(&server, Some(BOB), &["repository:alice/app:pull"]).await;
    expect_status(bob.get_manifest("alice/app", "v1").await, 200).await;
    expect_error(
        patch(Some(BOB), json!({"visibility": "public"}))
            .send()
            .await
            .unwrap(),
        403,
        &["DENIED"],
    )
    .await;
    // Upgraded to push: bob pushes a tag.
    json_of(
        api(
            &server,
            reqwest::Method::PUT,
            &format!("{path}/-/collaborators/bob"),
            Some(ALICE),
        )
        .json(&json!({"access": "push"}))
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        granted(&server, Some(BOB), "alice/app").await,
        ["pull", "push"]
    );
    push(&server, BOB, "alice/app", "from-bob", 4).await;
    let list = json_of(
        api(
            &server,
            reqwest::Method::GET,
            &format!("{path}/-/collaborators"),
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(list["collaborators"][0]["user"], "bob");
    assert_eq!(list["collaborators"][0]["access"], "push");
    // Removed: back to nothing.
    expect_status(
        api(
            &server,
            reqwest::Method::DELETE,
            &format!("{path}/-/collaborators/bob"),
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        204,
    )
    .await;
    assert_eq!(
        granted(&server, Some(BOB), "alice/app").await,
        Vec::<String>::new()
    );
    assert_eq!(catalog(&server, Some(BOB)).await, Vec::<String>::new());

    // Public: anyone pulls and finds it; the description is searchable.
    let v = json_of(
        patch(
            Some(ALICE),
            json!({"visibility": "public", "description": "The <b>app</b> of Alice"}),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(v["visibility"], "public");
    assert_eq!(granted(&server, None, "alice/app").await, ["pull"]);
    assert_eq!(search(&server, None, "of alice").await, ["alice/app"]);
    let anon = registry_as(&server, None, &["repository:alice/app:pull"]).await;
    expect_status(anon.get_manifest("alice/app", "from-bob").await, 200).await;
    let listed = json_of(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories?q=alice",
            None,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(listed["total"], 1);
    assert_eq!(
        listed["repositories"][0]["description"],
        "The <b>app</b> of Alice"
    );
    // An admin manages any repository.
    json_of(
        patch(Some(ADMIN), json!({"visibility": "private"}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        granted(&server, None, "alice/app").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn tag_and_manifest_deletes_reach_the_index() {
    let server = start();
    let v1 = push(&server, ALICE, "alice/app", "v1", 5).await;
    push(&server, ALICE, "alice/app", "v2", 6).await;
    let api_alice = registry_as(
        &server,
        Some(ALICE),
        &["repository:alice/app:pull,push,delete"],
    )
    .await;
    expect_status(api_alice.delete("/v2/alice/app/manifests/v2").await, 202).await;
    expect_status(
        api_alice
            .delete(&format!("/v2/alice/app/manifests/{}", v1.digest))
            .await,
        202,
    )
    .await;
    let d = json_of(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(d["tags"], json!([]), "{d}");
    let left: Vec<&str> = d["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert!(!left.contains(&v1.digest.as_str()), "{d}");
}

#[tokio::test]
async fn deleting_a_repository_leaves_no_trace() {
    let server = start();
    push(&server, ALICE, "alice/app", "v1", 7).await;
    push(&server, ALICE, "alice/app/sub", "v1", 8).await;
    api(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/repositories/alice/app",
        Some(ALICE),
    )
    .json(&json!({"visibility": "public"}))
    .send()
    .await
    .unwrap();
    assert_eq!(search(&server, None, "alice/app").await, ["alice/app"]);

    // Only its owner (or an admin) deletes it.
    expect_error(
        api(
            &server,
            reqwest::Method::DELETE,
            "/api/v1/repositories/alice/app",
            Some(BOB),
        )
        .send()
        .await
        .unwrap(),
        403,
        &["DENIED"],
    )
    .await;
    let v = json_of(
        api(
            &server,
            reqwest::Method::DELETE,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        202,
    )
    .await;
    assert_eq!(v["deleted"], "alice/app");

    // Gone from the catalog, search, the API and the registry; the nested one stays.
    assert_eq!(catalog(&server, Some(ALICE)).await, ["alice/app/sub"]);
    assert_eq!(search(&server, Some(ALICE), "").await, ["alice/app/sub"]);
    expect_error(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    let owner = registry_as(&server, Some(ALICE), &["repository:alice/app:pull"]).await;
    expect_error(
        owner.get_manifest("alice/app", "v1").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        owner.get("/v2/alice/app/tags/list").await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
    let anon = registry_as(&server, None, &["repository:alice/app:pull"]).await;
    expect_error(
        anon.get_manifest("alice/app", "v1").await,
        401,
        &["UNAUTHORIZED"],
    )
    .await;
    let sub = registry_as(&server, Some(ALICE), &["repository:alice/app/sub:pull"]).await;
    expect_status(sub.get_manifest("alice/app/sub", "v1").await, 200).await;

    // The name can be pushed again, from scratch and private.
    push(&server, ALICE, "alice/app", "v2", 9).await;
    let d = json_of(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(d["visibility"], "private");
    assert_eq!(d["tags"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn index_records_and_refresh_tokens_survive_a_restart() {
    let mut server = start();
    let pushed = push(&server, ALICE, "alice/app", "v1", 10).await;
    let form = [
        ("grant_type", "password"),
        ("service", SERVICE),
        ("client_id", "test"),
        ("access_type", "offline"),
        ("username", ALICE.0),
        ("password", ALICE.1),
        ("scope", "repository:alice/app:pull"),
    ];
    let answer = json_of(
        server
            .client()
            .post(server.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();
    server.stop();
    server.spawn();
    let d = json_of(
        api(
            &server,
            reqwest::Method::GET,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(d["tags"][0]["digest"], pushed.digest.as_str());
    let again = json_of(
        server
            .client()
            .post(server.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("grant_type", "refresh_token"),
                    ("service", SERVICE),
                    ("client_id", "test"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", "repository:alice/app:pull"),
                ])
                .unwrap(),
            )
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let api = bearer_api(&server, &token_of(&again));
    expect_status(api.get_manifest("alice/app", "v1").await, 200).await;
    // The database is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data_dir().join("index").join("index.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "index.db mode {mode:o}");
}

#[tokio::test]
async fn api_refuses_bad_requests_clearly() {
    let server = start();
    push(&server, ALICE, "alice/app", "v1", 11).await;
    let bad = |m, p: &str| api(&server, m, p, Some(ALICE));
    expect_error(
        bad(reqwest::Method::GET, "/api/v1/nothing")
            .send()
            .await
            .unwrap(),
        404,
        &["UNSUPPORTED"],
    )
    .await;
    expect_error(
        bad(reqwest::Method::GET, "/api/v1/repositories/Bad..Name")
            .send()
            .await
            .unwrap(),
        400,
        &["NAME_INVALID"],
    )
    .await;
    expect_error(
        bad(reqwest::Method::POST, "/api/v1/repositories/alice/app")
            .send()
            .await
            .unwrap(),
        405,
        &["UNSUPPORTED"],
    )
    .await;
    expect_error(
        bad(reqwest::Method::PATCH, "/api/v1/repositories/alice/app")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
        &["UNSUPPORTED"],
    )
    .await;
    expect_error(
        bad(reqwest::Method::PATCH, "/api/v1/repositories/alice/app")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
        413,
        &["SIZE_INVALID"],
    )
    .await;
    expect_error(
        bad(reqwest::Method::GET, "/api/v1/repositories?page=x")
            .send()
            .await
            .unwrap(),
        400,
        &["PAGINATION_NUMBER_INVALID"],
    )
    .await;
    // Wrong password: 401 with a challenge, like the registry.
    let r = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/repositories",
        Some((ALICE.0, "wrong")),
    )
    .send()
    .await
    .unwrap();
    assert!(header(&r, "www-authenticate").is_some());
    expect_error(r, 401, &["UNAUTHORIZED"]).await;
    // Events need the shared secret, which this index has none of.
    expect_status(
        api(&server, reqwest::Method::POST, "/api/v1/events", None)
            .json(&json!({"events": []}))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // A Bearer token of this index works on the API too.
    let token = token_of(&fetch_token(&server, SERVICE, Some(ALICE), &[]).await);
    let r = server
        .client()
        .get(server.url("/api/v1/repositories"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 200).await["total"], 1);
    assert_no_secrets(&server.log(), &[ALICE, BOB]);
}

#[tokio::test]
async fn read_only_mode_refuses_index_deletes_and_keeps_everything() {
    let mut server = start();
    push(&server, ALICE, "alice/app", "v1", 12).await;
    server.stop();
    let text = server
        .config_text()
        .replace("[storage]\n", "[storage]\nread_only = true\n");
    server.replace_config(&text);
    server.spawn();
    expect_error(
        api(
            &server,
            reqwest::Method::DELETE,
            "/api/v1/repositories/alice/app",
            Some(ALICE),
        )
        .send()
        .await
        .unwrap(),
        405,
        &["UNSUPPORTED"],
    )
    .await;
    let owner = registry_as(&server, Some(ALICE), &["repository:alice/app:pull"]).await;
    expect_status(owner.get_manifest("alice/app", "v1").await, 200).await;
    assert_eq!(search(&server, Some(ALICE), "").await, ["alice/app"]);
}
