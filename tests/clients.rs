//! Real clients against the real binary: skopeo, podman, docker (with a private dockerd)
//! and containerd's `ctr` push and pull images made offline, over TLS that they verify.
//!
//! A missing client program is a failure when `CI` is set (`.ci/run` installs them all)
//! and a printed skip otherwise. Every test starts its own server.

mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/oci.rs"]
mod oci;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use common::{digest_of, TestServer};
use http::{get_manifest, http, tail, ServerLog, ACCEPT_ALL_MANIFESTS};
use oci::Image;
use proc::{p, require, require_busybox, run, run_fails, stderr, stdout};
use tools::{lowercase_tempdir, Containerd, Dockerd, Podman, SystemCa};

fn elapsed(test: &str, t0: Instant) {
    eprintln!("== {test} took {:.1}s", t0.elapsed().as_secs_f64());
}

fn tags_of(list_tags_json: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(list_tags_json).expect("list-tags JSON");
    v["Tags"]
        .as_array()
        .expect("Tags array")
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// skopeo

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

/// skopeo copies an OCI layout up (two tags sharing layers, and an OCI 1.1 artifact that
/// refers to the first), inspects it, lists tags, copies it back down byte for byte, and
/// deletes a manifest.
#[test]
fn skopeo_copy_inspect_list_delete() {
    let name = "skopeo_copy_inspect_list_delete";
    if !require(name, &["skopeo", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let work = tempfile::tempdir().unwrap();
    let certs = server.cert_dir();
    let certs = p(&certs);
    let repo = "skopeo/busybox";
    let dest = format!("docker://{}/{repo}", server.host);

    let v1 = Image::busybox("amd64", "skopeo v1");
    let v2 = Image::busybox("amd64", "skopeo v2");
    let note = oci::artifact("a note about v1\n", Some(&v1.manifest));
    let src = work.path().join("src");
    oci::write_layout(
        &src,
        &[("v1", &v1.manifest), ("v2", &v2.manifest), ("note", &note)],
    );

    // Push v1: every blob is new.
    let push = |tag: &str| {
        run(&mut skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            certs,
            &format!("oci:{}:{tag}", p(&src)),
            &format!("{dest}:{tag}"),
        ]))
    };
    push("v1");

    // What is stored is what was pushed, byte for byte.
    let raw = run(&mut skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:v1"),
    ]));
    assert_eq!(
        String::from_utf8_lossy(&raw.stdout),
        String::from_utf8_lossy(&v1.manifest.bytes),
        "skopeo inspect --raw returns the manifest bytes pushed"
    );
    let info = run(&mut skopeo(&[
        "inspect",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:v1"),
    ]));
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["Digest"], v1.digest(), "inspect Digest");
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(
        info["Labels"]["org.example.holdfast.marker"], "skopeo v1",
        "labels come from the config blob"
    );
    let layers: Vec<String> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, v1.layer_digests());
    let config = run(&mut skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:v1"),
    ]));
    assert_eq!(config.stdout, v1.config.bytes, "config blob bytes");
    let r = get_manifest(&server, repo, "v1");
    assert_eq!(r.body, v1.manifest.bytes);

    // Push v2: the busybox and /etc layers are already there, and skopeo's HEAD finds them.
    let out = run(&mut skopeo(&[
        "--debug",
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        certs,
        &format!("oci:{}:v2", p(&src)),
        &format!("{dest}:v2"),
    ]));
    let said = stderr(&out);
    for shared in &v2.layer_digests()[..2] {
        assert!(
            said.contains(&format!("Skipping blob {shared} (already present)")),
            "skopeo should find layer {shared} (shared with v1) already present:\n{said}"
        );
    }
    let unique = &v2.layer_digests()[2];
    assert!(
        !said.contains(&format!("Skipping blob {unique}")),
        "v2's own layer {unique} cannot have been there already"
    );
    get_manifest(&server, repo, &v2.digest());

    // The OCI 1.1 artifact, with v1 as its subject.
    push("note");
    let raw = run(&mut skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:note"),
    ]));
    assert_eq!(raw.stdout, note.bytes, "artifact manifest bytes");
    let referrers = http(
        &server,
        "GET",
        &format!("/v2/{repo}/referrers/{}", v1.digest()),
        "",
    );
    assert_eq!(
        referrers.status,
        200,
        "referrers of v1: {}",
        String::from_utf8_lossy(&referrers.body)
    );
    assert!(
        referrers.header("content-type").starts_with(oci::OCI_INDEX),
        "referrers Content-Type: {}",
        referrers.header("content-type")
    );
    let listed: Vec<Value> = referrers.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "one referrer of v1: {listed:?}");
    assert_eq!(listed[0]["digest"], note.digest());
    assert_eq!(
        listed[0]["artifactType"],
        "application/vnd.example.holdfast.note.v1"
    );

    let tags = run(&mut skopeo(&[
        "list-tags",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &dest,
    ]));
    assert_eq!(tags_of(&stdout(&tags)), set(&["v1", "v2", "note"]));

    // Copy v1 back down into a fresh layout: the same manifest and blobs.
    let back = work.path().join("back");
    run(&mut skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=true",
        "--src-cert-dir",
        certs,
        &format!("{dest}:v1"),
        &format!("oci:{}:v1", p(&back)),
    ]));
    let refs = oci::layout_refs(&back);
    assert_eq!(refs["v1"]["digest"], v1.digest(), "pulled manifest digest");
    assert_eq!(oci::layout_blob(&back, &v1.digest()), v1.manifest.bytes);
    for b in &v1.manifest.blobs {
        assert_eq!(
            oci::layout_blob(&back, &b.digest()),
            b.bytes,
            "blob {}",
            b.digest()
        );
    }

    // Delete v1 (by its digest, which is what skopeo sends); v2 stays.
    run(&mut skopeo(&[
        "delete",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:v1"),
    ]));
    let gone = run_fails(&mut skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &format!("{dest}:v1"),
    ]));
    let why = stderr(&gone).to_lowercase();
    assert!(
        why.contains("manifest unknown") || why.contains("not found"),
        "inspect after delete should say the manifest is unknown: {why}"
    );
    let r = http(
        &server,
        "GET",
        &format!("/v2/{repo}/manifests/{}", v1.digest()),
        ACCEPT_ALL_MANIFESTS,
    );
    assert_eq!(r.status, 404, "deleted manifest by digest");
    let r = get_manifest(&server, repo, "v2");
    assert_eq!(r.body, v2.manifest.bytes, "v2 survives deleting v1");
    let tags = run(&mut skopeo(&[
        "list-tags",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &dest,
    ]));
    assert_eq!(tags_of(&stdout(&tags)), set(&["v2", "note"]));

    // Without the CA, verification fails: TLS is really checked.
    let empty = work.path().join("no-ca");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = run_fails(&mut skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        p(&empty),
        &format!("{dest}:v2"),
    ]));
    assert!(
        stderr(&refused).contains("certificate"),
        "expected a certificate error: {}",
        stderr(&refused)
    );
    elapsed(name, t0);
}

// ---------------------------------------------------------------------------------------
// podman

fn podman_ready(name: &str) -> bool {
    require(name, &["podman", "gzip"]) && require_busybox(name)
}

/// podman takes an image from an OCI layout into its store, pushes it, removes it, pulls it
/// back and gets the same image.
#[test]
fn podman_push_rmi_pull() {
    let name = "podman_push_rmi_pull";
    if !podman_ready(name) {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let certs = server.cert_dir();
    let certs = p(&certs);
    let work = lowercase_tempdir();
    let pm = Podman::new();

    let img = Image::busybox("amd64", "podman");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("v1", &img.manifest)]);
    let o = run(&mut pm.cmd(&["pull", "-q", &format!("oci:{}:v1", p(&src))]));
    let id = stdout(&o).trim().to_string();
    assert_eq!(
        format!("sha256:{id}"),
        img.id(),
        "podman's image ID is the config digest"
    );

    let target = format!("{}/podman/busybox:v1", server.host);
    run(&mut pm.cmd(&["tag", &id, &target]));
    let digestfile = work.path().join("digest");
    run(&mut pm.cmd(&[
        "push",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--digestfile",
        p(&digestfile),
        &target,
    ]));
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    let pushed = pushed.trim();
    let r = get_manifest(&server, "podman/busybox", "v1");
    assert_eq!(
        digest_of(&r.body),
        pushed,
        "tag v1 points at what podman pushed"
    );
    let m = r.json();
    assert_eq!(m["config"]["digest"], img.id(), "same config blob");
    assert_eq!(m["layers"].as_array().unwrap().len(), 3);
    let c = http(
        &server,
        "GET",
        &format!("/v2/podman/busybox/blobs/{}", img.id()),
        "",
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.body, img.config.bytes);

    // Forget it locally and pull it back.
    run(&mut pm.cmd(&["rmi", "-f", &id]));
    let left = run(&mut pm.cmd(&["images", "-q"]));
    assert_eq!(stdout(&left).trim(), "", "store is empty after rmi");
    run(&mut pm.cmd(&["pull", "--tls-verify=true", "--cert-dir", certs, &target]));
    assert_eq!(pm.inspect(&target, "{{.Id}}"), id);
    assert_eq!(pm.inspect(&target, "{{.Digest}}"), pushed);
    let diff_ids: Vec<String> =
        serde_json::from_str(&pm.inspect(&target, "{{json .RootFS.Layers}}")).unwrap();
    assert_eq!(diff_ids, img.diff_ids(), "same layer contents");

    // Push the same image under a second name in the same registry: the blobs are there
    // already (podman may mount them across repositories or upload them again).
    let other = format!("{}/podman/other:v1", server.host);
    run(&mut pm.cmd(&["tag", &id, &other]));
    run(&mut pm.cmd(&["push", "--tls-verify=true", "--cert-dir", certs, &other]));
    let r = get_manifest(&server, "podman/other", "v1");
    assert_eq!(digest_of(&r.body), pushed);

    // podman search reads the catalog (after trying /v1/search) and the tag list; it has
    // no --cert-dir, so the CA goes where containers/image looks for HOST's certificates.
    let _ca = SystemCa::install("/etc/containers/certs.d", &server);
    let found = run(&mut pm.cmd(&[
        "search",
        "--tls-verify=true",
        "--format",
        "{{.Name}}",
        &format!("{}/", server.host),
    ]));
    let names: BTreeSet<String> = stdout(&found)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        names,
        set(&[
            &format!("{}/podman/busybox", server.host),
            &format!("{}/podman/other", server.host),
        ]),
        "podman search lists the catalog"
    );
    let tags = run(&mut pm.cmd(&[
        "search",
        "--tls-verify=true",
        "--list-tags",
        &format!("{}/podman/busybox", server.host),
    ]));
    // A table (podman 4.3 ignores --format here): NAME TAG, then one row per tag.
    let listed: Vec<String> = stdout(&tags)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(listed, ["v1"], "podman search --list-tags");
    elapsed(name, t0);
}

/// podman builds a two-platform manifest list from two OCI layouts and pushes it with its
/// images; the registry serves the index, and podman pulls the arm64 image out of it.
#[test]
fn podman_manifest_list_multi_arch() {
    let name = "podman_manifest_list_multi_arch";
    if !podman_ready(name) {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let certs = server.cert_dir();
    let certs = p(&certs);
    let work = lowercase_tempdir();
    let pm = Podman::new();

    let amd = Image::busybox("amd64", "multi amd64");
    let arm = Image::busybox("arm64", "multi arm64");
    let src = work.path().join("src");
    oci::write_layout(&src, &[("amd64", &amd.manifest), ("arm64", &arm.manifest)]);

    let list = format!("{}/podman/multi:v1", server.host);
    run(&mut pm.cmd(&["manifest", "create", &list]));
    for arch in ["amd64", "arm64"] {
        run(&mut pm.cmd(&[
            "manifest",
            "add",
            "--os",
            "linux",
            "--arch",
            arch,
            &list,
            &format!("oci:{}:{arch}", p(&src)),
        ]));
    }
    let local = run(&mut pm.cmd(&["manifest", "inspect", &list]));
    eprintln!("local list: {}", stdout(&local));
    let digestfile = work.path().join("digest");
    run(&mut pm.cmd(&[
        "manifest",
        "push",
        "--all",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        "--digestfile",
        p(&digestfile),
        &list,
        &format!("docker://{list}"),
    ]));
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    let pushed = pushed.trim();

    let r = get_manifest(&server, "podman/multi", "v1");
    assert_eq!(digest_of(&r.body), pushed, "tag points at the pushed list");
    let ct = r.header("content-type");
    assert!(
        ct == oci::OCI_INDEX || ct == oci::DOCKER_LIST,
        "Content-Type of a list: {ct}"
    );
    let index = r.json();
    let mut platforms = BTreeSet::new();
    for d in index["manifests"].as_array().expect("manifests") {
        let arch = d["platform"]["architecture"].as_str().unwrap().to_string();
        let os = d["platform"]["os"].as_str().unwrap().to_string();
        platforms.insert(format!("{os}/{arch}"));
        let digest = d["digest"].as_str().unwrap();
        let child = get_manifest(&server, "podman/multi", digest);
        assert_eq!(child.body.len() as u64, d["size"].as_u64().unwrap());
        let config = child.json()["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let want = if arch == "arm64" { &arm } else { &amd };
        assert_eq!(config, want.id(), "{arch} child names the {arch} config");
        let blob = http(
            &server,
            "GET",
            &format!("/v2/podman/multi/blobs/{config}"),
            "",
        );
        assert_eq!(blob.status, 200);
        let cfg: Value = serde_json::from_slice(&blob.body).unwrap();
        assert_eq!(cfg["architecture"], arch.as_str());
    }
    assert_eq!(platforms, set(&["linux/amd64", "linux/arm64"]));

    if proc::require(name, &["skopeo"]) {
        let raw = run(&mut skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=true",
            "--cert-dir",
            certs,
            &format!("docker://{list}"),
        ]));
        assert_eq!(
            raw.stdout, r.body,
            "skopeo inspect --raw sees the same list"
        );
    }

    // Pull the arm64 image out of the list with a fresh store.
    let pm2 = Podman::new();
    run(&mut pm2.cmd(&[
        "pull",
        "--arch",
        "arm64",
        "--tls-verify=true",
        "--cert-dir",
        certs,
        &list,
    ]));
    assert_eq!(pm2.inspect(&list, "{{.Architecture}}"), "arm64");
    assert_eq!(
        format!("sha256:{}", pm2.inspect(&list, "{{.Id}}")),
        arm.id()
    );
    elapsed(name, t0);
}

// ---------------------------------------------------------------------------------------
// docker, with a dockerd of our own

/// `docker push` prints `TAG: digest: sha256:… size: N` when done.
fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("digest: ")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
}

/// docker (via a private dockerd) loads an image made offline, pushes it, pulls it back,
/// and pushes it under a second repository, where the layers are mounted, not uploaded.
#[test]
fn docker_push_pull_cross_repo_mount() {
    let name = "docker_push_pull_cross_repo_mount";
    if !require(name, &["docker", "dockerd", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let work = tempfile::tempdir().unwrap();
    let dk = Dockerd::start(&server);
    eprintln!("dockerd ready after {:.1}s", t0.elapsed().as_secs_f64());

    // A 24 MiB random fourth layer: docker streams it in one chunked PATCH.
    let img = Image::busybox_big("amd64", "docker", 24 << 20);
    let a = format!("{}/docker/a:v1", server.host);
    let b = format!("{}/docker/b:v1", server.host);
    let archive = work.path().join("image.tar");
    oci::write_docker_archive(&archive, &a, &img);
    dk.run(&["load", "-i", p(&archive)]);
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &a]);
    assert_eq!(
        id.trim(),
        img.id(),
        "docker's image ID is the config digest"
    );

    let out = dk.run(&["push", &a]);
    let digest_a = pushed_digest(&out);
    let r = get_manifest(&server, "docker/a", "v1");
    assert_eq!(digest_of(&r.body), digest_a);
    assert_eq!(r.header("content-type"), oci::DOCKER_MANIFEST);
    assert_eq!(r.json()["config"]["digest"], img.id());

    // Remove it locally and pull it back.
    dk.run(&["rmi", &a]);
    let left = dk.run(&["images", "-q"]);
    assert_eq!(left.trim(), "", "no images left after rmi");
    let out = dk.run(&["pull", &a]);
    assert!(out.contains(&digest_a), "pull names the digest:\n{out}");
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &a]);
    assert_eq!(id.trim(), img.id(), "pulled the same image");

    // The same layers under another repository: docker asks the registry to mount them
    // from docker/a instead of uploading them again.
    dk.run(&["tag", &a, &b]);
    let out = dk.run(&["push", &b]);
    let mounted = out.matches("Mounted from docker/a").count();
    assert_eq!(
        mounted,
        img.layers.len(),
        "every layer of b should be mounted from docker/a:\n{out}\nserver log (tail):\n{}",
        tail(&server.log(), 80)
    );
    let digest_b = pushed_digest(&out);
    assert_eq!(digest_b, digest_a, "same manifest in both repositories");
    get_manifest(&server, "docker/b", "v1");
    for l in r.json()["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let head = http(&server, "HEAD", &format!("/v2/docker/b/blobs/{d}"), "");
        assert_eq!(head.status, 200, "mounted layer {d} is in docker/b");
        assert_eq!(
            head.header("content-length"),
            l["size"].to_string(),
            "HEAD Content-Length of {d}"
        );
        assert!(head.body.is_empty(), "HEAD has no body");
    }

    // b pulls on its own.
    dk.run(&["rmi", &a, &b]);
    dk.run(&["pull", &b]);
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &b]);
    assert_eq!(id.trim(), img.id());
    elapsed(name, t0);
}

/// The Docker name of this machine's CPU, as image platforms spell it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// skopeo pushes a two-platform OCI index unchanged; docker pulls it by tag and by digest
/// and picks this machine's platform, and skopeo copies the whole index back byte for byte.
#[test]
fn docker_pulls_oci_index_pushed_by_skopeo() {
    let name = "docker_pulls_oci_index_pushed_by_skopeo";
    if !require(name, &["skopeo", "docker", "dockerd", "containerd", "gzip"])
        || !require_busybox(name)
    {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let certs = server.cert_dir();
    let certs = p(&certs);
    let work = tempfile::tempdir().unwrap();

    let amd = Image::busybox("amd64", "index amd64");
    let arm = Image::busybox("arm64", "index arm64");
    let index = oci::index(&[&amd, &arm]);
    let src = work.path().join("src");
    oci::write_layout(&src, &[("multi", &index)]);
    let dest = format!("docker://{}/mixed/multi", server.host);
    run(&mut skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        certs,
        &format!("oci:{}:multi", p(&src)),
        &format!("{dest}:v1"),
    ]));
    let r = get_manifest(&server, "mixed/multi", "v1");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(&index.bytes),
        "the index is stored unchanged"
    );
    assert_eq!(r.header("content-type"), oci::OCI_INDEX);
    for img in [&amd, &arm] {
        let child = get_manifest(&server, "mixed/multi", &img.digest());
        assert_eq!(child.body, img.manifest.bytes);
    }

    let dk = Dockerd::start(&server);
    let native = if host_arch() == "arm64" { &arm } else { &amd };
    let by_tag = format!("{}/mixed/multi:v1", server.host);
    dk.run(&["pull", &by_tag]);
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &by_tag]);
    assert_eq!(
        id.trim(),
        native.id(),
        "docker picks the {} image out of the index",
        host_arch()
    );
    let by_digest = format!("{}/mixed/multi@{}", server.host, index.digest());
    dk.run(&["pull", &by_digest]);
    let id = dk.run(&["image", "inspect", "--format", "{{.Id}}", &by_digest]);
    assert_eq!(id.trim(), native.id(), "pull by the index digest");
    let child = format!("{}/mixed/multi@{}", server.host, arm.digest());
    dk.run(&["pull", &child]);
    let arch = dk.run(&["image", "inspect", "--format", "{{.Architecture}}", &child]);
    assert_eq!(arch.trim(), "arm64", "pull of one child by its digest");

    // The whole index back down, byte for byte.
    let back = work.path().join("back");
    run(&mut skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=true",
        "--src-cert-dir",
        certs,
        &format!("{dest}:v1"),
        &format!("oci:{}:multi", p(&back)),
    ]));
    let refs = oci::layout_refs(&back);
    assert_eq!(refs["multi"]["digest"], index.digest());
    assert_eq!(oci::layout_blob(&back, &index.digest()), index.bytes);
    for b in &index.blobs {
        assert_eq!(oci::layout_blob(&back, &b.digest()), b.bytes);
    }
    elapsed(name, t0);
}

// ---------------------------------------------------------------------------------------
// containerd's ctr, with a containerd of our own

/// containerd's `ctr` imports an OCI archive, pushes it (containerd uploads each blob with
/// a single PUT), and pulls it back into a fresh containerd.
#[test]
fn ctr_push_pull() {
    let name = "ctr_push_pull";
    if !require(name, &["ctr", "containerd", "gzip"]) || !require_busybox(name) {
        return;
    }
    let t0 = Instant::now();
    let server = TestServer::start("");
    let _log = ServerLog(&server);
    let work = tempfile::tempdir().unwrap();
    // Without a hosts.toml, containerd 1.6 speaks plain HTTP to localhost registries
    // whatever --tlscacert says; this tells it to use HTTPS and trust only our CA.
    let hosts = work.path().join("hosts");
    std::fs::create_dir_all(hosts.join(&server.host)).unwrap();
    std::fs::write(
        hosts.join(&server.host).join("hosts.toml"),
        format!(
            "server = \"{base}\"\n[host.\"{base}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = \"{ca}\"\n",
            base = server.base,
            ca = p(&server.ca_path()),
        ),
    )
    .unwrap();
    let hosts = p(&hosts);

    let img = Image::busybox("amd64", "ctr");
    let src = work.path().join("src");
    let target = format!("{}/ctr/busybox:v1", server.host);
    oci::write_layout(&src, &[(&target, &img.manifest)]);
    let archive = work.path().join("image.oci.tar");
    oci::write_oci_archive(&archive, &src);

    let cd = Containerd::start();
    run(&mut cd.cmd(&["images", "import", "--all-platforms", p(&archive)]));
    let listed = run(&mut cd.cmd(&["images", "ls", "-q"]));
    assert!(
        stdout(&listed).lines().any(|l| l.trim() == target),
        "imported image is named {target}: {}",
        stdout(&listed)
    );
    run(&mut cd.cmd(&["images", "push", "--hosts-dir", hosts, &target]));
    let r = get_manifest(&server, "ctr/busybox", "v1");
    assert_eq!(
        r.body, img.manifest.bytes,
        "ctr pushes the manifest unchanged"
    );
    for b in &img.manifest.blobs {
        let got = http(
            &server,
            "GET",
            &format!("/v2/ctr/busybox/blobs/{}", b.digest()),
            "",
        );
        assert_eq!(got.status, 200);
        assert_eq!(got.body, b.bytes, "blob {}", b.digest());
    }
    drop(cd);

    // A fresh containerd pulls it.
    let cd = Containerd::start();
    run(&mut cd.cmd(&["images", "pull", "--hosts-dir", hosts, &target]));
    let check = run(&mut cd.cmd(&["images", "check"]));
    let line = stdout(&check)
        .lines()
        .find(|l| l.starts_with(&target))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("complete") && line.contains(&img.digest()),
        "pulled image is complete and has the pushed digest: {}",
        stdout(&check)
    );
    elapsed(name, t0);
}
