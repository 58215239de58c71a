//! What a repository's managers do, shared by the JSON API (`api`) and the web UI (`web`):
//! finding a repository as the caller may see it (a repository they may not pull does not
//! exist for them), the management check, the description rules, deleting a tag and
//! deleting a whole repository everywhere. The callers own authentication and turn
//! [`ManageError`] into their own answers (JSON errors, HTML pages); the decisions and
//! the order of the side effects live here once.

use std::sync::Arc;

use crate::auth::Identity;
use crate::events::{Event, EventKind};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::store::{Repository, StoreError};

/// Longest description kept.
pub const MAX_DESCRIPTION: usize = 4096;

/// Why a management action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No such repository, or one the caller may not pull (the two look the same).
    #[error("repository not known to the index")]
    NotFound,
    /// The caller sees the repository but does not manage it.
    #[error("only the namespace's owners and administrators manage this repository")]
    Forbidden,
    /// `[auth] allow_delete = false`.
    #[error("deletes are disabled on this registry ([auth] allow_delete = false)")]
    DeletesDisabled,
    /// `[storage] read_only`: the registry in this process refuses every change.
    #[error("the registry is in read-only maintenance mode")]
    ReadOnly,
    /// The repository's content is not in this process (a custom index).
    #[error("this index holds no content; tags are deleted on the registries")]
    NoLocalRegistry,
    /// The request itself is wrong (the message is safe to show).
    #[error("{0}")]
    Invalid(String),
    #[error("index store: {0}")]
    Store(#[from] StoreError),
    /// The registry's storage failed (logged where it happened).
    #[error("registry content: {0}")]
    Content(String),
    #[error("index task failed: {0}")]
    Task(String),
}

/// `name` if `who` may pull it; `None` for a missing repository and for one they may not
/// see alike.
pub fn visible_repository(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
) -> Result<Option<Repository>, StoreError> {
    let Some(repo) = index.store.repository(name)? else {
        return Ok(None);
    };
    let rules = index.auth.state();
    Ok(index
        .policy(&rules)
        .may_pull_existing(who, &repo)?
        .then_some(repo))
}

/// `name` for a management action by `who`: `NotFound` when they may not even see it,
/// `Forbidden` when they see it but do not manage it.
pub fn managed_repository(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
) -> Result<Repository, ManageError> {
    let repo = visible_repository(index, who, name)?.ok_or(ManageError::NotFound)?;
    let rules = index.auth.state();
    if !index.policy(&rules).may_manage(who, name) {
        return Err(ManageError::Forbidden);
    }
    Ok(repo)
}

/// A description is plain text of at most [`MAX_DESCRIPTION`] characters; line breaks and
/// tabs are its only control characters.
pub fn check_description(description: &str) -> Result<(), ManageError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ManageError::Invalid(format!(
            "description longer than {MAX_DESCRIPTION} characters"
        )));
    }
    if description
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ManageError::Invalid(
            "description contains control characters".to_owned(),
        ));
    }
    Ok(())
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, ManageError> {
    r.map_err(|e| ManageError::Task(e.to_string()))
}

/// Checks on the blocking pool that `who` manages `name` and that deletes are allowed.
async fn may_delete(
    index: &Arc<EmbeddedIndex>,
    who: &Identity,
    name: &str,
) -> Result<(), ManageError> {
    let (i, w, n) = (index.clone(), who.clone(), name.to_owned());
    joined(tokio::task::spawn_blocking(move || managed_repository(&i, &w, &n).map(|_| ())).await)??;
    if !index.auth.state().deletes_allowed() {
        return Err(ManageError::DeletesDisabled);
    }
    if index.local_registry.as_ref().is_some_and(|l| l.read_only()) {
        return Err(ManageError::ReadOnly);
    }
    Ok(())
}

/// Deletes the repository: its content on the registry in this process (tags, manifests,
/// links; blobs go with garbage collection), every record of it here, and, for the other
/// registries this index serves, a deletion they carry out when they next report in.
/// Returns those other registries.
pub async fn delete_repository(
    index: &Arc<EmbeddedIndex>,
    who: &Identity,
    name: &str,
) -> Result<Vec<String>, ManageError> {
    may_delete(index, who, name).await?;
    // Content first: should it fail, the records stay and the delete can be retried.
    if let Some(local) = &index.local_registry {
        local.delete_repository(name).await.map_err(|e| {
            tracing::error!(repository = %name, error = %e, "deleting the repository's content failed");
            ManageError::Content(e)
        })?;
    }
    let remote: Vec<String> = index
        .services
        .iter()
        .filter(|s| {
            index
                .local_registry
                .as_ref()
                .is_none_or(|l| l.service() != s.as_str())
        })
        .cloned()
        .collect();
    let store_index = index.clone();
    let (n, r) = (name.to_owned(), remote.clone());
    joined(
        tokio::task::spawn_blocking(move || {
            store_index.store.delete_repository(&n)?;
            store_index.store.queue_deletion(&n, &r, unix_now())
        })
        .await,
    )??;
    tracing::info!(target: "audit", event = "repository_deleted", repository = %name, user = who.display_name());
    Ok(remote)
}

/// Deletes `tag` of `name` on the registry in this process, then records it in the index
/// exactly as that registry's own delete event would be (a fresh event id, the same
/// ingest path). `Ok(false)` when the registry had no such tag (the index forgets it all
/// the same: it had heard of a tag that is not there).
pub async fn delete_tag(
    index: &Arc<EmbeddedIndex>,
    who: &Identity,
    name: &str,
    tag: &str,
) -> Result<bool, ManageError> {
    may_delete(index, who, name).await?;
    let Some(local) = &index.local_registry else {
        return Err(ManageError::NoLocalRegistry);
    };
    let existed = local.delete_tag(name, tag).await.map_err(|e| {
        tracing::error!(repository = %name, tag = %tag, error = %e, "deleting a tag failed");
        ManageError::Content(e)
    })?;
    let event = Event::new(
        local.service(),
        who.user.as_deref(),
        EventKind::TagDeleted {
            repository: name.to_owned(),
            tag: tag.to_owned(),
        },
    )
    .map_err(|e| ManageError::Task(e.to_string()))?;
    let i = index.clone();
    joined(tokio::task::spawn_blocking(move || crate::index::ingest::apply(&i, &event)).await)??;
    tracing::info!(target: "audit", event = "tag_deleted", repository = %name, tag = %tag, existed, user = who.display_name());
    Ok(existed)
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        assert!(check_description("").is_ok());
        assert!(check_description("two\nlines\tand a tab <b>").is_ok());
        assert!(check_description(&"é".repeat(MAX_DESCRIPTION)).is_ok());
        assert!(matches!(
            check_description(&"x".repeat(MAX_DESCRIPTION + 1)),
            Err(ManageError::Invalid(_))
        ));
        assert!(check_description("bell\u{7}").is_err());
        assert!(check_description("cr\r").is_err());
    }
}
