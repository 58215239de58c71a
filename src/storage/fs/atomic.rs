//! The crash-safety primitives of the filesystem backend: durable directory creation,
//! atomic small-file replacement (temp file, fsync, rename, fsync of the directory), and the
//! bridge that runs blocking `std::fs` work off the async threads. Every other part of the
//! backend writes through these, so "a crash leaves old or new, never half" is argued once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha512};

use crate::registry::names::{Algorithm, Digest};
use crate::storage::{StorageError, StorageResult};

/// Size of the buffers blocking reads and writes work in: large enough that per-call
/// overhead (syscalls, task hand-offs) vanishes next to the copying.
pub(super) const CHUNK: usize = 1 << 20;

/// Runs blocking filesystem work on tokio's blocking pool.
pub(super) async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    F: FnOnce() -> StorageResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(join_error(e)),
    }
}

pub(super) fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io(io::Error::other(format!("storage task failed: {e}")))
}

/// Maps "no such file" to `NotFound` for operations where absence is the answer.
pub(super) fn not_found(e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        StorageError::Io(e)
    }
}

/// 16 random bytes as 32 lowercase hex characters (upload ids, temp file names).
pub(super) fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    Ok(hex::encode(b))
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, fsyncing each new directory's parent so the
/// new entry survives a crash. Cheap (one `stat`) when the directory already exists.
pub(super) fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", dir.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("cannot create a filesystem root"))?;
    ensure_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another task won the race; its entry may not be synced yet, so sync anyway.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    sync_dir(parent)
}

/// Replaces `target` with `data` atomically and durably: a reader (or a crash) sees either
/// the old file or the complete new one. The temp file lives in `tmp_dir`, which must be on
/// the same filesystem as `target`.
pub(super) fn write_atomic(tmp_dir: &Path, target: &Path, data: &[u8]) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("target has no parent directory"))?;
    ensure_dir(parent)?;
    let tmp = tmp_dir.join(random_hex()?);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, target)?;
        sync_dir(parent)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Records a link (`_layers/…`, `_manifests/revisions/…`): a file whose name is the digest
/// and whose existence is the record, made durable by fsyncing its directory. The content,
/// the digest string for people reading the tree, is written but not fsynced, and nothing
/// reads it: after a crash it may be empty, and the link still says what it said. That is
/// one fsync fewer per link than `write_atomic` (per blob upload, four become three).
/// Existing links are left as they are.
pub(super) fn create_link(target: &Path, content: &[u8]) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("link has no parent directory"))?;
    ensure_dir(parent)?;
    match OpenOptions::new().write(true).create_new(true).open(target) {
        Ok(mut f) => {
            if let Err(e) = f.write_all(content) {
                // Failed (a full disk): no link, as if never begun.
                let _ = fs::remove_file(target);
                return Err(e);
            }
        }
        // Another request linked it; its entry may not be synced yet, so sync anyway.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    sync_dir(parent)
}

/// Removes a file durably; `NotFound` when it was not there.
pub(super) fn remove_durable(path: &Path) -> StorageResult<()> {
    fs::remove_file(path).map_err(not_found)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes a directory tree durably; absent is fine (the goal is "gone").
pub(super) fn remove_tree_durable(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Feeds everything `r` yields into `h`; returns the byte count.
pub(super) fn feed<H: sha2::Digest>(r: &mut impl Read, h: &mut H) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
}

/// Hashes everything `r` yields under `algorithm`; returns the digest and the byte count.
pub(super) fn hash_reader(mut r: impl Read, algorithm: Algorithm) -> io::Result<(Digest, u64)> {
    match algorithm {
        Algorithm::Sha256 => {
            let mut h = Sha256::new();
            let n = feed(&mut r, &mut h)?;
            Ok((Digest::from_raw(algorithm, &h.finalize()), n))
        }
        Algorithm::Sha512 => {
            let mut h = Sha512::new();
            let n = feed(&mut r, &mut h)?;
            Ok((Digest::from_raw(algorithm, &h.finalize()), n))
        }
    }
}

/// Reads a small file holding a digest string (tag, link).
pub(super) fn read_digest_file(path: &Path) -> io::Result<Digest> {
    let s = fs::read_to_string(path)?;
    Digest::parse(s.trim()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}
