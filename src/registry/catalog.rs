//! `GET /v2/_catalog`: repository names, sorted, paginated with `n` and `last`.

use http::header::LINK;
use http::StatusCode;
use serde_json::json;

use crate::registry::tags::MAX_PAGE;
use crate::registry::{next_link, page_size, HandlerResult, Registry, Reply, Request};
use crate::storage::Storage;

pub async fn list<S: Storage>(reg: &Registry<S>, req: &Request) -> HandlerResult {
    let n = page_size(req, MAX_PAGE)?;
    let last = req.query("last").filter(|l| !l.is_empty());
    let mut names = reg.storage.repositories(last, n + 1).await?;
    let more = names.len() > n;
    names.truncate(n);
    let mut reply = Reply::new(StatusCode::OK);
    if more {
        if let Some(l) = names.last() {
            reply = reply.header(LINK, next_link("/v2/_catalog", n, l));
        }
    }
    Ok(reply.json(&json!({ "repositories": names })))
}
