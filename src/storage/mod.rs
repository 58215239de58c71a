//! Where content lives. The `Storage` trait is everything the registry asks of a backend:
//! a content-addressed blob store, per-repository links (so a repository serves only what it
//! holds), tags, referrer records, a catalog of repositories, and resumable upload sessions.
//! It knows nothing of HTTP; the filesystem backend (`fs`) is the default, and the trait is
//! shaped so an object store (S3) can implement it too: whole-object puts, no directory
//! listings in hot paths, no in-place edits.

pub mod fs;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::registry::names::{Digest, RepoName, Tag};

pub use fs::FsStorage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (blob, link, tag, upload session) does not exist, or is not visible from
    /// the repository that asked.
    #[error("not found")]
    NotFound,
    /// What was written does not hash to the digest the client claimed.
    #[error("digest mismatch: expected {expected}, computed {computed}")]
    DigestMismatch { expected: Digest, computed: Digest },
    /// A chunk does not start where the upload currently ends.
    #[error("chunk starts at {got}, but the upload is {expected} bytes long")]
    OffsetMismatch { expected: u64, got: u64 },
    /// A requested byte range lies outside the object.
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// The body would exceed the configured maximum size.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The client's body stream failed (disconnect, protocol error) part-way.
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A stream of a request body's bytes, as the HTTP layer hands it over.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + Sync>>;

/// A stream of stored bytes for a response. `Sync` because warp's response body wants it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + Sync>>;

/// An opened blob (or a byte range of it), ready to stream.
pub struct BlobRead {
    /// Size of the whole blob.
    pub total_size: u64,
    /// Bytes that `stream` yields (`end - start` for a range).
    pub len: u64,
    pub stream: ByteStream,
}

/// An upload session's identity. Ids are random and opaque (URL-safe, 32 hex chars).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(pub String);

impl UploadId {
    /// Accepts only the shape we generate, so an id is always safe as a file name.
    pub fn parse(s: &str) -> Option<UploadId> {
        let ok = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| UploadId(s.to_owned()))
    }
}

/// One stored referrer of a subject manifest: its descriptor as the referrers API returns
/// it (mediaType, digest, size, artifactType, annotations), serialized JSON.
#[derive(Debug, Clone)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub descriptor_json: Bytes,
}

/// The storage backend. Every method is safe to call concurrently; writes are durable when
/// the returned future resolves `Ok` (an acknowledged write survives a crash).
pub trait Storage: Send + Sync + 'static {
    // ---- blobs (content-addressed, global) ----

    /// Size of a stored blob, `None` when absent.
    fn blob_size(&self, digest: &Digest)
        -> impl Future<Output = StorageResult<Option<u64>>> + Send;

    /// Opens a blob for streaming, optionally only `range` = [start, end) (end exclusive,
    /// already clamped to the size by the caller via `blob_size`).
    fn blob_read(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = StorageResult<BlobRead>> + Send;

    /// Reads a whole small blob (manifests) into memory.
    fn blob_read_all(&self, digest: &Digest) -> impl Future<Output = StorageResult<Bytes>> + Send;

    /// Stores `data` as a blob after checking it hashes to `digest`. Idempotent.
    fn blob_put(
        &self,
        digest: &Digest,
        data: Bytes,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    // ---- repository links ----

    /// Records that `repo` holds the layer/config blob `digest`.
    fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn blob_linked(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// Records that `repo` holds the manifest `digest` (whose bytes are a blob). Registers the
    /// repository in the catalog.
    fn link_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn unlink_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn manifest_linked(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    // ---- tags ----

    /// Points `tag` at `digest` (atomic replace).
    fn tag_put(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn tag_get(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> impl Future<Output = StorageResult<Option<Digest>>> + Send;
    /// Removes the tag; `NotFound` when there was none.
    fn tag_delete(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    /// Tags of `repo` in lexical order, those strictly after `last`, at most `n`.
    /// `NotFound` when the repository does not exist.
    fn tags_list(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> impl Future<Output = StorageResult<Vec<String>>> + Send;
    /// Every tag of `repo` pointing at `digest` (for deleting a manifest by digest).
    fn tags_for(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<Vec<Tag>>> + Send;

    // ---- referrers ----

    fn referrer_add(
        &self,
        repo: &RepoName,
        subject: &Digest,
        record: ReferrerRecord,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    fn referrer_remove(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    /// Referrers of `subject` in `repo`, sorted by digest; empty when none.
    fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> impl Future<Output = StorageResult<Vec<ReferrerRecord>>> + Send;

    // ---- whole repositories ----

    /// Removes the repository: its tags, manifest links, layer links and referrers (content
    /// stays in `blobs/` until garbage collection). `Ok(false)` when there was no such repository.
    /// Another repository nested under the name (`a/b` when deleting `a`) is untouched.
    /// A name holding only layer links (an unfinished push) counts as a repository here, so
    /// deleting again finishes a delete that a crash interrupted. Upload sessions bound to the
    /// repository are cancelled, except one busy with a request at that moment: if that one
    /// later finishes, its blob link starts a new repository holding just that blob (as a
    /// push of a layer into a new name would).
    fn delete_repository(
        &self,
        repo: &RepoName,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    // ---- catalog ----

    /// Repository names in lexical order, strictly after `last`, at most `n`. The cost of a
    /// page must not grow with the number of repositories.
    fn repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> impl Future<Output = StorageResult<Vec<String>>> + Send;

    // ---- upload sessions ----

    /// Starts an upload session bound to `repo`.
    fn upload_start(&self, repo: &RepoName)
        -> impl Future<Output = StorageResult<UploadId>> + Send;

    /// Bytes received so far. `NotFound` when the id is unknown *or bound to another repo*.
    fn upload_size(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Appends `body` to the upload. With `offset`, the chunk must start exactly at the
    /// current end (`OffsetMismatch` otherwise, nothing written). Fails with `TooLarge` if
    /// the upload would exceed `limit` bytes. Returns the new size. On a body error the bytes
    /// received so far stay appended (the upload remains a valid prefix and can resume).
    fn upload_append(
        &self,
        repo: &RepoName,
        id: &UploadId,
        offset: Option<u64>,
        body: BodyStream,
        limit: u64,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Verifies the upload hashes to `digest`, makes it a blob (fsync + rename), links it into
    /// `repo`, and removes the session. On `DigestMismatch` the session is removed too (the
    /// spec says the upload fails). Returns the blob's size.
    fn upload_finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Cancels and removes the session.
    fn upload_cancel(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Removes sessions untouched for longer than `max_age`; returns how many.
    fn uploads_purge(&self, max_age: Duration)
        -> impl Future<Output = StorageResult<usize>> + Send;

    // ---- health ----

    /// Free bytes where content is written, when the backend can tell (`None`: unlimited or
    /// unknown, e.g. an object store).
    fn free_space(&self) -> impl Future<Output = StorageResult<Option<u64>>> + Send {
        async { Ok(None) }
    }

    /// Proves the backend accepts durable writes right now (for readiness checks).
    fn check_writable(&self) -> impl Future<Output = StorageResult<()>> + Send;
}
