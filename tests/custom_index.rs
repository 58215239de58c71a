//! A custom index (`holdfast index`) and two registries that trust its public key: one set
//! of accounts for both, tokens bound to the registry (audience) they were issued for, and
//! no registry API on the index itself.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");
const ALICE: (&str, &str) = ("alice", "alice-password-1");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `dir/holdfast.toml` (listen on `port`, data in `dir/data`, then `extra`) and
/// starts `holdfast <command>` with it.
fn start(command: &str, dir: &Path, port: u16, extra: &str) -> Proc {
    let config = dir.join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[storage]\npath = \"{}\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args([command, "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_for("the port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    proc
}

fn add_user(dir: &Path, (name, password): (&str, &str)) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--password-stdin", "--config"])
        .arg(dir.join("holdfast.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "user add {name}");
}

fn client(cas: &[PathBuf]) -> reqwest::Client {
    let certs = cas
        .iter()
        .map(|p| reqwest::Certificate::from_pem(&std::fs::read(p).unwrap()).unwrap());
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Pushes one config blob and a manifest to `repo` at `base` with `token`; returns the
/// statuses of the blob push and the manifest push.
async fn push(client: &reqwest::Client, base: &str, repo: &str, token: &str) -> (u16, u16) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let d = digest(config);
    let blob = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .bearer_auth(token)
        .body(config.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": config.len()},
        "layers": [],
    });
    let put = client
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (blob, put)
}

async fn token(
    client: &reqwest::Client,
    index: &str,
    service: &str,
    scope: &str,
) -> reqwest::Response {
    client
        .get(format!("{index}/token?service={service}&scope={scope}"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_index_two_registries() {
    // The index: accounts and rules; issues tokens for registries "reg-a" and "reg-b".
    let index_dir = tempfile::tempdir().unwrap();
    let index_port = free_port();
    let index_extra = "[token]\nservice = \"reg-a\"\n[index]\nservices = [\"reg-b\"]\n\
                       [[access]]\nrepository = \"team/**\"\nusers = { \"alice\" = [\"pull\", \"push\"] }\n";
    std::fs::create_dir_all(index_dir.path()).unwrap();
    std::fs::write(
        index_dir.path().join("holdfast.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:{index_port}\"]\n[storage]\npath = \"{}\"\n{index_extra}",
            index_dir.path().join("data").display()
        ),
    )
    .unwrap();
    add_user(index_dir.path(), ALICE);
    let _index = start("index", index_dir.path(), index_port, index_extra);
    let public_key = index_dir.path().join("data/index/token-signing.pub.pem");
    wait_for("the index's public key", || public_key.exists());
    let index_url = format!("https://127.0.0.1:{index_port}");

    // Two registries trusting it, each its own service (token audience).
    let mut registries = Vec::new();
    for service in ["reg-a", "reg-b"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let extra = format!(
            "[auth]\nmode = \"token\"\n[token]\nrealm = \"{index_url}/token\"\nservice = \"{service}\"\ntrusted_keys = [\"{}\"]\n",
            public_key.display()
        );
        let proc = start("serve", dir.path(), port, &extra);
        registries.push((dir, proc, format!("https://127.0.0.1:{port}")));
    }
    let cas: Vec<PathBuf> = std::iter::once(index_dir.path())
        .chain(registries.iter().map(|(d, _, _)| d.path()))
        .map(|d| d.join("data/tls/ca.crt"))
        .collect();
    let client = client(&cas);
    let (a, b) = (&registries[0].2, &registries[1].2);

    // Registries send clients to the index.
    let r = client.get(format!("{a}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(&format!("realm=\"{index_url}/token\""))
            && challenge.contains("service=\"reg-a\""),
        "{challenge}"
    );

    // One account, tokens for both registries.
    let scope = "repository:team/app:pull,push";
    let mut tokens = Vec::new();
    for service in ["reg-a", "reg-b"] {
        let r = token(&client, &index_url, service, scope).await;
        assert_eq!(r.status(), 200, "token for {service}");
        let v: Value = r.json().await.unwrap();
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(push(&client, a, "team/app", &tokens[0]).await, (201, 201));
    assert_eq!(push(&client, b, "team/app", &tokens[1]).await, (201, 201));

    // A token is good only at the registry it was issued for.
    let (blob, _) = push(&client, b, "team/other", &tokens[0]).await;
    assert_eq!(blob, 401, "reg-a's token is refused by reg-b");
    let r = client
        .get(format!("{b}/v2/team/app/manifests/v1"))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // Unknown services are refused; the index serves no registry API.
    let r = token(&client, &index_url, "reg-c", scope).await;
    assert_eq!(r.status(), 400);
    let r = client.get(format!("{index_url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Polls `check` every 200 ms until it holds; panics after 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn manifest_status(client: &reqwest::Client, base: &str, repo: &str, token: &str) -> u16 {
    client
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(token)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Registries report pushes to the custom index over HTTPS with the shared secret (the
/// index then holds every image's digest), and a repository deleted through the index API
/// disappears from every registry when they next check in.
#[tokio::test(flavor = "multi_thread")]
async fn registries_report_to_the_custom_index_and_carry_out_its_deletes() {
    let index_dir = tempfile::tempdir().unwrap();
    let secret = index_dir.path().join("event-secret");
    std::fs::write(&secret, "a-shared-secret-of-32-characters\n").unwrap();
    let index_port = free_port();
    let index_extra = format!(
        "[token]\nservice = \"reg-a\"\n[index]\nservices = [\"reg-b\"]\nevent_secret_file = \"{}\"\n",
        secret.display()
    );
    std::fs::write(
        index_dir.path().join("holdfast.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:{index_port}\"]\n[storage]\npath = \"{}\"\n{index_extra}",
            index_dir.path().join("data").display()
        ),
    )
    .unwrap();
    add_user(index_dir.path(), ALICE);
    let _index = start("index", index_dir.path(), index_port, &index_extra);
    let public_key = index_dir.path().join("data/index/token-signing.pub.pem");
    wait_for("the index's public key", || public_key.exists());
    let index_ca = index_dir.path().join("data/tls/ca.crt");
    let index_url = format!("https://127.0.0.1:{index_port}");

    let mut registries = Vec::new();
    for service in ["reg-a", "reg-b"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let extra = format!(
            "[auth]\nmode = \"token\"\n[token]\nrealm = \"{index_url}/token\"\nservice = \"{service}\"\n\
             trusted_keys = [\"{}\"]\n[events]\nindex_url = \"{index_url}\"\nsecret_file = \"{}\"\n\
             ca_file = \"{}\"\npoll_secs = 1\n",
            public_key.display(),
            secret.display(),
            index_ca.display()
        );
        let proc = start("serve", dir.path(), port, &extra);
        registries.push((dir, proc, format!("https://127.0.0.1:{port}")));
    }
    let cas: Vec<PathBuf> = std::iter::once(index_dir.path())
        .chain(registries.iter().map(|(d, _, _)| d.path()))
        .map(|d| d.join("data/tls/ca.crt"))
        .collect();
    let client = client(&cas);
    let (a, b) = (registries[0].2.clone(), registries[1].2.clone());

    // alice owns alice/**: she pushes to both registries.
    let scope = "repository:alice/app:pull,push";
    let mut tokens = Vec::new();
    for service in ["reg-a", "reg-b"] {
        let v: Value = token(&client, &index_url, service, scope)
            .await
            .json()
            .await
            .unwrap();
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(push(&client, &a, "alice/app", &tokens[0]).await, (201, 201));
    assert_eq!(push(&client, &b, "alice/app", &tokens[1]).await, (201, 201));

    // The index learns the tag and its digest from the registries' events.
    let details = format!("{index_url}/api/v1/repositories/alice/app");
    eventually("the index knows alice/app:v1", || {
        let (client, details) = (client.clone(), details.clone());
        async move {
            let r = client
                .get(&details)
                .basic_auth(ALICE.0, Some(ALICE.1))
                .send()
                .await
                .unwrap();
            if r.status() != 200 {
                return false;
            }
            let v: Value = r.json().await.unwrap();
            v["tags"][0]["tag"] == "v1"
                && v["tags"][0]["digest"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("sha256:")
                && v["tags"][0]["pusher"] == "alice"
        }
    })
    .await;

    // Events need the secret.
    let r = client
        .post(format!("{index_url}/api/v1/events"))
        .bearer_auth("not-the-secret-at-all")
        .json(&serde_json::json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A registry of a custom index lists its catalog for administrators only: the index
    // cannot filter it there, so alice gets no catalog grant.
    let v: Value = token(&client, &index_url, "reg-a", "registry:catalog:*")
        .await
        .json()
        .await
        .unwrap();
    let catalog_token = v["token"].as_str().unwrap().to_owned();
    let r = client
        .get(format!("{a}/v2/_catalog"))
        .bearer_auth(&catalog_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Deleting the repository at the index: both registries remove it when they check in.
    let r = client
        .delete(&details)
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["pending_registries"],
        serde_json::json!(["reg-a", "reg-b"])
    );
    for (base, token) in [(&a, &tokens[0]), (&b, &tokens[1])] {
        eventually(&format!("{base} deleted alice/app"), || {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move { manifest_status(&client, &base, "alice/app", &token).await == 404 }
        })
        .await;
    }
    // The registries confirmed it: a new push stays (it is not deleted again at the next
    // check-in), and the index records it afresh.
    assert_eq!(push(&client, &a, "alice/app", &tokens[0]).await, (201, 201));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        manifest_status(&client, &a, "alice/app", &tokens[0]).await,
        200
    );
    eventually("the index knows alice/app again", || {
        let (client, details) = (client.clone(), details.clone());
        async move {
            client
                .get(&details)
                .basic_auth(ALICE.0, Some(ALICE.1))
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    })
    .await;
}
