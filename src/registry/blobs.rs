//! Blob reads and deletes: `HEAD`/`GET` (with `Range`) and `DELETE` of
//! `/v2/<name>/blobs/<digest>`. A blob is served only from a repository that links it.

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE,
};
use http::{Method, StatusCode};

use crate::registry::errors::RegistryError;
use crate::registry::names::{Digest, RepoName};
use crate::registry::range::{parse_range, RangeRequest};
use crate::registry::{header, HandlerResult, Registry, Reply, Request};
use crate::storage::{Storage, StorageError};

pub async fn get<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    digest: &str,
    req: &Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    if !reg.storage.blob_linked(&repo, &digest).await? {
        return Err(RegistryError::blob_unknown());
    }
    let size = reg
        .storage
        .blob_size(&digest)
        .await?
        .ok_or_else(RegistryError::blob_unknown)?;
    let base = Reply::new(StatusCode::OK)
        .header(header::DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(ETAG, format!("\"{digest}\""))
        .header(ACCEPT_RANGES, "bytes")
        .header(CACHE_CONTROL, "max-age=31536000")
        .header(CONTENT_TYPE, "application/octet-stream");
    let range = match req.header(RANGE) {
        Some(h) => parse_range(h, size),
        None => RangeRequest::Full,
    };
    let (status, start, end) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            return Err(StorageError::RangeNotSatisfiable { size }.into());
        }
    };
    let mut reply = base;
    reply.status = status;
    if status == StatusCode::PARTIAL_CONTENT {
        reply = reply.header(CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1));
    }
    if req.method == Method::HEAD {
        return Ok(reply.header(CONTENT_LENGTH, (end - start).to_string()));
    }
    let ranged = (status == StatusCode::PARTIAL_CONTENT).then_some((start, end));
    let read = match reg.storage.blob_read(&digest, ranged).await {
        Ok(r) => r,
        Err(StorageError::NotFound) => return Err(RegistryError::blob_unknown()),
        Err(e) => return Err(e.into()),
    };
    Ok(reply.stream(read.len, read.stream))
}

pub async fn delete<S: Storage>(reg: &Registry<S>, name: &str, digest: &str) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    match reg.storage.unlink_blob(&repo, &digest).await {
        Ok(()) => {
            tracing::info!(target: "audit", event = "delete_blob", repository = %repo, digest = %digest);
            Ok(Reply::new(StatusCode::ACCEPTED).header(CONTENT_LENGTH, "0"))
        }
        Err(StorageError::NotFound) => Err(RegistryError::blob_unknown()),
        Err(e) => Err(e.into()),
    }
}
