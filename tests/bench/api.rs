//! The Distribution API calls the workloads make, with every answer checked: any status other
//! than the spec's is an error carrying the URL, status and body, and the harness stops.

use std::time::Duration;

use reqwest::{Client, Response, Url};

use crate::data::Synth;
use crate::servers::Server;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// What docker sends when it asks for a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

pub type ApiResult<T> = Result<T, String>;

/// Which HTTP version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A client for one server.
#[derive(Clone)]
pub struct Api {
    pub c: Client,
    pub base: String,
}

impl Api {
    /// HTTP/1.1 only, keep-alive, generous timeout (`timeout` bounds every request).
    pub fn new(server: &Server, proto: Proto, timeout: Duration) -> Api {
        Api::for_base(
            &server.base,
            &server.ca_pem(),
            server.auth_header.as_deref(),
            proto,
            timeout,
        )
    }

    /// The same client for any `https://` base trusting `ca_pem`.
    pub fn for_base(
        base: &str,
        ca_pem: &[u8],
        auth_header: Option<&str>,
        proto: Proto,
        timeout: Duration,
    ) -> Api {
        let b = crate::servers::client_builder_for(ca_pem, auth_header)
            .timeout(timeout)
            .tcp_nodelay(true);
        let b = match proto {
            Proto::H1 => b.http1_only(),
            // Windows large enough that flow control does not limit a loopback transfer;
            // the same client settings serve both servers.
            Proto::H2 => b
                .http2_prior_knowledge()
                .http2_initial_stream_window_size(8 << 20)
                .http2_initial_connection_window_size(16 << 20)
                .http2_max_frame_size(1 << 20),
        };
        Api {
            c: b.build().expect("build HTTP client"),
            base: base.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn resolve(&self, location: &str) -> ApiResult<Url> {
        let base = Url::parse(&format!("{}/", self.base)).map_err(|e| e.to_string())?;
        base.join(location)
            .map_err(|e| format!("bad Location {location:?}: {e}"))
    }

    /// `GET` a path, expecting `status`; returns the response (body unread).
    pub async fn get(&self, path: &str, accept: Option<&str>, status: u16) -> ApiResult<Response> {
        let mut rb = self.c.get(self.url(path));
        if let Some(a) = accept {
            rb = rb.header("accept", a);
        }
        let r = rb.send().await.map_err(|e| format!("GET {path}: {e}"))?;
        expect(r, status).await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the blob is there (as docker asks first).
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> ApiResult<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let r = self
            .c
            .head(&url)
            .send()
            .await
            .map_err(|e| format!("HEAD {url}: {e}"))?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(format!("HEAD {url}: unexpected status {s}")),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`: 202 with a `Location`; returns the upload URL.
    pub async fn start_upload(&self, repo: &str) -> ApiResult<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let r = self
            .c
            .post(&url)
            .header("content-length", "0")
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let r = expect(r, 202).await?;
        let loc = location(&r)?;
        let _ = r.bytes().await;
        self.resolve(&loc)
    }

    /// Closes an upload: `PUT <upload>&digest=` with `body` (`None`: empty).
    async fn finish_upload(
        &self,
        upload: &Url,
        digest: &str,
        body: Option<reqwest::Body>,
    ) -> ApiResult<()> {
        let mut u = upload.clone();
        u.query_pairs_mut().append_pair("digest", digest);
        let rb = self.c.put(u.clone());
        let rb = match body {
            Some(b) => rb
                .header("content-type", "application/octet-stream")
                .body(b),
            None => rb.header("content-length", "0"),
        };
        let r = rb.send().await.map_err(|e| format!("PUT {u}: {e}"))?;
        let r = expect(r, 201).await?;
        let got = header(&r, "docker-content-digest");
        let _ = r.bytes().await;
        if got.as_deref() != Some(digest) {
            return Err(format!(
                "PUT {u}: Docker-Content-Digest {got:?}, expected {digest}"
            ));
        }
        Ok(())
    }

    /// Monolithic upload: `POST`, then one `PUT ?digest=` carrying the whole body with a
    /// `Content-Length`.
    pub async fn push_monolithic(&self, repo: &str, blob: &Synth, digest: &str) -> ApiResult<()> {
        let upload = self.start_upload(repo).await?;
        self.finish_upload(&upload, digest, Some(blob.body(0, blob.len(), true)))
            .await
    }

    /// Chunked upload: `POST`, `PATCH`es of `chunk` bytes with `Content-Range`, then an
    /// empty `PUT ?digest=`.
    pub async fn push_chunked(
        &self,
        repo: &str,
        blob: &Synth,
        digest: &str,
        chunk: u64,
    ) -> ApiResult<()> {
        let mut upload = self.start_upload(repo).await?;
        let mut start = 0u64;
        while start < blob.len() {
            let end = (start + chunk).min(blob.len());
            let r = self
                .c
                .patch(upload.clone())
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{}", end - 1))
                .body(blob.body(start, end, true))
                .send()
                .await
                .map_err(|e| format!("PATCH {upload}: {e}"))?;
            let r = expect(r, 202).await?;
            let loc = location(&r)?;
            let _ = r.bytes().await;
            upload = self.resolve(&loc)?;
            start = end;
        }
        self.finish_upload(&upload, digest, None).await
    }

    /// Upload the way docker does it: `POST`, one `PATCH` whose body streams with chunked
    /// transfer encoding (no length announced), then an empty `PUT ?digest=`.
    pub async fn push_streamed(&self, repo: &str, blob: &Synth, digest: &str) -> ApiResult<()> {
        let upload = self.start_upload(repo).await?;
        let r = self
            .c
            .patch(upload.clone())
            .header("content-type", "application/octet-stream")
            .body(blob.body(0, blob.len(), false))
            .send()
            .await
            .map_err(|e| format!("PATCH {upload}: {e}"))?;
        let r = expect(r, 202).await?;
        let loc = location(&r)?;
        let _ = r.bytes().await;
        let upload = self.resolve(&loc)?;
        self.finish_upload(&upload, digest, None).await
    }

    /// `PUT /v2/<repo>/manifests/<reference>`: 201; returns the `Docker-Content-Digest`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> ApiResult<String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let r = self
            .c
            .put(&url)
            .header("content-type", media_type)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        let r = expect(r, 201).await?;
        let d = header(&r, "docker-content-digest")
            .ok_or_else(|| format!("PUT {url}: 201 without Docker-Content-Digest"))?;
        let _ = r.bytes().await;
        Ok(d)
    }

    /// `GET` a blob to the end, counting bytes (and hashing them when `verify`); returns the
    /// byte count and the HTTP version the response came in.
    pub async fn pull_blob(
        &self,
        repo: &str,
        digest: &str,
        verify: bool,
    ) -> ApiResult<(u64, reqwest::Version)> {
        use sha2::Digest as _;
        let path = format!("/v2/{repo}/blobs/{digest}");
        let mut r = self.get(&path, None, 200).await?;
        let version = r.version();
        let mut n = 0u64;
        let mut hasher = verify.then(sha2::Sha256::new);
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| format!("GET {path}: body after {n} bytes: {e}"))?
        {
            n += chunk.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
        }
        if let Some(h) = hasher {
            let got = format!("sha256:{}", hex::encode(h.finalize()));
            if got != digest {
                return Err(format!("GET {path}: content hashes to {got}"));
            }
        }
        Ok((n, version))
    }
}

/// A response with the expected status, or an error naming what came instead.
pub async fn expect(r: Response, status: u16) -> ApiResult<Response> {
    if r.status().as_u16() == status {
        return Ok(r);
    }
    let url = r.url().to_string();
    let got = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    Err(format!(
        "{url}: expected status {status}, got {got}; body: {}",
        String::from_utf8_lossy(&body[..body.len().min(1000)])
    ))
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn location(r: &Response) -> ApiResult<String> {
    header(r, "location").ok_or_else(|| format!("{}: no Location header", r.url()))
}

/// The target of a `Link: <…>; rel="next"` header.
pub fn link_next(r: &Response) -> Option<String> {
    let v = header(r, "link")?;
    v.split(',').find_map(|part| {
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            return None;
        }
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_owned())
    })
}

/// A small image: config and layers (as blobs to push) and its OCI manifest.
pub struct Image {
    pub blobs: Vec<(Synth, String)>,
    pub manifest: Vec<u8>,
}

impl Image {
    /// `config` is JSON; `layers` are pushed as gzip layers (the bytes are not really gzip;
    /// neither server looks inside).
    pub fn new(config: Vec<u8>, layers: Vec<Synth>) -> Image {
        let config = Synth::exact(config);
        let config_digest = config.digest();
        let mut descs = Vec::new();
        let mut blobs = vec![(config.clone(), config_digest.clone())];
        for l in layers {
            let d = l.digest();
            descs.push(serde_json::json!({
                "mediaType": OCI_LAYER, "digest": d, "size": l.len(),
            }));
            blobs.push((l, d));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": descs,
        });
        let mut manifest = serde_json::to_vec_pretty(&manifest).unwrap();
        manifest.push(b'\n');
        Image { blobs, manifest }
    }

    pub fn manifest_digest(&self) -> String {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&self.manifest))
        )
    }

    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(b, _)| b.len()).sum::<u64>() + self.manifest.len() as u64
    }

    /// Pushes it the way docker does: per blob `HEAD` (must be absent), `POST`, streamed
    /// `PATCH`, `PUT`; blobs concurrently; then the manifest under `tag`.
    pub async fn push(&self, api: &Api, repo: &str, tag: &str) -> ApiResult<()> {
        let pushes = self.blobs.iter().map(|(blob, digest)| async move {
            if api.blob_exists(repo, digest).await? {
                return Err(format!("{repo}: blob {digest} unexpectedly present"));
            }
            api.push_streamed(repo, blob, digest).await
        });
        for r in futures_util::future::join_all(pushes).await {
            r?;
        }
        let d = api
            .put_manifest(repo, tag, OCI_MANIFEST, self.manifest.clone())
            .await?;
        if d != self.manifest_digest() {
            return Err(format!("{repo}:{tag}: manifest digest {d}"));
        }
        Ok(())
    }
}
