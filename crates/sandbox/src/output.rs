//! A bounded buffer that keeps the tail of a byte stream.

use std::collections::VecDeque;

/// Keeps the last `cap` bytes written and counts all of them.
#[derive(Debug)]
pub(crate) struct TailBuffer {
    cap: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl TailBuffer {
    pub(crate) fn new(cap: usize) -> Self {
        TailBuffer {
            cap,
            buf: VecDeque::with_capacity(cap.min(8 * 1024)),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let data = if data.len() > self.cap {
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes as text. When the front was dropped, a partial UTF-8 sequence at
    /// the cut is skipped rather than shown as a replacement character.
    pub(crate) fn to_string_lossy(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let start = if self.total > bytes.len() as u64 {
            bytes
                .iter()
                .take(4)
                .position(|b| (b & 0b1100_0000) != 0b1000_0000)
                .unwrap_or(0)
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail_and_counts_everything() {
        let mut t = TailBuffer::new(8);
        t.push(b"hello ");
        t.push(b"world!");
        assert_eq!(t.to_string_lossy(), "o world!");
        assert_eq!(t.total(), 12);
        t.push(b"0123456789abcdef");
        assert_eq!(t.to_string_lossy(), "89abcdef");
        assert_eq!(t.total(), 28);
    }

    #[test]
    fn skips_a_utf8_sequence_cut_in_half() {
        let mut t = TailBuffer::new(4);
        t.push("xé€".as_bytes()); // 1 + 2 + 3 bytes; the tail starts inside 'é'
        assert_eq!(t.to_string_lossy(), "€");
    }
}
