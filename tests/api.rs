//! Black-box tests of the Distribution API (OCI distribution-spec 1.1 / Docker Registry
//! HTTP API V2) against the real `holdfast` binary over TLS. Every test starts its own
//! server, so tests are independent and run in parallel.

mod common;

use common::*;
use serde_json::{json, Value};

fn start() -> (TestServer, Api) {
    let s = TestServer::start("");
    let api = Api::new(&s);
    (s, api)
}

/// Asserts a 416 answer; if it has a body, it must be a spec error body.
async fn expect_416(resp: reqwest::Response) {
    let url = resp.url().to_string();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        status,
        416,
        "{url}: expected 416 Range Not Satisfiable, got {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if !body.is_empty() {
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{url}: 416 body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            v["errors"].is_array(),
            "{url}: 416 body is not a spec error: {v}"
        );
    }
}

/// GETs and HEADs a manifest by `reference` and checks the bytes and headers against
/// what was pushed.
async fn check_manifest(api: &Api, repo: &str, reference: &str, p: &Pushed) {
    let r = api.get_manifest(repo, reference).await;
    let ct = header(&r, "content-type");
    let dcd = header(&r, "docker-content-digest");
    let cl = header(&r, "content-length");
    let body = expect_status(r, 200).await;
    assert_eq!(
        body.as_ref(),
        p.bytes.as_slice(),
        "GET manifest {repo}:{reference} must return the pushed bytes exactly"
    );
    assert_eq!(
        ct.as_deref(),
        Some(p.media_type.as_str()),
        "GET {repo}:{reference} Content-Type"
    );
    assert_eq!(
        dcd.as_deref(),
        Some(p.digest.as_str()),
        "GET {repo}:{reference} Docker-Content-Digest"
    );
    if let Some(cl) = cl {
        assert_eq!(
            cl,
            p.bytes.len().to_string(),
            "GET {repo}:{reference} Content-Length"
        );
    }

    let r = api
        .c
        .head(api.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(
            "accept",
            format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some(p.media_type.as_str()),
        "HEAD Content-Type"
    );
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(p.digest.as_str()),
        "HEAD Docker-Content-Digest"
    );
    assert_eq!(
        header(&r, "content-length"),
        Some(p.bytes.len().to_string()),
        "HEAD {repo}:{reference} Content-Length"
    );
    expect_head(r, 200).await;
}

/// An OCI artifact manifest (empty config) with optional subject and annotations.
fn artifact_manifest(
    artifact_type: Option<&str>,
    layers: &[Value],
    subject: Option<&Pushed>,
    annotations: Value,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": layers,
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some(s) = subject {
        m["subject"] =
            json!({"mediaType": s.media_type, "digest": s.digest, "size": s.bytes.len()});
    }
    if !annotations.is_null() {
        m["annotations"] = annotations;
    }
    manifest_bytes(&m)
}

fn tags_of(v: &Value) -> Vec<String> {
    match &v["tags"] {
        Value::Null => vec![],
        t => t
            .as_array()
            .unwrap_or_else(|| panic!("`tags` is not an array: {v}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
    }
}

/// GETs `path_or_url` (a path, or an absolute URL), asserting 200 and a JSON body;
/// returns the headers and the body.
async fn get_json(api: &Api, path_or_url: &str) -> (reqwest::header::HeaderMap, Value) {
    let url = api.resolve(path_or_url);
    let r = api.c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "GET {path_or_url}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {path_or_url}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (headers, v)
}

fn hv(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// Base endpoint and transport
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn base_endpoint_answers_200_with_api_version() {
    let (_s, api) = start();
    let r = api.get("/v2/").await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // Without the trailing slash too is common among clients; it must at least not be a 5xx.
    let r = api.get("/v2").await;
    assert!(!r.status().is_server_error(), "GET /v2 -> {}", r.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_negotiated_by_alpn() {
    let (s, api) = start();
    let r = api.get("/v2/").await;
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "GET /v2/ should be served over h2 (ALPN)"
    );
    assert_eq!(r.status().as_u16(), 200);

    let data = pseudo_random_bytes(2, 70_000);
    let d = api.push_blob("h2/repo", &data).await;
    let r = api.head(&format!("/v2/h2/repo/blobs/{d}")).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
    expect_head(r, 200).await;

    let missing = digest_of(b"not pushed");
    let r = api.head(&format!("/v2/h2/repo/blobs/{missing}")).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    expect_head(r, 404).await;
    let r = api.head("/v2/h2/repo/manifests/nope").await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    expect_head(r, 404).await;

    let r = api.get(&format!("/v2/h2/repo/blobs/{missing}")).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    expect_error(r, 404, &["BLOB_UNKNOWN"]).await;

    let got = api.get_blob("h2/repo", &d).await;
    assert_eq!(got, data);

    // HTTP/1.1 still works for clients that do not offer h2.
    let c1 = s.client_builder().http1_only().build().unwrap();
    let r = c1.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status().as_u16(), 200);
    let r = c1
        .head(s.url(&format!("/v2/h2/repo/blobs/{missing}")))
        .send()
        .await
        .unwrap();
    expect_head(r, 404).await;
}

// ---------------------------------------------------------------------------------------
// Blob uploads
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn blob_monolithic_single_post() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(3, 100_000);
    let d = digest_of(&data);
    let mut u = reqwest::Url::parse(&api.url("/v2/lib/alpha/blobs/uploads/")).unwrap();
    u.query_pairs_mut().append_pair("digest", &d);
    let r = api
        .c
        .post(u)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("201 without Location");
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    expect_status(r, 201).await;

    // The Location is a pullable blob URL.
    let r = api.c.get(api.resolve(&loc)).send().await.unwrap();
    let body = expect_status(r, 200).await;
    assert_eq!(body.as_ref(), data.as_slice());

    let r = api.head(&format!("/v2/lib/alpha/blobs/{d}")).await;
    assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    expect_head(r, 200).await;

    let r = api.get(&format!("/v2/lib/alpha/blobs/{d}")).await;
    assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    let body = expect_status(r, 200).await;
    assert_eq!(body.as_ref(), data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_post_then_monolithic_put() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(4, 54_321);
    let d = digest_of(&data);
    let r = api
        .c
        .post(api.url("/v2/lib/beta/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("202 without Location");
    let uuid = header(&r, "docker-upload-uuid");
    let range = header(&r, "range");
    expect_status(r, 202).await;
    assert!(
        uuid.is_some_and(|u| !u.is_empty()),
        "POST 202 without Docker-Upload-UUID"
    );
    assert_eq!(
        parse_upload_range(range.as_deref().expect("POST 202 without Range")),
        Some((0, 0)),
        "fresh upload Range"
    );
    let upload = api.resolve(&loc);

    let r = api
        .c
        .put(Api::with_digest(&upload, &d))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let blob_loc = header(&r, "location").expect("PUT 201 without Location");
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    expect_status(r, 201).await;
    let r = api.c.get(api.resolve(&blob_loc)).send().await.unwrap();
    assert_eq!(expect_status(r, 200).await.as_ref(), data.as_slice());
    assert_eq!(api.get_blob("lib/beta", &d).await, data);

    // The session is closed now.
    let r = api.c.get(upload.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_chunked_upload_with_both_content_range_forms() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(5, 300_000);
    let d = digest_of(&data);
    let mut upload = api.start_upload("lib/gamma").await;

    // First chunk: `Content-Range: a-b` (the distribution-spec form).
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("PATCH 202 without Location");
    let range = header(&r, "range").expect("PATCH 202 without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 99_999)));
    upload = api.resolve(&loc);

    // Second chunk: `Content-Range: bytes=a-b`, as some clients send it.
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", "bytes=100000-199999")
        .body(data[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("PATCH 202 without Location");
    let range = header(&r, "range").expect("PATCH 202 without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 199_999)));
    upload = api.resolve(&loc);

    // Status.
    let r = api.c.get(upload.clone()).send().await.unwrap();
    let loc = header(&r, "location").expect("GET upload 204 without Location");
    let range = header(&r, "range").expect("GET upload 204 without Range");
    expect_status(r, 204).await;
    assert_eq!(parse_upload_range(&range), Some((0, 199_999)));
    upload = api.resolve(&loc);

    // Final chunk in the closing PUT.
    let r = api
        .put_upload(&upload, &d, Some((200_000, &data[200_000..])))
        .await;
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    assert!(header(&r, "location").is_some(), "PUT 201 without Location");
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("lib/gamma", &d).await, data);

    // The session is gone once completed.
    let r = api.c.get(upload.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.patch_chunk(&upload, 300_000, b"more").await;
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_chunked_upload_closed_by_empty_put() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(6, 1_000_003);
    let d = api.push_blob_chunked("lib/delta", &data, 256 * 1024).await;
    assert_eq!(api.get_blob("lib/delta", &d).await, data);
    // A single-byte chunk and a single chunk upload.
    let one = b"x".to_vec();
    let d1 = api.push_blob_chunked("lib/delta", &one, 1).await;
    assert_eq!(api.get_blob("lib/delta", &d1).await, one);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_patch_with_chunked_transfer_encoding_over_http1() {
    let (s, _) = start();
    let api = Api::with_client(&s, s.client_builder().http1_only().build().unwrap());
    let data = pseudo_random_bytes(7, 350_000);
    let d = digest_of(&data);
    let upload = api.start_upload("stream/h1").await;

    // A streamed body (no Content-Length => Transfer-Encoding: chunked), no Content-Range.
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .body(slow_body(data[..250_000].to_vec(), 50_000, 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let loc = header(&r, "location").expect("PATCH 202 without Location");
    let range = header(&r, "range").expect("PATCH 202 without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 249_999)));
    let upload = api.resolve(&loc);

    // A streamed body with a Content-Range.
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", "250000-349999")
        .body(slow_body(data[250_000..].to_vec(), 30_000, 2))
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").expect("PATCH 202 without Location");
    let range = header(&r, "range").expect("PATCH 202 without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 349_999)));
    let upload = api.resolve(&loc);

    let r = api.put_upload(&upload, &d, None).await;
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("stream/h1", &d).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_patch_with_streamed_body_over_http2() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(8, 400_000);
    let d = digest_of(&data);
    let upload = api.start_upload("stream/h2").await;
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .body(slow_body(data[..300_000].to_vec(), 64 * 1024, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let loc = header(&r, "location").expect("PATCH 202 without Location");
    let range = header(&r, "range").expect("PATCH 202 without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 299_999)));
    let upload = api.resolve(&loc);
    // The closing PUT carries the rest as a stream too.
    let r = api
        .c
        .put(Api::with_digest(&upload, &d))
        .header("content-type", "application/octet-stream")
        .body(slow_body(data[300_000..].to_vec(), 40_000, 1))
        .send()
        .await
        .unwrap();
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("stream/h2", &d).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_out_of_order_or_repeated_chunks_are_416() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(9, 3000);
    let d = digest_of(&data);

    // A first chunk that does not start at 0.
    let fresh = api.start_upload("lib/order").await;
    expect_416(api.patch_chunk(&fresh, 10, &data[10..100]).await).await;

    let upload = api.start_upload("lib/order").await;
    let r = api.patch_chunk(&upload, 0, &data[..1000]).await;
    expect_status(r, 202).await;

    // Gap.
    expect_416(api.patch_chunk(&upload, 2000, &data[2000..3000]).await).await;
    // Repeat of the accepted chunk.
    expect_416(api.patch_chunk(&upload, 0, &data[..1000]).await).await;
    // Overlap.
    expect_416(api.patch_chunk(&upload, 500, &data[500..1500]).await).await;
    // Content-Range that disagrees with the body length.
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", "1000-1999")
        .body(data[1000..1500].to_vec())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert!(
        st == 400 || st == 416,
        "Content-Range/length mismatch -> {st}, want 400 or 416"
    );
    // Malformed Content-Range.
    let r = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", "garbage")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert!(
        st == 400 || st == 416,
        "malformed Content-Range -> {st}, want 400 or 416"
    );

    // The rejected chunks changed nothing.
    let r = api.c.get(upload.clone()).send().await.unwrap();
    let range = header(&r, "range").expect("GET upload without Range");
    expect_status(r, 204).await;
    assert_eq!(
        parse_upload_range(&range),
        Some((0, 999)),
        "rejected chunks must not move the offset"
    );

    let r = api.patch_chunk(&upload, 1000, &data[1000..]).await;
    let range = header(&r, "range").expect("PATCH without Range");
    expect_status(r, 202).await;
    assert_eq!(parse_upload_range(&range), Some((0, 2999)));
    let r = api.put_upload(&upload, &d, None).await;
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("lib/order", &d).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_upload_status_and_cancel() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(10, 500);
    let d = digest_of(&data);
    let upload = api.start_upload("lib/cancel").await;

    let r = api.c.get(upload.clone()).send().await.unwrap();
    let range = header(&r, "range").expect("GET upload without Range");
    assert!(
        header(&r, "location").is_some(),
        "GET upload without Location"
    );
    expect_status(r, 204).await;
    assert_eq!(parse_upload_range(&range), Some((0, 0)));

    expect_status(api.patch_chunk(&upload, 0, &data).await, 202).await;
    let r = api.c.get(upload.clone()).send().await.unwrap();
    let range = header(&r, "range").expect("GET upload without Range");
    assert!(
        header(&r, "location").is_some(),
        "GET upload without Location"
    );
    expect_status(r, 204).await;
    assert_eq!(parse_upload_range(&range), Some((0, 499)));

    let r = api.c.delete(upload.clone()).send().await.unwrap();
    expect_status(r, 204).await;

    let r = api.c.get(upload.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.patch_chunk(&upload, 500, b"more").await;
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.put_upload(&upload, &d, None).await;
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.c.delete(upload.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    expect_head(api.head(&format!("/v2/lib/cancel/blobs/{d}")).await, 404).await;

    // A made-up session id of the same shape.
    let mut fake = upload.clone();
    let last = fake
        .path_segments()
        .unwrap()
        .next_back()
        .unwrap()
        .to_owned();
    let zeroed: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { '0' } else { c })
        .collect();
    let path = fake.path().to_owned();
    fake.set_path(&format!("{}{}", &path[..path.len() - last.len()], zeroed));
    let r = api.c.get(fake).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_upload_id_is_bound_to_its_repository() {
    let (_s, api) = start();
    api.push_blob("other/repo", b"other repo exists").await;
    let data = pseudo_random_bytes(11, 200);
    let d = digest_of(&data);
    let upload = api.start_upload("first/repo").await;
    expect_status(api.patch_chunk(&upload, 0, &data[..100]).await, 202).await;

    let path = upload.path().to_owned();
    let id = path.rsplit('/').next().unwrap().to_owned();
    let mut foreign = upload.clone();
    foreign.set_path(&format!("/v2/other/repo/blobs/uploads/{id}"));

    let r = api.c.get(foreign.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.patch_chunk(&foreign, 100, &data[100..]).await;
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api
        .put_upload(&foreign, &d, Some((100, &data[100..])))
        .await;
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    let r = api.c.delete(foreign.clone()).send().await.unwrap();
    expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
    expect_head(api.head(&format!("/v2/other/repo/blobs/{d}")).await, 404).await;

    // The real session is untouched.
    let r = api.c.get(upload.clone()).send().await.unwrap();
    let range = header(&r, "range").expect("GET upload without Range");
    expect_status(r, 204).await;
    assert_eq!(parse_upload_range(&range), Some((0, 99)));
    expect_status(
        api.put_upload(&upload, &d, Some((100, &data[100..]))).await,
        201,
    )
    .await;
    assert_eq!(api.get_blob("first/repo", &d).await, data);
    expect_head(api.head(&format!("/v2/other/repo/blobs/{d}")).await, 404).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_wrong_digest_is_rejected() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(12, 5000);
    let right = digest_of(&data);
    let wrong = digest_of(b"something else entirely");

    // Single POST.
    let mut u = reqwest::Url::parse(&api.url("/v2/lib/wrong/blobs/uploads/")).unwrap();
    u.query_pairs_mut().append_pair("digest", &wrong);
    let r = api
        .c
        .post(u)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, &["DIGEST_INVALID"]).await;

    // POST + PATCH + PUT.
    let upload = api.start_upload("lib/wrong").await;
    expect_status(api.patch_chunk(&upload, 0, &data).await, 202).await;
    expect_error(
        api.put_upload(&upload, &wrong, None).await,
        400,
        &["DIGEST_INVALID"],
    )
    .await;

    // POST + PUT with the body.
    let upload = api.start_upload("lib/wrong").await;
    let r = api
        .c
        .put(Api::with_digest(&upload, &wrong))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, &["DIGEST_INVALID"]).await;

    // sha512 too.
    let upload = api.start_upload("lib/wrong").await;
    let r = api
        .c
        .put(Api::with_digest(&upload, &sha512_digest_of(b"nope")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, &["DIGEST_INVALID"]).await;

    // Nothing got stored under either digest.
    expect_head(api.head(&format!("/v2/lib/wrong/blobs/{wrong}")).await, 404).await;
    expect_head(api.head(&format!("/v2/lib/wrong/blobs/{right}")).await, 404).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_closing_put_without_digest_is_rejected() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(13, 100);
    let upload = api.start_upload("lib/nodigest").await;
    expect_status(api.patch_chunk(&upload, 0, &data).await, 202).await;
    let r = api
        .c
        .put(upload.clone())
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, &[]).await;
    expect_head(
        api.head(&format!("/v2/lib/nodigest/blobs/{}", digest_of(&data)))
            .await,
        404,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_delete() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(14, 4096);
    let d = api.push_blob("lib/del", &data).await;
    let keep = api.push_blob("lib/del", b"keep me").await;
    let r = api.delete(&format!("/v2/lib/del/blobs/{d}")).await;
    expect_status(r, 202).await;
    expect_head(api.head(&format!("/v2/lib/del/blobs/{d}")).await, 404).await;
    expect_error(
        api.get(&format!("/v2/lib/del/blobs/{d}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    expect_error(
        api.delete(&format!("/v2/lib/del/blobs/{d}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    // Other blobs are untouched, and the deleted one can be pushed again.
    assert_eq!(api.get_blob("lib/del", &keep).await, b"keep me");
    api.push_blob("lib/del", &data).await;
    assert_eq!(api.get_blob("lib/del", &d).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_range_requests() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(15, 1000);
    let d = api.push_blob("lib/range", &data).await;
    let path = format!("/v2/lib/range/blobs/{d}");

    for (range, a, b) in [
        ("bytes=0-99", 0usize, 99usize),
        ("bytes=500-999", 500, 999),
        ("bytes=999-999", 999, 999),
        ("bytes=990-", 990, 999),
    ] {
        let r = api
            .c
            .get(api.url(&path))
            .header("range", range)
            .send()
            .await
            .unwrap();
        let cr = header(&r, "content-range");
        let cl = header(&r, "content-length");
        let body = expect_status(r, 206).await;
        assert_eq!(
            cr.as_deref(),
            Some(format!("bytes {a}-{b}/1000").as_str()),
            "Content-Range for {range}"
        );
        assert_eq!(
            cl,
            Some((b - a + 1).to_string()),
            "Content-Length for {range}"
        );
        assert_eq!(body.as_ref(), &data[a..=b], "body for {range}");
    }

    for range in ["bytes=1000-1010", "bytes=5000-"] {
        let r = api
            .c
            .get(api.url(&path))
            .header("range", range)
            .send()
            .await
            .unwrap();
        expect_416(r).await;
    }

    // No Range: the whole blob.
    let r = api.get(&path).await;
    assert_eq!(expect_status(r, 200).await.as_ref(), data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_range_past_the_end_is_clipped() {
    // RFC 9110 14.1.2: a last-pos beyond the representation means "to the end".
    let (_s, api) = start();
    let data = pseudo_random_bytes(16, 1000);
    let d = api.push_blob("lib/range2", &data).await;
    let r = api
        .c
        .get(api.url(&format!("/v2/lib/range2/blobs/{d}")))
        .header("range", "bytes=900-5000")
        .send()
        .await
        .unwrap();
    let cr = header(&r, "content-range");
    let body = expect_status(r, 206).await;
    assert_eq!(cr.as_deref(), Some("bytes 900-999/1000"));
    assert_eq!(body.as_ref(), &data[900..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_sha512_digests() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(17, 77_777);
    let d = sha512_digest_of(&data);
    api.push_blob_with_digest("lib/sha512", &data, &d).await;

    let r = api.head(&format!("/v2/lib/sha512/blobs/{d}")).await;
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
    expect_head(r, 200).await;
    assert_eq!(api.get_blob("lib/sha512", &d).await, data);

    // Chunked, closed with a sha512 digest.
    let data2 = pseudo_random_bytes(18, 200_000);
    let d2 = sha512_digest_of(&data2);
    let upload = api.start_upload("lib/sha512").await;
    expect_status(api.patch_chunk(&upload, 0, &data2[..120_000]).await, 202).await;
    let r = api
        .put_upload(&upload, &d2, Some((120_000, &data2[120_000..])))
        .await;
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d2.as_str())
    );
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("lib/sha512", &d2).await, data2);

    // The same bytes under sha256 are a separate address; not pushed, so unknown.
    expect_head(
        api.head(&format!("/v2/lib/sha512/blobs/{}", digest_of(&data)))
            .await,
        404,
    )
    .await;

    // A manifest may reference sha512 blobs.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = api.push_blob("lib/sha512", config).await;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": data.len()}],
    });
    let p = api
        .push_manifest("lib/sha512", "v1", OCI_MANIFEST, &manifest_bytes(&m))
        .await;
    check_manifest(&api, "lib/sha512", "v1", &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_zero_length() {
    let (_s, api) = start();
    let d = api.push_blob("lib/empty", b"").await;
    assert_eq!(d, digest_of(b""));
    let r = api.head(&format!("/v2/lib/empty/blobs/{d}")).await;
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    expect_head(r, 200).await;
    assert!(api.get_blob("lib/empty", &d).await.is_empty());
    // POST then an empty PUT.
    let upload = api.start_upload("lib/empty2").await;
    expect_status(api.put_upload(&upload, &d, None).await, 201).await;
    assert!(api.get_blob("lib/empty2", &d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_unknown_is_404() {
    let (_s, api) = start();
    api.push_blob("lib/known", b"present").await;
    let missing = digest_of(b"absent");
    expect_head(
        api.head(&format!("/v2/lib/known/blobs/{missing}")).await,
        404,
    )
    .await;
    expect_error(
        api.get(&format!("/v2/lib/known/blobs/{missing}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    expect_error(
        api.delete(&format!("/v2/lib/known/blobs/{missing}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    // In a repository that does not exist at all.
    expect_head(api.head(&format!("/v2/no/such/blobs/{missing}")).await, 404).await;
    expect_error(
        api.get(&format!("/v2/no/such/blobs/{missing}")).await,
        404,
        &["BLOB_UNKNOWN", "NAME_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_isolation_between_repositories() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(19, 2048);
    let d = api.push_blob("a/x", &data).await;
    api.push_blob("b/y", b"b/y exists").await;

    expect_head(api.head(&format!("/v2/b/y/blobs/{d}")).await, 404).await;
    expect_error(
        api.get(&format!("/v2/b/y/blobs/{d}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    let r = api
        .c
        .get(api.url(&format!("/v2/b/y/blobs/{d}")))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    expect_error(r, 404, &["BLOB_UNKNOWN"]).await;
    expect_error(
        api.delete(&format!("/v2/b/y/blobs/{d}")).await,
        404,
        &["BLOB_UNKNOWN"],
    )
    .await;
    assert_eq!(
        api.get_blob("a/x", &d).await,
        data,
        "a/x must keep its blob"
    );

    // A manifest in b/y cannot reference a/x's blob.
    api.push_blob("b/y", br#"{"os":"linux"}"#).await;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, br#"{"os":"linux"}"#),
        "layers": [descriptor(OCI_LAYER, &data)],
    });
    let r = api
        .put_manifest("b/y", "v1", OCI_MANIFEST, &manifest_bytes(&m))
        .await;
    expect_error(r, 400, &["MANIFEST_BLOB_UNKNOWN"]).await;

    // Once b/y has it too, deleting it from b/y leaves a/x alone.
    api.push_blob("b/y", &data).await;
    assert_eq!(api.get_blob("b/y", &d).await, data);
    expect_status(api.delete(&format!("/v2/b/y/blobs/{d}")).await, 202).await;
    expect_head(api.head(&format!("/v2/b/y/blobs/{d}")).await, 404).await;
    assert_eq!(api.get_blob("a/x", &d).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_cross_repository_mount() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(20, 10_000);
    let d = api.push_blob("src/repo", &data).await;

    let mount = |to: &str, digest: &str, from: Option<&str>| {
        let mut u = reqwest::Url::parse(&api.url(&format!("/v2/{to}/blobs/uploads/"))).unwrap();
        u.query_pairs_mut().append_pair("mount", digest);
        if let Some(f) = from {
            u.query_pairs_mut().append_pair("from", f);
        }
        api.c.post(u).header("content-length", "0").send()
    };

    // Mounted from a repository that has it.
    let r = mount("dst/repo", &d, Some("src/repo")).await.unwrap();
    let loc = header(&r, "location").expect("mount 201 without Location");
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    expect_status(r, 201).await;
    let r = api.c.get(api.resolve(&loc)).send().await.unwrap();
    assert_eq!(expect_status(r, 200).await.as_ref(), data.as_slice());
    assert_eq!(api.get_blob("dst/repo", &d).await, data);

    // A blob that exists nowhere: a normal upload session instead.
    let other = pseudo_random_bytes(21, 3000);
    let od = digest_of(&other);
    let r = mount("dst/repo", &od, Some("src/repo")).await.unwrap();
    let loc = header(&r, "location").expect("mount fallback 202 without Location");
    expect_status(r, 202).await;
    let upload = api.resolve(&loc);
    let r = api
        .c
        .put(Api::with_digest(&upload, &od))
        .header("content-type", "application/octet-stream")
        .body(other.clone())
        .send()
        .await
        .unwrap();
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("dst/repo", &od).await, other);

    // The blob exists in storage, but not in `from`: no mount, and nothing leaks.
    api.push_blob("empty/src", b"exists").await;
    let r = mount("third/repo", &d, Some("empty/src")).await.unwrap();
    assert!(
        header(&r, "location").is_some(),
        "mount fallback 202 without Location"
    );
    expect_status(r, 202).await;
    expect_head(api.head(&format!("/v2/third/repo/blobs/{d}")).await, 404).await;

    // `from` a repository that does not exist.
    let r = mount("fourth/repo", &d, Some("no/such")).await.unwrap();
    expect_status(r, 202).await;
    expect_head(api.head(&format!("/v2/fourth/repo/blobs/{d}")).await, 404).await;

    // Without `from`: either outcome is allowed, but never a server error.
    let r = mount("fifth/repo", &d, None).await.unwrap();
    let st = r.status().as_u16();
    assert!(st == 201 || st == 202, "mount without from -> {st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_concurrent_pushes_of_the_same_content() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(22, 1 << 20);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let api = api.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let repo = if i % 2 == 0 { "con/one" } else { "con/two" };
            if i % 3 == 0 {
                api.push_blob(repo, &data).await
            } else {
                api.push_blob_chunked(repo, &data, 200_000).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = digest_of(&data);
    assert_eq!(api.get_blob("con/one", &d).await, data);
    assert_eq!(api.get_blob("con/two", &d).await, data);
}

// ---------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn manifest_docker_v2_schema2_roundtrip() {
    let (_s, api) = start();
    let p = api
        .push_image("lib/docker", "v1", DOCKER_MANIFEST, 30)
        .await;
    check_manifest(&api, "lib/docker", "v1", &p).await;
    check_manifest(&api, "lib/docker", &p.digest, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_oci_image_roundtrip_and_location() {
    let (_s, api) = start();
    let config =
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = pseudo_random_bytes(31, 12_345);
    api.push_blob("lib/oci", config).await;
    api.push_blob("lib/oci", &layer).await;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, &layer)],
        "annotations": {"org.opencontainers.image.title": "roundtrip", "com.example.unicode": "héllo ✓"},
    });
    let body = manifest_bytes(&m);
    let r = api
        .put_manifest("lib/oci", "1.0", OCI_MANIFEST, &body)
        .await;
    let loc = header(&r, "location").expect("manifest 201 without Location");
    expect_status(r, 201).await;
    let r = api
        .c
        .get(api.resolve(&loc))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(r, 200).await.as_ref(),
        body.as_slice(),
        "Location of the manifest"
    );
    let p = Pushed {
        digest: digest_of(&body),
        bytes: body,
        media_type: OCI_MANIFEST.into(),
    };
    check_manifest(&api, "lib/oci", "1.0", &p).await;
    check_manifest(&api, "lib/oci", &p.digest, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_docker_manifest_list_roundtrip() {
    let (_s, api) = start();
    let amd = api.push_image("lib/list", "amd", DOCKER_MANIFEST, 32).await;
    let arm = api.push_image("lib/list", "arm", DOCKER_MANIFEST, 33).await;
    let list = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd.digest, "size": amd.bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm.digest, "size": arm.bytes.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    });
    let p = api
        .push_manifest("lib/list", "multi", DOCKER_LIST, &manifest_bytes(&list))
        .await;
    check_manifest(&api, "lib/list", "multi", &p).await;
    check_manifest(&api, "lib/list", &p.digest, &p).await;
    check_manifest(&api, "lib/list", &amd.digest, &amd).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_oci_index_roundtrip_children_pushed_by_digest() {
    let (_s, api) = start();
    // Children pushed by digest (no tag), as buildx/oras do.
    let mut children = Vec::new();
    for (seed, arch) in [(34u64, "amd64"), (35, "arm64")] {
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux"})).unwrap();
        let layer = pseudo_random_bytes(seed, 5000);
        api.push_blob("lib/index", &config).await;
        api.push_blob("lib/index", &layer).await;
        let m = manifest_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
        }));
        let p = api
            .push_manifest("lib/index", &digest_of(&m), OCI_MANIFEST, &m)
            .await;
        children.push((p, arch));
    }
    let entries: Vec<Value> = children
        .iter()
        .map(|(p, arch)| {
            json!({
                "mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.bytes.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    });
    let p = api
        .push_manifest("lib/index", "latest", OCI_INDEX, &manifest_bytes(&index))
        .await;
    check_manifest(&api, "lib/index", "latest", &p).await;
    check_manifest(&api, "lib/index", &p.digest, &p).await;
    for (c, _) in &children {
        check_manifest(&api, "lib/index", &c.digest, c).await;
    }
    // An index of indexes.
    let outer = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": p.digest, "size": p.bytes.len()}],
    });
    let o = api
        .push_manifest("lib/index", "nested", OCI_INDEX, &manifest_bytes(&outer))
        .await;
    check_manifest(&api, "lib/index", "nested", &o).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_artifact_with_subject_answers_oci_subject() {
    let (_s, api) = start();
    let subject = api.push_image("lib/art", "base", OCI_MANIFEST, 36).await;
    api.push_blob("lib/art", EMPTY_JSON).await;
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    api.push_blob("lib/art", sbom).await;
    let body = artifact_manifest(
        Some("application/vnd.example.sbom.v1"),
        &[descriptor("application/spdx+json", sbom)],
        Some(&subject),
        json!({"org.example.kind": "sbom"}),
    );
    let d = digest_of(&body);
    let r = api.put_manifest("lib/art", &d, OCI_MANIFEST, &body).await;
    assert_eq!(
        header(&r, "oci-subject").as_deref(),
        Some(subject.digest.as_str()),
        "OCI-Subject"
    );
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    expect_status(r, 201).await;
    let p = Pushed {
        bytes: body,
        digest: d.clone(),
        media_type: OCI_MANIFEST.into(),
    };
    check_manifest(&api, "lib/art", &d, &p).await;

    // An artifact with no layers at all, tagged.
    let bare = artifact_manifest(Some("application/vnd.example.bare"), &[], None, Value::Null);
    let r = api
        .put_manifest("lib/art", "bare", OCI_MANIFEST, &bare)
        .await;
    assert!(
        header(&r, "oci-subject").is_none(),
        "OCI-Subject on a manifest without subject"
    );
    expect_status(r, 201).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_accept_as_several_lines_or_comma_joined() {
    let (_s, api) = start();
    let docker = api
        .push_image("lib/accept", "docker", DOCKER_MANIFEST, 37)
        .await;
    let oci = api.push_image("lib/accept", "oci", OCI_MANIFEST, 38).await;
    let index = manifest_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": oci.digest, "size": oci.bytes.len()}],
    }));
    let idx = api
        .push_manifest("lib/accept", "index", OCI_INDEX, &index)
        .await;

    let all = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];
    for (tag, p) in [("docker", &docker), ("oci", &oci), ("index", &idx)] {
        let url = api.url(&format!("/v2/lib/accept/manifests/{tag}"));
        // Several header lines.
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let mut rb = api.c.request(method.clone(), url.as_str());
            for a in all {
                rb = rb.header("accept", a);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(
                header(&r, "content-type").as_deref(),
                Some(p.media_type.as_str()),
                "{method} {tag}, Accept lines"
            );
            assert_eq!(
                header(&r, "docker-content-digest").as_deref(),
                Some(p.digest.as_str())
            );
            let body = expect_status(r, 200).await;
            if method == reqwest::Method::GET {
                assert_eq!(body.as_ref(), p.bytes.as_slice());
            } else {
                assert!(body.is_empty());
            }
        }
        // Comma-joined, with and without spaces.
        for joined in [all.join(", "), all.join(",")] {
            let r = api
                .c
                .get(url.as_str())
                .header("accept", joined.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                header(&r, "content-type").as_deref(),
                Some(p.media_type.as_str()),
                "{tag}, Accept {joined}"
            );
            assert_eq!(expect_status(r, 200).await.as_ref(), p.bytes.as_slice());
        }
        // Only the manifest's own type.
        let r = api
            .c
            .get(url.as_str())
            .header("accept", p.media_type.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(r, 200).await.as_ref(), p.bytes.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_put_by_digest() {
    let (_s, api) = start();
    api.push_blob("lib/bydigest", EMPTY_JSON).await;
    let body = artifact_manifest(
        Some("application/vnd.example.x"),
        &[],
        None,
        json!({"n": "1"}),
    );
    let d = digest_of(&body);
    let p = api
        .push_manifest("lib/bydigest", &d, OCI_MANIFEST, &body)
        .await;
    check_manifest(&api, "lib/bydigest", &d, &p).await;

    // The digest in the URL must match the body.
    let other = artifact_manifest(
        Some("application/vnd.example.x"),
        &[],
        None,
        json!({"n": "2"}),
    );
    let r = api
        .put_manifest("lib/bydigest", &d, OCI_MANIFEST, &other)
        .await;
    expect_error(r, 400, &["DIGEST_INVALID", "MANIFEST_INVALID"]).await;
    let wrong = digest_of(b"whatever");
    let r = api
        .put_manifest("lib/bydigest", &wrong, OCI_MANIFEST, &other)
        .await;
    expect_error(r, 400, &["DIGEST_INVALID", "MANIFEST_INVALID"]).await;
    expect_error(
        api.get_manifest("lib/bydigest", &wrong).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("lib/bydigest", &digest_of(&other)).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    // The first one is unchanged.
    check_manifest(&api, "lib/bydigest", &d, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_media_type_must_agree_with_content_type() {
    let (_s, api) = start();
    let p = api.push_image("lib/mt", "ok", OCI_MANIFEST, 39).await;
    // Body says OCI, header says Docker.
    let r = api
        .put_manifest("lib/mt", "bad1", DOCKER_MANIFEST, &p.bytes)
        .await;
    expect_error(r, 400, &["MANIFEST_INVALID"]).await;
    // Body says OCI manifest, header says OCI index.
    let r = api
        .put_manifest("lib/mt", "bad2", OCI_INDEX, &p.bytes)
        .await;
    expect_error(r, 400, &["MANIFEST_INVALID"]).await;
    expect_error(
        api.get_manifest("lib/mt", "bad1").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("lib/mt", "bad2").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_without_media_type_goes_by_content_type() {
    let (_s, api) = start();
    let config = br#"{"os":"linux","architecture":"amd64"}"#;
    let layer = pseudo_random_bytes(40, 999);
    api.push_blob("lib/nomt", config).await;
    api.push_blob("lib/nomt", &layer).await;
    let m = manifest_bytes(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }));
    let p = api.push_manifest("lib/nomt", "img", OCI_MANIFEST, &m).await;
    check_manifest(&api, "lib/nomt", "img", &p).await;

    let i = manifest_bytes(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.bytes.len()}],
    }));
    let pi = api.push_manifest("lib/nomt", "idx", OCI_INDEX, &i).await;
    check_manifest(&api, "lib/nomt", "idx", &pi).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_referencing_missing_content_is_rejected() {
    let (_s, api) = start();
    let config = br#"{"os":"linux"}"#;
    let layer = pseudo_random_bytes(41, 2000);
    let missing = pseudo_random_bytes(42, 2000);
    api.push_blob("lib/missing", config).await;
    api.push_blob("lib/missing", &layer).await;

    // A layer that was never pushed.
    let m = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, &layer), descriptor(OCI_LAYER, &missing)],
    }));
    expect_error(
        api.put_manifest("lib/missing", "t1", OCI_MANIFEST, &m)
            .await,
        400,
        &["MANIFEST_BLOB_UNKNOWN"],
    )
    .await;

    // A config that was never pushed (Docker schema 2).
    let m = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, b"{\"never\":true}"),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }));
    expect_error(
        api.put_manifest("lib/missing", "t2", DOCKER_MANIFEST, &m)
            .await,
        400,
        &["MANIFEST_BLOB_UNKNOWN"],
    )
    .await;

    // An index whose child manifest is not in the repository.
    let child = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [],
    }));
    let idx = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child)],
    }));
    expect_error(
        api.put_manifest("lib/missing", "t3", OCI_INDEX, &idx).await,
        400,
        &["MANIFEST_BLOB_UNKNOWN"],
    )
    .await;
    let list = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [descriptor(DOCKER_MANIFEST, &child)],
    }));
    expect_error(
        api.put_manifest("lib/missing", "t4", DOCKER_LIST, &list)
            .await,
        400,
        &["MANIFEST_BLOB_UNKNOWN"],
    )
    .await;

    // A child manifest that exists in another repository only.
    let other = api.push_image("lib/elsewhere", "x", OCI_MANIFEST, 43).await;
    let idx = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": other.digest, "size": other.bytes.len()}],
    }));
    expect_error(
        api.put_manifest("lib/missing", "t5", OCI_INDEX, &idx).await,
        400,
        &["MANIFEST_BLOB_UNKNOWN"],
    )
    .await;

    for t in ["t1", "t2", "t3", "t4", "t5"] {
        expect_error(
            api.get_manifest("lib/missing", t).await,
            404,
            &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
        )
        .await;
    }

    // Once the child is pushed, the index is accepted.
    api.push_manifest("lib/missing", &digest_of(&child), OCI_MANIFEST, &child)
        .await;
    let idx = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child)],
    }));
    api.push_manifest("lib/missing", "t3", OCI_INDEX, &idx)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_with_missing_subject_is_accepted() {
    let (_s, api) = start();
    api.push_blob("lib/subj", EMPTY_JSON).await;
    let ghost_bytes = b"{\"schemaVersion\":2,\"never\":\"pushed\"}".to_vec();
    let ghost = Pushed {
        digest: digest_of(&ghost_bytes),
        bytes: ghost_bytes,
        media_type: OCI_MANIFEST.into(),
    };
    let body = artifact_manifest(
        Some("application/vnd.example.sig"),
        &[],
        Some(&ghost),
        Value::Null,
    );
    let d = digest_of(&body);
    let r = api.put_manifest("lib/subj", &d, OCI_MANIFEST, &body).await;
    assert_eq!(
        header(&r, "oci-subject").as_deref(),
        Some(ghost.digest.as_str()),
        "OCI-Subject"
    );
    expect_status(r, 201).await;
    // It is listed as a referrer of the (still missing) subject.
    let (_, v) = get_json(&api, &format!("/v2/lib/subj/referrers/{}", ghost.digest)).await;
    let ms = v["manifests"].as_array().expect("manifests array");
    assert_eq!(ms.len(), 1, "{v}");
    assert_eq!(ms[0]["digest"], json!(d));
}

/// An OCI manifest of exactly `size` bytes (padded through an annotation).
fn manifest_of_size(size: usize) -> Vec<u8> {
    let base = |pad: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [],
            "annotations": {"pad": "a".repeat(pad)},
        }))
        .unwrap()
    };
    let overhead = base(0).len();
    let m = base(size - overhead);
    assert_eq!(m.len(), size);
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_size_limit_is_4mib() {
    let (_s, api) = start();
    api.push_blob("lib/big", EMPTY_JSON).await;
    // Exactly 4 MiB is accepted (clients and registries should support at least 4 MiB).
    let ok = manifest_of_size(4 * 1024 * 1024);
    let p = api.push_manifest("lib/big", "max", OCI_MANIFEST, &ok).await;
    let r = api.get_manifest("lib/big", "max").await;
    assert_eq!(expect_status(r, 200).await.as_ref(), p.bytes.as_slice());

    // One byte more is too large.
    let too_big = manifest_of_size(4 * 1024 * 1024 + 1);
    let r = api
        .put_manifest("lib/big", "over", OCI_MANIFEST, &too_big)
        .await;
    expect_error(r, 413, &["MANIFEST_INVALID", "SIZE_INVALID"]).await;
    // Much larger.
    let huge = manifest_of_size(9 * 1024 * 1024);
    let r = api
        .put_manifest("lib/big", "huge", OCI_MANIFEST, &huge)
        .await;
    expect_error(r, 413, &["MANIFEST_INVALID", "SIZE_INVALID"]).await;
    expect_error(
        api.get_manifest("lib/big", "over").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("lib/big", "huge").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_unknown_is_404() {
    let (_s, api) = start();
    api.push_image("lib/known", "v1", OCI_MANIFEST, 44).await;
    let missing = digest_of(b"no such manifest");
    expect_error(
        api.get_manifest("lib/known", "v2").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("lib/known", &missing).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_head(api.head("/v2/lib/known/manifests/v2").await, 404).await;
    expect_head(
        api.head(&format!("/v2/lib/known/manifests/{missing}"))
            .await,
        404,
    )
    .await;
    expect_error(
        api.delete(&format!("/v2/lib/known/manifests/{missing}"))
            .await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.delete("/v2/lib/known/manifests/v2").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("no/such/repo", "v1").await,
        404,
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
    )
    .await;
    expect_head(api.head("/v2/no/such/repo/manifests/v1").await, 404).await;
    // A blob digest is not a manifest.
    let blob = api.push_blob("lib/known", b"just a blob").await;
    expect_error(
        api.get_manifest("lib/known", &blob).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_delete_by_tag_keeps_the_manifest() {
    let (_s, api) = start();
    let p = api.push_image("lib/untag", "keep", OCI_MANIFEST, 45).await;
    api.push_manifest("lib/untag", "gone", OCI_MANIFEST, &p.bytes)
        .await;
    expect_status(api.delete("/v2/lib/untag/manifests/gone").await, 202).await;
    expect_error(
        api.get_manifest("lib/untag", "gone").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_head(api.head("/v2/lib/untag/manifests/gone").await, 404).await;
    check_manifest(&api, "lib/untag", "keep", &p).await;
    check_manifest(&api, "lib/untag", &p.digest, &p).await;
    let (_, v) = get_json(&api, "/v2/lib/untag/tags/list").await;
    assert_eq!(tags_of(&v), vec!["keep"]);
    // Removing the last tag still leaves the manifest reachable by digest.
    expect_status(api.delete("/v2/lib/untag/manifests/keep").await, 202).await;
    check_manifest(&api, "lib/untag", &p.digest, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_delete_by_digest() {
    let (_s, api) = start();
    let p = api.push_image("lib/rm", "v1", OCI_MANIFEST, 46).await;
    api.push_manifest("lib/rm", "v1-alias", OCI_MANIFEST, &p.bytes)
        .await;
    let other = api.push_image("lib/rm", "other", OCI_MANIFEST, 47).await;
    expect_status(
        api.delete(&format!("/v2/lib/rm/manifests/{}", p.digest))
            .await,
        202,
    )
    .await;
    expect_error(
        api.get_manifest("lib/rm", &p.digest).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_head(
        api.head(&format!("/v2/lib/rm/manifests/{}", p.digest))
            .await,
        404,
    )
    .await;
    // Tags pointing at it are gone too.
    expect_error(
        api.get_manifest("lib/rm", "v1").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.get_manifest("lib/rm", "v1-alias").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    let (_, v) = get_json(&api, "/v2/lib/rm/tags/list").await;
    assert_eq!(tags_of(&v), vec!["other"]);
    expect_error(
        api.delete(&format!("/v2/lib/rm/manifests/{}", p.digest))
            .await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    check_manifest(&api, "lib/rm", "other", &other).await;
    // It can be pushed again.
    api.push_manifest("lib/rm", "v1", OCI_MANIFEST, &p.bytes)
        .await;
    check_manifest(&api, "lib/rm", "v1", &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_retag_moves_the_tag() {
    let (_s, api) = start();
    let a = api
        .push_image("lib/retag", "latest", OCI_MANIFEST, 48)
        .await;
    let b = api
        .push_image("lib/retag", "latest", DOCKER_MANIFEST, 49)
        .await;
    check_manifest(&api, "lib/retag", "latest", &b).await;
    check_manifest(&api, "lib/retag", &a.digest, &a).await;
    // Pushing the same bytes again is idempotent.
    api.push_manifest("lib/retag", "latest", DOCKER_MANIFEST, &b.bytes)
        .await;
    check_manifest(&api, "lib/retag", "latest", &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_invalid_bodies_are_rejected() {
    let (_s, api) = start();
    api.push_blob("lib/junk", EMPTY_JSON).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"this is not json".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, b"[1,2,3]".to_vec()),
        (OCI_MANIFEST, b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"".to_vec()),
        // An OCI manifest without config/layers.
        (OCI_MANIFEST, serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST})).unwrap()),
        // A descriptor with a malformed digest.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_EMPTY, "digest": "sha256:nothex", "size": 2},
                "layers": [],
            }))
            .unwrap(),
        ),
        (DOCKER_LIST, b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\",\"manifests\":7}".to_vec()),
    ];
    for (i, (ct, body)) in cases.iter().enumerate() {
        let r = api
            .put_manifest("lib/junk", &format!("bad{i}"), ct, body)
            .await;
        expect_error(r, 400, &["MANIFEST_INVALID", "DIGEST_INVALID"]).await;
    }
}

// ---------------------------------------------------------------------------------------
// Referrers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn referrers_list_and_artifact_type_filter() {
    let (_s, api) = start();
    let repo = "lib/refs";
    let subject = api.push_image(repo, "v1", OCI_MANIFEST, 50).await;
    let unrelated = api.push_image(repo, "v2", OCI_MANIFEST, 51).await;
    api.push_blob(repo, EMPTY_JSON).await;
    let sbom_blob = br#"{"sbom":true}"#;
    api.push_blob(repo, sbom_blob).await;

    let sbom = artifact_manifest(
        Some("application/vnd.example.sbom.v1"),
        &[descriptor("application/json", sbom_blob)],
        Some(&subject),
        json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"}),
    );
    let sig = artifact_manifest(
        Some("application/vnd.example.signature.v1"),
        &[],
        Some(&subject),
        json!({"org.example.kind": "sig"}),
    );
    // No artifactType: the descriptor's artifactType is the config's mediaType.
    let typed_config = br#"{"kind":"typed"}"#;
    api.push_blob(repo, typed_config).await;
    let by_config = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.config.v1+json", typed_config),
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.bytes.len()},
    }));
    // An index with a subject and no artifactType: artifactType omitted.
    let index = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": unrelated.digest, "size": unrelated.bytes.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.bytes.len()},
        "annotations": {"org.example.kind": "index"},
    }));
    // Refers to a different subject: must not be listed.
    let elsewhere = artifact_manifest(
        Some("application/vnd.example.sbom.v1"),
        &[],
        Some(&unrelated),
        Value::Null,
    );

    let mut pushed = Vec::new();
    for (body, mt) in [
        (&sbom, OCI_MANIFEST),
        (&sig, OCI_MANIFEST),
        (&by_config, OCI_MANIFEST),
        (&index, OCI_INDEX),
    ] {
        let r = api.put_manifest(repo, &digest_of(body), mt, body).await;
        assert_eq!(
            header(&r, "oci-subject").as_deref(),
            Some(subject.digest.as_str())
        );
        expect_status(r, 201).await;
        pushed.push(digest_of(body));
    }
    api.push_manifest(repo, &digest_of(&elsewhere), OCI_MANIFEST, &elsewhere)
        .await;

    let (r, v) = get_json(&api, &format!("/v2/{repo}/referrers/{}", subject.digest)).await;
    assert_eq!(hv(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(v["schemaVersion"], json!(2));
    assert_eq!(v["mediaType"], json!(OCI_INDEX));
    let ms = v["manifests"].as_array().expect("manifests array");
    assert_eq!(ms.len(), 4, "{v}");
    let find = |d: &str| {
        ms.iter()
            .find(|m| m["digest"] == json!(d))
            .unwrap_or_else(|| panic!("referrer {d} not listed: {v}"))
            .clone()
    };
    let s = find(&digest_of(&sbom));
    assert_eq!(s["mediaType"], json!(OCI_MANIFEST));
    assert_eq!(s["size"], json!(sbom.len()));
    assert_eq!(s["artifactType"], json!("application/vnd.example.sbom.v1"));
    assert_eq!(
        s["annotations"],
        json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    );
    let g = find(&digest_of(&sig));
    assert_eq!(
        g["artifactType"],
        json!("application/vnd.example.signature.v1")
    );
    assert_eq!(g["annotations"], json!({"org.example.kind": "sig"}));
    let c = find(&digest_of(&by_config));
    assert_eq!(
        c["artifactType"],
        json!("application/vnd.example.config.v1+json")
    );
    let i = find(&digest_of(&index));
    assert_eq!(i["mediaType"], json!(OCI_INDEX));
    assert_eq!(i["size"], json!(index.len()));
    assert!(
        i.get("artifactType").is_none_or(|a| a.is_null()),
        "index referrer must omit artifactType: {i}"
    );
    assert_eq!(i["annotations"], json!({"org.example.kind": "index"}));

    // Filtered.
    let mut u =
        reqwest::Url::parse(&api.url(&format!("/v2/{repo}/referrers/{}", subject.digest))).unwrap();
    u.query_pairs_mut()
        .append_pair("artifactType", "application/vnd.example.sbom.v1");
    let (r, v) = get_json(&api, u.as_str()).await;
    assert_eq!(
        hv(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let ms = v["manifests"].as_array().expect("manifests array");
    assert_eq!(ms.len(), 1, "{v}");
    assert_eq!(ms[0]["digest"], json!(digest_of(&sbom)));

    // Filtered by the config-derived type.
    let mut u =
        reqwest::Url::parse(&api.url(&format!("/v2/{repo}/referrers/{}", subject.digest))).unwrap();
    u.query_pairs_mut()
        .append_pair("artifactType", "application/vnd.example.config.v1+json");
    let (_, v) = get_json(&api, u.as_str()).await;
    assert_eq!(v["manifests"].as_array().map(|a| a.len()), Some(1), "{v}");

    // A filter that matches nothing.
    let mut u =
        reqwest::Url::parse(&api.url(&format!("/v2/{repo}/referrers/{}", subject.digest))).unwrap();
    u.query_pairs_mut()
        .append_pair("artifactType", "application/vnd.example.none");
    let (r, v) = get_json(&api, u.as_str()).await;
    assert_eq!(
        hv(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    assert_eq!(v["manifests"], json!([]));

    // Deleting a referrer removes it from the list.
    expect_status(
        api.delete(&format!("/v2/{repo}/manifests/{}", digest_of(&sig)))
            .await,
        202,
    )
    .await;
    let (_, v) = get_json(&api, &format!("/v2/{repo}/referrers/{}", subject.digest)).await;
    let ms = v["manifests"].as_array().expect("manifests array");
    assert_eq!(ms.len(), 3, "{v}");
    assert!(
        !ms.iter().any(|m| m["digest"] == json!(digest_of(&sig))),
        "deleted referrer still listed: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_empty_invalid_and_per_repository() {
    let (_s, api) = start();
    let subject = api.push_image("ref/a", "v1", OCI_MANIFEST, 52).await;
    api.push_image("ref/b", "v1", OCI_MANIFEST, 53).await;

    // No referrers: an empty index, not a 404.
    let (r, v) = get_json(&api, &format!("/v2/ref/a/referrers/{}", subject.digest)).await;
    assert_eq!(hv(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(v["schemaVersion"], json!(2));
    assert_eq!(v["mediaType"], json!(OCI_INDEX));
    assert_eq!(v["manifests"], json!([]));
    let (_, v) = get_json(
        &api,
        &format!("/v2/ref/a/referrers/{}", digest_of(b"unknown")),
    )
    .await;
    assert_eq!(v["manifests"], json!([]));

    // A referrer in ref/a is not listed from ref/b.
    api.push_blob("ref/a", EMPTY_JSON).await;
    let art = artifact_manifest(
        Some("application/vnd.example.sig"),
        &[],
        Some(&subject),
        Value::Null,
    );
    api.push_manifest("ref/a", &digest_of(&art), OCI_MANIFEST, &art)
        .await;
    let (_, v) = get_json(&api, &format!("/v2/ref/a/referrers/{}", subject.digest)).await;
    assert_eq!(v["manifests"].as_array().map(|a| a.len()), Some(1), "{v}");
    let (_, v) = get_json(&api, &format!("/v2/ref/b/referrers/{}", subject.digest)).await;
    assert_eq!(v["manifests"], json!([]));

    // Invalid digests.
    for bad in ["sha256:abc", "notadigest", "sha256:ZZZ"] {
        expect_error(
            api.get(&format!("/v2/ref/a/referrers/{bad}")).await,
            400,
            &["DIGEST_INVALID"],
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// Tags and catalog
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_sorted_and_paginated() {
    let (_s, api) = start();
    let repo = "lib/tags";
    let p = api.push_image(repo, "gamma", OCI_MANIFEST, 54).await;
    for t in ["beta", "1.0", "delta", "alpha"] {
        api.push_manifest(repo, t, OCI_MANIFEST, &p.bytes).await;
    }
    let all = ["1.0", "alpha", "beta", "delta", "gamma"];

    let (r, v) = get_json(&api, &format!("/v2/{repo}/tags/list")).await;
    assert_eq!(v["name"], json!(repo));
    assert_eq!(tags_of(&v), all);
    assert!(
        link_next(&r).is_none(),
        "no Link when everything is returned"
    );

    // Page through with n=2 following Link headers.
    let (r, v) = get_json(&api, &format!("/v2/{repo}/tags/list?n=2")).await;
    assert_eq!(tags_of(&v), ["1.0", "alpha"]);
    let next = link_next(&r).expect("Link rel=next when more tags remain");
    assert!(
        next.starts_with(&format!("/v2/{repo}/tags/list?"))
            || next.contains(&format!("/v2/{repo}/tags/list?")),
        "Link: {next}"
    );
    assert!(
        next.contains("n=2") && next.contains("last=alpha"),
        "Link: {next}"
    );
    let (r, v) = get_json(&api, &next).await;
    assert_eq!(tags_of(&v), ["beta", "delta"]);
    let next = link_next(&r).expect("Link on the second page");
    assert!(next.contains("last=delta"), "Link: {next}");
    let (r, v) = get_json(&api, &next).await;
    assert_eq!(tags_of(&v), ["gamma"]);
    assert!(link_next(&r).is_none(), "no Link on the last page");

    // `last` alone, and with n.
    let (_, v) = get_json(&api, &format!("/v2/{repo}/tags/list?last=beta")).await;
    assert_eq!(tags_of(&v), ["delta", "gamma"]);
    let (r, v) = get_json(&api, &format!("/v2/{repo}/tags/list?n=2&last=delta")).await;
    assert_eq!(tags_of(&v), ["gamma"]);
    assert!(link_next(&r).is_none());
    // `last` need not be an existing tag.
    let (_, v) = get_json(&api, &format!("/v2/{repo}/tags/list?n=10&last=b")).await;
    assert_eq!(tags_of(&v), ["beta", "delta", "gamma"]);
    // Exactly n remaining: no Link.
    let (r, v) = get_json(&api, &format!("/v2/{repo}/tags/list?n=5")).await;
    assert_eq!(tags_of(&v), all);
    assert!(link_next(&r).is_none(), "no Link when no more tags remain");
    // n=0: empty list, no Link.
    let (r, v) = get_json(&api, &format!("/v2/{repo}/tags/list?n=0")).await;
    assert!(tags_of(&v).is_empty(), "n=0 must return no tags: {v}");
    assert!(link_next(&r).is_none(), "n=0 must not have a Link");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_of_unknown_repository_is_404() {
    let (_s, api) = start();
    expect_error(
        api.get("/v2/no/such/repo/tags/list").await,
        404,
        &["NAME_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_sorted_and_paginated() {
    let (_s, api) = start();
    for (i, repo) in ["zeta/app", "alpha", "mid/x/y"].iter().enumerate() {
        api.push_image(repo, "v1", OCI_MANIFEST, 60 + i as u64)
            .await;
    }
    let (r, v) = get_json(&api, "/v2/_catalog").await;
    assert_eq!(v["repositories"], json!(["alpha", "mid/x/y", "zeta/app"]));
    assert!(link_next(&r).is_none());

    let (r, v) = get_json(&api, "/v2/_catalog?n=1").await;
    assert_eq!(v["repositories"], json!(["alpha"]));
    let next = link_next(&r).expect("catalog Link rel=next");
    assert!(
        next.contains("/v2/_catalog?") && next.contains("n=1") && next.contains("last=alpha"),
        "Link: {next}"
    );
    let (r, v) = get_json(&api, &next).await;
    assert_eq!(v["repositories"], json!(["mid/x/y"]));
    let next = link_next(&r).expect("catalog Link rel=next on page 2");
    let (r, v) = get_json(&api, &next).await;
    assert_eq!(v["repositories"], json!(["zeta/app"]));
    assert!(link_next(&r).is_none());

    let (_, v) = get_json(&api, "/v2/_catalog?n=5&last=alpha").await;
    assert_eq!(v["repositories"], json!(["mid/x/y", "zeta/app"]));
}

// ---------------------------------------------------------------------------------------
// Validation of names, tags and digests
// ---------------------------------------------------------------------------------------

async fn assert_name_invalid(api: &Api, name: &str) {
    let d = digest_of(b"x");
    let ctx = format!("name {name:?}");
    expect_error(
        api.get(&format!("/v2/{name}/tags/list")).await,
        400,
        &["NAME_INVALID"],
    )
    .await;
    expect_error(
        api.get(&format!("/v2/{name}/manifests/latest")).await,
        400,
        &["NAME_INVALID"],
    )
    .await;
    expect_error(
        api.get(&format!("/v2/{name}/blobs/{d}")).await,
        400,
        &["NAME_INVALID"],
    )
    .await;
    expect_error(
        api.get(&format!("/v2/{name}/referrers/{d}")).await,
        400,
        &["NAME_INVALID"],
    )
    .await;
    let r = api.head(&format!("/v2/{name}/blobs/{d}")).await;
    assert_eq!(r.status().as_u16(), 400, "HEAD blob, {ctx}");
    expect_head(r, 400).await;
    let r = api
        .c
        .post(api.url(&format!("/v2/{name}/blobs/uploads/")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, &["NAME_INVALID"]).await;
    let m = artifact_manifest(Some("application/vnd.example.x"), &[], None, Value::Null);
    expect_error(
        api.put_manifest(name, "latest", OCI_MANIFEST, &m).await,
        400,
        &["NAME_INVALID"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_repository_names_are_400() {
    let (s, api) = start();
    let too_long = format!("{}/{}", "a".repeat(127), "b".repeat(128));
    assert_eq!(too_long.len(), 256);
    for name in [
        "Upper/case",
        "lib/Ubuntu",
        "a..b",
        "-lead",
        "trail-",
        "a._b",
        "a___b",
        "a//b",
        "a/b/",
        "a%20b",
        "a:b",
        too_long.as_str(),
    ] {
        assert_name_invalid(&api, name).await;
    }

    // `..` segments, which URL libraries would normalize away, sent raw.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/../tags/list",
        "/v2/a/%2e%2e/b/tags/list",
        "/v2/a/./b/tags/list",
    ] {
        let (status, head, body) = raw_https_request(&s, "GET", path).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(
            status, 400,
            "GET {path}: a `.`/`..` component is an invalid name\n{head}\n{text}"
        );
        assert!(text.contains("NAME_INVALID"), "GET {path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_repository_names_are_accepted() {
    let (_s, api) = start();
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), 255);
    for (i, name) in [
        "a",
        "0",
        "library/ubuntu",
        "a/b/c/d/e/f",
        "a__b",
        "a_b.c-d",
        "a---b",
        "my.registry-name/with_sep/9lives",
        longest.as_str(),
    ]
    .iter()
    .enumerate()
    {
        let data = format!("blob for {name}");
        let d = api.push_blob(name, data.as_bytes()).await;
        assert_eq!(api.get_blob(name, &d).await, data.as_bytes());
        let p = api
            .push_image(name, "v1", OCI_MANIFEST, 70 + i as u64)
            .await;
        check_manifest(&api, name, "v1", &p).await;
        let (_, v) = get_json(&api, &format!("/v2/{name}/tags/list")).await;
        assert_eq!(v["name"], json!(name));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tags_are_400_and_valid_edge_tags_work() {
    let (_s, api) = start();
    let p = api.push_image("lib/tagcheck", "ok", OCI_MANIFEST, 80).await;
    let long = "t".repeat(129);
    for tag in [
        ".dot",
        "-dash",
        long.as_str(),
        "a+b",
        "a%20b",
        "%E2%9C%93",
        "a@b",
    ] {
        let r = api
            .put_manifest("lib/tagcheck", tag, OCI_MANIFEST, &p.bytes)
            .await;
        expect_error(
            r,
            400,
            &["TAG_INVALID", "MANIFEST_INVALID", "DIGEST_INVALID"],
        )
        .await;
        let r = api.get_manifest("lib/tagcheck", tag).await;
        expect_error(
            r,
            400,
            &["TAG_INVALID", "MANIFEST_INVALID", "DIGEST_INVALID"],
        )
        .await;
    }
    let max = format!("_{}", "x".repeat(127));
    assert_eq!(max.len(), 128);
    let mut valid = vec![
        max.as_str(),
        "_under",
        "A.b-C_9",
        "v1.2.3-rc.1",
        "LATEST",
        "0",
    ];
    for t in &valid {
        api.push_manifest("lib/tagcheck", t, OCI_MANIFEST, &p.bytes)
            .await;
        check_manifest(&api, "lib/tagcheck", t, &p).await;
    }
    valid.push("ok");
    // The spec allows ASCIIbetical or case-insensitive lexical order.
    let mut ascii = valid.clone();
    ascii.sort();
    let mut folded = valid.clone();
    folded.sort_by_key(|t| t.to_ascii_lowercase());
    let (_, v) = get_json(&api, "/v2/lib/tagcheck/tags/list").await;
    let got = tags_of(&v);
    assert!(got == ascii || got == folded, "tags not sorted: {got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_digests_are_400() {
    let (_s, api) = start();
    let repo = "lib/digests";
    api.push_image(repo, "v1", OCI_MANIFEST, 81).await;
    let bad = [
        "sha256:abc".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha512:{}", "a".repeat(64)),
        "sha256:".to_owned(),
        "sha256".to_owned(),
        ":abc".to_owned(),
    ];
    for b in &bad {
        expect_error(
            api.get(&format!("/v2/{repo}/blobs/{b}")).await,
            400,
            &["DIGEST_INVALID"],
        )
        .await;
        expect_head(api.head(&format!("/v2/{repo}/blobs/{b}")).await, 400).await;
        expect_error(
            api.delete(&format!("/v2/{repo}/blobs/{b}")).await,
            400,
            &["DIGEST_INVALID"],
        )
        .await;
        if b.contains(':') {
            expect_error(
                api.get_manifest(repo, b).await,
                400,
                &["DIGEST_INVALID", "MANIFEST_INVALID", "TAG_INVALID"],
            )
            .await;
        }
        // As the digest of a push.
        let mut u = reqwest::Url::parse(&api.url(&format!("/v2/{repo}/blobs/uploads/"))).unwrap();
        u.query_pairs_mut().append_pair("digest", b);
        let r = api.c.post(u).body(b"data".to_vec()).send().await.unwrap();
        expect_error(r, 400, &["DIGEST_INVALID"]).await;
        let upload = api.start_upload(repo).await;
        expect_error(
            api.put_upload(&upload, b, Some((0, b"data"))).await,
            400,
            &["DIGEST_INVALID"],
        )
        .await;
        // A bad mount digest falls back to an upload or is refused, never a server error.
        let mut u = reqwest::Url::parse(&api.url(&format!("/v2/{repo}/blobs/uploads/"))).unwrap();
        u.query_pairs_mut()
            .append_pair("mount", b)
            .append_pair("from", "lib/other");
        let r = api
            .c
            .post(u)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        assert!(st == 202 || st == 400, "mount={b} -> {st}");
    }
    // An unsupported algorithm.
    let md5 = format!("md5:{}", "a".repeat(32));
    expect_error(
        api.get(&format!("/v2/{repo}/blobs/{md5}")).await,
        400,
        &["DIGEST_INVALID", "UNSUPPORTED"],
    )
    .await;
    expect_error(
        api.get_manifest(repo, &md5).await,
        400,
        &["DIGEST_INVALID", "UNSUPPORTED", "MANIFEST_INVALID"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_in_query_may_be_percent_encoded_or_raw() {
    let (_s, api) = start();
    let data = pseudo_random_bytes(82, 1234);
    let d = digest_of(&data);
    // Raw `:` in the query string.
    let upload = api.start_upload("lib/query").await;
    let sep = if upload.query().is_some() { '&' } else { '?' };
    let url = format!("{upload}{sep}digest={d}");
    let r = api
        .c
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_status(r, 201).await;
    assert_eq!(api.get_blob("lib/query", &d).await, data);
}

// ---------------------------------------------------------------------------------------
// More edges
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn manifest_isolation_between_repositories() {
    let (_s, api) = start();
    let p = api.push_image("iso/a", "v1", OCI_MANIFEST, 90).await;
    api.push_image("iso/b", "other", OCI_MANIFEST, 91).await;
    expect_error(
        api.get_manifest("iso/b", &p.digest).await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_head(
        api.head(&format!("/v2/iso/b/manifests/{}", p.digest)).await,
        404,
    )
    .await;
    expect_error(
        api.get_manifest("iso/b", "v1").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    expect_error(
        api.delete(&format!("/v2/iso/b/manifests/{}", p.digest))
            .await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
    let (_, v) = get_json(&api, "/v2/iso/b/tags/list").await;
    assert_eq!(tags_of(&v), ["other"]);
    check_manifest(&api, "iso/a", "v1", &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_content_type_parameters_are_ignored() {
    let (_s, api) = start();
    let p = api
        .push_image("lib/params", "plain", OCI_MANIFEST, 92)
        .await;
    let r = api
        .put_manifest(
            "lib/params",
            "withparam",
            &format!("{OCI_MANIFEST}; charset=utf-8"),
            &p.bytes,
        )
        .await;
    expect_status(r, 201).await;
    check_manifest(&api, "lib/params", "withparam", &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_accept_wildcard_and_q_values() {
    let (_s, api) = start();
    let docker = api
        .push_image("lib/acceptq", "docker", DOCKER_MANIFEST, 93)
        .await;
    let oci = api.push_image("lib/acceptq", "oci", OCI_MANIFEST, 94).await;
    let accepts = [
        // containerd's Accept.
        format!("{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}, */*"),
        "*/*".to_owned(),
        format!(
            "{OCI_MANIFEST};q=0.9, {DOCKER_MANIFEST};q=0.8, {OCI_INDEX};q=0.5, {DOCKER_LIST};q=0.5"
        ),
    ];
    for (tag, p) in [("docker", &docker), ("oci", &oci)] {
        for a in &accepts {
            let r = api
                .c
                .get(api.url(&format!("/v2/lib/acceptq/manifests/{tag}")))
                .header("accept", a.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(
                header(&r, "content-type").as_deref(),
                Some(p.media_type.as_str()),
                "{tag}, Accept {a}"
            );
            assert_eq!(
                expect_status(r, 200).await.as_ref(),
                p.bytes.as_slice(),
                "{tag}, Accept {a}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_bytes_are_stored_verbatim() {
    let (_s, api) = start();
    api.push_blob("lib/verbatim", EMPTY_JSON).await;
    let empty = digest_of(EMPTY_JSON);
    // Unusual key order, tabs, CRLF, escaped characters, no trailing newline.
    let body = format!(
        "{{\r\n\t\"layers\" : [ ],\r\n\t\"config\":{{\"size\":2,\"digest\":\"{empty}\",\"mediaType\":\"{OCI_EMPTY}\"}},\r\n\t\"annotations\":{{\"k\":\"\\u00e9\\n\\\"q\\\"\"}},\"mediaType\":\"{OCI_MANIFEST}\",\r\n\t\"schemaVersion\":2}}"
    )
    .into_bytes();
    let p = api
        .push_manifest("lib/verbatim", "odd", OCI_MANIFEST, &body)
        .await;
    check_manifest(&api, "lib/verbatim", "odd", &p).await;
    check_manifest(&api, "lib/verbatim", &p.digest, &p).await;
}

/// Sends `rb` and panics with an explanation if the transport fails, which over HTTP/1.1
/// happens when the server answers early and closes without draining the request body.
async fn send_h1_early(rb: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
    match rb.send().await {
        Ok(r) => r,
        Err(e) => panic!(
            "{what}: the HTTP/1.1 client got a transport error instead of the error response \
             ({e:?}); the server seems to close the connection without draining the unread \
             request body (no lingering close, RFC 9112 section 9.6)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_too_large_over_http1() {
    let (s, _) = start();
    let api = Api::with_client(&s, s.client_builder().http1_only().build().unwrap());
    api.push_blob("lib/big1", EMPTY_JSON).await;
    let huge = manifest_of_size(6 * 1024 * 1024);
    let rb = api
        .c
        .put(api.url("/v2/lib/big1/manifests/huge"))
        .header("content-type", OCI_MANIFEST)
        .body(huge);
    let r = send_h1_early(rb, "PUT of a 6 MiB manifest").await;
    expect_error(r, 413, &["MANIFEST_INVALID", "SIZE_INVALID"]).await;
    // The client keeps working afterwards.
    let r = api.get("/v2/").await;
    expect_status(r, 200).await;
    expect_error(
        api.get_manifest("lib/big1", "huge").await,
        404,
        &["MANIFEST_UNKNOWN"],
    )
    .await;
}

/// Sends `rb` and checks for an error answer with `status` and `code`; returns a
/// description of what went wrong instead of panicking, so that all cases get reported.
async fn try_early_error(
    rb: reqwest::RequestBuilder,
    what: &str,
    status: u16,
    code: &str,
) -> Option<String> {
    match rb.send().await {
        Err(e) => Some(format!(
            "{what}: transport error instead of {status} {code} ({e:?}); the server seems to \
             close the connection without draining the unread request body"
        )),
        Ok(r) => {
            let st = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if st != status || !body.contains(code) {
                Some(format!(
                    "{what}: expected {status} {code}, got {st}: {body}"
                ))
            } else {
                None
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn early_errors_with_large_bodies_over_http1() {
    let (s, _) = start();
    let api = Api::with_client(&s, s.client_builder().http1_only().build().unwrap());
    let big = pseudo_random_bytes(96, 8 << 20);
    let mut problems = Vec::new();

    // PATCH to an upload session that does not exist (any more).
    let upload = api.start_upload("lib/early").await;
    let r = api.c.delete(upload.clone()).send().await.unwrap();
    expect_status(r, 204).await;
    let rb = api
        .c
        .patch(upload.clone())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", big.len() - 1))
        .body(big.clone());
    problems.extend(
        try_early_error(
            rb,
            "PATCH of 8 MiB to a cancelled upload",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await,
    );

    // A monolithic POST with a malformed digest.
    let rb = api
        .c
        .post(api.url("/v2/lib/early/blobs/uploads/?digest=sha256:abc"))
        .header("content-type", "application/octet-stream")
        .body(big.clone());
    problems.extend(
        try_early_error(
            rb,
            "POST of 8 MiB with a malformed digest",
            400,
            "DIGEST_INVALID",
        )
        .await,
    );

    // A monolithic POST under an invalid name.
    let rb = api
        .c
        .post(api.url(&format!(
            "/v2/Bad/Name/blobs/uploads/?digest={}",
            digest_of(&big)
        )))
        .header("content-type", "application/octet-stream")
        .body(big.clone());
    problems.extend(
        try_early_error(
            rb,
            "POST of 8 MiB under an invalid name",
            400,
            "NAME_INVALID",
        )
        .await,
    );

    // A closing PUT with a body to an unknown session.
    let rb = api
        .c
        .put(Api::with_digest(&upload, &digest_of(&big)))
        .header("content-type", "application/octet-stream")
        .body(big.clone());
    problems.extend(
        try_early_error(
            rb,
            "PUT of 8 MiB to a cancelled upload",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await,
    );

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_with_only_untagged_manifests_lists_no_tags() {
    let (_s, api) = start();
    api.push_blob("lib/untagged", EMPTY_JSON).await;
    let body = artifact_manifest(Some("application/vnd.example.x"), &[], None, Value::Null);
    api.push_manifest("lib/untagged", &digest_of(&body), OCI_MANIFEST, &body)
        .await;
    let (_, v) = get_json(&api, "/v2/lib/untagged/tags/list").await;
    assert_eq!(v["name"], json!("lib/untagged"));
    assert!(tags_of(&v).is_empty(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_to_one_tag_stay_consistent() {
    let (_s, api) = start();
    api.push_blob("lib/race", EMPTY_JSON).await;
    let mut tasks = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..12 {
        let body = artifact_manifest(
            Some("application/vnd.example.x"),
            &[],
            None,
            json!({"i": i.to_string()}),
        );
        bodies.push(body.clone());
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.push_manifest("lib/race", "latest", OCI_MANIFEST, &body)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = api.get_manifest("lib/race", "latest").await;
    let dcd = header(&r, "docker-content-digest").expect("Docker-Content-Digest");
    let body = expect_status(r, 200).await;
    assert_eq!(
        digest_of(&body),
        dcd,
        "tag serves bytes that do not match its digest"
    );
    assert!(
        bodies.iter().any(|b| b.as_slice() == body.as_ref()),
        "tag serves unknown bytes"
    );
    for b in &bodies {
        let r = api.get_manifest("lib/race", &digest_of(b)).await;
        assert_eq!(expect_status(r, 200).await.as_ref(), b.as_slice());
    }
    let (_, v) = get_json(&api, "/v2/lib/race/tags/list").await;
    assert_eq!(tags_of(&v), ["latest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_requests_never_cause_server_errors() {
    let (s, api) = start();
    api.push_image("lib/odd", "v1", OCI_MANIFEST, 95).await;
    let upload = api.start_upload("lib/odd").await;
    let d = digest_of(b"x");
    let cases: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::GET, "/v2/lib/odd/blobs/".into()),
        (reqwest::Method::GET, "/v2/lib/odd/manifests/".into()),
        (reqwest::Method::GET, "/v2/lib/odd/blobs/uploads/".into()),
        (reqwest::Method::GET, "/v2/lib/odd/tags/list?n=abc".into()),
        (reqwest::Method::GET, "/v2/lib/odd/tags/list?n=-1".into()),
        (
            reqwest::Method::GET,
            "/v2/lib/odd/tags/list?n=99999999999999999999999".into(),
        ),
        (reqwest::Method::GET, "/v2/_catalog?n=abc".into()),
        (reqwest::Method::GET, "/v2/_catalog?last=%ff%fe".into()),
        (reqwest::Method::GET, "/v2/lib/odd/referrers/".into()),
        (reqwest::Method::GET, "/v2/lib/odd/nothing/here".into()),
        (reqwest::Method::GET, "/v2/lib%2Fodd/tags/list".into()),
        (reqwest::Method::GET, "/v2/lib/odd/blobs/%00".into()),
        (reqwest::Method::PUT, "/v2/lib/odd/tags/list".into()),
        (reqwest::Method::POST, "/v2/lib/odd/manifests/v1".into()),
        (reqwest::Method::PATCH, format!("/v2/lib/odd/blobs/{d}")),
        (
            reqwest::Method::POST,
            "/v2/lib/odd/blobs/uploads/?digest=".into(),
        ),
        (
            reqwest::Method::POST,
            "/v2/lib/odd/blobs/uploads/?mount=&from=".into(),
        ),
        (reqwest::Method::PUT, format!("{}?digest=", upload.path())),
        (reqwest::Method::GET, "/v2/lib/odd/blobs/uploads/..".into()),
        (
            reqwest::Method::GET,
            format!("/v2/lib/odd/manifests/{}", "x".repeat(5000)),
        ),
        (
            reqwest::Method::GET,
            format!("/v2/{}/tags/list", "a/".repeat(2000) + "a"),
        ),
        (reqwest::Method::DELETE, "/v2/".into()),
        (reqwest::Method::GET, "/v3/".into()),
    ];
    for (m, path) in cases {
        let r = api
            .c
            .request(m.clone(), api.url(&path))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let ct = header(&r, "content-type").unwrap_or_default();
        let body = r.bytes().await.unwrap();
        assert!(
            st < 500,
            "{m} {path} -> {st}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );

        if st >= 400 && !body.is_empty() && path.starts_with("/v2/") {
            assert!(
                ct.starts_with("application/json"),
                "{m} {path} -> {st} with Content-Type {ct:?}"
            );
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{m} {path} -> {st}, body not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            assert!(v["errors"].is_array(), "{m} {path} -> {st}: {v}");
        }
    }
    // The server is still serving.
    let (status, _, _) = raw_https_request(&s, "GET", "/v2/").await;
    assert_eq!(status, 200);
}
