//! Resumable upload sessions. A session is `uploads/<id>/repo` (the repository it is bound
//! to) and `uploads/<id>/data` (the bytes so far). In memory each touched session has a slot
//! holding the open file, its size and a running SHA-256, behind an async mutex that
//! serializes every operation on that session. The mutex guard travels *into* the blocking
//! tasks that write, so a caller that goes away mid-write cannot let another request see
//! a hash state that disagrees with the file. After a restart (or a failed write) the state is
//! rebuilt from the file itself, so the file is always the truth.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;

/// Size of the buffers an upload is written in: two per upload in flight (one filling, one
/// being written and hashed), so this bounds memory per concurrent upload. 256 KiB keeps
/// writes large while 20 concurrent uploads hold only ~10 MiB.
const UPLOAD_CHUNK: usize = 256 * 1024;

use super::atomic::{
    blocking, ensure_dir, feed, hash_reader, join_error, not_found, random_hex,
    remove_tree_durable, sync_dir,
};
use super::{link_blob_blocking, lock, FsStorage, Inner};
use crate::registry::names::{Algorithm, Digest, RepoName};
use crate::storage::{BodyStream, StorageError, StorageResult, UploadId};

/// One session's in-memory state; `None` in the slot means "not loaded, read it from disk".
pub(super) type SessionSlot = Arc<Mutex<Option<Session>>>;
type SessionGuard = OwnedMutexGuard<Option<Session>>;

/// Temp files of interrupted atomic writes are removed once at least this old.
const TMP_MIN_AGE: Duration = Duration::from_secs(600);

pub(super) struct Session {
    /// The repository this session is bound to.
    repo: String,
    /// Open file and running hash; loaded only when an operation needs them.
    data: Option<DataState>,
}

struct DataState {
    file: File,
    size: u64,
    hasher: Sha256,
    /// Bytes before this offset have had their writeback started (`start_writeback`).
    writeback_from: u64,
    /// Set while a writeback request for this upload is in flight: at most one at a time,
    /// the next one covers everything written meanwhile.
    writeback_busy: Arc<AtomicBool>,
}

impl DataState {
    fn new(file: File, size: u64, hasher: Sha256) -> Self {
        DataState {
            file,
            size,
            hasher,
            writeback_from: 0,
            writeback_busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the writeback of what was written since the last time, once that reaches
    /// `WRITE_BEHIND`, on the blocking pool: the call can wait for the disk's queue, and
    /// the writer (in a chunked upload, the reply to each PATCH) must not.
    fn write_behind(&mut self) {
        let len = self.size - self.writeback_from;
        if len < WRITE_BEHIND || self.writeback_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let busy = self.writeback_busy.clone();
        let Ok(file) = self.file.try_clone() else {
            busy.store(false, Ordering::Release);
            return;
        };
        let offset = self.writeback_from;
        self.writeback_from = self.size;
        let run = move || {
            start_writeback(&file, offset, len);
            busy.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

/// Once this many written bytes have not had their writeback started, it is started.
const WRITE_BEHIND: u64 = 4 * 1024 * 1024;

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk now, without
/// waiting: the disk then works while the rest of the upload arrives, and the fsync that
/// commits the blob waits only for the tail. Left alone, the kernel would hold everything
/// dirty in the page cache until that fsync (its background writeback starts at 10% of
/// memory), which then writes the whole blob while the client waits. Durability still
/// comes only from that fsync; this only moves the disk's work earlier, so an error here
/// is ignored (the fsync reports any real one).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an open descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Removes the map entry for `id` if it is still `slot` (a newer slot is left alone).
fn forget(inner: &Inner, id: &str, slot: &SessionSlot) {
    let mut map = lock(&inner.sessions);
    if map.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
        map.remove(id);
    }
}

/// Loads the session's binding if needed and checks it belongs to `repo`: a session used
/// under another name is `NotFound`, exactly like an unknown one.
fn bind<'a>(
    inner: &Inner,
    guard: &'a mut SessionGuard,
    id: &str,
    repo: &str,
) -> StorageResult<&'a mut Session> {
    if guard.is_none() {
        match fs::read_to_string(inner.layout.upload(id).join("repo")) {
            Ok(r) => {
                **guard = Some(Session {
                    repo: r,
                    data: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Unknown id: do not let guessed ids accumulate slots.
                forget(inner, id, OwnedMutexGuard::mutex(guard));
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(e.into()),
        }
    }
    match guard.as_mut() {
        Some(s) if s.repo == repo => Ok(s),
        _ => Err(StorageError::NotFound),
    }
}

/// The session's open file and hash, rebuilt from the file when not in memory.
fn load_data<'a>(inner: &Inner, id: &str, s: &'a mut Session) -> StorageResult<&'a mut DataState> {
    let ds = match s.data.take() {
        Some(d) => d,
        None => {
            let path = inner.layout.upload(id).join("data");
            // O_APPEND affects only writes: reading starts at 0, so this hashes the file.
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(not_found)?;
            let mut hasher = Sha256::new();
            let size = feed(&mut file, &mut hasher)?;
            DataState::new(file, size, hasher)
        }
    };
    Ok(s.data.insert(ds))
}

/// Appends `buf` and hashes it; on failure drops the in-memory state (rebuilt from the file
/// next time, since a partial write may have landed).
fn write_chunk(
    mut guard: SessionGuard,
    mut buf: Vec<u8>,
) -> (SessionGuard, Vec<u8>, io::Result<()>) {
    let res = match guard.as_mut().and_then(|s| s.data.as_mut()) {
        Some(d) => match d.file.write_all(&buf) {
            Ok(()) => {
                d.hasher.update(&buf);
                d.size += buf.len() as u64;
                d.write_behind();
                Ok(())
            }
            Err(e) => Err(e),
        },
        None => Err(io::Error::other("upload state was dropped")),
    };
    if res.is_err() {
        if let Some(s) = guard.as_mut() {
            s.data = None;
        }
    }
    buf.clear();
    (guard, buf, res)
}

/// Who holds the session guard during an append: us, or the write task in flight.
enum Holder {
    Idle(SessionGuard),
    Writing(JoinHandle<(SessionGuard, Vec<u8>, io::Result<()>)>),
}

impl Holder {
    /// Waits for a write in flight; returns the guard and the buffer it freed.
    async fn settle(self) -> StorageResult<(SessionGuard, Option<Vec<u8>>)> {
        match self {
            Holder::Idle(g) => Ok((g, None)),
            Holder::Writing(task) => {
                let (g, buf, res) = task.await.map_err(join_error)?;
                res?;
                Ok((g, Some(buf)))
            }
        }
    }
}

/// Age of a session: of its `data` file, or of the directory when `data` is missing.
/// `None` when the session is gone.
fn session_age(dir: &Path, now: SystemTime) -> io::Result<Option<Duration>> {
    let meta = match fs::metadata(dir.join("data")) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let mtime = meta.modified()?;
    Ok(Some(now.duration_since(mtime).unwrap_or(Duration::ZERO)))
}

/// Removes what crashes left in `tmp/`: temp files of interrupted atomic writes, and the
/// `delete-<hex>` trees of repository deletes that did not get to remove them. Only entries
/// untouched for `min_age`, so work in progress is left alone.
fn clean_tmp(dir: &Path, now: SystemTime, min_age: Duration) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Renamed into place or removed by its writer since the listing: not litter.
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let old = now
            .duration_since(meta.modified()?)
            .unwrap_or(Duration::ZERO)
            > min_age;
        if !old {
            continue;
        }
        let removed = if meta.is_dir() {
            fs::remove_dir_all(entry.path())
        } else {
            fs::remove_file(entry.path())
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl FsStorage {
    /// The slot of a session. Ids not of the shape we generate are `NotFound`: `UploadId`'s
    /// field is public, and an id becomes a path component here.
    fn session_slot(&self, id: &str) -> StorageResult<SessionSlot> {
        if UploadId::parse(id).is_none() {
            return Err(StorageError::NotFound);
        }
        Ok(lock(&self.inner.sessions)
            .entry(id.to_owned())
            .or_default()
            .clone())
    }

    pub(super) async fn start_upload(&self, repo: &RepoName) -> StorageResult<UploadId> {
        let inner = self.inner.clone();
        let name = repo.as_str().to_owned();
        let (id, file) = blocking(move || {
            let uploads = &inner.layout.uploads;
            let (id, dir) = loop {
                let id = random_hex()?;
                let dir = uploads.join(&id);
                match fs::create_dir(&dir) {
                    Ok(()) => break (id, dir),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            // No fsync here: a new session holds nothing acknowledged. After a crash it can
            // only be missing or have an empty `repo` file (then it is unknown and the
            // client starts over), never be bound to another repository. Content becomes
            // durable in `finish_upload` (data fsync, rename, directory fsync).
            let made = (|| {
                fs::write(dir.join("repo"), name.as_bytes())?;
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create_new(true)
                    .open(dir.join("data"))?;
                Ok::<_, io::Error>(file)
            })();
            match made {
                Ok(file) => Ok((id, file)),
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    Err(e.into())
                }
            }
        })
        .await?;
        let session = Session {
            repo: repo.as_str().to_owned(),
            data: Some(DataState::new(file, 0, Sha256::new())),
        };
        lock(&self.inner.sessions).insert(id.clone(), Arc::new(Mutex::new(Some(session))));
        Ok(UploadId(id))
    }

    pub(super) async fn size_of_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> StorageResult<u64> {
        let mut guard = self.session_slot(&id.0)?.lock_owned().await;
        let inner = self.inner.clone();
        let (id, repo) = (id.0.clone(), repo.as_str().to_owned());
        blocking(move || {
            let s = bind(&inner, &mut guard, &id, &repo)?;
            if let Some(d) = &s.data {
                return Ok(d.size);
            }
            // Not loaded: the file length is the size; no need to hash it just to answer.
            let path = inner.layout.upload(&id).join("data");
            Ok(fs::metadata(path).map_err(not_found)?.len())
        })
        .await
    }

    pub(super) async fn append_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        offset: Option<u64>,
        mut body: BodyStream,
        limit: u64,
    ) -> StorageResult<u64> {
        let guard = self.session_slot(&id.0)?.lock_owned().await;
        let inner = self.inner.clone();
        let (ids, repo) = (id.0.clone(), repo.as_str().to_owned());
        let (guard, base) = blocking(move || {
            let mut guard = guard;
            let size = {
                let s = bind(&inner, &mut guard, &ids, &repo)?;
                load_data(&inner, &ids, s)?.size
            };
            if let Some(got) = offset {
                if got != size {
                    return Err(StorageError::OffsetMismatch {
                        expected: size,
                        got,
                    });
                }
            }
            Ok((guard, size))
        })
        .await?;

        // Collect the body into ~CHUNK buffers; each full buffer is written and hashed by a
        // blocking task while the next one fills (two buffers in rotation).
        let rt = tokio::runtime::Handle::current();
        let mut holder = Holder::Idle(guard);
        let mut buf: Vec<u8> = Vec::with_capacity(UPLOAD_CHUNK);
        let mut accepted = 0u64;
        let outcome = loop {
            let chunk = match body.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(StorageError::Body(e.to_string())),
                Some(Ok(c)) => c,
            };
            if base
                .saturating_add(accepted)
                .saturating_add(chunk.len() as u64)
                > limit
            {
                break Err(StorageError::TooLarge { limit });
            }
            accepted += chunk.len() as u64;
            // Fill buffers exactly to UPLOAD_CHUNK, splitting incoming chunks: a Vec allowed
            // to grow past its capacity would double, and with many uploads at once that
            // doubling is most of the server's memory.
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let take = (UPLOAD_CHUNK - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == UPLOAD_CHUNK {
                    let (g, freed) = holder.settle().await?;
                    let next = freed.unwrap_or_else(|| Vec::with_capacity(UPLOAD_CHUNK));
                    let full = std::mem::replace(&mut buf, next);
                    holder = Holder::Writing(rt.spawn_blocking(move || write_chunk(g, full)));
                }
            }
        };
        // Whatever arrived stays appended, also on a body error or the limit: it is a valid
        // prefix the client can resume from.
        let (mut guard, _) = holder.settle().await?;
        if !buf.is_empty() {
            let (g, _, res) = rt
                .spawn_blocking(move || write_chunk(guard, buf))
                .await
                .map_err(join_error)?;
            res?;
            guard = g;
        }
        outcome?;
        guard
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .map(|d| d.size)
            .ok_or_else(|| StorageError::Io(io::Error::other("upload state was dropped")))
    }

    pub(super) async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> StorageResult<u64> {
        let mut guard = self.session_slot(&id.0)?.lock_owned().await;
        let inner = self.inner.clone();
        let (id, repo, digest) = (id.0.clone(), repo.as_str().to_owned(), digest.clone());
        blocking(move || {
            let dir = inner.layout.upload(&id);
            let data_path = dir.join("data");
            let s = bind(&inner, &mut guard, &id, &repo)?;
            let (computed, size) = match (digest.algorithm(), s.data.take()) {
                (Algorithm::Sha256, Some(d)) => {
                    d.file.sync_all()?;
                    (Digest::from_raw(Algorithm::Sha256, &d.hasher.finalize()), d.size)
                }
                // After a restart, or for sha512 (the running hash is sha256): hash the file.
                (alg, _) => {
                    let file = File::open(&data_path).map_err(not_found)?;
                    file.sync_all()?;
                    hash_reader(&file, alg)?
                }
            };
            if computed != digest {
                // The spec fails the upload: the session goes.
                remove_tree_durable(&dir)?;
                *guard = None;
                forget(&inner, &id, OwnedMutexGuard::mutex(&guard));
                return Err(StorageError::DigestMismatch {
                    expected: digest,
                    computed,
                });
            }
            let blob = inner.layout.blob(&digest);
            let blob_dir = blob
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            ensure_dir(blob_dir)?;
            // An existing blob has the same content (it is named by its hash): keep it. Two
            // sessions racing here both rename identical bytes; either outcome is right.
            if !blob.is_file() {
                fs::rename(&data_path, &blob)?;
                sync_dir(blob_dir)?;
            }
            link_blob_blocking(&inner, &repo, &digest)?;
            // The blob is committed; a leftover session directory is only litter for purge,
            // so its removal need not be durable (one fsync fewer per blob; a crash right
            // here leaves what a crash before this line always could).
            if let Err(e) = fs::remove_dir_all(&dir).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }) {
                tracing::warn!(upload = %id, error = %e, "could not remove finished upload session");
            }
            *guard = None;
            forget(&inner, &id, OwnedMutexGuard::mutex(&guard));
            Ok(size)
        })
        .await
    }

    pub(super) async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> StorageResult<()> {
        let mut guard = self.session_slot(&id.0)?.lock_owned().await;
        let inner = self.inner.clone();
        let (id, repo) = (id.0.clone(), repo.as_str().to_owned());
        blocking(move || {
            bind(&inner, &mut guard, &id, &repo)?;
            remove_tree_durable(&inner.layout.upload(&id))?;
            *guard = None;
            forget(&inner, &id, OwnedMutexGuard::mutex(&guard));
            Ok(())
        })
        .await
    }

    /// Cancels the idle upload sessions bound to exactly `repo` (`a/b`'s are not `a`'s), for
    /// a repository delete; returns how many. A session busy with a request is left alone,
    /// as purge does: removing its files under a running append or finish would only turn
    /// that request into an I/O error.
    pub(super) async fn cancel_sessions_of(&self, repo: &RepoName) -> StorageResult<usize> {
        let inner = self.inner.clone();
        let name = repo.as_str().to_owned();
        let candidates = blocking(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(&inner.layout.uploads)? {
                let entry = entry?;
                let Some(id) = entry.file_name().to_str().and_then(UploadId::parse) else {
                    continue;
                };
                match fs::read_to_string(entry.path().join("repo")) {
                    Ok(bound) if bound == name => ids.push(id.0),
                    Ok(_) => {}
                    // Finished or cancelled since the listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(ids)
        })
        .await?;

        let mut cancelled = 0;
        for id in candidates {
            let Ok(mut guard) = self.session_slot(&id)?.try_lock_owned() else {
                continue;
            };
            let inner = self.inner.clone();
            let name = repo.as_str().to_owned();
            let removed = blocking(move || {
                // Under the lock the session may turn out finished since the scan.
                match bind(&inner, &mut guard, &id, &name) {
                    Ok(_) => {}
                    Err(StorageError::NotFound) => return Ok(false),
                    Err(e) => return Err(e),
                }
                remove_tree_durable(&inner.layout.upload(&id))?;
                *guard = None;
                forget(&inner, &id, OwnedMutexGuard::mutex(&guard));
                Ok(true)
            })
            .await?;
            cancelled += usize::from(removed);
        }
        Ok(cancelled)
    }

    pub(super) async fn purge_uploads(&self, max_age: Duration) -> StorageResult<usize> {
        let inner = self.inner.clone();
        let candidates = blocking(move || {
            let now = SystemTime::now();
            if let Err(e) = clean_tmp(&inner.layout.tmp, now, max_age.max(TMP_MIN_AGE)) {
                tracing::warn!(error = %e, "could not clean temp files");
            }
            let mut old = Vec::new();
            for entry in fs::read_dir(&inner.layout.uploads)? {
                let entry = entry?;
                let Some(id) = entry.file_name().to_str().and_then(UploadId::parse) else {
                    continue;
                };
                if session_age(&entry.path(), now)?.is_some_and(|age| age > max_age) {
                    old.push(id.0);
                }
            }
            Ok(old)
        })
        .await?;

        let mut purged = 0;
        for id in candidates {
            // A session busy right now is in use, whatever its file time says.
            let Ok(mut guard) = self.session_slot(&id)?.try_lock_owned() else {
                continue;
            };
            let inner = self.inner.clone();
            let removed = blocking(move || {
                let dir = inner.layout.upload(&id);
                // Re-check under the lock: it may have been written to since the scan.
                let still_old =
                    session_age(&dir, SystemTime::now())?.is_some_and(|age| age > max_age);
                // Only a removed session may lose its slot: a waiter holding this slot then
                // finds the directory gone, and nobody can end up with a second live slot.
                if still_old {
                    remove_tree_durable(&dir)?;
                    *guard = None;
                    forget(&inner, &id, OwnedMutexGuard::mutex(&guard));
                }
                Ok(still_old)
            })
            .await?;
            purged += usize::from(removed);
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod write_behind_tests {
    use super::*;

    fn state() -> (tempfile::TempDir, DataState) {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(dir.path().join("data"))
            .unwrap();
        (dir, DataState::new(file, 0, Sha256::new()))
    }

    fn append(d: &mut DataState, n: usize) {
        d.file.write_all(&vec![7u8; n]).unwrap();
        d.size += n as u64;
        d.write_behind();
    }

    #[test]
    fn starts_writeback_per_window_without_a_runtime() {
        let (_dir, mut d) = state();
        append(&mut d, 1 << 20);
        assert_eq!(d.writeback_from, 0, "below the window: nothing started");
        append(&mut d, WRITE_BEHIND as usize);
        assert_eq!(
            d.writeback_from, d.size,
            "window reached: all written so far"
        );
        assert!(!d.writeback_busy.load(Ordering::Acquire));
        append(&mut d, 1);
        assert_eq!(d.writeback_from, d.size - 1);
    }

    #[tokio::test]
    async fn one_request_in_flight_on_the_blocking_pool() {
        let (_dir, mut d) = state();
        // A request in flight: the next window waits and is covered by the next start.
        d.writeback_busy.store(true, Ordering::Release);
        append(&mut d, WRITE_BEHIND as usize);
        assert_eq!(d.writeback_from, 0);
        d.writeback_busy.store(false, Ordering::Release);
        append(&mut d, 1);
        assert_eq!(d.writeback_from, d.size, "one start covers both windows");
        // The blocking task clears the flag when the kernel has taken the request.
        for _ in 0..500 {
            if !d.writeback_busy.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("writeback task never finished");
    }
}
