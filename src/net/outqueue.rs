//! A connection's output queue: the encoded frames it is owed, as chunks, written with
//! one vectored write at a time.
//!
//! Chunks are kept as they come rather than copied into one buffer: a worker's batch for
//! the connection is moved in whole, and a frame fanned out to many connections (a room
//! message, a broadcast, a group message) is one shared allocation that every member's
//! queue points to. Copying gave each of 300 room members its own copy of every 30 KB
//! message, and each growing buffer up to twice its contents: 2.9 GB resident for about
//! 1 GB owed. The bytes owed are still counted per connection (the ledger), as if each had
//! its own copy, so `--max-outbound` means the same.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// Small frames are appended to the last chunk up to this size, so a stream of small
/// replies stays a few chunks, not one each.
const COALESCE: usize = 16 * 1024;
/// Chunks handed to one vectored write at most.
const MAX_SLICES: usize = 64;

enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }
}

#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Bytes queued and not yet written.
    len: usize,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `bytes`.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.len() + bytes.len() <= COALESCE {
                last.extend_from_slice(bytes);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(bytes.to_vec()));
    }

    /// Queues `bytes` without copying them (unless they are few).
    pub fn push_owned(&mut self, mut bytes: Vec<u8>) {
        if bytes.len() < COALESCE / 4 {
            return self.push(&bytes);
        }
        // A vector grown by appending may hold up to twice what it has: no need to keep that.
        if bytes.capacity() - bytes.len() > COALESCE {
            bytes.shrink_to_fit();
        }
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Owned(bytes));
    }

    /// Queues a frame shared with other connections.
    pub fn push_shared(&mut self, bytes: Arc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Shared(bytes));
    }

    /// Writes until everything is written or the writer would block; returns how many
    /// bytes went. An error other than WouldBlock means the connection is unusable.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_SLICES).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[self.head..] } else { bytes });
                count += 1;
            }
            match out.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes, then would block; records what it took.
    struct Pipe {
        room: usize,
        taken: Vec<u8>,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(7);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn chunks_go_out_in_order_across_partial_writes() {
        let mut queue = OutQueue::default();
        let shared: Arc<[u8]> = vec![b's'; 20_000].into();
        queue.push(b"hello ");
        queue.push_shared(shared.clone());
        queue.push_owned(vec![b'o'; 5_000]);
        queue.push(b" end");
        let expected: Vec<u8> = [b"hello ".as_slice(), &shared, &[b'o'; 5_000], b" end"].concat();
        assert_eq!(queue.len(), expected.len());
        let mut pipe = Pipe { room: 1_000, taken: Vec::new() };
        assert_eq!(queue.write_to(&mut pipe).unwrap(), 1_000);
        assert_eq!(queue.len(), expected.len() - 1_000);
        pipe.room = usize::MAX;
        assert_eq!(queue.write_to(&mut pipe).unwrap(), expected.len() - 1_000);
        assert_eq!(pipe.taken, expected);
        assert!(queue.is_empty());
        assert_eq!(Arc::strong_count(&shared), 1, "the queue let go of the shared frame");
    }

    #[test]
    fn small_frames_share_a_chunk() {
        let mut queue = OutQueue::default();
        for _ in 0..100 {
            queue.push(&[1; 100]);
        }
        assert_eq!(queue.chunks.len(), 1);
        queue.push_owned(vec![2; 10]);
        assert_eq!((queue.chunks.len(), queue.len()), (1, 10_010));
    }
}
