//! The message body the load generator sends: enough for the receiver to compute latency
//! and to recognise each message exactly, padded to the requested size.
//!
//! Layout (little-endian): magic `CFLG`, run id (u32), sender index (u32), recipient
//! index (u32), per-sender sequence (u32), send time in ns since the process epoch (u64),
//! then filler. The recipient index catches a message delivered to the wrong inbox. The run id
//! separates this run's messages from leftovers of an earlier, interrupted run that the
//! server still holds for the same accounts.

/// Bytes the stamp occupies; `--size` may not be smaller.
pub const STAMP_LEN: usize = 28;
const MAGIC: [u8; 4] = *b"CFLG";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub run: u32,
    pub sender: u32,
    pub recipient: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

impl Stamp {
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(size.max(STAMP_LEN));
        body.extend_from_slice(&MAGIC);
        body.extend_from_slice(&self.run.to_le_bytes());
        body.extend_from_slice(&self.sender.to_le_bytes());
        body.extend_from_slice(&self.recipient.to_le_bytes());
        body.extend_from_slice(&self.seq.to_le_bytes());
        body.extend_from_slice(&self.sent_ns.to_le_bytes());
        body.resize(size.max(STAMP_LEN), b'.');
        body
    }

    /// None for anything that is not a load-generator body (of any run).
    pub fn decode(body: &[u8]) -> Option<Stamp> {
        if body.len() < STAMP_LEN || body[..4] != MAGIC {
            return None;
        }
        let u32_at = |at: usize| {
            let mut b = [0; 4];
            b.copy_from_slice(&body[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let mut t = [0; 8];
        t.copy_from_slice(&body[20..28]);
        Some(Stamp {
            run: u32_at(4),
            sender: u32_at(8),
            recipient: u32_at(12),
            seq: u32_at(16),
            sent_ns: u64::from_le_bytes(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let stamp = Stamp { run: 7, sender: 999, recipient: 5, seq: 123_456, sent_ns: 42_000_000_001 };
        let body = stamp.encode(64);
        assert_eq!(body.len(), 64);
        assert_eq!(Stamp::decode(&body), Some(stamp));
        assert_eq!(stamp.encode(1).len(), STAMP_LEN);
    }

    #[test]
    fn foreign_bodies_are_not_stamps() {
        assert_eq!(Stamp::decode(b"hello"), None);
        assert_eq!(Stamp::decode(&[0; 64]), None);
    }
}
