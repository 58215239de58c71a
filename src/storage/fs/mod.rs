//! The default storage backend: a directory tree on the local filesystem. It owns the layout
//! under the data root, the crash-safety of every write (content becomes visible only by an
//! atomic rename after it was verified and fsync'd; links, whose existence is the record, by
//! a durable directory entry), and the in-memory indexes (catalog, tag sets, upload hash
//! state) that keep hot paths from re-reading directories. It assumes this process is the
//! only writer of the data root.
//!
//! ```text
//! blobs/<alg>/<2 hex>/<hex>                                      content
//! repositories/<name>/_layers/<alg>/<hex>                        blob link (digest string*)
//! repositories/<name>/_manifests/revisions/<alg>/<hex>           manifest link (same*)
//! repositories/<name>/_manifests/tags/<tag>                      digest string
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>         referrer descriptor JSON
//! uploads/<id>/{repo,data}                                       upload session
//! tmp/                                                           temp files of atomic writes
//! tmp/delete-<hex>/                                              a deleted repository's links
//! ```
//!
//! \* A link's existence is the record; its content may be empty after a crash (`create_link`).
//!
//! Name components never start with `_` (grammar), so `_layers` etc. cannot collide with a
//! nested repository, and a repository's own metadata is exactly its `_`-prefixed entries.
//! Deleting a repository (`delete.rs`) moves those entries into `tmp/` and removes them there.

mod atomic;
mod delete;
mod read;
mod uploads;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Mutex, OwnedRwLockReadGuard, RwLock};

use self::atomic::{
    blocking, create_link, ensure_dir, not_found, read_digest_file, remove_durable, write_atomic,
};
use self::read::ChunkReader;
use self::uploads::SessionSlot;
use super::{BlobRead, ReferrerRecord, Storage, StorageError, StorageResult, UploadId};
use crate::registry::names::{Digest, RepoName, Tag};

/// Tags of one repository, tag -> digest; `None` until first needed.
type TagSlot = Arc<Mutex<Option<BTreeMap<String, Digest>>>>;

/// A shared hold on `Inner::gate`. In an `Arc` so one operation can hand it to each of its
/// blocking tasks: it is released only when the last of them has finished, even if the
/// caller went away in between.
type Gate = Arc<OwnedRwLockReadGuard<()>>;

/// The local-filesystem backend. Cloning is cheap and clones share all state.
#[derive(Clone)]
pub struct FsStorage {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    /// Upload sessions that were touched since start (or created): their hash state.
    sessions: StdMutex<HashMap<String, SessionSlot>>,
    /// All repository names, built on first catalog request (so start-up stays instant).
    catalog: Arc<Mutex<Option<BTreeSet<String>>>>,
    /// Per-repository tag sets, each built on first listing.
    tags: StdMutex<HashMap<String, TagSlot>>,
    /// Held shared by every change under `repositories/` (from its first look at a directory
    /// until its file is in place) and exclusively by a repository delete while it moves the
    /// repository away and updates the indexes. Without it a write racing a delete could
    /// re-create `_manifests` behind the catalog's back, or a directory the delete is pruning.
    /// Deletes are rare and short, so writers practically never wait; readers never take it.
    gate: Arc<RwLock<()>>,
}

/// Where everything lives under the root.
struct Layout {
    root: PathBuf,
    blobs: PathBuf,
    repos: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
}

impl Layout {
    fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn repo(&self, repo: &RepoName) -> PathBuf {
        self.repos.join(repo.as_str())
    }

    /// Takes the name as `&str` because a committing upload knows its repository only by
    /// the name stored in the session.
    fn layer_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repos
            .join(repo)
            .join("_layers")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn manifests(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_manifests")
    }

    fn manifest_link(&self, repo: &RepoName, d: &Digest) -> PathBuf {
        self.manifests(repo)
            .join("revisions")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn tags(&self, repo: &RepoName) -> PathBuf {
        self.manifests(repo).join("tags")
    }

    fn referrers(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    fn upload(&self, id: &str) -> PathBuf {
        self.uploads.join(id)
    }
}

/// A referrer record's file name: `<alg>-<hex>` (no `:`, which some filesystems dislike).
fn referrer_file_name(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().as_str(), d.hex())
}

fn parse_referrer_file_name(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// Locks a std mutex whose data stays consistent even if a holder panicked (plain maps).
fn lock<T>(m: &StdMutex<T>) -> StdMutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FsStorage {
    /// Opens (creating if needed) a data root. Does no scanning: indexes build lazily.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let root = root.into();
        let layout = Layout {
            blobs: root.join("blobs"),
            repos: root.join("repositories"),
            uploads: root.join("uploads"),
            tmp: root.join("tmp"),
            root,
        };
        fs::create_dir_all(&layout.root)?;
        for d in [&layout.blobs, &layout.repos, &layout.uploads, &layout.tmp] {
            ensure_dir(d)?;
        }
        Ok(FsStorage {
            inner: Arc::new(Inner {
                layout,
                sessions: StdMutex::new(HashMap::new()),
                catalog: Arc::new(Mutex::new(None)),
                tags: StdMutex::new(HashMap::new()),
                gate: Arc::new(RwLock::new(())),
            }),
        })
    }

    /// The data root this storage was opened on.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Takes a shared hold on the repository gate (see `Inner::gate`) for one change.
    async fn gate(&self) -> Gate {
        Arc::new(self.inner.gate.clone().read_owned().await)
    }

    /// Writes a small file atomically, off the async threads.
    async fn put_small(&self, gate: Gate, target: PathBuf, data: Vec<u8>) -> StorageResult<()> {
        let inner = self.inner.clone();
        blocking(move || {
            let _gate = gate;
            Ok(write_atomic(&inner.layout.tmp, &target, &data)?)
        })
        .await
    }

    /// Writes a link file unless it is already there (links are immutable: content = name).
    async fn put_link(&self, gate: Gate, target: PathBuf, digest: &Digest) -> StorageResult<()> {
        let data = digest.to_string();
        blocking(move || {
            let _gate = gate;
            if target.is_file() {
                return Ok(());
            }
            Ok(create_link(&target, data.as_bytes())?)
        })
        .await
    }

    async fn remove(&self, gate: Gate, target: PathBuf) -> StorageResult<()> {
        blocking(move || {
            let _gate = gate;
            remove_durable(&target)
        })
        .await
    }

    async fn is_file(&self, target: PathBuf) -> StorageResult<bool> {
        blocking(move || Ok(target.is_file())).await
    }

    /// Makes sure `repo` has its `_manifests` directory, i.e. exists in the catalog. The
    /// directory is created under the catalog lock so a concurrent first catalog build either
    /// sees it on disk or gets the name inserted afterwards. The caller's `gate` keeps a
    /// delete from removing the directory between this check and the caller's write.
    async fn ensure_repo(&self, gate: &Gate, repo: &RepoName) -> StorageResult<()> {
        let dir = self.layout().manifests(repo);
        let probe = dir.clone();
        if blocking(move || Ok(probe.is_dir())).await? {
            return Ok(());
        }
        let mut catalog = self.inner.catalog.clone().lock_owned().await;
        let name = repo.as_str().to_owned();
        let gate = gate.clone();
        // The guards move into the task, so a cancelled caller cannot leave disk and index
        // apart.
        blocking(move || {
            let _gate = gate;
            ensure_dir(&dir)?;
            if let Some(set) = catalog.as_mut() {
                set.insert(name);
            }
            Ok(())
        })
        .await
    }

    /// The tag-set slot of an existing repository; `NotFound` otherwise. Slots are made only
    /// for repositories on disk, so probing unknown names cannot grow the map.
    async fn tag_slot(&self, repo: &RepoName) -> StorageResult<TagSlot> {
        if let Some(slot) = lock(&self.inner.tags).get(repo.as_str()) {
            return Ok(slot.clone());
        }
        let manifests = self.layout().manifests(repo);
        let probe = manifests.clone();
        if !blocking(move || Ok(probe.is_dir())).await? {
            return Err(StorageError::NotFound);
        }
        let slot = lock(&self.inner.tags)
            .entry(repo.as_str().to_owned())
            .or_default()
            .clone();
        // A delete may have moved the repository away since the check, and dropped the slots
        // it found before this one was inserted: look again, so no slot outlives its
        // repository (a stale one would list the old tags of a deleted repository).
        if !blocking(move || Ok(manifests.is_dir())).await? {
            let mut map = lock(&self.inner.tags);
            if map
                .get(repo.as_str())
                .is_some_and(|s| Arc::ptr_eq(s, &slot))
            {
                map.remove(repo.as_str());
            }
            return Err(StorageError::NotFound);
        }
        Ok(slot)
    }

    /// Locks the repository's tag set, loading it from disk if needed. `NotFound` when the
    /// repository does not exist.
    async fn tags_loaded(
        &self,
        repo: &RepoName,
    ) -> StorageResult<tokio::sync::OwnedMutexGuard<Option<BTreeMap<String, Digest>>>> {
        let mut guard = self.tag_slot(repo).await?.lock_owned().await;
        if guard.is_some() {
            return Ok(guard);
        }
        let dir = self.layout().tags(repo);
        blocking(move || {
            *guard = Some(load_tags(&dir)?);
            Ok(guard)
        })
        .await
    }
}

/// Reads every tag file of a repository. Files that are not tags (stray temp names) are
/// skipped.
fn load_tags(dir: &Path) -> io::Result<BTreeMap<String, Digest>> {
    let mut map = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(map),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if Tag::parse(&name).is_err() {
            continue;
        }
        match read_digest_file(&entry.path()) {
            Ok(d) => {
                map.insert(name, d);
            }
            // Deleted between listing and reading: not a tag any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(map)
}

/// Walks `repositories/` for directories holding `_manifests`. Iterative, and pruned at any
/// component that is not a valid name (so it never descends into `_layers` and the like).
fn scan_repositories(base: &Path) -> io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(base.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if RepoName::parse(&full).is_err() {
                continue;
            }
            let path = entry.path();
            if path.join("_manifests").is_dir() {
                out.insert(full.clone());
            }
            stack.push((path, full));
        }
    }
    Ok(out)
}

/// Up to `n` items of `set` strictly after `last`.
fn page<'a>(iter: impl Iterator<Item = &'a String>, n: usize) -> Vec<String> {
    iter.take(n).cloned().collect()
}

fn after(last: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    match last {
        Some(l) => (Bound::Excluded(l), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

impl Storage for FsStorage {
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        let path = self.layout().blob(digest);
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> StorageResult<BlobRead> {
        let path = self.layout().blob(digest);
        let (file, total_size, start, end) = blocking(move || {
            let mut file = File::open(&path).map_err(not_found)?;
            let total = file.metadata()?.len();
            let (start, end) = range.unwrap_or((0, total));
            if start > end || end > total {
                return Err(StorageError::RangeNotSatisfiable { size: total });
            }
            if start > 0 {
                file.seek(SeekFrom::Start(start))?;
            }
            Ok((file, total, start, end))
        })
        .await?;
        let len = end - start;
        let reader = ChunkReader::new(tokio::runtime::Handle::current(), file, len);
        Ok(BlobRead {
            total_size,
            len,
            stream: Box::pin(reader),
        })
    }

    async fn blob_read_all(&self, digest: &Digest) -> StorageResult<Bytes> {
        let path = self.layout().blob(digest);
        blocking(move || Ok(Bytes::from(fs::read(&path).map_err(not_found)?))).await
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        let inner = self.inner.clone();
        let digest = digest.clone();
        blocking(move || {
            // Verified even when the blob exists: wrong bytes must not get an "ok".
            let computed = Digest::of(digest.algorithm(), &data);
            if computed != digest {
                return Err(StorageError::DigestMismatch {
                    expected: digest,
                    computed,
                });
            }
            let target = inner.layout.blob(&digest);
            if target.is_file() {
                return Ok(());
            }
            Ok(write_atomic(&inner.layout.tmp, &target, &data)?)
        })
        .await
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> StorageResult<()> {
        let gate = self.gate().await;
        self.put_link(
            gate,
            self.layout().layer_link(repo.as_str(), digest),
            digest,
        )
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> StorageResult<()> {
        let gate = self.gate().await;
        self.remove(gate, self.layout().layer_link(repo.as_str(), digest))
            .await
    }

    async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        self.is_file(self.layout().layer_link(repo.as_str(), digest))
            .await
    }

    async fn link_manifest(&self, repo: &RepoName, digest: &Digest) -> StorageResult<()> {
        let gate = self.gate().await;
        self.ensure_repo(&gate, repo).await?;
        self.put_link(gate, self.layout().manifest_link(repo, digest), digest)
            .await
    }

    async fn unlink_manifest(&self, repo: &RepoName, digest: &Digest) -> StorageResult<()> {
        let gate = self.gate().await;
        self.remove(gate, self.layout().manifest_link(repo, digest))
            .await
    }

    async fn manifest_linked(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        self.is_file(self.layout().manifest_link(repo, digest))
            .await
    }

    async fn tag_put(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<()> {
        let gate = self.gate().await;
        self.ensure_repo(&gate, repo).await?;
        // Hold the repository's tag lock across the write so the cached set and the disk
        // agree, and concurrent puts of one tag land in a definite order.
        let mut guard = self.tag_slot(repo).await?.lock_owned().await;
        let inner = self.inner.clone();
        let target = self.layout().tags(repo).join(tag.as_str());
        let (tag, digest) = (tag.as_str().to_owned(), digest.clone());
        blocking(move || {
            let _gate = gate;
            write_atomic(&inner.layout.tmp, &target, digest.to_string().as_bytes())?;
            if let Some(map) = guard.as_mut() {
                map.insert(tag, digest);
            }
            Ok(())
        })
        .await
    }

    async fn tag_get(&self, repo: &RepoName, tag: &Tag) -> StorageResult<Option<Digest>> {
        // Straight from disk: the file is replaced atomically, and this needs no lock.
        let path = self.layout().tags(repo).join(tag.as_str());
        blocking(move || match read_digest_file(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StorageResult<()> {
        // Gated too: it edits the cached tag set, which a delete drops.
        let gate = self.gate().await;
        let mut guard = self.tag_slot(repo).await?.lock_owned().await;
        let target = self.layout().tags(repo).join(tag.as_str());
        let tag = tag.as_str().to_owned();
        blocking(move || {
            let _gate = gate;
            remove_durable(&target)?;
            if let Some(map) = guard.as_mut() {
                map.remove(&tag);
            }
            Ok(())
        })
        .await
    }

    async fn tags_list(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> StorageResult<Vec<String>> {
        let guard = self.tags_loaded(repo).await?;
        Ok(match guard.as_ref() {
            Some(map) => page(map.range::<str, _>(after(last)).map(|(k, _)| k), n),
            None => Vec::new(),
        })
    }

    async fn tags_for(&self, repo: &RepoName, digest: &Digest) -> StorageResult<Vec<Tag>> {
        let guard = match self.tags_loaded(repo).await {
            Ok(g) => g,
            Err(StorageError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(map) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        Ok(map
            .iter()
            .filter(|(_, d)| *d == digest)
            .filter_map(|(t, _)| Tag::parse(t).ok())
            .collect())
    }

    async fn referrer_add(
        &self,
        repo: &RepoName,
        subject: &Digest,
        record: ReferrerRecord,
    ) -> StorageResult<()> {
        let gate = self.gate().await;
        let target = self
            .layout()
            .referrers(repo, subject)
            .join(referrer_file_name(&record.digest));
        self.put_small(gate, target, record.descriptor_json.to_vec())
            .await
    }

    async fn referrer_remove(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> StorageResult<()> {
        let gate = self.gate().await;
        let target = self
            .layout()
            .referrers(repo, subject)
            .join(referrer_file_name(referrer));
        self.remove(gate, target).await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> StorageResult<Vec<ReferrerRecord>> {
        let dir = self.layout().referrers(repo, subject);
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry?;
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(parse_referrer_file_name)
                else {
                    continue;
                };
                match fs::read(entry.path()) {
                    Ok(json) => out.push(ReferrerRecord {
                        digest,
                        descriptor_json: Bytes::from(json),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            out.sort_by(|a, b| a.digest.cmp(&b.digest));
            Ok(out)
        })
        .await
    }

    async fn repositories(&self, last: Option<&str>, n: usize) -> StorageResult<Vec<String>> {
        let mut guard = self.inner.catalog.clone().lock_owned().await;
        if guard.is_none() {
            let base = self.layout().repos.clone();
            guard = blocking(move || {
                *guard = Some(scan_repositories(&base)?);
                Ok(guard)
            })
            .await?;
        }
        Ok(match guard.as_ref() {
            Some(set) => page(set.range::<str, _>(after(last)), n),
            None => Vec::new(),
        })
    }

    async fn delete_repository(&self, repo: &RepoName) -> StorageResult<bool> {
        self.delete_repo(repo).await
    }

    async fn upload_start(&self, repo: &RepoName) -> StorageResult<UploadId> {
        self.start_upload(repo).await
    }

    async fn upload_size(&self, repo: &RepoName, id: &UploadId) -> StorageResult<u64> {
        self.size_of_upload(repo, id).await
    }

    async fn upload_append(
        &self,
        repo: &RepoName,
        id: &UploadId,
        offset: Option<u64>,
        body: super::BodyStream,
        limit: u64,
    ) -> StorageResult<u64> {
        self.append_upload(repo, id, offset, body, limit).await
    }

    async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> StorageResult<u64> {
        self.finish_upload(repo, id, digest).await
    }

    async fn upload_cancel(&self, repo: &RepoName, id: &UploadId) -> StorageResult<()> {
        self.cancel_upload(repo, id).await
    }

    async fn uploads_purge(&self, max_age: Duration) -> StorageResult<usize> {
        self.purge_uploads(max_age).await
    }

    async fn free_space(&self) -> StorageResult<Option<u64>> {
        // statvfs on a local filesystem answers from memory: no need for the blocking pool.
        let st = rustix::fs::statvfs(self.root()).map_err(io::Error::from)?;
        Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
    }

    async fn check_writable(&self) -> StorageResult<()> {
        let tmp = self.layout().tmp.clone();
        blocking(move || {
            let probe = tmp.join(".readiness-probe");
            let mut f = std::fs::File::create(&probe)?;
            std::io::Write::write_all(&mut f, b"ok")?;
            f.sync_all()?;
            Ok(std::fs::remove_file(&probe)?)
        })
        .await
    }
}

/// Links a blob into a repository from blocking code (used when an upload commits). Takes
/// the gate itself, and only for the link: hashing a large upload must not hold up a delete.
fn link_blob_blocking(inner: &Inner, repo: &str, digest: &Digest) -> io::Result<()> {
    let _gate = inner.gate.blocking_read();
    let target = inner.layout.layer_link(repo, digest);
    if target.is_file() {
        return Ok(());
    }
    create_link(&target, digest.to_string().as_bytes())
}
