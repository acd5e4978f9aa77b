//! The replication backlog: the last `repl-backlog-size` bytes of the replication stream, with
//! the stream offset of each byte, so a replica that was away briefly continues where it left
//! off (`+CONTINUE`) instead of loading a whole snapshot.
//!
//! Offsets count bytes of the stream since its replication id began, as Redis's
//! `master_repl_offset` does: the stream's next byte has offset [`Backlog::end`].

use std::collections::VecDeque;

/// A bounded window of the replication stream.
#[derive(Debug)]
pub struct Backlog {
    bytes: VecDeque<u8>,
    /// Offset of `bytes[0]`.
    start: u64,
    capacity: usize,
}

impl Backlog {
    /// An empty backlog keeping at most `capacity` bytes, whose next byte has offset `end`.
    pub fn new(capacity: usize, end: u64) -> Backlog {
        Backlog {
            bytes: VecDeque::new(),
            start: end,
            capacity: capacity.max(1),
        }
    }

    /// Offset of the next byte to be appended (`master_repl_offset`).
    #[inline]
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Offset of the oldest byte kept (`repl_backlog_first_byte_offset`, less one: Redis counts
    /// from 1).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes kept (`repl_backlog_histlen`).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The most bytes kept (`repl_backlog_size`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the most bytes kept, dropping the oldest if the window shrinks.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }

    /// Appends bytes of the stream.
    pub fn append(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        self.trim();
    }

    fn trim(&mut self) {
        let excess = self.bytes.len().saturating_sub(self.capacity);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.start += excess as u64;
        }
    }

    /// Whether the stream from `offset` on is still here (or is the empty future).
    pub fn holds(&self, offset: u64) -> bool {
        offset >= self.start && offset <= self.end()
    }

    /// Copies up to `max` bytes of the stream from `offset` into `out`; `None` if they are no
    /// longer (or not yet) here.
    pub fn read(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if !self.holds(offset) {
            return None;
        }
        let from = (offset - self.start) as usize;
        let n = (self.bytes.len() - from).min(max);
        let (a, b) = self.bytes.as_slices();
        if from < a.len() {
            let first = (a.len() - from).min(n);
            out.extend_from_slice(&a[from..from + first]);
            out.extend_from_slice(&b[..n - first]);
        } else {
            let from = from - a.len();
            out.extend_from_slice(&b[from..from + n]);
        }
        Some(n)
    }

    /// Forgets everything and starts again at `end` (a new replication history).
    pub fn reset(&mut self, end: u64) {
        self.bytes.clear();
        self.start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_offsets_across_wrap_around() {
        let mut b = Backlog::new(10, 100);
        assert_eq!((b.start(), b.end()), (100, 100));
        b.append(b"abcdef");
        b.append(b"ghijkl");
        // 12 bytes in a 10-byte window: "ab" fell out.
        assert_eq!((b.start(), b.end(), b.len()), (102, 112, 10));
        let mut out = Vec::new();
        assert_eq!(b.read(104, 100, &mut out), Some(8));
        assert_eq!(out, b"efghijkl");
        out.clear();
        assert_eq!(b.read(102, 3, &mut out), Some(3));
        assert_eq!(out, b"cde");
        assert_eq!(b.read(101, 3, &mut out), None, "gone");
        assert_eq!(b.read(113, 3, &mut out), None, "not yet");
        out.clear();
        assert_eq!(b.read(112, 3, &mut out), Some(0));
        b.append(b"mno");
        out.clear();
        assert_eq!(b.read(111, 10, &mut out), Some(4));
        assert_eq!(out, b"lmno");
    }

    #[test]
    fn shrinking_drops_the_oldest() {
        let mut b = Backlog::new(100, 0);
        b.append(b"0123456789");
        b.set_capacity(4);
        assert_eq!((b.start(), b.end()), (6, 10));
        b.reset(50);
        assert!(b.len() == 0 && b.end() == 50 && b.holds(50) && !b.holds(10));
    }
}
