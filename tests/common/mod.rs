//! Shared helpers for the end-to-end tests: start the real `holdfast` binary on a free
//! loopback port with a private data folder, wait until it answers, and hand out clients
//! that trust its generated CA.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `127.0.0.1:PORT`, as clients write it in image references.
    pub host: String,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    pub config_path: PathBuf,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl TestServer {
    /// Starts holdfast with TLS (generated CA) and `extra` TOML appended to the config
    /// (it may add whole tables, e.g. `[limits]`).
    pub fn start(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config_path = dir.path().join("holdfast.toml");
        let data = dir.path().join("data");
        // Authentication is off unless the test configures `[auth]` itself.
        let auth = if extra.contains("[auth]") {
            ""
        } else {
            "[auth]\nmode = \"none\"\n\n"
        };
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[tls]\nenabled = true\n\n[storage]\npath = \"{}\"\n\n{auth}{extra}\n",
            data.display()
        );
        std::fs::write(&config_path, config).unwrap();
        let mut s = TestServer {
            host: format!("127.0.0.1:{port}"),
            base: format!("https://127.0.0.1:{port}"),
            dir,
            port,
            config_path,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The generated CA certificate (PEM) that signs the server certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir().join("tls").join("ca.crt")
    }

    /// A folder holding only `ca.crt`, in the shape skopeo/podman `--cert-dir` and docker's
    /// `certs.d/<host>/` expect.
    pub fn cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d").join(&self.host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca_path(), d.join("ca.crt")).unwrap();
        d
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("holdfast.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// (Re)starts the process on the same port and data folder and waits until `GET /v2/`
    /// answers over TLS.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start holdfast");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("holdfast exited early ({status}):\n{}", self.log());
            }
            if self.ca_path().exists() && self.blocking_get_v2_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("holdfast did not become ready:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Probes `GET /v2/` on a thread of its own, so that this works from inside a test's
    /// tokio runtime as well as from plain `#[test]` functions.
    fn blocking_get_v2_ok(&self) -> bool {
        let client = self.client();
        let url = format!("{}/v2/", self.base);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                match client.get(url).send().await {
                    Ok(r) => r.status().as_u16() == 200 || r.status().as_u16() == 401,
                    Err(_) => false,
                }
            })
        })
        .join()
        .unwrap_or(false)
    }

    /// An HTTP client that trusts only the server's CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let pem = std::fs::read(self.ca_path()).expect("read CA");
        // reqwest uses rustls' process-wide provider (ring, as holdfast).
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL, no chance to clean up (crash tests).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// True when `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// Registry API helpers for the HTTP API and crash tests.
// ---------------------------------------------------------------------------------------

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The OCI "empty descriptor" content, `{}`.
pub const EMPTY_JSON: &[u8] = b"{}";

pub fn sha512_digest_of(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// Deterministic pseudo-random bytes (splitmix64), so that test data is reproducible and
/// distinct per seed.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tiny deterministic PRNG for choosing sizes and timings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A header's value as a string (None when absent or not visible ASCII).
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_owned())
}

/// Parses an upload `Range` header (`0-<end>`, also tolerating a `bytes=` prefix) into
/// `(start, end)` with `end` inclusive.
pub fn parse_upload_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (a, b) = v.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The target of a `Link: <...>; rel="next"` header, if any.
pub fn link_next(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get("link")?.to_str().ok()?;
    for part in v.split(',') {
        if part.contains("rel=\"next\"") || part.contains("rel=next") {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            return Some(part[start..end].to_owned());
        }
    }
    None
}

/// Asserts that `resp` is a spec error: the given status, `Content-Type: application/json`
/// and a body `{"errors":[{"code":..,"message":..}, ..]}` whose codes include one of
/// `codes` (any code when `codes` is empty). Returns the parsed body.
pub async fn expect_error(
    resp: reqwest::Response,
    status: u16,
    codes: &[&str],
) -> serde_json::Value {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let ct = header(&resp, "content-type").unwrap_or_default();
    let body = resp.bytes().await.expect("read error body");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(
        got, status,
        "{url}: expected status {status}, got {got}; body: {text}"
    );
    assert!(
        ct.starts_with("application/json"),
        "{url}: error Content-Type should be application/json, got {ct:?}; body: {text}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url}: error body is not JSON ({e}): {text}"));
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: error body lacks an `errors` array: {text}"));
    assert!(!errors.is_empty(), "{url}: empty `errors` array");
    for e in errors {
        assert!(
            e["code"].is_string(),
            "{url}: error without a string `code`: {text}"
        );
        assert!(
            e["message"].is_string(),
            "{url}: error without a string `message`: {text}"
        );
    }
    if !codes.is_empty() {
        assert!(
            errors
                .iter()
                .any(|e| codes.contains(&e["code"].as_str().unwrap())),
            "{url}: expected an error code in {codes:?}, got {text}"
        );
    }
    v
}

/// Asserts a HEAD answer's status and that it has no body.
pub async fn expect_head(resp: reqwest::Response, status: u16) {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let body = resp.bytes().await.expect("read HEAD body");
    assert_eq!(got, status, "HEAD {url}: expected {status}, got {got}");
    assert!(
        body.is_empty(),
        "HEAD {url}: body must be empty, got {} bytes",
        body.len()
    );
}

/// Asserts the status of a response, showing the body on failure; returns the body.
pub async fn expect_status(resp: reqwest::Response, status: u16) -> bytes::Bytes {
    let url = resp.url().to_string();
    let got = resp.status().as_u16();
    let body = resp.bytes().await.expect("read body");
    assert_eq!(
        got,
        status,
        "{url}: expected {status}, got {got}; body: {}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    body
}

/// A descriptor as it appears in manifests.
pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": digest_of(data),
        "size": data.len(),
    })
}

/// Serializes a manifest the way a client would, with indentation and a trailing newline,
/// so that a server that re-serializes instead of storing bytes is caught.
pub fn manifest_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap();
    b.push(b'\n');
    b
}

/// A pushed image: its manifest bytes, digest and media type.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

/// A thin client for the Distribution API of one test server.
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        Api {
            c: server.client(),
            base: server.base.clone(),
        }
    }

    pub fn with_client(server: &TestServer, c: reqwest::Client) -> Api {
        Api {
            c,
            base: server.base.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Resolves a `Location` (absolute, or relative to the base URL) to an absolute URL.
    pub fn resolve(&self, location: &str) -> reqwest::Url {
        let base = reqwest::Url::parse(&format!("{}/", self.base)).unwrap();
        base.join(location)
            .unwrap_or_else(|e| panic!("bad Location {location:?}: {e}"))
    }

    /// `url` with `?digest=<digest>` (or `&digest=`) appended.
    pub fn with_digest(url: &reqwest::Url, digest: &str) -> reqwest::Url {
        let mut u = url.clone();
        u.query_pairs_mut().append_pair("digest", digest);
        u
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.c.get(self.url(path)).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.c.head(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.c.delete(self.url(path)).send().await.unwrap()
    }

    /// `POST /v2/<repo>/blobs/uploads/`, asserting 202 and a `Location`; returns the
    /// resolved upload URL.
    pub async fn start_upload(&self, repo: &str) -> reqwest::Url {
        let r = self
            .c
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        let loc = header(&r, "location");
        expect_status(r, 202).await;
        self.resolve(&loc.expect("upload POST without Location"))
    }

    /// PATCHes `data` as the chunk starting at `start`; returns the response.
    pub async fn patch_chunk(
        &self,
        upload: &reqwest::Url,
        start: u64,
        data: &[u8],
    ) -> reqwest::Response {
        let end = start + data.len() as u64 - 1;
        self.c
            .patch(upload.clone())
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Closes an upload with `PUT <upload>?digest=` and an optional final chunk.
    pub async fn put_upload(
        &self,
        upload: &reqwest::Url,
        digest: &str,
        final_chunk: Option<(u64, &[u8])>,
    ) -> reqwest::Response {
        let mut rb = self.c.put(Api::with_digest(upload, digest));
        match final_chunk {
            Some((start, data)) if !data.is_empty() => {
                let end = start + data.len() as u64 - 1;
                rb = rb
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{start}-{end}"))
                    .body(data.to_vec());
            }
            _ => {
                rb = rb.header("content-length", "0");
            }
        }
        rb.send().await.unwrap()
    }

    /// Monolithic push in a single `POST ?digest=`; asserts 201 and returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        self.push_blob_with_digest(repo, data, &d).await;
        d
    }

    pub async fn push_blob_with_digest(&self, repo: &str, data: &[u8], digest: &str) {
        let mut u = reqwest::Url::parse(&self.url(&format!("/v2/{repo}/blobs/uploads/"))).unwrap();
        u.query_pairs_mut().append_pair("digest", digest);
        let r = self
            .c
            .post(u)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        let dcd = header(&r, "docker-content-digest");
        expect_status(r, 201).await;
        assert_eq!(
            dcd.as_deref(),
            Some(digest),
            "Docker-Content-Digest of a blob push"
        );
    }

    /// Chunked push: POST, PATCH chunks of `chunk` bytes, PUT `?digest=` without a body.
    /// Asserts every step; returns the digest.
    pub async fn push_blob_chunked(&self, repo: &str, data: &[u8], chunk: usize) -> String {
        let d = digest_of(data);
        let mut upload = self.start_upload(repo).await;
        let mut off = 0usize;
        for piece in data.chunks(chunk.max(1)) {
            let r = self.patch_chunk(&upload, off as u64, piece).await;
            let loc = header(&r, "location");
            let range = header(&r, "range");
            expect_status(r, 202).await;
            off += piece.len();
            let (s, e) = parse_upload_range(range.as_deref().expect("PATCH 202 without Range"))
                .expect("unparsable Range");
            assert_eq!((s, e), (0, off as u64 - 1), "Range after PATCH");
            if let Some(l) = loc {
                upload = self.resolve(&l);
            }
        }
        let r = self.put_upload(&upload, &d, None).await;
        let dcd = header(&r, "docker-content-digest");
        expect_status(r, 201).await;
        assert_eq!(dcd.as_deref(), Some(d.as_str()));
        d
    }

    /// GETs a blob, asserting 200 and that the bytes hash to `digest`; returns them.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        let body = expect_status(r, 200).await;
        let got = if digest.starts_with("sha512:") {
            sha512_digest_of(&body)
        } else {
            digest_of(&body)
        };
        assert_eq!(got, digest, "blob content does not hash to its digest");
        body.to_vec()
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.c
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// PUTs a manifest, asserting 201, `Location` and `Docker-Content-Digest`.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Pushed {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        let dcd = header(&r, "docker-content-digest");
        let loc = header(&r, "location");
        expect_status(r, 201).await;
        let digest = digest_of(body);
        assert_eq!(
            dcd.as_deref(),
            Some(digest.as_str()),
            "manifest Docker-Content-Digest"
        );
        assert!(loc.is_some(), "manifest PUT 201 without Location");
        Pushed {
            bytes: body.to_vec(),
            digest,
            media_type: media_type.to_owned(),
        }
    }

    /// GETs a manifest with an Accept header listing all manifest types.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> reqwest::Response {
        self.c
            .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header(
                "accept",
                format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
            )
            .send()
            .await
            .unwrap()
    }

    /// Pushes a config and two layers and an image manifest of `media_type` (Docker v2 or
    /// OCI) under `reference`. `seed` makes the content distinct.
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        seed: u64,
    ) -> Pushed {
        let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
            (DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_CONFIG, OCI_LAYER)
        };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "seed": seed,
        }))
        .unwrap();
        let l1 = pseudo_random_bytes(seed * 2 + 1, 3000 + (seed as usize % 500));
        let l2 = pseudo_random_bytes(seed * 2 + 2, 10_000);
        self.push_blob(repo, &config).await;
        self.push_blob(repo, &l1).await;
        self.push_blob(repo, &l2).await;
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(config_type, &config),
            "layers": [descriptor(layer_type, &l1), descriptor(layer_type, &l2)],
        });
        self.push_manifest(repo, reference, media_type, &manifest_bytes(&m))
            .await
    }
}

/// Sends one raw HTTP/1.1 request over TLS (for paths a URL library would normalize, such
/// as `..` segments) and returns (status, head, body). The request must not have a body;
/// `Connection: close` is added.
pub async fn raw_https_request(
    server: &TestServer,
    method: &str,
    path: &str,
) -> (u16, String, Vec<u8>) {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pem = std::fs::read(server.ca_path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.host
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    // A peer that closes without close_notify yields UnexpectedEof; what was read is kept.
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// A request body without a length (sent with chunked transfer encoding over HTTP/1.1, or
/// as a stream of DATA frames over HTTP/2) that yields `data` in pieces of `piece` bytes,
/// pausing `pause_ms` before each.
pub fn slow_body(data: Vec<u8>, piece: usize, pause_ms: u64) -> reqwest::Body {
    let pieces: Vec<Vec<u8>> = data.chunks(piece.max(1)).map(|c| c.to_vec()).collect();
    let s = futures_util::stream::unfold(pieces.into_iter(), move |mut it| async move {
        let next = it.next()?;
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        Some((Ok::<_, std::io::Error>(next), it))
    });
    reqwest::Body::wrap_stream(s)
}

impl Api {
    /// GETs a blob, asserting 200; returns the bytes without hashing them (for callers that
    /// compare against known content, which is cheaper in unoptimized test builds).
    pub async fn get_blob_bytes(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = self.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        expect_status(r, 200).await.to_vec()
    }
}

// ---------------------------------------------------------------------------------------
// Users and access (tests/auth.rs, tests/clients_auth.rs).
// ---------------------------------------------------------------------------------------

impl TestServer {
    /// Like [`TestServer::start`], but writes the config and creates the (empty) data
    /// folder without starting the process, so users can be added with the real CLI
    /// before the first start; call [`TestServer::spawn`] afterwards.
    pub fn configure(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config_path = dir.path().join("holdfast.toml");
        let data = dir.path().join("data");
        let auth = if extra.contains("[auth]") {
            ""
        } else {
            "[auth]\nmode = \"none\"\n\n"
        };
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[tls]\nenabled = true\n\n[storage]\npath = \"{}\"\n\n{auth}{extra}\n",
            data.display()
        );
        std::fs::write(&config_path, config).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        TestServer {
            host: format!("127.0.0.1:{port}"),
            base: format!("https://127.0.0.1:{port}"),
            dir,
            port,
            config_path,
            child: None,
        }
    }

    /// The running server's process id (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("holdfast is not running").id()
    }

    /// Sends SIGHUP to the running server.
    pub fn sighup(&self) {
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -HUP {}", self.pid());
    }

    /// The users file of the default configuration, `<storage.path>/users.toml`.
    pub fn users_file(&self) -> PathBuf {
        self.data_dir().join("users.toml")
    }

    /// Runs `holdfast user ARGS --config <this server's config>`, with `stdin` as its
    /// standard input; returns the output whatever the exit status.
    pub fn user_cmd(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        holdfast_user(&self.config_path, args, stdin)
    }

    /// Adds a user with the real CLI (`user add NAME [--group G]… [--admin]
    /// --password-stdin`), asserting success.
    pub fn add_user(&self, name: &str, password: &str, groups: &[&str], admin: bool) {
        let mut args = vec!["add", name, "--password-stdin"];
        for g in groups {
            args.push("--group");
            args.push(g);
        }
        if admin {
            args.push("--admin");
        }
        let out = self.user_cmd(&args, Some(&format!("{password}\n")));
        assert!(
            out.status.success(),
            "holdfast user {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's log with ANSI colour sequences removed.
    pub fn log_plain(&self) -> String {
        strip_ansi_codes(&self.log())
    }

    /// Replaces the config file the way an editor does: a new file renamed over it.
    pub fn replace_config(&self, text: &str) {
        let tmp = self.dir.path().join(".holdfast.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap()
    }
}

/// Runs `holdfast user ARGS --config CONFIG` with `stdin` (None: no input at all).
pub fn holdfast_user(config: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start holdfast user");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // The CLI may stop reading early (e.g. after the first line): ignore EPIPE.
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    child.wait_with_output().expect("wait for holdfast user")
}

/// `Authorization` header value for Basic credentials.
pub fn basic_auth_value(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Drops ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi_codes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Asserts that `log` contains none of the secrets of `credentials`: neither a password,
/// nor the base64 of `user:password`, nor an `Authorization` header value.
pub fn assert_no_secrets(log: &str, credentials: &[(&str, &str)]) {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    for (user, password) in credentials {
        let encoded = engine.encode(format!("{user}:{password}"));
        let unpadded = encoded.trim_end_matches('=');
        for (what, needle) in [
            ("password", password.to_string()),
            ("base64 of user:password", unpadded.to_string()),
            ("Authorization value", basic_auth_value(user, password)),
        ] {
            if let Some(at) = log.find(&needle) {
                let line_start = log[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let line_end = log[at..].find('\n').map(|i| at + i).unwrap_or(log.len());
                panic!(
                    "the server log contains the {what} of {user:?}:\n{}",
                    &log[line_start..line_end]
                );
            }
        }
    }
    assert!(
        !log.to_ascii_lowercase().contains("authorization: basic"),
        "the server log contains an Authorization header"
    );
}

// ---------------------------------------------------------------------------------------
// Token mode (tests/token.rs, tests/clients_token.rs).
// ---------------------------------------------------------------------------------------

/// `GET /token?service=SERVICE&scope=…` (one `scope=` per entry of `scopes`) with Basic
/// credentials `cred` (`None`: anonymous); returns the response as it is.
pub async fn token_request(
    server: &TestServer,
    service: &str,
    cred: Option<(&str, &str)>,
    scopes: &[&str],
) -> reqwest::Response {
    let mut url = reqwest::Url::parse(&server.url("/token")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("service", service);
        for s in scopes {
            q.append_pair("scope", s);
        }
    }
    let mut rb = server.client().get(url);
    if let Some((user, password)) = cred {
        rb = rb.header(
            reqwest::header::AUTHORIZATION,
            basic_auth_value(user, password),
        );
    }
    rb.send().await.expect("GET /token")
}

/// Like [`token_request`], asserting 200 and a JSON body; returns the body.
pub async fn fetch_token(
    server: &TestServer,
    service: &str,
    cred: Option<(&str, &str)>,
    scopes: &[&str],
) -> serde_json::Value {
    let r = token_request(server, service, cred, scopes).await;
    let who = cred.map(|c| c.0).unwrap_or("anonymous");
    let body = expect_status(r, 200).await;
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "token answer for {who} {scopes:?} is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// The access token of a token answer (`token`).
pub fn token_of(answer: &serde_json::Value) -> String {
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token answer without `token`: {answer}"))
        .to_owned()
}

/// An API client that sends `Authorization: Bearer TOKEN` on every request.
pub fn bearer_api(server: &TestServer, token: &str) -> Api {
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Api::with_client(
        server,
        server
            .client_builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    )
}

/// The header and the payload of a compact JWT, decoded (the signature is not checked).
pub fn jwt_decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWT has three parts: {token}");
    let part = |i: usize| -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[i])
            .unwrap_or_else(|e| panic!("JWT part {i} is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT part {i} is not JSON ({e}): {token}"))
    };
    (part(0), part(1))
}

/// Parses a `WWW-Authenticate` value with one challenge, `Scheme k="v",k2=v2`, into the
/// scheme and its parameters (quoted values unescaped; commas inside quotes kept).
pub fn parse_challenge(value: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = std::collections::BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else {
            params.insert(rest.trim().to_owned(), String::new());
            break;
        };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let mut val = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            rest = &quoted[end..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            val = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.insert(key, val);
    }
    (scheme.to_owned(), params)
}
