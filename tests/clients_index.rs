//! Real clients against the index's repository metadata (token mode, embedded index):
//! `docker search` and `podman search` find what the caller may pull through `/v1/search`
//! and never a private repository; a stranger's docker cannot pull a private repository
//! while a collaborator's can. A missing client program is a failure when `CI` is set and
//! a printed skip otherwise.

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
use std::time::Instant;

use common::TestServer;
use http::ServerLog;
use oci::Image;
use proc::{exec, p, require, require_busybox, run, stderr, stdout};
use tools::{Dockerd, Podman, SystemCa};

const ALICE: (&str, &str) = ("alice", "alice-IdxClient-Pw-3Kd9");
const BOB: (&str, &str) = ("bob", "bob-IdxClient-Pw-8Rf1");

/// Token mode with the embedded index: alice owns `alice/` (private by default) and the
/// organisation `shop`, whose repositories are public.
fn start_server() -> TestServer {
    let mut server = TestServer::configure(
        "[auth]\nmode = \"token\"\n\n[auth.throttle]\nmax_failures = 100000\n\n\
         [index]\nenabled = true\n\n\
         [[index.namespaces]]\nname = \"shop\"\nmembers = [\"alice\"]\nvisibility = \"public\"\n",
    );
    server.add_user(ALICE.0, ALICE.1, &[], false);
    server.add_user(BOB.0, BOB.1, &[], false);
    server.spawn();
    server
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Pushes `img` as `repo:tag` with a token of alice's, and sets the description.
fn seed(server: &TestServer, repo: &str, description: &str, img: &Image) {
    runtime().block_on(async {
        let answer = common::fetch_token(
            server,
            "holdfast",
            Some(ALICE),
            &[&format!("repository:{repo}:pull,push")],
        )
        .await;
        let api = common::bearer_api(server, &common::token_of(&answer));
        for b in &img.manifest.blobs {
            api.push_blob(repo, &b.bytes).await;
        }
        api.push_manifest(repo, "v1", &img.manifest.media_type, &img.manifest.bytes)
            .await;
        let r = server
            .client()
            .patch(server.url(&format!("/api/v1/repositories/{repo}")))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .json(&serde_json::json!({ "description": description }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "set the description of {repo}");
    });
}

/// alice makes bob a collaborator (pull) on `repo`.
fn add_collaborator(server: &TestServer, repo: &str) {
    runtime().block_on(async {
        let r = server
            .client()
            .put(server.url(&format!("/api/v1/repositories/{repo}/-/collaborators/bob")))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .json(&serde_json::json!({ "access": "pull" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "add bob to {repo}");
    });
}

fn docker_config(root: &Path, who: &str, host: &str, cred: Option<(&str, &str)>) -> String {
    use base64::Engine as _;
    let d = root.join(format!("docker-{who}"));
    std::fs::create_dir_all(&d).unwrap();
    let auths = match cred {
        Some((u, pw)) => serde_json::json!({ host: { "auth":
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}")) } }),
        None => serde_json::json!({}),
    };
    std::fs::write(
        d.join("config.json"),
        serde_json::json!({ "auths": auths }).to_string(),
    )
    .unwrap();
    p(&d).to_owned()
}

/// The names a search printed with `--format {{.Name}}`, one per line.
fn names(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        // Clients print names with or without the registry host.
        .map(|l| {
            l.rsplit_once("/shop/")
                .map_or(l.to_owned(), |(_, n)| format!("shop/{n}"))
        })
        .map(|l| {
            l.rsplit_once("/alice/")
                .map_or(l.clone(), |(_, n)| format!("alice/{n}"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn docker_search_and_private_repositories() {
    let name = "docker_search_and_private_repositories";
    if !require(name, &["docker", "dockerd", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let host = server.host.as_str();
    let img = Image::busybox("amd64", "docker index search");
    seed(&server, "shop/widget-app", "Widgets for everyone", &img);
    seed(&server, "alice/secret-app", "Alice's private app", &img);
    let work = tempfile::tempdir().unwrap();
    let anon = docker_config(work.path(), "anon", host, None);
    let bob = docker_config(work.path(), "bob", host, Some(BOB));
    let dk = Dockerd::start(&server);
    let as_user = |config: &str, args: &[&str]| {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        dk.cmd(&all)
    };

    // Search finds the public repository by name and by description, never the private one.
    for term in ["app", "widgets"] {
        let o = run(&mut as_user(
            &anon,
            &["search", "--format", "{{.Name}}", &format!("{host}/{term}")],
        ));
        assert_eq!(
            names(&stdout(&o)),
            ["shop/widget-app"],
            "docker search {term}"
        );
    }
    let o = run(&mut as_user(
        &anon,
        &[
            "search",
            "--format",
            "{{.Name}}\t{{.Description}}",
            &format!("{host}/secret"),
        ],
    ));
    assert!(
        stdout(&o).trim().is_empty(),
        "docker search shows a private repository: {}",
        stdout(&o)
    );

    // A stranger cannot pull the private repository; a collaborator can.
    let private = format!("{host}/alice/secret-app:v1");
    let o = exec(&mut as_user(&bob, &["pull", &private]));
    assert!(!o.status.success(), "bob pulled a private repository");
    add_collaborator(&server, "alice/secret-app");
    let o = exec(&mut as_user(&bob, &["pull", &private]));
    assert!(
        o.status.success(),
        "collaborator bob could not pull: {}",
        stderr(&o)
    );
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &private]);
    assert_eq!(id.trim(), img.id());
    // docker sends the stored credentials with a search: the collaborator finds it.
    let o = run(&mut as_user(
        &bob,
        &["search", "--format", "{{.Name}}", &format!("{host}/secret")],
    ));
    assert_eq!(
        names(&stdout(&o)),
        ["alice/secret-app"],
        "bob's docker search"
    );
    eprintln!("== {name} took {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn podman_search_and_private_repositories() {
    let name = "podman_search_and_private_repositories";
    if !require(name, &["podman", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = start_server();
    let _log = ServerLog(&server);
    let host = server.host.as_str();
    let certs = server.cert_dir();
    let certs = p(&certs);
    let img = Image::busybox("amd64", "podman index search");
    seed(&server, "shop/widget-app", "Widgets for everyone", &img);
    seed(&server, "alice/secret-app", "Alice's private app", &img);
    let pm = Podman::new();

    // podman search has no --cert-dir: it reads the CA from certs.d.
    let _ca = SystemCa::install("/etc/containers/certs.d", &server);
    let search = |term: &str| {
        pm.cmd(&[
            "search",
            "--tls-verify=true",
            "--format",
            "{{.Name}}",
            &format!("{host}/{term}"),
        ])
    };
    let o = run(&mut search("app"));
    assert_eq!(names(&stdout(&o)), ["shop/widget-app"], "podman search app");
    let o = exec(&mut search("secret"));
    assert!(
        !stdout(&o).contains("secret-app"),
        "podman search shows a private repository: {}",
        stdout(&o)
    );

    // A stranger cannot pull it; a collaborator can.
    let private = format!("{host}/alice/secret-app:v1");
    let bob = format!("{}:{}", BOB.0, BOB.1);
    let pull = |pm: &Podman| {
        pm.cmd(&[
            "pull",
            "--tls-verify=true",
            "--cert-dir",
            certs,
            "--creds",
            &bob,
            &private,
        ])
    };
    let o = exec(&mut pull(&Podman::new()));
    assert!(!o.status.success(), "bob pulled a private repository");
    add_collaborator(&server, "alice/secret-app");
    let pm_bob = Podman::new();
    run(&mut pull(&pm_bob));
    assert_eq!(
        format!("sha256:{}", pm_bob.inspect(&private, "{{.Id}}")),
        img.id()
    );
    eprintln!("== {name} took {:.1}s", t0.elapsed().as_secs_f64());
}
