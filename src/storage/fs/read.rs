//! Streaming a blob file to a response. Each chunk is read by one blocking-pool task, and
//! the next read starts as soon as a chunk is handed out, so disk (or page cache) and network
//! overlap. No thread is parked per download: a slow client only holds an open file and one
//! chunk, which matters when hundreds of pulls trickle along at once.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::atomic::CHUNK;

type ChunkResult = io::Result<(File, Vec<u8>)>;

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
    let mut buf = Vec::with_capacity(n as usize);
    // `read_to_end` fills the spare capacity without zeroing it first.
    (&file).take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
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
                Poll::Ready(Some(Ok(Bytes::from(buf))))
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
