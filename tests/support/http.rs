//! Looking at what the clients stored, over HTTP with a client that trusts only the test
//! server's CA, and at the requests the server saw.

use serde_json::Value;

use crate::common::{digest_of, TestServer};

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub fn http(server: &TestServer, method: &str, path: &str, accept: &str) -> Reply {
    let client = server.client();
    let url = server.url(path);
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let accept = accept.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut req = client.request(method.clone(), &url);
        if !accept.is_empty() {
            req = req.header("Accept", accept);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    })
}

pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// GETs a manifest and checks the answer is self-consistent: 200, the digest header
/// matches the body, and the content type matches the body's `mediaType` when present.
pub fn get_manifest(server: &TestServer, repo: &str, reference: &str) -> Reply {
    let r = http(
        server,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        ACCEPT_ALL_MANIFESTS,
    );
    assert_eq!(
        r.status,
        200,
        "GET /v2/{repo}/manifests/{reference}: {}\nserver log:\n{}",
        String::from_utf8_lossy(&r.body),
        server.log()
    );
    let digest = digest_of(&r.body);
    assert_eq!(
        r.header("docker-content-digest"),
        digest,
        "Docker-Content-Digest of {repo}:{reference}"
    );
    if reference.starts_with("sha256:") {
        assert_eq!(
            reference, digest,
            "manifest fetched by digest has that digest"
        );
    }
    if let Some(mt) = r.json()["mediaType"].as_str() {
        assert_eq!(
            r.header("content-type"),
            mt,
            "Content-Type of {repo}:{reference}"
        );
    }
    r
}

/// Prints holdfast's log when the test fails (dropped while panicking), and on success
/// the sequence of requests the client made, as `METHOD PATH -> STATUS` lines.
pub struct ServerLog<'a>(pub &'a TestServer);

impl Drop for ServerLog<'_> {
    fn drop(&mut self) {
        let log = self.0.log();
        if std::thread::panicking() {
            eprintln!("--- holdfast log (tail) ---\n{}", tail(&log, 200));
        } else {
            eprintln!(
                "--- requests seen by holdfast ---\n{}",
                access_summary(&log)
            );
        }
    }
}

/// Drops ANSI colour sequences (`ESC [ … letter`) that the text log may carry.
pub fn strip_ansi(s: &str) -> String {
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

/// `METHOD PATH -> STATUS` for each access-log line.
pub fn access_summary(log: &str) -> String {
    let log = strip_ansi(log);
    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("?")
            .trim_matches('"')
            .to_string()
    };
    log.lines()
        .filter(|l| l.contains("access"))
        .map(|l| {
            format!(
                "{} {} -> {}\n",
                field(l, "method="),
                field(l, "path="),
                field(l, "status=")
            )
        })
        .collect()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
