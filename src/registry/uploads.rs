//! Upload sessions: `POST` (start, monolithic `?digest=`, cross-repository `?mount=&from=`),
//! `PATCH` (append a chunk), `PUT ?digest=` (finish), `GET` (status) and `DELETE` (cancel)
//! under `/v2/<name>/blobs/uploads/`. Storage enforces that a session belongs to its name.

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RANGE};
use http::StatusCode;

use crate::registry::errors::{Code, RegistryError};
use crate::registry::names::{Digest, RepoName};
use crate::registry::range::parse_content_range;
use crate::registry::{header, upload_range, Action, HandlerResult, Registry, Reply, Request};
use crate::storage::{Storage, StorageError, UploadId};

fn session_location(repo: &RepoName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{}", id.0)
}

fn session_reply(status: StatusCode, repo: &RepoName, id: &UploadId, size: u64) -> Reply {
    Reply::new(status)
        .header(LOCATION, session_location(repo, id))
        .header(header::DOCKER_UPLOAD_UUID, &id.0)
        .header(RANGE, upload_range(size))
        .header(CONTENT_LENGTH, "0")
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Reply {
    Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(header::DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(CONTENT_LENGTH, "0")
}

/// Storage's "not found" for anything about a session means the session is unknown.
fn session_error(e: StorageError) -> RegistryError {
    match e {
        StorageError::NotFound => RegistryError::upload_unknown(),
        other => other.into(),
    }
}

fn parse_id(id: &str) -> Result<UploadId, RegistryError> {
    UploadId::parse(id).ok_or_else(RegistryError::upload_unknown)
}

pub async fn start<S: Storage>(reg: &Registry<S>, name: &str, mut req: Request) -> HandlerResult {
    let repo = RepoName::parse(name)?;

    if let Some(mount) = req.query("mount") {
        let digest = Digest::parse(mount)?;
        // Mount only from a named repository that links the blob: finding a blob by digest
        // alone would expose other repositories' content.
        // The caller must be allowed to pull `from`; otherwise mounting would copy content
        // it cannot read, so it silently gets a normal upload instead.
        let from = req
            .query("from")
            .and_then(|f| RepoName::parse(f).ok())
            .filter(|f| req.access.allowed(f.as_str(), Action::Pull));
        if let Some(from) = from {
            if reg.storage.blob_linked(&from, &digest).await?
                && reg.storage.blob_size(&digest).await?.is_some()
            {
                reg.storage.link_blob(&repo, &digest).await?;
                tracing::info!(repository = %repo, from = %from, digest = %digest, "blob mounted");
                return Ok(blob_created(&repo, &digest));
            }
        }
        // Not mountable: fall through to an ordinary upload session (202).
    } else if let Some(digest) = req.query("digest") {
        // Monolithic upload: the whole blob is this request's body.
        let digest = Digest::parse(digest)?;
        let id = reg.storage.upload_start(&repo).await?;
        let body = req.take_body();
        let result = async {
            reg.storage
                .upload_append(&repo, &id, None, body, reg.blob_limit())
                .await?;
            reg.storage.upload_finish(&repo, &id, &digest).await
        }
        .await;
        return match result {
            Ok(_) => Ok(blob_created(&repo, &digest)),
            Err(e) => {
                // A failed monolithic upload leaves nothing to resume.
                let _ = reg.storage.upload_cancel(&repo, &id).await;
                Err(session_error(e))
            }
        };
    }

    let id = reg.storage.upload_start(&repo).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &repo, &id, 0))
}

pub async fn status<S: Storage>(reg: &Registry<S>, name: &str, id: &str) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let id = parse_id(id)?;
    let size = reg
        .storage
        .upload_size(&repo, &id)
        .await
        .map_err(session_error)?;
    Ok(session_reply(StatusCode::NO_CONTENT, &repo, &id, size))
}

/// Appends the request body as a chunk; with `Content-Range`, the chunk must start where
/// the upload ends and its length must agree with `Content-Length`.
async fn append_chunk<S: Storage>(
    reg: &Registry<S>,
    repo: &RepoName,
    id: &UploadId,
    req: &mut Request,
) -> Result<u64, RegistryError> {
    let offset = match req.header(CONTENT_RANGE) {
        None => None,
        Some(h) => {
            let (start, end) = parse_content_range(h).ok_or_else(|| {
                RegistryError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Code::BlobUploadInvalid,
                    "malformed Content-Range",
                )
            })?;
            if let Some(len) = req.content_length() {
                if len != end - start + 1 {
                    return Err(RegistryError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        Code::BlobUploadInvalid,
                        "Content-Range does not agree with Content-Length",
                    ));
                }
            }
            Some(start)
        }
    };
    let body = req.take_body();
    reg.storage
        .upload_append(repo, id, offset, body, reg.blob_limit())
        .await
        .map_err(session_error)
}

pub async fn patch<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    id: &str,
    mut req: Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let id = parse_id(id)?;
    let size = append_chunk(reg, &repo, &id, &mut req).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &repo, &id, size))
}

pub async fn finish<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    id: &str,
    mut req: Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let id = parse_id(id)?;
    let digest = req
        .query("digest")
        .ok_or_else(|| RegistryError::digest_invalid("the digest query parameter is required"))?;
    let digest = Digest::parse(digest)?;
    if req.content_length() != Some(0) {
        append_chunk(reg, &repo, &id, &mut req).await?;
    } else {
        // Still a check that the session exists and belongs to this repository.
        reg.storage
            .upload_size(&repo, &id)
            .await
            .map_err(session_error)?;
    }
    reg.storage
        .upload_finish(&repo, &id, &digest)
        .await
        .map_err(session_error)?;
    Ok(blob_created(&repo, &digest))
}

pub async fn cancel<S: Storage>(reg: &Registry<S>, name: &str, id: &str) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let id = parse_id(id)?;
    reg.storage
        .upload_cancel(&repo, &id)
        .await
        .map_err(session_error)?;
    Ok(Reply::new(StatusCode::NO_CONTENT))
}
