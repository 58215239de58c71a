//! What the registries report about repository content: the manifest of every push (the
//! index holds the checksums of every image) and the tags pointing at them, and applying
//! those reports (push, tag or manifest deleted, repository deleted) exactly once each.
//!
//! Registries retry event delivery, so every event is applied in one transaction together
//! with the insert of its id into `events_applied`: a retried event finds its id there and
//! changes nothing. Retries can also arrive after later events, so a push never moves a
//! tag, a manifest's push time or a repository's push time backwards.
//!
//! When webhooks are enabled, the transaction that applies a push (or a delete) for the
//! first time also queues its webhook deliveries (`webhooks.rs`): the event is recorded and
//! its announcement is durable in one commit, or neither is.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::repositories::{self, Visibility};
use super::webhooks::{self, EventFacts, Fanout, WebhookEvent};
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
    /// Where the push is announced (webhook deliveries queued with it); `None`: webhooks
    /// are disabled and nothing is queued.
    pub webhooks: Option<Arc<Fanout>>,
}

/// Who deleted, when, and where the delete is announced (webhook deliveries queued with
/// it, for the hooks subscribed to deletes).
#[derive(Debug, Clone, Copy)]
pub struct DeleteNotice<'a> {
    pub actor: Option<&'a str>,
    /// Unix seconds of the delete.
    pub at: i64,
    pub fanout: &'a Fanout,
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
            if let Some(fanout) = &ev.webhooks {
                webhooks::enqueue(
                    tx,
                    fanout,
                    &EventFacts {
                        event_id: &ev.event_id,
                        event: WebhookEvent::Push,
                        repository: &ev.repository,
                        tag: ev.tag.as_deref(),
                        digest: Some(&ev.digest),
                        media_type: Some(&ev.media_type),
                        size: Some(ev.size),
                        actor: ev.pusher.as_deref(),
                        at: ev.at,
                    },
                )?;
            }
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
        self.apply_delete_notifying(event_id, repository, reference, None)
    }

    /// [`apply_delete`](Self::apply_delete), and when `notice` is given, queues the
    /// delete's webhook deliveries in the same transaction. The payload names what was
    /// deleted as the index knew it: a deleted tag's digest, media type and size come from
    /// its manifest (null when the index did not know the tag).
    pub fn apply_delete_notifying(
        &self,
        event_id: &str,
        repository: &str,
        reference: &DeleteRef,
        notice: Option<&DeleteNotice<'_>>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            if !first_delivery(tx, event_id)? {
                return Ok((false, false));
            }
            if let Some(notice) = notice {
                // Read before the rows go.
                let (tag, digest, known) = match reference {
                    DeleteRef::Tag(tag) => {
                        let known: Option<(String, String, u64)> = tx
                            .prepare_cached(
                                "SELECT t.digest, m.media_type, m.size FROM tags t
                                 JOIN manifests m
                                   ON m.repository = t.repository AND m.digest = t.digest
                                 WHERE t.repository = ?1 AND t.tag = ?2",
                            )?
                            .query_row([repository, tag], |row| {
                                Ok((row.get(0)?, row.get(1)?, get_u64(row, 2)?))
                            })
                            .optional()?;
                        let digest = known.as_ref().map(|k| k.0.clone());
                        (Some(tag.as_str()), digest, known.map(|k| (k.1, k.2)))
                    }
                    DeleteRef::Manifest(digest) => {
                        let known: Option<(String, u64)> = tx
                            .prepare_cached(
                                "SELECT media_type, size FROM manifests
                                 WHERE repository = ?1 AND digest = ?2",
                            )?
                            .query_row([repository, digest], |row| {
                                Ok((row.get(0)?, get_u64(row, 1)?))
                            })
                            .optional()?;
                        (None, Some(digest.clone()), known)
                    }
                };
                webhooks::enqueue(
                    tx,
                    notice.fanout,
                    &EventFacts {
                        event_id,
                        event: WebhookEvent::Delete,
                        repository,
                        tag,
                        digest: digest.as_deref(),
                        media_type: known.as_ref().map(|k| k.0.as_str()),
                        size: known.as_ref().map(|k| k.1),
                        actor: notice.actor,
                        at: notice.at,
                    },
                )?;
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
