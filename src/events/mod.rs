//! Registry → index events: what the registry tells a custom index after each committed
//! manifest push or delete. This module owns the event types and their JSON wire format,
//! the [`EventSink`] the registry publishes into, and (in the submodules) the durable
//! [`Outbox`] that records events on disk before `publish` returns, plus the
//! [`EventSender`] that delivers them over authenticated HTTPS until the index
//! acknowledges them, across restarts. An index running in the same process is called
//! directly and never comes through here.

pub mod config;
pub mod outbox;
pub mod sender;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use config::EventsConfig;
pub use outbox::Outbox;
pub use sender::{spawn_sender, EventSender, SharedSecret};

/// Where the index accepts event batches, relative to its base URL.
pub const EVENTS_PATH: &str = "/api/v1/events";
/// Most events in one batch (the index may refuse larger batches).
pub const MAX_BATCH_EVENTS: usize = 100;
/// Largest batch body in bytes (the index may refuse larger bodies). A single event must
/// fit in a batch on its own, so larger events are refused when published.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Longest event id accepted: ids become file names in the outbox.
const MAX_ID_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("random number generator failed: {0}")]
    Random(String),
    #[error("event id {0:?} is invalid: 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'")]
    InvalidId(String),
    #[error("event {id} is {size} bytes encoded, more than a batch may hold")]
    TooLarge { id: String, size: usize },
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("outbox {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox background task failed: {0}")]
    Task(String),
    #[error("events configuration: {0}")]
    Config(String),
    #[error("events secret file {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("events CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("building the events HTTP client: {0}")]
    Client(String),
    #[error("the outbox already has a sender; events must leave one at a time to stay ordered")]
    SenderRunning,
}

/// One change the registry committed, as sent to the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event (128 random bits, hex); the index de-duplicates redeliveries by it.
    pub id: String,
    /// The sending registry's service name.
    pub service: String,
    /// When the change was committed, unix seconds.
    pub at: i64,
    /// The user who made the change, when known.
    pub actor: Option<String>,
    /// What happened; flattened so the JSON has an `action` field beside the others.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, tagged on the wire by `action` (`manifest_pushed`, `tag_deleted`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EventKind {
    /// A manifest was stored, by tag or by digest (`tag: None`).
    ManifestPushed {
        repository: String,
        tag: Option<String>,
        digest: String,
        media_type: String,
        size: u64,
    },
    /// A tag was removed; the manifest it pointed to may remain.
    TagDeleted { repository: String, tag: String },
    /// A manifest was removed by digest (with any tags pointing to it).
    ManifestDeleted { repository: String, digest: String },
    /// A whole repository was removed.
    RepositoryDeleted { repository: String },
}

/// The body of `POST {index_url}/api/v1/events`: oldest event first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

impl Event {
    /// A new event with a fresh random id, stamped now.
    pub fn new(service: &str, actor: Option<&str>, kind: EventKind) -> Result<Event, EventError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| EventError::Random(e.to_string()))?;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            // A clock before 1970 is broken; 0 still orders and is obviously wrong.
            .unwrap_or(0);
        Ok(Event {
            id: hex::encode(bytes),
            service: service.to_owned(),
            at,
            actor: actor.map(str::to_owned),
            kind,
        })
    }

    /// Checks the id before it becomes part of a file name: `Event`'s fields are public,
    /// so an id with `/` or `..` must not reach the file system.
    pub(crate) fn check_id(&self) -> Result<(), EventError> {
        let ok = !self.id.is_empty()
            && self.id.len() <= MAX_ID_LEN
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(EventError::InvalidId(self.id.clone()))
        }
    }
}

/// Where the registry hands events after committing a change. Object safe: the registry
/// holds an `Arc<dyn EventSink>`.
pub trait EventSink: Send + Sync {
    /// Called after the registry committed the change. Must return quickly; durable
    /// implementations record the event before returning, so an `Ok` means the event
    /// will reach the index eventually, even across a crash.
    fn publish<'a>(
        &'a self,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<(), EventError>> + Send + 'a>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed() -> EventKind {
        EventKind::ManifestPushed {
            repository: "team/app".into(),
            tag: Some("v1".into()),
            digest: "sha256:abc".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
        }
    }

    #[test]
    fn wire_format_is_flat_with_an_action_tag() {
        let e = Event {
            id: "00ff".into(),
            service: "registry.example".into(),
            at: 1_700_000_000,
            actor: Some("alice".into()),
            kind: pushed(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "00ff",
                "service": "registry.example",
                "at": 1_700_000_000,
                "actor": "alice",
                "action": "manifest_pushed",
                "repository": "team/app",
                "tag": "v1",
                "digest": "sha256:abc",
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size": 1234
            })
        );
        let batch = serde_json::to_value(EventBatch {
            events: vec![e.clone()],
        })
        .unwrap();
        assert_eq!(batch["events"][0], v);
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            pushed(),
            EventKind::ManifestPushed {
                repository: "r".into(),
                tag: None,
                digest: "sha256:def".into(),
                media_type: "m".into(),
                size: u64::MAX,
            },
            EventKind::TagDeleted {
                repository: "r".into(),
                tag: "latest".into(),
            },
            EventKind::ManifestDeleted {
                repository: "r".into(),
                digest: "sha256:abc".into(),
            },
            EventKind::RepositoryDeleted {
                repository: "r".into(),
            },
        ];
        let actions = [
            "manifest_pushed",
            "manifest_pushed",
            "tag_deleted",
            "manifest_deleted",
            "repository_deleted",
        ];
        for (kind, action) in kinds.into_iter().zip(actions) {
            let e = Event::new("svc", None, kind).unwrap();
            let text = serde_json::to_string(&e).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["action"], action, "{text}");
            assert_eq!(v["actor"], serde_json::Value::Null, "{text}");
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn new_events_have_unique_random_hex_ids_and_a_current_time() {
        let a = Event::new("svc", Some("bob"), pushed()).unwrap();
        let b = Event::new("svc", Some("bob"), pushed()).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()), "{}", a.id);
        assert_eq!(a.actor.as_deref(), Some("bob"));
        assert!(a.at > 1_600_000_000, "{}", a.at);
        a.check_id().unwrap();
    }

    #[test]
    fn ids_that_could_escape_the_outbox_are_refused() {
        let mut e = Event::new("svc", None, pushed()).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", &"a".repeat(65)] {
            e.id = bad.to_owned();
            assert!(e.check_id().is_err(), "{bad:?}");
        }
        e.id = "A-z_09".into();
        e.check_id().unwrap();
    }
}
