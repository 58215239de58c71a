//! `/metrics` in the Prometheus text format, read by a real exposition parser
//! (`prometheus-parse`): on the monitoring listener without credentials, on the main port
//! for admins only, and with values that move as requests are made.

mod common;

use common::{digest_of, free_port, TestServer};
use prometheus_parse::{Scrape, Value};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format")
}

/// The value of the sample `name` whose labels include all of `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map(|b| b.count).unwrap_or(0.0),
            Value::Summary(_) => f64::NAN,
        })
}

async fn scrape(url: &str) -> Scrape {
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    parse(&text)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_move_with_requests() {
    let port = free_port();
    let server = TestServer::start(&format!("[monitoring]\nlisten = \"127.0.0.1:{port}\"\n"));
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let client = server.client();

    let before = scrape(&metrics_url).await;
    let free = value(&before, "holdfast_storage_free_bytes", &[]).expect("free space gauge");
    assert!(free > 0.0);
    assert!(value(&before, "holdfast_storage_filesystem_size_bytes", &[]).unwrap() >= free);
    assert_eq!(value(&before, "holdfast_uploads_in_flight", &[]), Some(0.0));

    // One 404 manifest GET, one blob push of 1 MiB.
    let r = client
        .get(server.url("/v2/m/x/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let blob = vec![7u8; 1 << 20];
    let r = client
        .post(server.url(&format!(
            "/v2/m/x/blobs/uploads/?digest={}",
            digest_of(&blob)
        )))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(server.url(&format!("/v2/m/x/blobs/{}", digest_of(&blob))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);

    let after = scrape(&metrics_url).await;
    let requests = |s: &Scrape, route: &str, method: &str, status: &str| {
        value(
            s,
            "holdfast_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(requests(&after, "manifest", "GET", "404"), 1.0);
    assert_eq!(requests(&after, "upload_start", "POST", "201"), 1.0);
    assert_eq!(requests(&after, "blob", "GET", "200"), 1.0);
    let received = value(&after, "holdfast_http_received_bytes_total", &[]).unwrap();
    assert!(received >= (1 << 20) as f64, "bytes in counted: {received}");
    let sent = value(&after, "holdfast_http_sent_bytes_total", &[]).unwrap();
    assert!(sent >= (1 << 20) as f64, "bytes out counted: {sent}");
    let latency_count = value(
        &after,
        "holdfast_http_request_duration_seconds",
        &[("route", "blob")],
    )
    .expect("latency histogram per route");
    assert!(latency_count >= 1.0);
    let free_after = value(&after, "holdfast_storage_free_bytes", &[]).unwrap();
    assert!(free_after > 0.0);

    // The monitoring listener never serves the registry API.
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn main_port_metrics_are_for_admins_and_count_auth_failures() {
    let server = TestServer::start("[auth]\nmode = \"basic\"\n");
    let password = std::fs::read_to_string(server.data_dir().join("initial-admin-password"))
        .unwrap()
        .split_whitespace()
        .find(|w| w.len() >= 20 && w.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap()
        .to_owned();
    let client = server.client();
    let url = server.url("/metrics");

    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "anonymous callers are asked to sign in");
    let r = client
        .get(server.url("/v2/"))
        .basic_auth("admin", Some("wrong-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = client
        .get(&url)
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let scrape = parse(&r.text().await.unwrap());
    assert!(
        value(
            &scrape,
            "holdfast_auth_failures_total",
            &[("reason", "bad_credentials")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "the failed login is counted"
    );
}
