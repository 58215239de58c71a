//! Token mode (`[auth] mode = "token"`, Docker Registry v2 token authentication) end to end
//! against the real binary over TLS, with reqwest: the Bearer challenge of the registry, the
//! embedded index's `/token` service (GET with optional Basic, the OAuth2 POST form with
//! refresh tokens), what a token lets its holder do and nothing more, tokens that must be
//! refused (tampered, forged expired, wrong issuer, audience or key), several registry
//! processes trusting one index's key (and two keys, for rotation), and the catalog scope.
//! Users are created with the real `holdfast user add`. Every test starts its own servers.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

type Cred = (&'static str, &'static str);

// Distinctive passwords, so that finding one in the log cannot be a coincidence.
const ALICE: Cred = ("alice", "alice-Tok-Pw-6Rv3mK");
const BOB: Cred = ("bob", "bob-Tok-Pw-2Qs8wD");
const WRONG: &str = "wrong-Tok-Pw-9Xe1pL";

/// The defaults of `[token]`: this registry's name (`aud`) and the index's (`iss`).
const SERVICE: &str = "holdfast";
const ISSUER: &str = "holdfast-index";

/// How long a file change may take to apply: the watcher debounces 200 ms.
const RELOAD_LIMIT: Duration = Duration::from_secs(3);

/// alice is in group team-a: everything in team-a/**, push (and so pull) in public/**, and
/// team-b/** is hers alone; bob may only pull in team-a/**; everyone may pull public/**.
const RULES: &str = r#"
[[access]]
repository = "public/**"
anonymous = ["pull"]
groups = { "team-a" = ["push"] }

[[access]]
repository = "team-a/**"
groups = { "team-a" = ["pull", "push", "delete"] }
users = { "bob" = ["pull"] }

[[access]]
repository = "team-b/**"
users = { "alice" = ["push"] }
"#;

/// Token mode with the embedded index; `index` adds keys to `[index]`, `tables` adds
/// tables such as `[token]`.
fn index_config(index: &str, tables: &str) -> String {
    format!(
        "[auth]\nmode = \"token\"\n\n[auth.throttle]\nmax_failures = 100000\n\n\
         [index]\nenabled = true\n{index}\n{tables}\n{RULES}"
    )
}

/// A registry with the embedded index, users alice (team-a) and bob.
fn start_with(index: &str, tables: &str) -> TestServer {
    let mut server = TestServer::configure(&index_config(index, tables));
    server.add_user(ALICE.0, ALICE.1, &["team-a"], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    server
}

fn start() -> TestServer {
    start_with("", "")
}

/// A registry without an index of its own that trusts the index keys `keys` and sends
/// clients to `realm` for tokens, under the service name `service`.
fn start_registry_only(service: &str, realm: &str, keys: &[PathBuf]) -> TestServer {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", k.display().to_string()))
        .collect();
    TestServer::start(&format!(
        "[auth]\nmode = \"token\"\n\n[token]\nrealm = \"{realm}\"\nservice = \"{service}\"\n\
         issuer = \"{ISSUER}\"\ntrusted_keys = [{}]\n",
        keys.join(", ")
    ))
}

/// The public key an index server writes for registries to trust.
fn public_key_file(server: &TestServer) -> PathBuf {
    server
        .data_dir()
        .join("index")
        .join("token-signing.pub.pem")
}

fn private_key_file(server: &TestServer) -> PathBuf {
    server.data_dir().join("index").join("token-signing.key")
}

fn realm_of(server: &TestServer) -> String {
    format!("https://{}/token", server.host)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token from `server`'s index for `scopes` (asserting 200).
async fn token(server: &TestServer, cred: Option<Cred>, scopes: &[&str]) -> String {
    token_of(&fetch_token(server, SERVICE, cred, scopes).await)
}

/// The token's `access` claim as `type:name` → sorted actions.
fn access(token: &str) -> BTreeMap<String, Vec<String>> {
    let (_, payload) = jwt_decode(token);
    let list = payload["access"]
        .as_array()
        .unwrap_or_else(|| panic!("token without an `access` array: {payload}"));
    list.iter()
        .map(|a| {
            let mut actions: Vec<String> = a["actions"]
                .as_array()
                .unwrap_or_else(|| panic!("access entry without actions: {a}"))
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            actions.sort();
            (
                format!(
                    "{}:{}",
                    a["type"].as_str().unwrap(),
                    a["name"].as_str().unwrap()
                ),
                actions,
            )
        })
        .collect()
}

fn grants(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries
        .iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            v.sort();
            (k.to_string(), v)
        })
        .collect()
}

/// The `WWW-Authenticate: Bearer …` a registry is expected to answer with.
struct Expect {
    realm: String,
    service: String,
}

impl Expect {
    fn of(server: &TestServer) -> Expect {
        Expect {
            realm: realm_of(server),
            service: SERVICE.to_owned(),
        }
    }

    /// Asserts a 401 spec error whose Bearer challenge names our realm and service, and
    /// exactly `scope` and `error` (absent when `None`). Returns the challenge's parameters.
    async fn check(
        &self,
        resp: reqwest::Response,
        scope: Option<&str>,
        error: Option<&str>,
    ) -> BTreeMap<String, String> {
        let what = format!("{} {}", resp.status(), resp.url());
        let www = header(&resp, "www-authenticate");
        expect_error(resp, 401, &["UNAUTHORIZED"]).await;
        let www = www.unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"));
        let (scheme, params) = parse_challenge(&www);
        assert_eq!(scheme, "Bearer", "{what}: challenge {www}");
        assert_eq!(
            params.get("realm").map(String::as_str),
            Some(self.realm.as_str()),
            "{what}: realm of {www}"
        );
        assert_eq!(
            params.get("service").map(String::as_str),
            Some(self.service.as_str()),
            "{what}: service of {www}"
        );
        assert_eq!(
            params.get("scope").map(String::as_str),
            scope,
            "{what}: scope of {www}"
        );
        assert_eq!(
            params.get("error").map(String::as_str),
            error,
            "{what}: error of {www}"
        );
        params
    }
}

/// Polls `check` every 50 ms until it holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if check().await {
            eprintln!(
                "{what}: after {:.0} ms",
                t0.elapsed().as_secs_f64() * 1000.0
            );
            return;
        }
        if t0.elapsed() > limit {
            panic!("{what}: still not the case after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unix seconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.frac]Z` (days_from_civil).
fn parse_rfc3339_utc(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Signs `claims` with `server`'s own index key, read from its data folder, with ring
/// directly (not the index or its JWT library): for tokens the index itself would never
/// issue. `header` is used exactly as given.
fn forge(server: &TestServer, header: &Value, claims: &Value) -> String {
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let text = std::fs::read(private_key_file(server)).expect("read the index key");
    let der = pem::parse(text)
        .expect("PEM private key")
        .contents()
        .to_vec();
    let input = format!("{}.{}", b64url(header), b64url(claims));
    let signature = match header["alg"].as_str().unwrap() {
        "EdDSA" => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .expect("Ed25519 key")
            .sign(input.as_bytes())
            .as_ref()
            .to_vec(),
        "ES256" => {
            let rng = ring::rand::SystemRandom::new();
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .expect("P-256 key")
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec()
        }
        other => panic!("cannot forge alg {other}"),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn b64url(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Claims as the index writes them, for `sub` on `aud`, valid from `iat` for `life` s.
fn claims(sub: &str, aud: &str, iat: u64, life: u64, access: Value) -> Value {
    json!({
        "iss": ISSUER, "sub": sub, "aud": aud,
        "iat": iat, "nbf": iat, "exp": iat + life,
        "jti": format!("forged-{iat}-{life}"),
        "access": access,
    })
}

// ---------------------------------------------------------------------------------------
// The base endpoint

/// `GET /v2/` without a token answers 401 with a Bearer challenge naming the realm (the
/// first listen address) and service, Basic credentials are not a token, and following the
/// challenge to the realm yields a token that `/v2/` accepts.
#[tokio::test(flavor = "multi_thread")]
async fn base_endpoint_sends_clients_to_the_token_service() {
    let server = start();
    let expect = Expect::of(&server);
    let plain = Api::new(&server);

    let params = expect.check(plain.get("/v2/").await, None, None).await;
    let head = plain.head("/v2/").await;
    let www = header(&head, "www-authenticate").unwrap_or_default();
    expect_head(head, 401).await;
    assert!(www.starts_with("Bearer "), "HEAD /v2/ challenge: {www:?}");

    // Basic credentials on the registry are not a token: the caller is sent for one.
    let basic = Api::with_client(
        &server,
        server
            .client_builder()
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    basic_auth_value(ALICE.0, ALICE.1).parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap(),
    );
    expect.check(basic.get("/v2/").await, None, None).await;

    // Follow the challenge as a client does: GET realm?service=… (no scope for /v2/).
    let mut url = reqwest::Url::parse(&params["realm"]).unwrap();
    url.query_pairs_mut()
        .append_pair("service", &params["service"]);
    let r = server.client().get(url).send().await.unwrap();
    let body = expect_status(r, 200).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let anonymous = bearer_api(&server, &token_of(&answer));
    let body = expect_status(anonymous.get("/v2/").await, 200).await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({}));
    expect_head(anonymous.head("/v2/").await, 200).await;

    let alice = bearer_api(&server, &token(&server, Some(ALICE), &[]).await);
    expect_status(alice.get("/v2/").await, 200).await;
    assert_no_secrets(&server.log_plain(), &[ALICE]);
}

// ---------------------------------------------------------------------------------------
// The token endpoint

/// What `/token` grants: the intersection of what is asked and what the rules allow, for
/// anonymous callers too; the answer's fields and the JWT's claims; wrong passwords,
/// repeated `scope=`, `host:port/` prefixed names and foreign services.
#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_grants_what_the_rules_allow() {
    let server = start();
    let t0 = now();

    // Anonymous pull of public/x.
    let answer = fetch_token(&server, SERVICE, None, &["repository:public/x:pull"]).await;
    let tok = token_of(&answer);
    assert_eq!(
        answer["access_token"].as_str(),
        Some(tok.as_str()),
        "token == access_token: {answer}"
    );
    let expires_in = answer["expires_in"]
        .as_u64()
        .unwrap_or_else(|| panic!("expires_in: {answer}"));
    assert!(expires_in >= 60, "expires_in {expires_in} < 60");
    assert_eq!(expires_in, 300, "the default lifetime");
    let issued_at = answer["issued_at"].as_str().expect("issued_at");
    let issued = parse_rfc3339_utc(issued_at)
        .unwrap_or_else(|| panic!("issued_at is not RFC 3339 UTC: {issued_at:?}"));
    assert!(
        issued + 5 >= t0 && issued <= now() + 5,
        "issued_at {issued_at} is not now"
    );
    assert_eq!(answer["scope"], "repository:public/x:pull", "{answer}");
    assert!(
        answer.get("refresh_token").is_none(),
        "no refresh token unasked: {answer}"
    );
    let (h, c) = jwt_decode(&tok);
    assert_eq!(h["alg"], "EdDSA", "header {h}");
    assert_eq!(h["typ"], "JWT", "header {h}");
    assert!(
        h["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "header {h}"
    );
    assert_eq!(c["iss"], ISSUER, "claims {c}");
    assert_eq!(c["aud"], SERVICE, "claims {c}");
    assert_eq!(c["sub"], "", "anonymous subject: {c}");
    let iat = c["iat"].as_u64().expect("iat");
    assert_eq!(iat, issued, "iat and issued_at");
    assert_eq!(c["exp"].as_u64(), Some(iat + expires_in), "exp: {c}");
    assert!(c["nbf"].as_u64().is_some_and(|n| n <= iat), "nbf: {c}");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "jti: {c}");
    assert_eq!(access(&tok), grants(&[("repository:public/x", &["pull"])]));
    let again = token(&server, None, &["repository:public/x:pull"]).await;
    assert_ne!(
        jwt_decode(&again).1["jti"],
        c["jti"],
        "each token has its own jti"
    );

    // Anonymous asks for push: a partial grant (pull only) with 200, not an error; a
    // repository it may not touch at all is left out.
    let tok = token(
        &server,
        None,
        &[
            "repository:public/x:pull,push",
            "repository:team-a/app:pull",
        ],
    )
    .await;
    assert_eq!(access(&tok), grants(&[("repository:public/x", &["pull"])]));
    let tok = token(&server, None, &["repository:public/x:push"]).await;
    assert_eq!(access(&tok), grants(&[]), "anonymous push: nothing granted");

    // alice (group team-a) gets pull and push, her name as subject.
    let tok = token(&server, Some(ALICE), &["repository:team-a/app:pull,push"]).await;
    assert_eq!(
        access(&tok),
        grants(&[("repository:team-a/app", &["pull", "push"])])
    );
    assert_eq!(jwt_decode(&tok).1["sub"], "alice");
    // `*` means every action she may do there.
    let tok = token(&server, Some(ALICE), &["repository:team-a/app:*"]).await;
    assert_eq!(
        access(&tok),
        grants(&[("repository:team-a/app", &["delete", "pull", "push"])])
    );

    // bob asks for push in team-a: only pull.
    let tok = token(&server, Some(BOB), &["repository:team-a/app:pull,push"]).await;
    assert_eq!(
        access(&tok),
        grants(&[("repository:team-a/app", &["pull"])])
    );
    assert_eq!(jwt_decode(&tok).1["sub"], "bob");

    // Wrong password, unknown user: 401, no token.
    for (user, password) in [("alice", WRONG), ("nobody", WRONG)] {
        let r = token_request(
            &server,
            SERVICE,
            Some((user, password)),
            &["repository:public/x:pull"],
        )
        .await;
        let www = header(&r, "www-authenticate");
        let body = expect_error(r, 401, &["UNAUTHORIZED"]).await;
        assert!(body.get("token").is_none(), "{body}");
        assert!(www.is_some(), "401 from /token without WWW-Authenticate");
    }

    // Repeated scope= parameters, and several scopes in one separated by spaces.
    let tok = token(
        &server,
        Some(ALICE),
        &[
            "repository:team-a/app:pull",
            "repository:team-a/app:push",
            "repository:public/base:pull repository:team-b/x:pull",
        ],
    )
    .await;
    assert_eq!(
        access(&tok),
        grants(&[
            ("repository:team-a/app", &["pull", "push"]),
            ("repository:public/base", &["pull"]),
            ("repository:team-b/x", &["pull"]),
        ])
    );

    // Names prefixed with this registry's host:port (as some clients write them) mean the
    // local repository; another host's prefix is another repository.
    let own = format!("repository:{}/team-a/app:pull", server.host);
    let local = format!("repository:localhost:{}/team-a/app:pull", server.port);
    for scope in [&own, &local] {
        let tok = token(&server, Some(ALICE), &[scope]).await;
        assert_eq!(
            access(&tok),
            grants(&[("repository:team-a/app", &["pull"])]),
            "{scope}"
        );
    }
    let foreign = "repository:registry.example:5000/team-a/app:pull";
    let tok = token(&server, Some(ALICE), &[foreign]).await;
    assert!(
        !access(&tok).contains_key("repository:team-a/app"),
        "{foreign} granted {:?}",
        access(&tok)
    );

    // Only this registry's service: another one is a 400 OAuth error.
    let r = token_request(
        &server,
        "another-registry",
        None,
        &["repository:public/x:pull"],
    )
    .await;
    let body = expect_status(r, 400).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "invalid_request", "{v}");
    let r = token_request(
        &server,
        "another-registry",
        Some(ALICE),
        &["repository:team-a/app:pull"],
    )
    .await;
    expect_status(r, 400).await;
    assert_no_secrets(&server.log_plain(), &[ALICE, BOB, ("alice", WRONG)]);
}

// ---------------------------------------------------------------------------------------
// The registry with tokens

/// A token lets its holder do exactly what it grants: alice's token pushes (monolithic
/// blob and manifest) and pulls in team-a/app; an anonymous token pulls public/; the same
/// token on another repository, a pull-only token for a push, a push token for a delete
/// are answered 401 `insufficient_scope` with the scope needed; mounting needs pull on
/// the source in the token.
#[tokio::test(flavor = "multi_thread")]
async fn registry_allows_exactly_what_the_token_grants() {
    let server = start();
    let expect = Expect::of(&server);
    let scope = |repo: &str, actions: &str| format!("repository:{repo}:{actions}");

    let alice_app = token(&server, Some(ALICE), &["repository:team-a/app:pull,push"]).await;
    let alice = bearer_api(&server, &alice_app);
    let img = alice.push_image("team-a/app", "v1", OCI_MANIFEST, 1).await;
    let body = expect_status(alice.get_manifest("team-a/app", "v1").await, 200).await;
    assert_eq!(body, img.bytes);

    let alice_pub = bearer_api(
        &server,
        &token(&server, Some(ALICE), &["repository:public/base:pull,push"]).await,
    );
    let public = alice_pub
        .push_image("public/base", "v1", DOCKER_MANIFEST, 2)
        .await;
    let public_config = serde_json::from_slice::<Value>(&public.bytes).unwrap()["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    // Anonymous token: pull public/base.
    let anon = bearer_api(
        &server,
        &token(&server, None, &["repository:public/base:pull,push"]).await,
    );
    let body = expect_status(anon.get_manifest("public/base", "v1").await, 200).await;
    assert_eq!(body, public.bytes);
    anon.get_blob("public/base", &public_config).await;
    expect_status(anon.get("/v2/public/base/tags/list").await, 200).await;
    // … but not push, though asked for: the token holds pull only.
    let r = anon
        .c
        .post(anon.url("/v2/public/base/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    expect
        .check(
            r,
            Some(&scope("public/base", "pull,push")),
            Some("insufficient_scope"),
        )
        .await;

    // No token at all: the challenge names the scope needed, without an error.
    let plain = Api::new(&server);
    expect
        .check(
            plain.get_manifest("team-a/app", "v1").await,
            Some(&scope("team-a/app", "pull")),
            None,
        )
        .await;

    // alice's team-a/app token on team-a/other (and on a nested name).
    for other in ["team-a/other", "team-a/app/sub"] {
        expect
            .check(
                alice.get_manifest(other, "v1").await,
                Some(&scope(other, "pull")),
                Some("insufficient_scope"),
            )
            .await;
        let r = alice
            .c
            .post(alice.url(&format!("/v2/{other}/blobs/uploads/")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        expect
            .check(
                r,
                Some(&scope(other, "pull,push")),
                Some("insufficient_scope"),
            )
            .await;
    }

    // bob asked for pull and push in team-a/app and got pull: he reads, cannot write.
    let bob = bearer_api(
        &server,
        &token(&server, Some(BOB), &["repository:team-a/app:pull,push"]).await,
    );
    let body = expect_status(bob.get_manifest("team-a/app", "v1").await, 200).await;
    assert_eq!(body, img.bytes);
    let r = bob
        .c
        .post(bob.url("/v2/team-a/app/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    expect
        .check(
            r,
            Some(&scope("team-a/app", "pull,push")),
            Some("insufficient_scope"),
        )
        .await;
    expect
        .check(
            bob.put_manifest("team-a/app", "from-bob", OCI_MANIFEST, &img.bytes)
                .await,
            Some(&scope("team-a/app", "pull,push")),
            Some("insufficient_scope"),
        )
        .await;

    // Delete needs `delete` in the token, even for alice who may delete.
    let path = format!("/v2/team-a/app/manifests/{}", img.digest);
    expect
        .check(
            alice.delete(&path).await,
            Some(&scope("team-a/app", "delete")),
            Some("insufficient_scope"),
        )
        .await;

    // Mounting from public/base into team-a/app needs pull on public/base in the token:
    // without it the blob is not mounted (an ordinary upload session starts instead).
    let mount = |api: &Api| {
        let mut u = reqwest::Url::parse(&api.url("/v2/team-a/app/blobs/uploads/")).unwrap();
        u.query_pairs_mut()
            .append_pair("mount", &public_config)
            .append_pair("from", "public/base");
        api.c.post(u).header("content-length", "0").send()
    };
    let r = mount(&alice).await.unwrap();
    expect_status(r, 202).await;
    let both = bearer_api(
        &server,
        &token(
            &server,
            Some(ALICE),
            &[
                "repository:team-a/app:pull,push",
                "repository:public/base:pull",
            ],
        )
        .await,
    );
    let r = mount(&both).await.unwrap();
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(public_config.as_str())
    );
    expect_status(r, 201).await;

    let deleter = bearer_api(
        &server,
        &token(&server, Some(ALICE), &["repository:team-a/app:delete"]).await,
    );
    expect_status(deleter.delete(&path).await, 202).await;
    expect_error(alice.get_manifest("team-a/app", "v1").await, 404, &[]).await;
}

/// Tokens the registry must refuse with 401 `invalid_token`: garbage, a payload or
/// signature changed after signing, `alg: none`, HMAC keyed with the public key, an
/// unknown or missing `kid`, and — signed with the right key — expired, not yet valid,
/// another issuer, another audience. A token signed the same way with valid claims is
/// accepted, so the refusals are about the claims.
#[tokio::test(flavor = "multi_thread")]
async fn registry_refuses_bad_tokens() {
    let server = start();
    let expect = Expect::of(&server);
    let path = "/v2/public/base/tags/list";

    let good = token(&server, None, &["repository:public/base:pull"]).await;
    let status = |t: String| {
        let api = bearer_api(&server, &t);
        async move { api.get(path).await }
    };
    // Nothing pushed yet: a valid token reaches the registry, which answers 404.
    expect_error(status(good.clone()).await, 404, &["NAME_UNKNOWN"]).await;

    let refused = |what: &'static str, t: String| {
        let expect = &expect;
        let status = &status;
        async move {
            eprintln!("refused: {what}");
            expect
                .check(status(t).await, None, Some("invalid_token"))
                .await;
        }
    };
    refused("garbage", "not-a-jwt".to_owned()).await;
    refused("three dots of garbage", "a.b.c".to_owned()).await;

    let parts: Vec<&str> = good.split('.').collect();
    let (h, c) = jwt_decode(&good);
    let kid = h["kid"].as_str().unwrap().to_owned();

    // The payload changed after signing: more access, or another subject.
    let mut more = c.clone();
    more["access"] =
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]);
    refused(
        "payload with more access",
        format!("{}.{}.{}", parts[0], b64url(&more), parts[2]),
    )
    .await;
    let mut other_sub = c.clone();
    other_sub["sub"] = json!("alice");
    refused(
        "payload with another subject",
        format!("{}.{}.{}", parts[0], b64url(&other_sub), parts[2]),
    )
    .await;
    // One byte of the payload flipped (its JSON re-encoded), and one of the signature.
    let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    let at = payload.len() / 2;
    payload[at] ^= 0x01;
    refused(
        "flipped payload byte",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&payload),
            parts[2]
        ),
    )
    .await;
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 0x80;
    refused(
        "flipped signature byte",
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig)),
    )
    .await;

    // alg: none, and HS256 keyed with the public key's PEM (the classic confusions).
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    refused(
        "alg none",
        format!("{}.{}.", b64url(&none_header), parts[1]),
    )
    .await;
    let public_pem = std::fs::read(public_key_file(&server)).unwrap();
    let hs = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let input = format!("{}.{}", b64url(&hs), b64url(&c));
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_pem),
        input.as_bytes(),
    );
    let hmac = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    refused("HS256 keyed with the public key", hmac).await;

    // Signed with the server's own key by another program.
    let t = now();
    let pull = json!([{"type": "repository", "name": "public/base", "actions": ["pull"]}]);
    let header_ok = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let valid = forge(
        &server,
        &header_ok,
        &claims("", SERVICE, t, 300, pull.clone()),
    );
    expect_error(status(valid).await, 404, &["NAME_UNKNOWN"]).await;
    let many_aud = {
        let mut c = claims("", SERVICE, t, 300, pull.clone());
        c["aud"] = json!(["other", SERVICE]);
        forge(&server, &header_ok, &c)
    };
    expect_error(status(many_aud).await, 404, &["NAME_UNKNOWN"]).await;

    refused(
        "expired ten minutes ago",
        forge(
            &server,
            &header_ok,
            &claims("", SERVICE, t - 3600, 3000, pull.clone()),
        ),
    )
    .await;
    refused(
        "not valid for ten minutes",
        forge(
            &server,
            &header_ok,
            &claims("", SERVICE, t + 600, 300, pull.clone()),
        ),
    )
    .await;
    let mut wrong_iss = claims("", SERVICE, t, 300, pull.clone());
    wrong_iss["iss"] = json!("someone-else");
    refused("another issuer", forge(&server, &header_ok, &wrong_iss)).await;
    refused(
        "another audience",
        forge(
            &server,
            &header_ok,
            &claims("", "another-registry", t, 300, pull.clone()),
        ),
    )
    .await;
    refused(
        "unknown kid",
        forge(
            &server,
            &json!({"alg": "EdDSA", "typ": "JWT", "kid": "not-a-known-key"}),
            &claims("", SERVICE, t, 300, pull.clone()),
        ),
    )
    .await;
    refused(
        "no kid",
        forge(
            &server,
            &json!({"alg": "EdDSA", "typ": "JWT"}),
            &claims("", SERVICE, t, 300, pull.clone()),
        ),
    )
    .await;

    let log = server.log_plain();
    assert!(
        log.contains("token_rejected"),
        "refusals are audited: {}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !log.contains(&good),
        "the server log contains a bearer token"
    );
}

/// Several processes, one index: a registry without an index of its own (service name the
/// same) accepts the tokens of the index whose public key it lists, from two indexes at once
/// (key rotation; Ed25519 and P-256), and sends clients to that index's realm; one whose
/// service name differs refuses them (`aud`); an index's tokens are refused by a registry
/// that does not trust its key; an index issues tokens only for its own service.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_across_registries_and_keys() {
    let a = start();
    // C: another index, with a P-256 key and a shorter lifetime.
    let c = start_with(
        "key_algorithm = \"p256\"\n",
        "[token]\nlifetime_secs = 90\n",
    );

    let b = start_registry_only(
        SERVICE,
        &realm_of(&a),
        &[public_key_file(&a), public_key_file(&c)],
    );
    let d = start_registry_only("other", &realm_of(&a), &[public_key_file(&a)]);

    let scopes = ["repository:team-a/app:pull,push"];
    let from_a = token(&a, Some(ALICE), &scopes).await;
    let from_c_answer = fetch_token(&c, SERVICE, Some(ALICE), &scopes).await;
    assert_eq!(from_c_answer["expires_in"], 90, "{from_c_answer}");
    let from_c = token_of(&from_c_answer);
    assert_eq!(jwt_decode(&from_c).0["alg"], "ES256");
    assert_ne!(
        jwt_decode(&from_a).0["kid"],
        jwt_decode(&from_c).0["kid"],
        "two keys, two kids"
    );

    // B (same service, trusts A and C): no token → sent to A's realm; A's and C's tokens
    // both work, for exactly what they grant.
    let expect_b = Expect {
        realm: realm_of(&a),
        service: SERVICE.to_owned(),
    };
    expect_b
        .check(Api::new(&b).get("/v2/").await, None, None)
        .await;
    // (Acceptance is shown on repository endpoints; `GET /v2/` with a token is the
    // subject of base_endpoint_sends_clients_to_the_token_service.)
    let b_with_a = bearer_api(&b, &from_a);
    let img = b_with_a
        .push_image("team-a/app", "v1", OCI_MANIFEST, 7)
        .await;
    let b_with_c = bearer_api(&b, &from_c);
    let body = expect_status(b_with_c.get_manifest("team-a/app", "v1").await, 200).await;
    assert_eq!(body, img.bytes, "pushed with A's token, pulled with C's");
    b_with_c
        .push_image("team-a/app", "v2", OCI_MANIFEST, 8)
        .await;
    expect_b
        .check(
            b_with_a.get_manifest("team-a/other", "v1").await,
            Some("repository:team-a/other:pull"),
            Some("insufficient_scope"),
        )
        .await;
    // B's storage is its own: A has nothing.
    expect_error(
        bearer_api(&a, &from_a)
            .get_manifest("team-a/app", "v1")
            .await,
        404,
        &[],
    )
    .await;

    // A does not trust C's key.
    let expect_a = Expect::of(&a);
    expect_a
        .check(
            bearer_api(&a, &from_c).get("/v2/").await,
            None,
            Some("invalid_token"),
        )
        .await;

    // D (service "other", trusts A): A's token for A's service is refused; the challenge
    // sends clients to A's realm for service "other", which A does not serve.
    let expect_d = Expect {
        realm: realm_of(&a),
        service: "other".to_owned(),
    };
    expect_d
        .check(Api::new(&d).get("/v2/").await, None, None)
        .await;
    expect_d
        .check(
            bearer_api(&d, &from_a).get("/v2/").await,
            None,
            Some("invalid_token"),
        )
        .await;
    expect_d
        .check(
            bearer_api(&d, &from_a)
                .get_manifest("team-a/app", "v1")
                .await,
            None,
            Some("invalid_token"),
        )
        .await;
    let r = token_request(&a, "other", Some(ALICE), &scopes).await;
    expect_status(r, 400).await;

    // An index with its own, untrusted key: its tokens are refused by B and D.
    let x = start();
    let from_x = token(&x, Some(ALICE), &scopes).await;
    expect_b
        .check(
            bearer_api(&b, &from_x).get("/v2/").await,
            None,
            Some("invalid_token"),
        )
        .await;
    expect_a
        .check(
            bearer_api(&a, &from_x).get("/v2/").await,
            None,
            Some("invalid_token"),
        )
        .await;
    let log = b.log_plain();
    assert!(
        log.contains("embedded_index=false") && log.contains("keys=2"),
        "B's start-up line: {}",
        log.lines()
            .find(|l| l.contains("token authentication"))
            .unwrap_or("(none)")
    );
}

// ---------------------------------------------------------------------------------------
// OAuth2

async fn oauth(server: &TestServer, form: &[(&str, &str)]) -> reqwest::Response {
    server
        .client()
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap()
}

/// The OAuth2 POST form: `grant_type=password` with `access_type=offline` answers a token
/// and a refresh token; `grant_type=refresh_token` answers new tokens with today's rights;
/// a removed user's refresh token stops working at once (hot reload), another user's goes
/// on.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_password_and_refresh_grants() {
    let server = start();
    let app = "repository:team-a/app:pull,push";

    let password = |user: &'static str, pw: &'static str, offline: bool| {
        let server = &server;
        async move {
            let mut form = vec![
                ("grant_type", "password"),
                ("username", user),
                ("password", pw),
                ("service", SERVICE),
                ("scope", app),
                ("client_id", "holdfast-tests"),
            ];
            if offline {
                form.push(("access_type", "offline"));
            }
            oauth(server, &form).await
        }
    };
    let r = password(ALICE.0, ALICE.1, true).await;
    let body = expect_status(r, 200).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let tok = token_of(&answer);
    assert_eq!(answer["access_token"].as_str(), Some(tok.as_str()));
    assert!(answer["expires_in"].as_u64().is_some_and(|e| e >= 60));
    assert_eq!(
        access(&tok),
        grants(&[("repository:team-a/app", &["pull", "push"])])
    );
    assert_eq!(jwt_decode(&tok).1["sub"], "alice");
    let refresh = answer["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token with access_type=offline: {answer}"))
        .to_owned();
    assert!(
        !refresh.is_empty() && !refresh.contains('.'),
        "opaque: {refresh}"
    );
    bearer_api(&server, &tok)
        .push_image("team-a/app", "v1", OCI_MANIFEST, 3)
        .await;

    // Without access_type=offline, no refresh token.
    let body = expect_status(password(ALICE.0, ALICE.1, false).await, 200).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v.get("refresh_token").is_none(), "{v}");

    // A wrong password: refused without a token.
    let r = password(ALICE.0, WRONG, true).await;
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert!(
        status == 400 || status == 401,
        "wrong password: {status} {}",
        String::from_utf8_lossy(&body)
    );
    assert!(!String::from_utf8_lossy(&body).contains("token\""));

    // Refresh: a new access token, for the scopes asked now.
    let refresh_with = |rt: String, scope: &'static str| {
        let server = &server;
        async move {
            oauth(
                server,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("service", SERVICE),
                    ("scope", scope),
                    ("client_id", "holdfast-tests"),
                ],
            )
            .await
        }
    };
    let body = expect_status(
        refresh_with(refresh.clone(), "repository:team-a/app:pull,delete").await,
        200,
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let renewed = token_of(&v);
    assert_ne!(renewed, tok);
    assert_eq!(
        access(&renewed),
        grants(&[("repository:team-a/app", &["delete", "pull"])])
    );
    assert_eq!(jwt_decode(&renewed).1["sub"], "alice");
    expect_status(
        bearer_api(&server, &renewed)
            .get_manifest("team-a/app", "v1")
            .await,
        200,
    )
    .await;
    // A refresh token that was never issued, and one for another service.
    let r = refresh_with("hfrt_not-a-real-refresh-token-000000".into(), app).await;
    let body = expect_status(r, 400).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "invalid_grant", "{v}");
    let r = oauth(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", "another-registry"),
        ],
    )
    .await;
    expect_status(r, 400).await;
    // Malformed forms.
    let r = oauth(
        &server,
        &[("grant_type", "client_credentials"), ("service", SERVICE)],
    )
    .await;
    let body = expect_status(r, 400).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "unsupported_grant_type", "{v}");
    let r = oauth(&server, &[("grant_type", "password"), ("service", SERVICE)]).await;
    let body = expect_status(r, 400).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "invalid_request", "{v}");

    // bob's refresh token, to show that removing alice revokes only hers.
    let body = expect_status(password(BOB.0, BOB.1, true).await, 200).await;
    let bob_refresh = serde_json::from_slice::<Value>(&body).unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = server.user_cmd(&["remove", "alice"], None);
    assert!(out.status.success(), "user remove alice: {out:?}");
    eventually("alice's refresh token refused", RELOAD_LIMIT, || {
        let r = refresh_with(refresh.clone(), app);
        async move { r.await.status().as_u16() == 400 }
    })
    .await;
    let body = expect_status(refresh_with(refresh.clone(), app).await, 400).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "invalid_grant", "{v}");
    let r = password(ALICE.0, ALICE.1, true).await;
    assert!(
        matches!(r.status().as_u16(), 400 | 401),
        "removed user's password: {}",
        r.status()
    );
    let r = token_request(&server, SERVICE, Some(ALICE), &[app]).await;
    assert_eq!(
        r.status().as_u16(),
        401,
        "removed user's Basic at GET /token"
    );
    let body = expect_status(
        refresh_with(bob_refresh.clone(), "repository:team-a/app:pull").await,
        200,
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        access(&token_of(&v)),
        grants(&[("repository:team-a/app", &["pull"])])
    );
    // A password change ends the user's refresh tokens too.
    let out = server.user_cmd(
        &["passwd", "bob", "--password-stdin"],
        Some("a-brand-new-password\n"),
    );
    assert!(out.status.success(), "user passwd bob: {out:?}");
    eventually(
        "bob's refresh token refused after passwd",
        RELOAD_LIMIT,
        || {
            let r = refresh_with(bob_refresh.clone(), "repository:team-a/app:pull");
            async move { r.await.status().as_u16() == 400 }
        },
    )
    .await;
    assert_no_secrets(&server.log_plain(), &[ALICE, BOB, ("alice", WRONG)]);
    let log = server.log_plain();
    assert!(!log.contains(&refresh), "the log contains a refresh token");
}

// ---------------------------------------------------------------------------------------
// Catalog

/// `/v2/_catalog` needs `registry:catalog:*` in the token: without it (no token, or an
/// anonymous token, which is never granted the catalog) 401 with that scope; with it, the
/// repositories the token's user may pull.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_needs_the_catalog_scope() {
    let server = start();
    let expect = Expect::of(&server);
    for (repo, seed) in [("team-a/app", 1), ("public/base", 2), ("team-b/secret", 3)] {
        let api = bearer_api(
            &server,
            &token(&server, Some(ALICE), &[&format!("repository:{repo}:push")]).await,
        );
        api.push_image(repo, "v1", OCI_MANIFEST, seed).await;
    }
    let catalog_scope = "registry:catalog:*";

    expect
        .check(
            Api::new(&server).get("/v2/_catalog").await,
            Some(catalog_scope),
            None,
        )
        .await;
    let anon = token(
        &server,
        None,
        &["repository:public/base:pull", catalog_scope],
    )
    .await;
    assert!(
        !access(&anon).contains_key("registry:catalog"),
        "anonymous got the catalog: {:?}",
        access(&anon)
    );
    expect
        .check(
            bearer_api(&server, &anon).get("/v2/_catalog").await,
            Some(catalog_scope),
            Some("insufficient_scope"),
        )
        .await;
    let alice_no_catalog = token(&server, Some(ALICE), &["repository:team-a/app:pull"]).await;
    expect
        .check(
            bearer_api(&server, &alice_no_catalog)
                .get("/v2/_catalog")
                .await,
            Some(catalog_scope),
            Some("insufficient_scope"),
        )
        .await;

    let list = |t: String| {
        let api = bearer_api(&server, &t);
        async move {
            let body = expect_status(api.get("/v2/_catalog").await, 200).await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["repositories"].clone()
        }
    };
    let alice = token(&server, Some(ALICE), &[catalog_scope]).await;
    assert_eq!(access(&alice), grants(&[("registry:catalog", &["*"])]));
    assert_eq!(
        list(alice).await,
        json!(["public/base", "team-a/app", "team-b/secret"])
    );
    let bob = token(&server, Some(BOB), &[catalog_scope]).await;
    assert_eq!(list(bob).await, json!(["public/base", "team-a/app"]));
}
