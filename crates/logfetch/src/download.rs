//! Reading a response body without holding more than a bound in memory.

use bytes::Bytes;
use http_body_util::BodyExt;

/// A downloaded log: its end (at most the cap) and its full size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Download {
    /// The last `cap` bytes of the body (all of it when it fits).
    pub bytes: Vec<u8>,
    /// How many bytes the body had.
    pub total: u64,
}

/// Accumulates chunks, keeping only the last `cap` bytes.
#[derive(Debug)]
pub(crate) struct TailBuffer {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl TailBuffer {
    pub(crate) fn new(cap: usize) -> Self {
        TailBuffer {
            buf: Vec::new(),
            cap: cap.max(1),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.buf.extend_from_slice(chunk);
        // Compact lazily so each byte is moved O(1) times on average.
        if self.buf.len() >= self.cap.saturating_mul(2) {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    pub(crate) fn finish(mut self) -> Download {
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
        Download {
            bytes: self.buf,
            total: self.total,
        }
    }
}

/// Streams an octocrab (hyper) body into a [`TailBuffer`].
pub(crate) async fn read_http_body<B>(mut body: B, cap: usize) -> Result<Download, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut tail = TailBuffer::new(cap);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            tail.push(&data);
        }
    }
    Ok(tail.finish())
}

/// Streams a reqwest body into a [`TailBuffer`].
pub(crate) async fn read_reqwest(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Download, reqwest::Error> {
    let mut tail = TailBuffer::new(cap);
    while let Some(chunk) = resp.chunk().await? {
        tail.push(&chunk);
    }
    Ok(tail.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_cap_bytes_and_counts_all() {
        let mut t = TailBuffer::new(10);
        for i in 0..100u8 {
            t.push(&[i, i]);
        }
        let d = t.finish();
        assert_eq!(d.total, 200);
        assert_eq!(d.bytes, vec![95, 95, 96, 96, 97, 97, 98, 98, 99, 99]);
        let mut t = TailBuffer::new(10);
        t.push(b"abc");
        assert_eq!(t.finish().bytes, b"abc");
    }
}
