//! `GET /v2/<name>/tags/list`: a repository's tags, sorted, paginated with `n` and `last`.

use http::header::LINK;
use http::StatusCode;
use serde_json::json;

use crate::registry::errors::RegistryError;
use crate::registry::names::RepoName;
use crate::registry::{next_link, page_size, HandlerResult, Registry, Reply, Request};
use crate::storage::{Storage, StorageError};

/// Most entries one page returns, whatever `n` asks for.
pub const MAX_PAGE: usize = 10_000;

pub async fn list<S: Storage>(reg: &Registry<S>, name: &str, req: &Request) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let n = page_size(req, MAX_PAGE)?;
    let last = req.query("last").filter(|l| !l.is_empty());
    // One extra entry tells whether another page follows.
    let mut tags = match reg.storage.tags_list(&repo, last, n + 1).await {
        Ok(t) => t,
        Err(StorageError::NotFound) => return Err(RegistryError::name_unknown()),
        Err(e) => return Err(e.into()),
    };
    let more = tags.len() > n;
    tags.truncate(n);
    let mut reply = Reply::new(StatusCode::OK);
    if more {
        if let Some(l) = tags.last() {
            reply = reply.header(LINK, next_link(&format!("/v2/{repo}/tags/list"), n, l));
        }
    }
    Ok(reply.json(&json!({ "name": repo.as_str(), "tags": tags })))
}
