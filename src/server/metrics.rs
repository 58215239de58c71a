//! Prometheus metrics: requests by route, method and status; latency histograms by route;
//! bytes received and sent; uploads in flight; authentication failures; storage free and
//! total space. Rendered in the Prometheus text format at `/metrics` (on the monitoring
//! listener, and on the main port for admins).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::registry::routes::Route;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    bytes_in: Counter,
    bytes_out: Counter,
    uploads_in_flight: Gauge,
    auth_failures: Family<ReasonLabels, Counter>,
    storage_free: Gauge<u64, AtomicU64>,
    storage_size: Gauge<u64, AtomicU64>,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The route name used as a label (bounded set: never the repository name).
pub fn route_label(path: &str) -> &'static str {
    match crate::registry::routes::route(path) {
        Some(Route::Base) => "base",
        Some(Route::Catalog) => "catalog",
        Some(Route::Tags { .. }) => "tags",
        Some(Route::Manifest { .. }) => "manifest",
        Some(Route::Blob { .. }) => "blob",
        Some(Route::UploadStart { .. }) => "upload_start",
        Some(Route::Upload { .. }) => "upload",
        Some(Route::Referrers { .. }) => "referrers",
        None if path == "/healthz" || path == "/readyz" => "health",
        None if path == "/metrics" => "metrics",
        None if crate::index::web::is_ui_path(path) => "ui",
        None => "other",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("holdfast");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route",
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        let uploads_in_flight = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "Blob upload requests being received",
            uploads_in_flight.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused by authentication, by reason",
            auth_failures.clone(),
        );
        let storage_free = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "storage_free_bytes",
            "Free bytes on the storage filesystem",
            storage_free.clone(),
        );
        let storage_size = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "storage_filesystem_size_bytes",
            "Size of the storage filesystem",
            storage_size.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            auth_failures,
            storage_free,
            storage_size,
        }
    }

    pub fn observe(
        &self,
        route: &'static str,
        method: &str,
        status: u16,
        elapsed: Duration,
        bytes_out: u64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        self.bytes_out.inc_by(bytes_out);
    }

    pub fn received(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts an upload request as in flight until the guard drops.
    pub fn upload_started(self: &std::sync::Arc<Self>) -> UploadGuard {
        self.uploads_in_flight.inc();
        UploadGuard(self.clone())
    }

    pub fn set_storage(&self, free: Option<u64>, size: Option<u64>) {
        if let Some(f) = free {
            self.storage_free.set(f);
        }
        if let Some(s) = size {
            self.storage_size.set(s);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

pub struct UploadGuard(std::sync::Arc<Metrics>);

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.0.uploads_in_flight.dec();
    }
}

/// Total size of the filesystem holding `path` (free space comes from the storage).
pub fn filesystem_size(path: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(path)
        .ok()
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
}
