//! Streaming a blob file to a response. Each chunk is read by one blocking-pool task, and
//! the next read starts as soon as a chunk is handed out, so disk (or page cache) and network
//! overlap. No thread is parked per download: a slow client only holds an open file and one
//! chunk, which matters when hundreds of pulls trickle along at once.
//!
//! Chunk buffers come from a small pool and go back to it when the response has sent them:
//! a fresh 1 MiB allocation is a new mapping (main.rs fixes glibc's mmap threshold at
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

type ChunkResult = io::Result<(File, Vec<u8>)>;

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

fn read_chunk(file: File, n: u64) -> ChunkResult {
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
                Poll::Ready(Some(Ok(Bytes::from_owner(PooledChunk(buf)))))
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

    async fn stream_all(path: &std::path::Path) -> Vec<u8> {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut reader = ChunkReader::new(Handle::current(), file, len);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// Buffers go back to the pool and are reused: what a later, shorter file streams must be
    /// exactly its own bytes, never the tail of an earlier chunk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pooled_buffers_carry_only_their_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<u8> = (0..(2 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        let second: Vec<u8> = (0..(CHUNK + 7)).map(|i| (i % 13) as u8 + 100).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &first).unwrap();
        std::fs::write(&b, &second).unwrap();
        for _ in 0..3 {
            assert!(stream_all(&a).await == first);
            assert!(stream_all(&b).await == second);
        }
        assert!(POOL.lock().unwrap().len() <= POOLED_BUFFERS);
    }
}
