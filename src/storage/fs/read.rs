//! Streaming a blob file to a response. Each chunk is read by one blocking-pool task, and
//! the next read starts as soon as a chunk is handed out, so disk (or page cache) and network
//! overlap. No thread is parked per download: a slow client only holds an open file and one
//! chunk, which matters when hundreds of pulls trickle along at once.
//!
//! A chunk is the file's own pages where possible: the blocking task maps the chunk
//! read-only with `MAP_POPULATE` (so any disk read happens there, not on the async workers),
//! checks with `mincore` that every page is resident, and hands the mapping out; TLS then
//! encrypts straight from the page cache. That saves the copy `read()` makes, a fifth of
//! the server's CPU in a 1 GiB pull (perf). The check matters: touching a mapped page the
//! kernel cannot provide (a read error, a file cut short behind our back) raises SIGBUS and
//! would end the process, so anything not resident is read with `read()` instead, where such
//! failures are ordinary errors for one request. Blob files are immutable once committed
//! (written aside, renamed into place; deletion only unlinks), so a mapped chunk cannot change.
//!
//! Buffers for `read()` come from a small pool and go back to it when the response has sent
//! them: a fresh 1 MiB allocation is a new mapping (main.rs fixes glibc's mmap threshold at
//! 128 KiB), and faulting in and zeroing its 256 pages cost ~15% of the CPU of a 1 GiB pull.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::atomic::CHUNK;

type ChunkResult = io::Result<(File, Bytes)>;

/// Chunk buffers kept for reuse: enough for a few downloads in flight (each holds one being
/// read and one being sent); more are allocated as needed and freed when sent.
const POOLED_BUFFERS: usize = 8;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn take_buffer() -> Vec<u8> {
    let pooled = POOL.lock().ok().and_then(|mut pool| pool.pop());
    pooled.unwrap_or_else(|| Vec::with_capacity(CHUNK))
}

fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() != CHUNK {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    }
}

/// A chunk on its way to the client; its buffer returns to the pool when the response is
/// done with it.
struct PooledChunk(Vec<u8>);

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// A read-only private mapping of part of a blob file; `[start, start + len)` of it is the
/// chunk (the mapping itself starts at a page boundary).
struct MappedChunk {
    ptr: std::ptr::NonNull<libc::c_void>,
    map_len: usize,
    start: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; it is unmapped once, on drop.
unsafe impl Send for MappedChunk {}
unsafe impl Sync for MappedChunk {}

impl MappedChunk {
    /// Maps `len` bytes of `file` at `offset` and returns them only if every page is resident;
    /// `None` when that cannot be promised (the caller reads instead).
    fn map(file: &File, offset: u64, len: usize) -> Option<MappedChunk> {
        use std::os::fd::AsRawFd;
        let page = page_size();
        let aligned = offset - offset % page as u64;
        let start = (offset - aligned) as usize;
        let map_len = start + len;
        let file_offset = libc::off_t::try_from(aligned).ok()?;
        // The last page of a file reads as zeros past its end: map only what the file has.
        let size = file.metadata().ok()?.len();
        if offset.checked_add(len as u64)? > size {
            return None;
        }
        // SAFETY: a new read-only private mapping of a file we hold open; no existing memory
        // is affected. MAP_POPULATE reads the pages in here, on a blocking-pool thread.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let chunk = MappedChunk {
            ptr: std::ptr::NonNull::new(raw)?,
            map_len,
            start,
            len,
        };
        chunk.all_resident(page).then_some(chunk)
    }

    /// Whether every page of the mapping is in memory: pages beyond the end of the file, or
    /// ones populating could not read, are not, and touching them would raise SIGBUS.
    fn all_resident(&self, page: usize) -> bool {
        let mut residency = vec![0u8; self.map_len.div_ceil(page)];
        // SAFETY: the range is exactly our own mapping; `residency` has one byte per page.
        let rc = unsafe { libc::mincore(self.ptr.as_ptr(), self.map_len, residency.as_mut_ptr()) };
        rc == 0 && residency.iter().all(|r| r & 1 == 1)
    }
}

impl AsRef<[u8]> for MappedChunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start + len == map_len` bytes are mapped readable for the life of `self`,
        // and the file behind them is never modified (see the module comment).
        unsafe {
            std::slice::from_raw_parts((self.ptr.as_ptr() as *const u8).add(self.start), self.len)
        }
    }
}

impl Drop for MappedChunk {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` created; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.map_len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Yields `remaining` bytes of `file` from its current position, in chunks of up to `CHUNK`.
/// `Send + Sync` (a `File`, a `JoinHandle` and a runtime handle), as the response body needs.
pub(super) struct ChunkReader {
    handle: Handle,
    file: Option<File>,
    remaining: u64,
    pending: Option<JoinHandle<ChunkResult>>,
}

impl ChunkReader {
    /// Must be called inside a tokio runtime; the stream then spawns its reads on that runtime
    /// wherever it is polled.
    pub(super) fn new(handle: Handle, file: File, len: u64) -> Self {
        ChunkReader {
            handle,
            file: Some(file),
            remaining: len,
            pending: None,
        }
    }

    /// Starts reading the next chunk unless everything has been read (or the file is away).
    fn start_next(&mut self) {
        if self.remaining == 0 {
            return;
        }
        let Some(file) = self.file.take() else {
            return;
        };
        let n = self.remaining.min(CHUNK as u64);
        self.remaining -= n;
        self.pending = Some(self.handle.spawn_blocking(move || read_chunk(file, n)));
    }
}

/// The next `n` bytes of `file` (from its position, which moves past them): mapped when the
/// pages can be promised, read otherwise.
fn read_chunk(file: File, n: u64) -> ChunkResult {
    use std::io::{Seek, SeekFrom};
    let mut handle = &file;
    let offset = handle.stream_position()?;
    if let Some(chunk) = MappedChunk::map(&file, offset, n as usize) {
        handle.seek(SeekFrom::Current(n as i64))?;
        return Ok((file, Bytes::from_owner(chunk)));
    }
    let (file, buf) = copy_chunk(file, n)?;
    Ok((file, Bytes::from_owner(PooledChunk(buf))))
}

/// `read_chunk` with `read()` into a pooled buffer.
fn copy_chunk(file: File, n: u64) -> io::Result<(File, Vec<u8>)> {
    let mut buf = take_buffer();
    // `read_to_end` fills the spare capacity without zeroing it first.
    let read = (&file).take(n).read_to_end(&mut buf);
    if let Err(e) = read {
        give_back(buf);
        return Err(e);
    }
    if (buf.len() as u64) < n {
        give_back(buf);
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file shorter than expected",
        ));
    }
    Ok((file, buf))
}

impl Stream for ChunkReader {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.pending.is_none() {
            this.start_next();
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let res = match Pin::new(pending).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        this.pending = None;
        match res {
            Ok(Ok((file, buf))) => {
                this.file = Some(file);
                // Read ahead while the caller sends this chunk.
                this.start_next();
                Poll::Ready(Some(Ok(buf)))
            }
            Ok(Err(e)) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(e)))
            }
            Err(e) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(io::Error::other(format!(
                    "read task failed: {e}"
                )))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Chunks come out right from any start offset, page-aligned or not, across chunk
    /// boundaries (the mapped path: the files are in the page cache).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_from_unaligned_offsets() {
        use std::io::{Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(2 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).unwrap();
        for start in [0usize, 1, 4095, 4096, 5000, CHUNK - 1, CHUNK + 3] {
            let mut file = File::open(&path).unwrap();
            file.seek(SeekFrom::Start(start as u64)).unwrap();
            let len = (data.len() - start) as u64;
            let mut reader = ChunkReader::new(Handle::current(), file, len);
            let mut out = Vec::new();
            while let Some(chunk) = reader.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            assert!(out == data[start..], "start {start}");
        }
    }

    /// A file shorter than the stream expects (cut behind holdfast's back) is an error for
    /// that request: never mapped past its end, where touching a page would raise SIGBUS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_file_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(MappedChunk::map(&file, 0, CHUNK).is_none());
        assert!(MappedChunk::map(&file, 8192, 4096).is_none());
        assert!(MappedChunk::map(&file, 0, 10_000).is_some());
        let mut reader = ChunkReader::new(Handle::current(), file, 3 * CHUNK as u64);
        let err = reader.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Buffers for `read()` go back to the pool and are reused: what a later, shorter read
    /// returns must be exactly its own bytes, never the tail of an earlier chunk.
    #[test]
    fn pooled_buffers_carry_only_their_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<u8> = (0..(CHUNK - 3)).map(|i| (i % 251) as u8).collect();
        let second: Vec<u8> = (0..7_000).map(|i| (i % 13) as u8 + 100).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &first).unwrap();
        std::fs::write(&b, &second).unwrap();
        for _ in 0..3 {
            for data in [&first, &second] {
                let path = if data.len() == first.len() { &a } else { &b };
                let (_, buf) = copy_chunk(File::open(path).unwrap(), data.len() as u64).unwrap();
                assert!(&buf == data);
                give_back(buf);
            }
        }
        assert!(POOL.lock().unwrap().len() <= POOLED_BUFFERS);
    }
}
