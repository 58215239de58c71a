//! The durable outbox: events waiting for the index's acknowledgement, one JSON file each
//! in a private directory. `publish` returns only once the event's file is on disk for
//! good (temp file, fsync, rename, directory fsync), so a committed change is never
//! forgotten by a crash. File names sort in publish order, which is the order events leave
//! in; files go away only after the index acknowledged them. Files that do not parse are
//! moved to `bad/` with an error, never deleted.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use super::{Event, EventError, EventSink, MAX_BATCH_BYTES, MAX_BATCH_EVENTS};

/// Temp files start with this and never end in `.json`, so a crash mid-write leaves
/// nothing that looks like an event.
const TMP_PREFIX: &str = ".tmp-";
const EVENT_SUFFIX: &str = ".json";
/// Where unparsable event files are kept for a human to look at.
const BAD_DIR: &str = "bad";
const BATCH_OPEN: &[u8] = br#"{"events":["#;
const BATCH_CLOSE: &[u8] = b"]}";
/// Largest single event: it must fit in a batch on its own.
const MAX_EVENT_BYTES: usize = MAX_BATCH_BYTES - BATCH_OPEN.len() - BATCH_CLOSE.len();

/// A durable queue of events on disk; the registry's [`EventSink`] when a custom index is
/// configured. Pair it with one [`super::EventSender`] to deliver what it holds.
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Held from choosing a file name until the file is in `pending`, so file order,
    /// queue order and the order `publish` calls return all agree. Holds the last
    /// sequence number used.
    write: Mutex<u64>,
    /// File names not yet acknowledged, oldest first. Locked only briefly.
    pending: Mutex<VecDeque<String>>,
    /// Wakes the sender when an event is published.
    published: Notify,
    /// One sender at a time: two would reorder and double-send.
    sender_claimed: AtomicBool,
}

/// The oldest events, ready to post: their files and the request body.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub body: Bytes,
}

/// Marks the outbox as having a sender until dropped (when the sender task ends).
pub(crate) struct SenderClaim {
    inner: Arc<Inner>,
}

impl Drop for SenderClaim {
    fn drop(&mut self) {
        self.inner.sender_claimed.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.inner.dir)
            .field("pending", &self.pending())
            .finish()
    }
}

/// Why a file could not become part of a batch.
enum LoadError {
    /// The file is not a usable event; it goes to `bad/`.
    Corrupt(String),
    Io(io::Error),
}

impl Outbox {
    /// Opens (creating, mode 0700) the outbox in `dir`: removes temp files a crash left,
    /// moves unparsable event files to `dir/bad/` and queues the rest for delivery.
    /// Blocking file I/O: call it at startup or from `spawn_blocking`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Outbox, EventError> {
        let dir = dir.into();
        let existed = dir.is_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        if !existed {
            // The new directory's own entry must reach the disk too, or a crash could lose
            // it along with every event recorded inside.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(io_err("sync", parent))?;
            }
        }

        let mut names = Vec::new();
        let mut removed_tmp = 0usize;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(
                    path = %path.display(),
                    "outbox: ignoring a file with a non-UTF-8 name"
                );
                continue;
            };
            let is_file = entry.file_type().map_err(io_err("stat", &path))?.is_file();
            if name.starts_with(TMP_PREFIX) && is_file {
                // A publish that crashed before its rename: it never returned Ok, so the
                // registry never counted on it.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                removed_tmp += 1;
            } else if name.ends_with(EVENT_SUFFIX) && is_file {
                names.push(name);
            } else if name != BAD_DIR {
                tracing::warn!(path = %path.display(), "outbox: ignoring an unexpected file");
            }
        }
        if removed_tmp > 0 {
            sync_dir(&dir).map_err(io_err("sync", &dir))?;
            tracing::info!(
                dir = %dir.display(),
                count = removed_tmp,
                "outbox: removed temp files left by a crash"
            );
        }
        names.sort();

        let inner = Arc::new(Inner {
            dir,
            write: Mutex::new(0),
            pending: Mutex::new(VecDeque::new()),
            published: Notify::new(),
            sender_claimed: AtomicBool::new(false),
        });
        let mut last_seq = 0u64;
        let mut pending = VecDeque::with_capacity(names.len());
        for name in names {
            if let Some(seq) = sequence_of(&name) {
                last_seq = last_seq.max(seq);
            }
            match inner.load(&name) {
                Ok(_) => pending.push_back(name),
                Err(LoadError::Corrupt(reason)) => inner.move_aside(&name, &reason),
                Err(LoadError::Io(e)) => {
                    // Kept queued: the sender retries it (and says so) rather than the
                    // registry refusing to start over one unreadable file.
                    tracing::error!(
                        file = %inner.dir.join(&name).display(),
                        error = %e,
                        "outbox: cannot read a pending event"
                    );
                    pending.push_back(name);
                }
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                dir = %inner.dir.display(),
                count = pending.len(),
                "outbox: events from an earlier run still to deliver"
            );
        }
        *lock(&inner.write) = last_seq;
        *lock(&inner.pending) = pending;
        Ok(Outbox { inner })
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Events recorded and not yet acknowledged by the index.
    pub fn pending(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Resolves when an event has been published since the last time it resolved.
    pub(crate) async fn published(&self) {
        self.inner.published.notified().await
    }

    pub(crate) fn claim_sender(&self) -> Result<SenderClaim, EventError> {
        if self.inner.sender_claimed.swap(true, Ordering::AcqRel) {
            return Err(EventError::SenderRunning);
        }
        Ok(SenderClaim {
            inner: self.inner.clone(),
        })
    }

    /// The oldest pending events as one batch (at most `MAX_BATCH_EVENTS` events and
    /// `MAX_BATCH_BYTES` bytes), or `None` when nothing is pending.
    pub(crate) async fn next_batch(&self) -> Result<Option<Batch>, EventError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.next_batch())
            .await
            .map_err(|e| EventError::Task(e.to_string()))?
    }

    /// Forgets the events of a batch the index acknowledged: removes their files.
    pub(crate) async fn acknowledge(&self, batch: Batch) -> Result<(), EventError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.acknowledge(&batch))
            .await
            .map_err(|e| EventError::Task(e.to_string()))?
    }
}

impl EventSink for Outbox {
    fn publish<'a>(
        &'a self,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<(), EventError>> + Send + 'a>> {
        Box::pin(async move {
            let inner = self.inner.clone();
            // The write finishes even if this future is dropped: a blocking task is never
            // cancelled halfway, so the file is either whole or a temp file.
            tokio::task::spawn_blocking(move || inner.record(&event))
                .await
                .map_err(|e| EventError::Task(e.to_string()))??;
            self.inner.published.notify_one();
            Ok(())
        })
    }
}

impl Inner {
    /// Writes `event` crash-safely and queues it.
    fn record(&self, event: &Event) -> Result<(), EventError> {
        event.check_id()?;
        let json = serde_json::to_vec(event)?;
        if json.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge {
                id: event.id.clone(),
                size: json.len(),
            });
        }

        let mut last_seq = lock(&self.write);
        // Wall-clock nanoseconds keep names meaningful to a human; never going backwards
        // (clock steps, restarts with older files) keeps them ordered.
        let seq = now_nanos().max(last_seq.saturating_add(1));
        let name = format!("{seq:020}-{}{EVENT_SUFFIX}", event.id);
        let tmp = self.dir.join(format!("{TMP_PREFIX}{seq:020}-{}", event.id));
        let path = self.dir.join(&name);

        if let Err(e) = write_synced(&tmp, &json) {
            let _ = fs::remove_file(&tmp);
            return Err(EventError::Io {
                op: "write",
                path: tmp,
                source: e,
            });
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(EventError::Io {
                op: "rename",
                path: tmp,
                source: e,
            });
        }
        // Renamed: the event is visible and will be delivered, so it is queued even if
        // the directory sync below fails (the index de-duplicates by id anyway).
        *last_seq = seq;
        lock(&self.pending).push_back(name);
        drop(last_seq);
        sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
        tracing::debug!(id = %event.id, "outbox: event recorded");
        Ok(())
    }

    /// Reads and checks one pending file; returns its event re-encoded for the wire.
    fn load(&self, name: &str) -> Result<(Event, Vec<u8>), LoadError> {
        let path = self.dir.join(name);
        let bytes = fs::read(&path).map_err(LoadError::Io)?;
        let event: Event = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Corrupt(format!("not an event: {e}")))?;
        event
            .check_id()
            .map_err(|e| LoadError::Corrupt(e.to_string()))?;
        let json = serde_json::to_vec(&event)
            .map_err(|e| LoadError::Corrupt(format!("cannot encode: {e}")))?;
        if json.len() > MAX_EVENT_BYTES {
            return Err(LoadError::Corrupt(format!(
                "{} bytes encoded, more than a batch may hold",
                json.len()
            )));
        }
        Ok((event, json))
    }

    /// Moves an unusable file to `bad/` and drops it from the queue. Never deletes it:
    /// it holds a change the index has not heard of, which a human may recover.
    fn move_aside(&self, name: &str, reason: &str) {
        let from = self.dir.join(name);
        let bad = self.dir.join(BAD_DIR);
        let to = bad.join(name);
        let moved = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bad)
            .and_then(|()| fs::rename(&from, &to))
            .and_then(|()| sync_dir(&bad))
            .and_then(|()| sync_dir(&self.dir));
        match moved {
            Ok(()) => tracing::error!(
                file = %to.display(),
                reason,
                "outbox: unusable event file moved aside; the index will not get it"
            ),
            // Left in place it is retried at the next start; dropping it from the queue
            // keeps it from blocking every event after it meanwhile.
            Err(e) => tracing::error!(
                file = %from.display(),
                reason,
                error = %e,
                "outbox: unusable event file could not be moved aside; skipped for now"
            ),
        }
        remove_names(&mut lock(&self.pending), &[name.to_owned()]);
    }

    fn next_batch(&self) -> Result<Option<Batch>, EventError> {
        loop {
            let candidates: Vec<String> = lock(&self.pending)
                .iter()
                .take(MAX_BATCH_EVENTS)
                .cloned()
                .collect();
            if candidates.is_empty() {
                return Ok(None);
            }
            let mut body = BATCH_OPEN.to_vec();
            let mut names = Vec::new();
            let mut ids = Vec::new();
            for name in candidates {
                let (event, json) = match self.load(&name) {
                    Ok(loaded) => loaded,
                    Err(LoadError::Corrupt(reason)) => {
                        self.move_aside(&name, &reason);
                        continue;
                    }
                    Err(LoadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                        tracing::warn!(
                            file = %self.dir.join(&name).display(),
                            "outbox: pending event file vanished"
                        );
                        remove_names(&mut lock(&self.pending), &[name]);
                        continue;
                    }
                    Err(LoadError::Io(e)) if names.is_empty() => {
                        return Err(EventError::Io {
                            op: "read",
                            path: self.dir.join(&name),
                            source: e,
                        });
                    }
                    // Send what came before it; the failure repeats on the next batch.
                    Err(LoadError::Io(_)) => break,
                };
                let separator = usize::from(!names.is_empty());
                if body.len() + separator + json.len() + BATCH_CLOSE.len() > MAX_BATCH_BYTES {
                    break;
                }
                if separator == 1 {
                    body.push(b',');
                }
                body.extend_from_slice(&json);
                names.push(name);
                ids.push(event.id);
            }
            if names.is_empty() {
                // Everything looked at was unusable and is now out of the queue; look at
                // what follows.
                continue;
            }
            body.extend_from_slice(BATCH_CLOSE);
            return Ok(Some(Batch {
                names,
                ids,
                body: Bytes::from(body),
            }));
        }
    }

    fn acknowledge(&self, batch: &Batch) -> Result<(), EventError> {
        let mut first_error = None;
        for name in &batch.names {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Left behind it is sent again after a restart; the index has it
                    // already and de-duplicates by id.
                    tracing::warn!(
                        file = %path.display(),
                        error = %e,
                        "outbox: cannot remove an acknowledged event"
                    );
                    first_error.get_or_insert(EventError::Io {
                        op: "remove",
                        path,
                        source: e,
                    });
                }
            }
        }
        remove_names(&mut lock(&self.pending), &batch.names);
        sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Removes `names` from the queue; they are normally its first entries, in order.
fn remove_names(pending: &mut VecDeque<String>, names: &[String]) {
    let mut rest = Vec::new();
    for name in names {
        if pending.front() == Some(name) {
            pending.pop_front();
        } else {
            rest.push(name.as_str());
        }
    }
    if !rest.is_empty() {
        let rest: HashSet<&str> = rest.into_iter().collect();
        pending.retain(|n| !rest.contains(n.as_str()));
    }
}

/// The queue state stays consistent under any panic (every change is a single push or
/// removal), so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sequence_of(name: &str) -> Option<u64> {
    name.split_once('-')?.0.parse().ok()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EventError {
    let path = path.to_owned();
    move |source| EventError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::events::{EventBatch, EventKind};

    fn event(repo: &str) -> Event {
        Event::new(
            "svc",
            Some("alice"),
            EventKind::TagDeleted {
                repository: repo.into(),
                tag: "latest".into(),
            },
        )
        .unwrap()
    }

    /// The `.json` files in `dir`, sorted, parsed.
    fn files(dir: &Path) -> Vec<Event> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| serde_json::from_slice(&fs::read(dir.join(n)).unwrap()).unwrap())
            .collect()
    }

    fn all_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn publish_writes_private_files_that_sort_in_publish_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("outbox");
        let outbox = Outbox::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut published = Vec::new();
        for i in 0..20 {
            let e = event(&format!("r{i}"));
            outbox.publish(e.clone()).await.unwrap();
            published.push(e);
        }
        assert_eq!(outbox.pending(), 20);
        assert_eq!(files(&dir), published);
        for name in all_names(&dir) {
            assert!(name.ends_with(".json"), "leftover {name}");
            let mode = fs::metadata(dir.join(&name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[tokio::test]
    async fn events_that_cannot_be_stored_safely_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let mut bad_id = event("r");
        bad_id.id = "../../escape".into();
        assert!(matches!(
            outbox.publish(bad_id).await,
            Err(EventError::InvalidId(_))
        ));
        let huge = event(&"x".repeat(MAX_BATCH_BYTES));
        assert!(matches!(
            outbox.publish(huge).await,
            Err(EventError::TooLarge { .. })
        ));
        assert_eq!(outbox.pending(), 0);
        assert!(all_names(tmp.path()).is_empty());
        assert!(all_names(tmp.path().parent().unwrap())
            .iter()
            .all(|n| !n.contains("escape")));
    }

    #[tokio::test]
    async fn reopening_finds_pending_events_in_order_and_appends_after_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (event("a"), event("b"), event("c"));
        {
            let outbox = Outbox::open(tmp.path()).unwrap();
            outbox.publish(a.clone()).await.unwrap();
            outbox.publish(b.clone()).await.unwrap();
        }
        let outbox = Outbox::open(tmp.path()).unwrap();
        assert_eq!(outbox.pending(), 2);
        outbox.publish(c.clone()).await.unwrap();
        let batch = outbox.next_batch().await.unwrap().unwrap();
        let parsed: EventBatch = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(parsed.events, vec![a, b, c]);
    }

    #[tokio::test]
    async fn later_events_sort_after_a_file_from_the_future() {
        // A clock stepped back between runs must not put new events before old ones.
        let tmp = tempfile::tempdir().unwrap();
        let old = event("old");
        let name = format!("{:020}-{}.json", u64::MAX - 10, old.id);
        fs::write(tmp.path().join(name), serde_json::to_vec(&old).unwrap()).unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let new = event("new");
        outbox.publish(new.clone()).await.unwrap();
        assert_eq!(files(tmp.path()), vec![old, new]);
    }

    #[test]
    fn temp_files_left_by_a_crash_are_removed_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let kept = event("kept");
        let kept_name = format!("{:020}-{}.json", 5, kept.id);
        fs::write(
            tmp.path().join(&kept_name),
            serde_json::to_vec(&kept).unwrap(),
        )
        .unwrap();
        fs::write(
            tmp.path().join(".tmp-00000000000000000006-abc"),
            b"{\"id\":",
        )
        .unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        assert_eq!(all_names(tmp.path()), vec![kept_name]);
        assert_eq!(outbox.pending(), 1);
    }

    #[tokio::test]
    async fn corrupt_files_are_moved_to_bad_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let good = event("good");
        let mut escaping = event("x");
        escaping.id = "../x".into();
        let cases: [(&str, Vec<u8>); 3] = [
            ("00000000000000000001-trunc.json", b"{\"id\":\"ab".to_vec()),
            ("00000000000000000002-other.json", b"{\"x\":1}".to_vec()),
            (
                "00000000000000000003-esc.json",
                serde_json::to_vec(&escaping).unwrap(),
            ),
        ];
        for (name, content) in &cases {
            fs::write(tmp.path().join(name), content).unwrap();
        }
        let good_name = format!("{:020}-{}.json", 4, good.id);
        fs::write(
            tmp.path().join(&good_name),
            serde_json::to_vec(&good).unwrap(),
        )
        .unwrap();

        let outbox = Outbox::open(tmp.path()).unwrap();
        assert_eq!(outbox.pending(), 1);
        assert_eq!(all_names(tmp.path()), vec![good_name, "bad".to_owned()]);
        for (name, content) in &cases {
            assert_eq!(
                &fs::read(tmp.path().join("bad").join(name)).unwrap(),
                content
            );
        }
        let batch = outbox.next_batch().await.unwrap().unwrap();
        assert_eq!(batch.ids, vec![good.id]);
    }

    #[tokio::test]
    async fn a_file_corrupted_after_open_is_moved_aside_when_sending() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let (a, b) = (event("a"), event("b"));
        outbox.publish(a.clone()).await.unwrap();
        outbox.publish(b.clone()).await.unwrap();
        let first = all_names(tmp.path()).remove(0);
        fs::write(tmp.path().join(&first), b"garbage").unwrap();
        let batch = outbox.next_batch().await.unwrap().unwrap();
        assert_eq!(batch.ids, vec![b.id]);
        assert_eq!(outbox.pending(), 1);
        assert_eq!(
            fs::read(tmp.path().join("bad").join(first)).unwrap(),
            b"garbage"
        );
    }

    #[tokio::test]
    async fn batches_hold_at_most_100_events_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let mut published = Vec::new();
        for i in 0..250 {
            let e = event(&format!("r{i}"));
            outbox.publish(e.clone()).await.unwrap();
            published.push(e);
        }
        let mut sizes = Vec::new();
        let mut received = Vec::new();
        while let Some(batch) = outbox.next_batch().await.unwrap() {
            let parsed: EventBatch = serde_json::from_slice(&batch.body).unwrap();
            assert_eq!(parsed.events.len(), batch.names.len());
            sizes.push(parsed.events.len());
            received.extend(parsed.events);
            outbox.acknowledge(batch).await.unwrap();
        }
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(received, published);
        assert_eq!(outbox.pending(), 0);
        assert!(all_names(tmp.path()).is_empty());
    }

    #[tokio::test]
    async fn batches_stay_within_one_mebibyte() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let mut published = Vec::new();
        for i in 0..60 {
            let e = event(&format!("{i:03}{}", "x".repeat(100_000)));
            outbox.publish(e.clone()).await.unwrap();
            published.push(e);
        }
        let mut received = Vec::new();
        let mut batches = 0;
        while let Some(batch) = outbox.next_batch().await.unwrap() {
            assert!(batch.body.len() <= MAX_BATCH_BYTES, "{}", batch.body.len());
            let parsed: EventBatch = serde_json::from_slice(&batch.body).unwrap();
            // About 100 kB each: ten fit, eleven do not.
            assert!(parsed.events.len() >= 9, "{}", parsed.events.len());
            received.extend(parsed.events);
            outbox.acknowledge(batch).await.unwrap();
            batches += 1;
        }
        assert!(batches >= 6, "{batches}");
        assert_eq!(received, published);
    }

    #[tokio::test]
    async fn an_unacknowledged_batch_is_offered_again() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        outbox.publish(event("a")).await.unwrap();
        let first = outbox.next_batch().await.unwrap().unwrap();
        let again = outbox.next_batch().await.unwrap().unwrap();
        assert_eq!(first.names, again.names);
        assert_eq!(first.body, again.body);
        assert_eq!(outbox.pending(), 1);
    }

    #[test]
    fn only_one_sender_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        let claim = outbox.claim_sender().unwrap();
        assert!(matches!(
            outbox.claim_sender(),
            Err(EventError::SenderRunning)
        ));
        drop(claim);
        outbox.claim_sender().unwrap();
    }

    #[test]
    fn remove_names_handles_the_front_and_the_middle() {
        let mut q: VecDeque<String> = ["a", "b", "c", "d"].map(String::from).into();
        remove_names(&mut q, &["a".into(), "c".into()]);
        assert_eq!(q, VecDeque::from(["b".to_owned(), "d".to_owned()]));
    }
}
