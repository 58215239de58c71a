//! Manifests: `HEAD`/`GET`/`PUT`/`DELETE` of `/v2/<name>/manifests/<reference>`. A push is
//! checked (media type, references present in this repository) before anything is stored,
//! and stored in crash-safe order: bytes, then the repository's link, then tag and referrer
//! records, so a crash never leaves a tag pointing at nothing.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, LOCATION};
use http::{Method, StatusCode};
use serde_json::json;

use crate::events::EventKind;
use crate::registry::errors::{Code, RegistryError};
use crate::registry::manifest_format::{parse_pushed, parse_stored, ManifestInfo};
use crate::registry::names::{Algorithm, Digest, Reference, RepoName};
use crate::registry::negotiate::{accepted_types, manifest_acceptable};
use crate::registry::{header, HandlerResult, Registry, Reply, Request};
use crate::storage::{ReferrerRecord, Storage, StorageError};

fn not_found_is_manifest_unknown(e: StorageError) -> RegistryError {
    match e {
        StorageError::NotFound => RegistryError::manifest_unknown(),
        other => other.into(),
    }
}

/// The digest a reference names in `repo`, if the repository holds it.
async fn resolve<S: Storage>(
    reg: &Registry<S>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Digest, RegistryError> {
    let digest = match reference {
        Reference::Tag(tag) => reg
            .storage
            .tag_get(repo, tag)
            .await?
            .ok_or_else(RegistryError::manifest_unknown)?,
        Reference::Digest(d) => d.clone(),
    };
    if !reg.storage.manifest_linked(repo, &digest).await? {
        return Err(RegistryError::manifest_unknown());
    }
    Ok(digest)
}

fn parse_reference(reference: &str) -> Result<Reference, RegistryError> {
    Reference::parse(reference).map_err(|e| match e {
        crate::registry::names::NameError::Tag => {
            RegistryError::new(StatusCode::BAD_REQUEST, Code::TagInvalid, "invalid tag")
        }
        other => other.into(),
    })
}

pub async fn get<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    reference: &str,
    req: &Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let reference = parse_reference(reference)?;
    let digest = resolve(reg, &repo, &reference).await?;
    let body = reg
        .storage
        .blob_read_all(&digest)
        .await
        .map_err(not_found_is_manifest_unknown)?;
    let info = parse_stored(&body)?;
    let accepted = accepted_types(&req.headers);
    if !manifest_acceptable(&accepted, &info.media_type) {
        return Err(RegistryError::manifest_unknown().with_detail(json!({
            "reason": "the manifest's media type is not in the Accept header",
            "mediaType": info.media_type,
        })));
    }
    let reply = Reply::new(StatusCode::OK)
        .header(header::DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(ETAG, format!("\"{digest}\""));
    if req.method == Method::HEAD {
        return Ok(reply
            .header(CONTENT_TYPE, &info.media_type)
            .header(CONTENT_LENGTH, body.len().to_string()));
    }
    Ok(reply.bytes(&info.media_type, body))
}

/// Every blob and child manifest the manifest references must already be in `repo`.
async fn check_references<S: Storage>(
    reg: &Registry<S>,
    repo: &RepoName,
    info: &ManifestInfo,
) -> Result<(), RegistryError> {
    let unknown = |d: &Digest| {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            Code::ManifestBlobUnknown,
            "manifest references a blob or manifest unknown to this repository",
        )
        .with_detail(json!({ "digest": d.to_string() }))
    };
    for d in &info.blobs {
        let present =
            reg.storage.blob_linked(repo, d).await? && reg.storage.blob_size(d).await?.is_some();
        if !present {
            return Err(unknown(d));
        }
    }
    for d in &info.manifests {
        if !reg.storage.manifest_linked(repo, d).await? {
            return Err(unknown(d));
        }
    }
    Ok(())
}

pub async fn put<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    reference: &str,
    mut req: Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let reference = parse_reference(reference)?;
    let body: Bytes = req
        .read_body(reg.limits.manifest_max_bytes)
        .await
        .map_err(|mut e| {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                e.code = Code::ManifestInvalid;
                e.message = format!(
                    "manifest exceeds the limit of {} bytes",
                    reg.limits.manifest_max_bytes
                );
            }
            e
        })?;
    let info = parse_pushed(&body, req.header(CONTENT_TYPE))?;

    // A digest reference must match the content under its own algorithm.
    let digest = match &reference {
        Reference::Digest(d) => {
            let computed = Digest::of(d.algorithm(), &body);
            if &computed != d {
                return Err(RegistryError::digest_invalid(
                    "manifest content does not match the digest in the URL",
                )
                .with_detail(
                    json!({ "expected": d.to_string(), "computed": computed.to_string() }),
                ));
            }
            computed
        }
        Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
    };
    check_references(reg, &repo, &info).await?;

    let size = body.len() as u64;
    reg.storage.blob_put(&digest, body).await?;
    reg.storage.link_manifest(&repo, &digest).await?;
    if let Reference::Tag(tag) = &reference {
        let previous = reg.storage.tag_get(&repo, tag).await?;
        reg.storage.tag_put(&repo, tag, &digest).await?;
        if let Some(previous) = previous.filter(|p| p != &digest) {
            tracing::info!(target: "audit", event = "tag_moved", repository = %repo, tag = %tag, from = %previous, to = %digest);
        }
    }
    let mut reply = Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{repo}/manifests/{digest}"))
        .header(header::DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(CONTENT_LENGTH, "0");
    if let Some(subject) = &info.subject {
        let record = ReferrerRecord {
            digest: digest.clone(),
            descriptor_json: Bytes::from(info.referrer_descriptor(&digest, size).to_string()),
        };
        reg.storage.referrer_add(&repo, subject, record).await?;
        reply = reply.header(header::OCI_SUBJECT, subject.to_string());
    }
    tracing::info!(target: "audit", event = "push", repository = %repo, reference = %reference, digest = %digest, media_type = %info.media_type, size);
    reg.publish(
        req.user.as_deref(),
        EventKind::ManifestPushed {
            repository: repo.to_string(),
            tag: match &reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            },
            digest: digest.to_string(),
            media_type: info.media_type.to_string(),
            size,
        },
    )
    .await;
    Ok(reply)
}

pub async fn delete<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    reference: &str,
    actor: Option<&str>,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let reference = parse_reference(reference)?;
    match &reference {
        Reference::Tag(tag) => {
            reg.storage
                .tag_delete(&repo, tag)
                .await
                .map_err(not_found_is_manifest_unknown)?;
        }
        Reference::Digest(digest) => {
            if !reg.storage.manifest_linked(&repo, digest).await? {
                return Err(RegistryError::manifest_unknown());
            }
            // Tags first: a tag must never point at a manifest the repository no longer has.
            for tag in reg.storage.tags_for(&repo, digest).await? {
                match reg.storage.tag_delete(&repo, &tag).await {
                    Ok(()) | Err(StorageError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Ok(body) = reg.storage.blob_read_all(digest).await {
                if let Some(subject) = parse_stored(&body).ok().and_then(|i| i.subject) {
                    match reg.storage.referrer_remove(&repo, &subject, digest).await {
                        Ok(()) | Err(StorageError::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            reg.storage
                .unlink_manifest(&repo, digest)
                .await
                .map_err(not_found_is_manifest_unknown)?;
        }
    }
    tracing::info!(target: "audit", event = "delete", repository = %repo, reference = %reference);
    let kind = match &reference {
        Reference::Tag(tag) => EventKind::TagDeleted {
            repository: repo.to_string(),
            tag: tag.to_string(),
        },
        Reference::Digest(digest) => EventKind::ManifestDeleted {
            repository: repo.to_string(),
            digest: digest.to_string(),
        },
    };
    reg.publish(actor, kind).await;
    Ok(Reply::new(StatusCode::ACCEPTED).header(CONTENT_LENGTH, "0"))
}
