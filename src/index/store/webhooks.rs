//! Webhooks in the store: the hooks repository owners register (`webhooks`), and the
//! durable outbox of deliveries (`webhook_deliveries`) that the webhook worker
//! (`crate::index::webhooks`) drains. This module owns those two tables, the payload a
//! delivery carries, and queueing deliveries inside the transaction that applies a registry
//! event (see `tags.rs`), so an event is recorded and announced together or not at all.
//!
//! A delivery is one event for one hook: its id (128 random bits, hex) is chosen when it is
//! queued and never changes, through retries, restarts and redeliveries, so a receiver that
//! remembers ids never acts twice on one. A registry event applied a second time (retried)
//! queues nothing, and `(event_id, hook)` is unique besides. Repository hooks are
//! referenced by id (their deliveries go when the hook or the repository goes); global
//! hooks (from the config) by name.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{get_u64, to_sql_int, unix_now, Store, StoreError};

/// What a hook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    /// A manifest was pushed (by tag or by digest) and committed.
    Push,
    /// A tag, or a manifest with its tags, was deleted.
    Delete,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Push => "push",
            WebhookEvent::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookEvent> {
        match text {
            "push" => Some(WebhookEvent::Push),
            "delete" => Some(WebhookEvent::Delete),
            _ => None,
        }
    }
}

/// Events as stored: sorted, without duplicates, comma-separated (`push,delete`).
fn encode_events(events: &[WebhookEvent]) -> String {
    let mut sorted = events.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored form back; unknown words (from a newer holdfast) are skipped.
fn decode_events(text: &str) -> Vec<WebhookEvent> {
    text.split(',').filter_map(WebhookEvent::parse).collect()
}

/// Where a registry event is announced besides the repository's own hooks, and what the
/// payload names as the registry. Built once from the config; `None` where it is passed
/// means webhooks are disabled and nothing is queued.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fanout {
    /// `registry` in payloads: the `host[:port]` clients use (`[index] public_host`).
    pub registry: String,
    /// The global hooks (`[[index.webhooks.global]]`).
    pub global: Vec<GlobalSubscription>,
}

/// A global hook as the store needs it: its name and what it subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSubscription {
    pub name: String,
    pub events: Vec<WebhookEvent>,
}

/// A hook's secret. Its `Debug` is `<redacted>` and it has no `Display`, so it cannot end
/// up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: String) -> WebhookSecret {
        WebhookSecret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A repository's hook as listed. The secret stays in the database: only the worker reads
/// it, to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub repository: String,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub active: bool,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A hook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub repository: String,
    pub url: String,
    pub secret: WebhookSecret,
    pub events: Vec<WebhookEvent>,
    pub created_by: String,
    pub created_at: i64,
}

/// Which hook a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookRef {
    /// A repository hook, by id.
    Repository(i64),
    /// A global hook, by its name in the config.
    Global(String),
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; only a redeliver sends it again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One delivery's history, as shown to the hook's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub hook: HookRef,
    pub repository: String,
    /// The registry event it announces.
    pub event_id: String,
    pub event: WebhookEvent,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Unix seconds of the next attempt (meaningful while pending).
    pub next_attempt_at: i64,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A delivery whose attempt is due, with what sending it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub hook: HookRef,
    pub event: WebhookEvent,
    /// The exact JSON body, as queued.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// For a repository hook: its URL and secret (a global hook's are in the config).
    pub target: Option<(String, WebhookSecret)>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It failed; try again at `next_attempt_at` (unix seconds).
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at: i64,
    },
    /// It failed for the last time.
    Failed { status: Option<u16>, error: String },
}

/// The JSON body of a delivery. A struct rather than `json!` so the field order is fixed.
#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    event: &'static str,
    repository: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
    media_type: Option<&'a str>,
    size: Option<u64>,
    pusher: Option<&'a str>,
    pushed_at: String,
    registry: &'a str,
}

/// What a registry event says, for its payloads.
pub(super) struct EventFacts<'a> {
    pub event_id: &'a str,
    pub event: WebhookEvent,
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub media_type: Option<&'a str>,
    pub size: Option<u64>,
    pub actor: Option<&'a str>,
    pub at: i64,
}

/// A fresh delivery id: 128 random bits, hex.
fn new_delivery_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Queues one delivery per subscribed hook (the repository's active hooks, then the global
/// ones) for the event in `facts`, on `conn` — inside the caller's transaction, which also
/// applies the event. How many were queued.
pub(super) fn enqueue(
    conn: &Connection,
    fanout: &Fanout,
    facts: &EventFacts<'_>,
) -> Result<usize, StoreError> {
    let mut targets: Vec<HookRef> = Vec::new();
    {
        let mut statement = conn.prepare_cached(
            "SELECT id, events FROM webhooks WHERE repository = ?1 AND active = 1 ORDER BY id",
        )?;
        let rows = statement.query_map([facts.repository], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, events) = row?;
            if decode_events(&events).contains(&facts.event) {
                targets.push(HookRef::Repository(id));
            }
        }
    }
    targets.extend(
        fanout
            .global
            .iter()
            .filter(|g| g.events.contains(&facts.event))
            .map(|g| HookRef::Global(g.name.clone())),
    );
    let pushed_at = crate::index::token::rfc3339(u64::try_from(facts.at).unwrap_or(0));
    let now = unix_now();
    let mut queued = 0;
    for hook in targets {
        let id = new_delivery_id()?;
        let body = serde_json::to_string(&Payload {
            id: &id,
            event: facts.event.as_str(),
            repository: facts.repository,
            tag: facts.tag,
            digest: facts.digest,
            media_type: facts.media_type,
            size: facts.size,
            pusher: facts.actor,
            pushed_at: pushed_at.clone(),
            registry: &fanout.registry,
        })
        .map_err(|e| StoreError::Encode(e.to_string()))?;
        let (hook_id, global) = match &hook {
            HookRef::Repository(id) => (Some(*id), None),
            HookRef::Global(name) => (None, Some(name.as_str())),
        };
        // DO NOTHING: the unique (event, hook) indexes make a second queueing of the same
        // event for the same hook a no-op even if the applied-events check were bypassed.
        queued += conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                     (id, hook_id, global_hook, repository, event_id, event, body, status,
                      attempts, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                id,
                hook_id,
                global,
                facts.repository,
                facts.event_id,
                facts.event.as_str(),
                body,
                now
            ])?;
    }
    Ok(queued)
}

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        repository: row.get(1)?,
        url: row.get(2)?,
        events: decode_events(&row.get::<_, String>(3)?),
        active: row.get(4)?,
        created_by: row.get(5)?,
        created_at: row.get(6)?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, repository, url, events, active, created_by, created_at";

fn hook_ref(row: &Row<'_>, id_column: usize) -> rusqlite::Result<HookRef> {
    let hook_id: Option<i64> = row.get(id_column)?;
    match hook_id {
        Some(id) => Ok(HookRef::Repository(id)),
        None => Ok(HookRef::Global(row.get(id_column + 1)?)),
    }
}

fn event_column(row: &Row<'_>, index: usize) -> rusqlite::Result<WebhookEvent> {
    let text: String = row.get(index)?;
    WebhookEvent::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown webhook event {text:?}").into(),
        )
    })
}

fn u32_column(row: &Row<'_>, index: usize) -> rusqlite::Result<u32> {
    let value = get_u64(row, index)?;
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

const DELIVERY_COLUMNS: &str = "id, hook_id, global_hook, repository, event_id, event, status, \
     attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = row.get(6)?;
    let code: Option<i64> = row.get(9)?;
    Ok(Delivery {
        id: row.get(0)?,
        hook: hook_ref(row, 1)?,
        repository: row.get(3)?,
        event_id: row.get(4)?,
        event: event_column(row, 5)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                format!("unknown delivery status {status:?}").into(),
            )
        })?,
        attempts: u32_column(row, 7)?,
        next_attempt_at: row.get(8)?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        delivered_at: row.get(12)?,
    })
}

/// `(hook_id, global_hook)` for a query naming one hook.
fn hook_columns(hook: &HookRef) -> (Option<i64>, Option<&str>) {
    match hook {
        HookRef::Repository(id) => (Some(*id), None),
        HookRef::Global(name) => (None, Some(name.as_str())),
    }
}

impl Store {
    /// Registers a hook unless the repository has `limit` already (then `None`). The
    /// repository must exist (its foreign key).
    pub fn create_webhook(
        &self,
        new: &NewWebhook,
        limit: usize,
    ) -> Result<Option<Webhook>, StoreError> {
        self.write(|tx| {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM webhooks WHERE repository = ?1")?
                .query_row([&new.repository], |row| row.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= limit {
                return Ok((None, false));
            }
            tx.prepare_cached(
                "INSERT INTO webhooks (repository, url, secret, events, active, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
            )?
            .execute(params![
                new.repository,
                new.url,
                new.secret.expose(),
                encode_events(&new.events),
                new.created_by,
                new.created_at
            ])?;
            let id = tx.last_insert_rowid();
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1");
            let hook = tx.prepare_cached(&sql)?.query_row([id], webhook_from_row)?;
            Ok((Some(hook), true))
        })
    }

    /// The repository's hooks, oldest first.
    pub fn webhooks(&self, repository: &str) -> Result<Vec<Webhook>, StoreError> {
        self.with_conn(|conn| {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE repository = ?1 ORDER BY id");
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([repository], webhook_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Hook `id` if it belongs to `repository`.
    pub fn webhook(&self, repository: &str, id: i64) -> Result<Option<Webhook>, StoreError> {
        self.with_conn(|conn| {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND repository = ?2");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![id, repository], webhook_from_row)
                .optional()?)
        })
    }

    /// Removes hook `id` of `repository` with its delivery history; false if there was none.
    pub fn delete_webhook(&self, repository: &str, id: i64) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND repository = ?2")?
                .execute(params![id, repository])?;
            Ok(n > 0)
        })
    }

    /// A hook's deliveries, newest first, at most `limit`.
    pub fn deliveries(&self, hook: &HookRef, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = to_sql_int("limit", u64::try_from(limit).unwrap_or(u64::MAX))?;
        let (hook_id, global) = hook_columns(hook);
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE hook_id IS ?1 AND global_hook IS ?2
                 ORDER BY created_at DESC, rowid DESC LIMIT ?3"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![hook_id, global, limit], delivery_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every global hook's deliveries (including hooks since removed from the config),
    /// newest first, at most `limit`.
    pub fn global_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = to_sql_int("limit", u64::try_from(limit).unwrap_or(u64::MAX))?;
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE global_hook IS NOT NULL
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([limit], delivery_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// One delivery by id.
    pub fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.with_conn(|conn| {
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([id], delivery_from_row)
                .optional()?)
        })
    }

    /// Sends delivery `id` of `hook` again: pending, due at `now`, with a fresh round of
    /// attempts, keeping its id and body. False if the hook has no such delivery.
    pub fn redeliver(&self, hook: &HookRef, id: &str, now: i64) -> Result<bool, StoreError> {
        let (hook_id, global) = hook_columns(hook);
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE webhook_deliveries
                     SET status = 'pending', attempts = 0, next_attempt_at = ?4
                     WHERE id = ?1 AND hook_id IS ?2 AND global_hook IS ?3",
                )?
                .execute(params![id, hook_id, global, now])?;
            Ok(n > 0)
        })
    }

    /// Pending deliveries due at `now`, the longest-waiting first, at most `limit`.
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<DueDelivery>, StoreError> {
        let limit = to_sql_int("limit", u64::try_from(limit).unwrap_or(u64::MAX))?;
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT d.id, d.hook_id, d.global_hook, d.event, d.body, d.attempts, w.url, w.secret
                 FROM webhook_deliveries d LEFT JOIN webhooks w ON w.id = d.hook_id
                 WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
                 ORDER BY d.next_attempt_at, d.created_at, d.rowid LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now, limit], |row| {
                let url: Option<String> = row.get(6)?;
                let secret: Option<String> = row.get(7)?;
                Ok(DueDelivery {
                    id: row.get(0)?,
                    hook: hook_ref(row, 1)?,
                    event: event_column(row, 3)?,
                    body: row.get(4)?,
                    attempts: u32_column(row, 5)?,
                    target: url.zip(secret.map(WebhookSecret)),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// When the earliest pending delivery is due (unix seconds); `None` when none is.
    pub fn next_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
                )?
                .query_row([], |row| row.get(0))?)
        })
    }

    /// Records an attempt of pending delivery `id` made at `now`. False when it is not
    /// pending any more (e.g. its hook was deleted meanwhile).
    pub fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let n = match outcome {
                AttemptOutcome::Delivered { status } => conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries
                         SET status = 'delivered', attempts = attempts + 1,
                             last_status_code = ?2, last_error = NULL, delivered_at = ?3
                         WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, status, now])?,
                AttemptOutcome::Retry {
                    status,
                    error,
                    next_attempt_at,
                } => conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries
                         SET attempts = attempts + 1, last_status_code = ?2, last_error = ?3,
                             next_attempt_at = ?4
                         WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, status, error, next_attempt_at])?,
                AttemptOutcome::Failed { status, error } => conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries
                         SET status = 'failed', attempts = attempts + 1, last_status_code = ?2,
                             last_error = ?3
                         WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, status, error])?,
            };
            Ok(n > 0)
        })
    }

    /// Forgets finished (delivered or failed) deliveries created before `older_than` (unix
    /// seconds); how many. Pending ones stay whatever their age.
    pub fn purge_deliveries(&self, older_than: i64) -> Result<usize, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM webhook_deliveries
                     WHERE status IN ('delivered', 'failed') AND created_at < ?1",
                )?
                .execute([older_than])?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index::store::{DeleteNotice, DeleteRef, PushRecord, Visibility};

    fn store() -> Store {
        Store::open_in_memory().unwrap()
    }

    fn fanout(global: &[(&str, &[WebhookEvent])]) -> Arc<Fanout> {
        Arc::new(Fanout {
            registry: "registry.example:5000".into(),
            global: global
                .iter()
                .map(|(name, events)| GlobalSubscription {
                    name: (*name).into(),
                    events: events.to_vec(),
                })
                .collect(),
        })
    }

    fn push(id: &str, tag: &str, digest: &str, hooks: Option<Arc<Fanout>>) -> PushRecord {
        PushRecord {
            event_id: id.into(),
            repository: "ann/app".into(),
            tag: Some(tag.into()),
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
            pusher: Some("ann".into()),
            at: 1_700_000_000,
            default_owner: "ann".into(),
            default_visibility: Visibility::Private,
            webhooks: hooks,
        }
    }

    fn hook(store: &Store, events: &[WebhookEvent]) -> Webhook {
        store
            .create_webhook(
                &NewWebhook {
                    repository: "ann/app".into(),
                    url: "https://hooks.example/ci".into(),
                    secret: WebhookSecret::new("0123456789abcdef".into()),
                    events: events.to_vec(),
                    created_by: "ann".into(),
                    created_at: 10,
                },
                20,
            )
            .unwrap()
            .unwrap()
    }

    #[test]
    fn events_round_trip_sorted() {
        let both = [WebhookEvent::Delete, WebhookEvent::Push, WebhookEvent::Push];
        assert_eq!(encode_events(&both), "push,delete");
        assert_eq!(
            decode_events("push,delete,future"),
            [WebhookEvent::Push, WebhookEvent::Delete]
        );
    }

    #[test]
    fn a_push_queues_one_delivery_per_subscribed_hook_once() {
        let store = store();
        store
            .create_repository("ann/app", "ann", Visibility::Private, 1)
            .unwrap();
        let on_push = hook(&store, &[WebhookEvent::Push]);
        let on_delete = hook(&store, &[WebhookEvent::Delete]);
        let hooks = fanout(&[
            ("ci", &[WebhookEvent::Push]),
            ("audit", &[WebhookEvent::Push, WebhookEvent::Delete]),
        ]);
        assert!(store
            .apply_push(&push("e1", "v1", "sha256:aa", Some(hooks.clone())))
            .unwrap());
        // A retried event queues nothing more.
        assert!(!store
            .apply_push(&push("e1", "v1", "sha256:aa", Some(hooks.clone())))
            .unwrap());
        let repo = store
            .deliveries(&HookRef::Repository(on_push.id), 10)
            .unwrap();
        assert_eq!(repo.len(), 1);
        assert!(store
            .deliveries(&HookRef::Repository(on_delete.id), 10)
            .unwrap()
            .is_empty());
        let ci = store.deliveries(&HookRef::Global("ci".into()), 10).unwrap();
        let audit = store
            .deliveries(&HookRef::Global("audit".into()), 10)
            .unwrap();
        assert_eq!((ci.len(), audit.len()), (1, 1));
        let d = &repo[0];
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(
            (d.event, d.attempts, d.event_id.as_str()),
            (WebhookEvent::Push, 0, "e1")
        );
        assert_eq!(d.id.len(), 32);
        assert_ne!(d.id, ci[0].id);

        let due = store.due_deliveries(unix_now(), 10).unwrap();
        assert_eq!(due.len(), 3);
        let mine = due.iter().find(|x| x.id == d.id).unwrap();
        let (url, secret) = mine.target.clone().unwrap();
        assert_eq!(url, "https://hooks.example/ci");
        assert_eq!(secret.expose(), "0123456789abcdef");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert!(due
            .iter()
            .any(|x| x.hook == HookRef::Global("ci".into()) && x.target.is_none()));
        let body: serde_json::Value = serde_json::from_str(&mine.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": d.id,
                "event": "push",
                "repository": "ann/app",
                "tag": "v1",
                "digest": "sha256:aa",
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size": 1234,
                "pusher": "ann",
                "pushed_at": "2023-11-14T22:13:20Z",
                "registry": "registry.example:5000",
            })
        );
        // Field order is part of the format.
        assert!(mine.body.starts_with("{\"id\":"), "{}", mine.body);
    }

    #[test]
    fn disabled_queues_nothing() {
        let store = store();
        store
            .create_repository("ann/app", "ann", Visibility::Private, 1)
            .unwrap();
        hook(&store, &[WebhookEvent::Push]);
        assert!(store
            .apply_push(&push("e1", "v1", "sha256:aa", None))
            .unwrap());
        assert!(store.due_deliveries(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(store.next_delivery_at().unwrap(), None);
    }

    #[test]
    fn deletes_reach_hooks_that_subscribe_with_what_was_deleted() {
        let store = store();
        store
            .create_repository("ann/app", "ann", Visibility::Private, 1)
            .unwrap();
        let on_delete = hook(&store, &[WebhookEvent::Delete, WebhookEvent::Push]);
        let hooks = fanout(&[("ci", &[WebhookEvent::Push])]);
        store
            .apply_push(&push("e1", "v1", "sha256:aa", Some(hooks.clone())))
            .unwrap();
        let notice = DeleteNotice {
            actor: Some("ann"),
            at: 1_700_000_100,
            fanout: &hooks,
        };
        assert!(store
            .apply_delete_notifying("d1", "ann/app", &DeleteRef::Tag("v1".into()), Some(&notice))
            .unwrap());
        assert!(!store
            .apply_delete_notifying("d1", "ann/app", &DeleteRef::Tag("v1".into()), Some(&notice))
            .unwrap());
        let list = store
            .deliveries(&HookRef::Repository(on_delete.id), 10)
            .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list.iter()
                .filter(|d| d.event == WebhookEvent::Delete)
                .count(),
            1
        );
        // The global hook only wants pushes.
        assert_eq!(
            store
                .deliveries(&HookRef::Global("ci".into()), 10)
                .unwrap()
                .len(),
            1
        );
        let due = store.due_deliveries(i64::MAX, 10).unwrap();
        let delete = due
            .iter()
            .find(|d| d.event == WebhookEvent::Delete)
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&delete.body).unwrap();
        assert_eq!(body["tag"], "v1");
        assert_eq!(body["digest"], "sha256:aa", "the digest the tag pointed at");
        assert_eq!(body["size"], 1234);
        assert_eq!(body["pusher"], "ann");
        assert_eq!(body["event"], "delete");
    }

    #[test]
    fn attempts_retries_failure_and_redelivery_keep_the_id() {
        let store = store();
        store
            .create_repository("ann/app", "ann", Visibility::Private, 1)
            .unwrap();
        let h = hook(&store, &[WebhookEvent::Push]);
        store
            .apply_push(&push("e1", "v1", "sha256:aa", Some(fanout(&[]))))
            .unwrap();
        let hook_ref = HookRef::Repository(h.id);
        let id = store.deliveries(&hook_ref, 1).unwrap()[0].id.clone();
        let later = unix_now() + 100;
        assert!(store
            .record_attempt(
                &id,
                &AttemptOutcome::Retry {
                    status: Some(503),
                    error: "HTTP 503".into(),
                    next_attempt_at: later,
                },
                1
            )
            .unwrap());
        assert!(store.due_deliveries(later - 1, 10).unwrap().is_empty());
        assert_eq!(store.next_delivery_at().unwrap(), Some(later));
        assert_eq!(store.due_deliveries(later, 10).unwrap()[0].attempts, 1);
        assert!(store
            .record_attempt(
                &id,
                &AttemptOutcome::Failed {
                    status: None,
                    error: "connection refused".into(),
                },
                2
            )
            .unwrap());
        let d = store.delivery(&id).unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!((d.attempts, d.last_status_code), (2, None));
        assert_eq!(d.last_error.as_deref(), Some("connection refused"));
        // Not pending: a late attempt result changes nothing.
        assert!(!store
            .record_attempt(&id, &AttemptOutcome::Delivered { status: 200 }, 3)
            .unwrap());
        // Another hook's delivery cannot be redelivered through this one.
        assert!(!store
            .redeliver(&HookRef::Global("ci".into()), &id, 5)
            .unwrap());
        assert!(store.redeliver(&hook_ref, &id, 5).unwrap());
        let due = store.due_deliveries(5, 10).unwrap();
        assert_eq!((due[0].id.as_str(), due[0].attempts), (id.as_str(), 0));
        assert!(store
            .record_attempt(&id, &AttemptOutcome::Delivered { status: 204 }, 6)
            .unwrap());
        let d = store.delivery(&id).unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!((d.last_status_code, d.delivered_at), (Some(204), Some(6)));
        // Finished deliveries are purged by age; the hook's deletion takes its history.
        assert_eq!(store.purge_deliveries(0).unwrap(), 0);
        assert!(store.delete_webhook("ann/app", h.id).unwrap());
        assert!(store.delivery(&id).unwrap().is_none());
        assert!(!store.delete_webhook("ann/app", h.id).unwrap());
    }

    #[test]
    fn hooks_are_per_repository_limited_and_go_with_it() {
        let store = store();
        store
            .create_repository("ann/app", "ann", Visibility::Private, 1)
            .unwrap();
        let a = hook(&store, &[WebhookEvent::Push]);
        assert_eq!(store.webhooks("ann/app").unwrap(), std::slice::from_ref(&a));
        assert_eq!(store.webhook("ann/app", a.id).unwrap(), Some(a.clone()));
        assert_eq!(store.webhook("ann/other", a.id).unwrap(), None);
        assert!(!store.delete_webhook("ann/other", a.id).unwrap());
        let new = NewWebhook {
            repository: "ann/app".into(),
            url: "https://x.example".into(),
            secret: WebhookSecret::new("0123456789abcdef".into()),
            events: vec![WebhookEvent::Push],
            created_by: "ann".into(),
            created_at: 1,
        };
        assert!(store.create_webhook(&new, 1).unwrap().is_none());
        // A repository the index does not know cannot have hooks.
        let orphan = NewWebhook {
            repository: "nobody/app".into(),
            ..new
        };
        assert!(store.create_webhook(&orphan, 10).is_err());
        store.delete_repository("ann/app").unwrap();
        assert!(store.webhooks("ann/app").unwrap().is_empty());
    }
}
