//! `GET /v2/_catalog`: repository names the caller may pull, sorted, paginated with `n` and
//! `last`.

use http::header::LINK;
use http::StatusCode;
use serde_json::json;

use crate::registry::tags::MAX_PAGE;
use crate::registry::{next_link, page_size, HandlerResult, Registry, Reply, Request};
use crate::storage::Storage;

/// Most names examined for one page when the caller may see only some: bounds the cost a
/// caller with few grants can cause in a large registry.
const MAX_SCANNED: usize = 100_000;

pub async fn list<S: Storage>(reg: &Registry<S>, req: &Request) -> HandlerResult {
    let n = page_size(req, MAX_PAGE)?;
    let mut cursor = req
        .query("last")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    // Collect one more visible name than asked for: it tells whether a next page exists.
    let mut names = Vec::new();
    let mut scanned = 0;
    let batch = (n + 1).clamp(100, MAX_PAGE);
    'fill: while names.len() <= n && scanned < MAX_SCANNED {
        let chunk = reg.storage.repositories(cursor.as_deref(), batch).await?;
        let exhausted = chunk.len() < batch;
        for name in chunk {
            scanned += 1;
            cursor = Some(name.clone());
            if req.access.lists(&name) {
                names.push(name);
                if names.len() > n {
                    break 'fill;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let more = names.len() > n || scanned >= MAX_SCANNED;
    names.truncate(n);
    let mut reply = Reply::new(StatusCode::OK);
    if more {
        // After a scan cut short, continue from the last name examined.
        let next = if names.len() == n {
            names.last().cloned()
        } else {
            cursor
        };
        if let Some(l) = next {
            reply = reply.header(LINK, next_link("/v2/_catalog", n, &l));
        }
    }
    Ok(reply.json(&json!({ "repositories": names })))
}
