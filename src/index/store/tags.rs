//! What the registries report about repository content: the manifest of every push (the
//! index holds the checksums of every image) and the tags pointing at them, and applying
//! those reports (push, tag or manifest deleted, repository deleted) exactly once each.
//!
//! Registries retry event delivery, so every event is applied in one transaction together
//! with the insert of its id into `events_applied`: a retried event finds its id there and
//! changes nothing. Retries can also arrive after later events, so a push never moves a
//! tag, a manifest's push time or a repository's push time backwards.

use std::collections::HashMap;

use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::repositories::{self, Visibility};
use super::{get_u64, to_sql_int, unix_now, Store, StoreError};

/// A tag with what its manifest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagRecord {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Unix seconds when the tag was last pushed (moved).
    pub pushed_at: i64,
    pub pusher: Option<String>,
}

/// A manifest pushed to a repository, with the tags pointing at it (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestRecord {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Unix seconds of the latest push of this manifest.
    pub pushed_at: i64,
    pub pusher: Option<String>,
    /// Ordered.
    pub tags: Vec<String>,
}

/// A registry's report that a manifest was pushed, by digest or under a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    /// The registry's event id; the same id is applied once.
    pub event_id: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub pusher: Option<String>,
    /// Unix seconds of the push.
    pub at: i64,
    /// The owner of the repository if the push creates it.
    pub default_owner: String,
    /// The visibility of the repository if the push creates it.
    pub default_visibility: Visibility,
}

/// What a delete event removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRef {
    /// A tag; its manifest stays.
    Tag(String),
    /// A manifest by digest, and with it every tag pointing at it.
    Manifest(String),
}

/// Records that event `id` is being applied; false if it was applied before.
fn first_delivery(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events_applied (id, applied_at) VALUES (?1, ?2)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![id, unix_now()])?;
    Ok(inserted > 0)
}

fn tag_from_row(row: &Row<'_>) -> rusqlite::Result<TagRecord> {
    Ok(TagRecord {
        tag: row.get(0)?,
        digest: row.get(1)?,
        media_type: row.get(2)?,
        size: get_u64(row, 3)?,
        pushed_at: row.get(4)?,
        pusher: row.get(5)?,
    })
}

fn manifest_from_row(row: &Row<'_>) -> rusqlite::Result<ManifestRecord> {
    Ok(ManifestRecord {
        digest: row.get(0)?,
        media_type: row.get(1)?,
        size: get_u64(row, 2)?,
        pushed_at: row.get(3)?,
        pusher: row.get(4)?,
        tags: Vec::new(),
    })
}

impl Store {
    /// The repository's tags ordered by name, each with its manifest's media type and size.
    /// Empty for an unknown repository.
    pub fn tags(&self, repository: &str) -> Result<Vec<TagRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT t.tag, t.digest, m.media_type, m.size, t.pushed_at, t.pusher
                 FROM tags t
                 JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
                 WHERE t.repository = ?1
                 ORDER BY t.tag",
            )?;
            let rows = statement.query_map([repository], tag_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The repository's manifests, latest push first (then by digest), each with the tags
    /// pointing at it. Empty for an unknown repository.
    pub fn manifests(&self, repository: &str) -> Result<Vec<ManifestRecord>, StoreError> {
        // One snapshot for both queries, so no tag points at a manifest missing here.
        self.read(|tx| {
            let mut manifests = {
                let mut statement = tx.prepare_cached(
                    "SELECT digest, media_type, size, pushed_at, pusher
                     FROM manifests WHERE repository = ?1
                     ORDER BY pushed_at DESC, digest",
                )?;
                let rows = statement.query_map([repository], manifest_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut tags: HashMap<String, Vec<String>> = HashMap::new();
            {
                let mut statement = tx.prepare_cached(
                    "SELECT digest, tag FROM tags WHERE repository = ?1 ORDER BY tag",
                )?;
                let mut rows = statement.query([repository])?;
                while let Some(row) = rows.next()? {
                    tags.entry(row.get(0)?).or_default().push(row.get(1)?);
                }
            }
            for manifest in &mut manifests {
                if let Some(names) = tags.remove(&manifest.digest) {
                    manifest.tags = names;
                }
            }
            Ok(manifests)
        })
    }

    /// Applies a push: creates the repository if missing (with the event's default owner
    /// and visibility), records the manifest, points the tag (if any) at it and notes the
    /// push time. False if this event id was applied before (then nothing changes).
    pub fn apply_push(&self, ev: &PushRecord) -> Result<bool, StoreError> {
        let size = to_sql_int("manifest size", ev.size)?;
        self.write(|tx| {
            if !first_delivery(tx, &ev.event_id)? {
                return Ok((false, false));
            }
            repositories::insert_if_missing(
                tx,
                &ev.repository,
                &ev.default_owner,
                ev.default_visibility,
                ev.at,
            )?;
            // The manifest row first: the tag's foreign key needs it.
            tx.prepare_cached(
                "INSERT INTO manifests (repository, digest, media_type, size, pushed_at, pusher)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (repository, digest) DO UPDATE SET
                     media_type = excluded.media_type,
                     size = excluded.size,
                     pushed_at = excluded.pushed_at,
                     pusher = excluded.pusher
                 WHERE excluded.pushed_at >= manifests.pushed_at",
            )?
            .execute(params![
                ev.repository,
                ev.digest,
                ev.media_type,
                size,
                ev.at,
                ev.pusher
            ])?;
            if let Some(tag) = &ev.tag {
                tx.prepare_cached(
                    "INSERT INTO tags (repository, tag, digest, pushed_at, pusher)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (repository, tag) DO UPDATE SET
                         digest = excluded.digest,
                         pushed_at = excluded.pushed_at,
                         pusher = excluded.pusher
                     WHERE excluded.pushed_at >= tags.pushed_at",
                )?
                .execute(params![
                    ev.repository,
                    tag,
                    ev.digest,
                    ev.at,
                    ev.pusher
                ])?;
            }
            tx.prepare_cached(
                "UPDATE repositories SET pushed_at = max(coalesce(pushed_at, ?2), ?2)
                 WHERE name = ?1",
            )?
            .execute(params![ev.repository, ev.at])?;
            Ok((true, true))
        })
    }

    /// Applies a delete of a tag, or of a manifest with every tag pointing at it. An
    /// unknown repository, tag or manifest is not an error (the registry had it, the index
    /// may not have heard). False if this event id was applied before.
    pub fn apply_delete(
        &self,
        event_id: &str,
        repository: &str,
        reference: &DeleteRef,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            if !first_delivery(tx, event_id)? {
                return Ok((false, false));
            }
            match reference {
                DeleteRef::Tag(tag) => {
                    tx.prepare_cached("DELETE FROM tags WHERE repository = ?1 AND tag = ?2")?
                        .execute([repository, tag])?;
                }
                DeleteRef::Manifest(digest) => {
                    // The foreign key would cascade too; saying it keeps this independent
                    // of that.
                    tx.prepare_cached("DELETE FROM tags WHERE repository = ?1 AND digest = ?2")?
                        .execute([repository, digest])?;
                    tx.prepare_cached(
                        "DELETE FROM manifests WHERE repository = ?1 AND digest = ?2",
                    )?
                    .execute([repository, digest])?;
                }
            }
            Ok((true, true))
        })
    }

    /// Applies the deletion of a whole repository: it is forgotten with its manifests, tags
    /// and collaborators. False if this event id was applied before.
    pub fn apply_repository_deleted(
        &self,
        event_id: &str,
        repository: &str,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            if !first_delivery(tx, event_id)? {
                return Ok((false, false));
            }
            repositories::delete(tx, repository)?;
            Ok((true, true))
        })
    }

    /// Forgets the ids of events applied before `older_than` (unix seconds); how many.
    /// A retry arriving after that would be applied again, so keep them longer than
    /// registries retry.
    pub fn purge_applied_events(&self, older_than: i64) -> Result<usize, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("DELETE FROM events_applied WHERE applied_at < ?1")?
                .execute([older_than])?)
        })
    }
}
