//! How records sit in a commit-log segment: a pure codec, no I/O.
//!
//! A segment starts with a header naming the segment it is (run, partition, number), then
//! records back to back:
//!
//! ```text
//! header: "CONFABLG" | version u32 | run u64 | partition u32 | segment u64 | crc32 u32  (36 bytes)
//! record: length u32 | crc32 u32 | payload (length bytes)
//! ```
//!
//! Integers are big-endian. A record's checksum covers the segment's identity, the length
//! and the payload, so a record left over from an earlier use of a recycled file (a
//! different segment number) never passes for a record of this one. A length of zero is
//! the unwritten (preallocated, zeroed) rest of the segment: the end of the log.
//!
//! The reader never guesses: anything that is not a whole record with a matching
//! checksum ends the segment there, and the caller is told why and where ([`Scan`]).

use byteorder::{BigEndian, ByteOrder};

pub const MAGIC: &[u8; 8] = b"CONFABLG";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 36;
/// Length and checksum before each payload.
pub const RECORD_OVERHEAD: usize = 8;
/// A record longer than this is damage, not data: one batch's changes stay far below it
/// (a worker batch is at most a few thousand commands of at most a frame each).
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Which segment this is; part of every checksum in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The server run that wrote it (one more than the highest run found at start).
    pub run: u64,
    /// The worker partition.
    pub partition: u32,
    /// Counts up within a run and partition.
    pub number: u64,
}

impl SegmentId {
    fn seed(&self) -> [u8; 20] {
        let mut seed = [0; 20];
        BigEndian::write_u64(&mut seed[0..8], self.run);
        BigEndian::write_u32(&mut seed[8..12], self.partition);
        BigEndian::write_u64(&mut seed[12..20], self.number);
        seed
    }
}

pub fn header(id: SegmentId) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[0..8].copy_from_slice(MAGIC);
    BigEndian::write_u32(&mut out[8..12], VERSION);
    out[12..32].copy_from_slice(&id.seed());
    let crc = crc32fast::hash(&out[0..32]);
    BigEndian::write_u32(&mut out[32..36], crc);
    out
}

/// Reads a segment header; None if it is not one (damaged, or never written).
pub fn read_header(bytes: &[u8]) -> Option<SegmentId> {
    let header = bytes.get(..HEADER_LEN)?;
    if &header[0..8] != MAGIC
        || BigEndian::read_u32(&header[8..12]) != VERSION
        || crc32fast::hash(&header[0..32]) != BigEndian::read_u32(&header[32..36])
    {
        return None;
    }
    Some(SegmentId {
        run: BigEndian::read_u64(&header[12..20]),
        partition: BigEndian::read_u32(&header[20..24]),
        number: BigEndian::read_u64(&header[24..32]),
    })
}

fn checksum(id: SegmentId, length: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&id.seed());
    hasher.update(&length);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one framed record to `out`.
pub fn encode_into(id: SegmentId, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_RECORD);
    let mut length = [0; 4];
    BigEndian::write_u32(&mut length, payload.len() as u32);
    out.extend_from_slice(&length);
    out.extend_from_slice(&checksum(id, length, payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Bytes a payload of `len` takes in a segment.
pub fn framed_len(len: usize) -> usize {
    RECORD_OVERHEAD + len
}

/// Why reading a segment stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The zeroed, never written rest of the segment (or the file's exact end).
    Clean,
    /// A record that runs past the end of the file: a write cut short.
    Truncated,
    /// A record whose checksum does not match (a torn write, or damage), or whose length
    /// cannot be right.
    BadChecksum,
}

/// The records of a segment body (after the header), up to the first thing that is not
/// a whole valid record.
pub struct Scan<'a> {
    id: SegmentId,
    bytes: &'a [u8],
    offset: usize,
    end: Option<End>,
}

impl<'a> Scan<'a> {
    /// `bytes` is the whole segment body; offsets are counted from its start.
    pub fn new(id: SegmentId, bytes: &'a [u8]) -> Self {
        Scan { id, bytes, offset: 0, end: None }
    }

    /// Where the valid records end.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Why the scan stopped (None until it has).
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// Whether anything but zeroes follows the valid records: with [`End::Clean`] that is
    /// impossible, with the others it tells a torn tail (zeroes after it) from damage in
    /// the middle of written records.
    pub fn data_after(&self) -> bool {
        self.bytes[self.offset..].iter().skip(RECORD_OVERHEAD).any(|b| *b != 0)
    }

    fn stop(&mut self, end: End) -> Option<&'a [u8]> {
        self.end = Some(end);
        None
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.end.is_some() {
            return None;
        }
        let rest = &self.bytes[self.offset..];
        if rest.len() < RECORD_OVERHEAD {
            let end = if rest.iter().all(|b| *b == 0) { End::Clean } else { End::Truncated };
            return self.stop(end);
        }
        let length: [u8; 4] = rest[0..4].try_into().expect("four bytes");
        let len = u32::from_be_bytes(length) as usize;
        if len == 0 {
            let end = if rest[4..RECORD_OVERHEAD].iter().all(|b| *b == 0) { End::Clean } else { End::BadChecksum };
            return self.stop(end);
        }
        if len > MAX_RECORD {
            return self.stop(End::BadChecksum);
        }
        let Some(payload) = rest.get(RECORD_OVERHEAD..RECORD_OVERHEAD + len) else {
            return self.stop(End::Truncated);
        };
        if checksum(self.id, length, payload) != BigEndian::read_u32(&rest[4..8]) {
            return self.stop(End::BadChecksum);
        }
        self.offset += RECORD_OVERHEAD + len;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: SegmentId = SegmentId { run: 3, partition: 1, number: 9 };

    fn segment(payloads: &[Vec<u8>], id: SegmentId) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(id, p, &mut out);
        }
        out
    }

    #[test]
    fn headers_round_trip_and_refuse_damage() {
        let h = header(ID);
        assert_eq!(read_header(&h), Some(ID));
        for i in 0..HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x40;
            assert_eq!(read_header(&bad), None, "byte {i}");
        }
        assert_eq!(read_header(&[0; HEADER_LEN]), None);
        assert_eq!(read_header(&h[..10]), None);
    }

    #[test]
    fn records_of_another_segment_do_not_read_as_this_one() {
        // A recycled file still holds its last use's records.
        let old = segment(&[b"old".to_vec()], SegmentId { number: 8, ..ID });
        let mut scan = Scan::new(ID, &old);
        assert_eq!(scan.next(), None);
        assert_eq!(scan.end(), Some(End::BadChecksum));
        assert_eq!(scan.offset(), 0);
    }

    #[test]
    fn zeroes_after_the_records_are_a_clean_end() {
        let mut body = segment(&[b"a".to_vec(), b"bc".to_vec()], ID);
        body.resize(body.len() + 100, 0);
        let mut scan = Scan::new(ID, &body);
        assert_eq!(scan.by_ref().collect::<Vec<_>>(), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(scan.end(), Some(End::Clean));
        assert!(!scan.data_after());
    }

    proptest! {
        #[test]
        fn every_record_before_a_cut_survives_and_nothing_after(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let body = segment(&payloads, ID);
            let cut = cut.index(body.len() + 1);
            let mut scan = Scan::new(ID, &body[..cut]);
            let read: Vec<&[u8]> = scan.by_ref().collect();
            // Exactly the records that lie wholly before the cut.
            let mut whole = 0;
            let mut at = 0;
            for p in &payloads {
                at += framed_len(p.len());
                if at <= cut { whole += 1; }
            }
            prop_assert_eq!(read.len(), whole);
            for (r, p) in read.iter().zip(&payloads) {
                prop_assert_eq!(*r, &p[..]);
            }
            // Clean means nothing but zeroes is left (a cut inside a length prefix whose
            // first bytes are zero reads as the end: nothing of that record was there).
            let rest_zero = body[scan.offset()..cut].iter().all(|b| *b == 0);
            prop_assert_eq!(scan.end() == Some(End::Clean), rest_zero);
        }

        #[test]
        fn a_flipped_byte_ends_the_segment_at_its_record(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..20),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut body = segment(&payloads, ID);
            let at = at.index(body.len());
            body[at] ^= 1 << bit;
            let read: Vec<Vec<u8>> = Scan::new(ID, &body).map(|r| r.to_vec()).collect();
            // Every record before the damaged one, intact; never the damaged one or later.
            let mut start = 0;
            let mut damaged = 0;
            for (i, p) in payloads.iter().enumerate() {
                let end = start + framed_len(p.len());
                if (start..end).contains(&at) { damaged = i; }
                start = end;
            }
            prop_assert_eq!(read.len(), damaged);
            for (r, p) in read.iter().zip(&payloads) {
                prop_assert_eq!(r, p);
            }
        }
    }
}
