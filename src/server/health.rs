//! Health endpoints for load balancers and service managers: `/healthz` answers while the
//! process serves requests at all; `/readyz` answers 200 only when the storage accepts a
//! durable write and has more free space than its watermark (the config is loaded, or the
//! process would not be serving). Neither needs credentials nor reveals content.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use crate::registry::{Registry, Reply};
use crate::storage::Storage;

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";

pub fn is_health_path(path: &str) -> bool {
    path == HEALTHZ || path == READYZ
}

pub async fn answer<S: Storage>(registry: &Registry<S>, path: &str) -> Reply {
    if path == HEALTHZ {
        return Reply::new(StatusCode::OK).json(&json!({ "status": "ok" }));
    }
    let mut problems = Vec::new();
    if let Err(e) = registry.storage.check_writable().await {
        tracing::warn!(error = %e, "readiness: storage is not writable");
        problems.push("storage is not writable".to_owned());
    }
    match registry.storage.free_space().await {
        Ok(Some(free)) if free < registry.min_free_bytes => problems.push(format!(
            "free disk space {free} bytes is below the watermark of {} bytes",
            registry.min_free_bytes
        )),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read free disk space");
            problems.push("cannot read free disk space".to_owned());
        }
    }
    if registry.read_only {
        // Still ready (reads work), but say so.
        return Reply::new(StatusCode::OK).json(&json!({ "status": "ready", "read_only": true }));
    }
    if problems.is_empty() {
        Reply::new(StatusCode::OK).json(&json!({ "status": "ready" }))
    } else {
        Reply::new(StatusCode::SERVICE_UNAVAILABLE).bytes(
            "application/json",
            Bytes::from(json!({ "status": "not ready", "problems": problems }).to_string()),
        )
    }
}
