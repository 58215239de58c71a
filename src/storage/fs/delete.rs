//! Deleting a whole repository. A repository is its `_`-prefixed entries under
//! `repositories/<name>/`: name components never start with `_`, so those entries are
//! never a nested repository, and everything else in the directory is left alone. A delete
//! cancels the repository's idle upload sessions, then, holding the gate exclusively (no
//! change under `repositories/` runs meanwhile), renames each `_` entry into one fresh
//! `tmp/delete-<hex>/` directory (same filesystem as `repositories/`, so every rename is
//! atomic), drops the name from the catalog and the tag indexes, and removes the directories
//! left empty. Only then, with the gate released, is the moved tree removed; a tree a crash
//! left in `tmp/` is removed later by `uploads_purge`.
//!
//! Crash order: `_manifests` leaves first. It holds the tags and the manifest revisions
//! together, and it is what makes a name a repository (catalog, tag listing), so one rename
//! takes all of that away at once: no crash can leave tags pointing at manifests that are
//! gone. `_referrers` leaves next; a crash right after `_manifests` leaves referrer records
//! listed under a name that is no longer a repository (their manifests unknown), the one
//! visible remnant. `_layers` leaves last: layer links without manifests are what every
//! unfinished push looks like. The repository directory is fsync'd after each rename so
//! the order also holds on disk. Deleting again finishes an interrupted delete, because any
//! `_` entry left counts as the repository.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::{blocking, random_hex, remove_tree_durable, sync_dir};
use super::{lock, FsStorage, Layout};
use crate::registry::names::RepoName;
use crate::storage::StorageResult;

/// Prefix of the directories under `tmp/` that deleted repositories are moved into (temp
/// files of atomic writes are bare hex, so the two never collide).
const TRASH_PREFIX: &str = "delete-";

/// Where an entry comes in the order of leaving; see the module comment.
fn rank(name: &OsString) -> u8 {
    match name.to_str() {
        Some("_manifests") => 0,
        Some("_layers") => 2,
        _ => 1,
    }
}

/// The repository's own entries (`_`-prefixed) in the order they must leave. Empty when
/// the directory is missing or holds only nested repositories.
pub(super) fn own_entries(dir: &Path) -> io::Result<Vec<OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut own = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if name.as_encoded_bytes().starts_with(b"_") {
            own.push(name);
        }
    }
    own.sort_by_key(rank);
    Ok(own)
}

/// Moves the repository's own entries into a fresh directory under `tmp/` and returns it;
/// `None` when there was nothing to move. On an error part-way, what was moved already
/// stays in that directory (purge removes it) and the rest stays in place, so deleting again
/// finishes the job.
fn hide(layout: &Layout, dir: &Path) -> io::Result<Option<PathBuf>> {
    let own = own_entries(dir)?;
    if own.is_empty() {
        return Ok(None);
    }
    let trash = layout.tmp.join(format!("{TRASH_PREFIX}{}", random_hex()?));
    fs::create_dir(&trash)?;
    sync_dir(&layout.tmp)?;
    for name in &own {
        fs::rename(dir.join(name), trash.join(name))?;
        // Durable before the next entry leaves, so a crash cannot reorder the steps.
        sync_dir(dir)?;
    }
    Ok(Some(trash))
}

/// Removes `dir`, then its parents, while they are empty, up to (not including) `base`. A
/// directory that is not empty holds another repository (or something not ours) and ends
/// the walk. Best effort and not fsync'd: an empty directory left behind, or back after a
/// crash, is no repository to any lookup (that takes `_manifests`).
fn prune_empty(base: &Path, dir: &Path) {
    let mut cur = dir.to_path_buf();
    while cur != base && cur.starts_with(base) {
        match fs::remove_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => return,
            Err(e) => {
                tracing::warn!(dir = %cur.display(), error = %e, "could not remove an empty repository directory");
                return;
            }
        }
        if !cur.pop() {
            return;
        }
    }
}

impl FsStorage {
    pub(super) async fn delete_repo(&self, repo: &RepoName) -> StorageResult<bool> {
        // Outside the gate: it scans `uploads/`, and every writer waits while the gate is held.
        let cancelled = self.cancel_sessions_of(repo).await?;
        if cancelled > 0 {
            tracing::debug!(repository = %repo, sessions = cancelled, "cancelled upload sessions of a deleted repository");
        }
        // Gate before catalog, as writers take them (`ensure_repo`).
        let gate = self.inner.gate.clone().write_owned().await;
        let mut catalog = self.inner.catalog.clone().lock_owned().await;
        let inner = self.inner.clone();
        let name = repo.as_str().to_owned();
        // One task does it all, with the guards moved in: a caller that goes away cannot stop
        // it between the disk and the indexes.
        blocking(move || {
            let dir = inner.layout.repos.join(&name);
            let hidden = hide(&inner.layout, &dir);
            // The indexes follow the disk whatever happened: a failure part-way may already
            // have taken `_manifests` away.
            if !dir.join("_manifests").is_dir() {
                if let Some(set) = catalog.as_mut() {
                    set.remove(&name);
                }
                // Any slot here belongs to the repository just removed: a new one can only be
                // made after a writer re-creates `_manifests`, and writers wait on the gate.
                lock(&inner.tags).remove(&name);
            }
            let trash = hidden?;
            if trash.is_some() {
                prune_empty(&inner.layout.repos, &dir);
            }
            drop(catalog);
            drop(gate);
            let Some(trash) = trash else {
                return Ok(false);
            };
            // The repository is gone already; a tree that cannot be removed now is litter
            // that purge removes, not a failed delete.
            if let Err(e) = remove_tree_durable(&trash) {
                tracing::warn!(dir = %trash.display(), error = %e, "could not remove a deleted repository's links");
            }
            Ok(true)
        })
        .await
    }
}
