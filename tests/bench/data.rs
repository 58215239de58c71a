//! Synthetic blob content that costs no memory per blob: a short header that makes each blob
//! unique (so no two pushes are deduplicated) followed by a shared pool of pseudo-random
//! bytes, repeated as often as the blob's length needs. Blobs are streamed as request bodies
//! in pieces and hashed once, outside any timed section.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::Digest as _;

/// How large the pieces of a streamed body are.
pub const PIECE: usize = 1 << 20;

/// The pieces of a `bytes`-long stream cut from a pool of `pool_len` bytes, repeated: ranges
/// into the pool of at most `PIECE` bytes that never cross its end and add up to `bytes`.
pub fn pool_pieces(pool_len: usize, bytes: u64) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut done = 0u64;
    std::iter::from_fn(move || {
        (done < bytes && pool_len > 0).then(|| {
            let off = (done % pool_len as u64) as usize;
            let n = (bytes - done)
                .min(PIECE as u64)
                .min((pool_len - off) as u64) as usize;
            done += n as u64;
            off..off + n
        })
    })
}

/// Deterministic pseudo-random bytes (splitmix64).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tiny deterministic PRNG for choosing sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A blob's content: `head`, then `pool` repeated, cut at `len` bytes.
#[derive(Clone)]
pub struct Synth {
    head: Bytes,
    pool: Bytes,
    len: u64,
}

impl Synth {
    /// A blob of `len` bytes made unique by `label` (different labels, different digests).
    pub fn new(pool: &Bytes, label: &str, len: u64) -> Synth {
        assert!(!pool.is_empty(), "empty data pool");
        let head = format!("holdfast-bench {label}\n").into_bytes();
        let head = Bytes::from(head);
        assert!(len >= head.len() as u64, "blob shorter than its header");
        Synth {
            head,
            pool: pool.clone(),
            len,
        }
    }

    /// A blob whose content is exactly `data` (small JSON such as image configs).
    pub fn exact(data: Vec<u8>) -> Synth {
        let len = data.len() as u64;
        Synth {
            head: Bytes::from(data),
            pool: Bytes::new(),
            len,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The bytes in `[start, end)` as pieces of at most `piece` bytes (cheap slices).
    pub fn pieces(&self, start: u64, end: u64, piece: usize) -> Vec<Bytes> {
        assert!(start <= end && end <= self.len, "range outside the blob");
        let mut out = Vec::new();
        let mut pos = start;
        let h = self.head.len() as u64;
        while pos < end {
            let (src, off, avail) = if pos < h {
                (&self.head, pos as usize, h - pos)
            } else {
                let p = self.pool.len() as u64;
                let off = (pos - h) % p;
                (&self.pool, off as usize, p - off)
            };
            let n = avail.min(end - pos).min(piece as u64) as usize;
            out.push(src.slice(off..off + n));
            pos += n as u64;
        }
        out
    }

    /// `sha256:<hex>` of the whole blob.
    pub fn digest(&self) -> String {
        let mut h = sha2::Sha256::new();
        for p in self.pieces(0, self.len, PIECE) {
            h.update(&p);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// A request body for `[start, end)`. With `exact_len` the body announces its length
    /// (HTTP/1.1 `Content-Length`); without, it is sent with chunked transfer encoding, as
    /// docker sends its one `PATCH`.
    pub fn body(&self, start: u64, end: u64, exact_len: bool) -> reqwest::Body {
        let pieces: VecDeque<Bytes> = self.pieces(start, end, PIECE).into();
        reqwest::Body::wrap(PiecesBody {
            remaining: end - start,
            pieces,
            exact_len,
        })
    }
}

/// A request body yielding prepared pieces.
struct PiecesBody {
    pieces: VecDeque<Bytes>,
    remaining: u64,
    exact_len: bool,
}

impl Body for PiecesBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.pieces.pop_front() {
            Some(b) => {
                self.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exact_len && self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact_len {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}
