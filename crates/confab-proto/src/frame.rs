//! Length-prefixed framing: a u32 big-endian body length, then the body (postcard).
//!
//! The decoder is pure and incremental: it accepts any split of the byte stream, returns
//! `Ok(None)` until a whole frame is buffered, and checks the declared length against the
//! limit *before* anything is reserved, so a hostile 4 GiB prefix costs nothing.

use byteorder::{BigEndian, ByteOrder};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("empty frame")]
    Empty,
    #[error("malformed frame body: {0}")]
    Malformed(String),
}

/// Finds the first complete frame in `buf`. Returns its body and the bytes it occupies
/// (prefix included), or `None` when more bytes are needed.
pub fn split(buf: &[u8], max: u32) -> Result<Option<(&[u8], usize)>, FrameError> {
    if buf.len() < PREFIX_LEN {
        return Ok(None);
    }
    let len = BigEndian::read_u32(&buf[..PREFIX_LEN]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = PREFIX_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((&buf[PREFIX_LEN..total], total)))
}

/// Decodes a body that must hold exactly one value: trailing bytes are an error, so a
/// client cannot smuggle data past the parser and the spec's vectors are exact.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Malformed(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

/// Appends one frame (prefix and body) to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    // Serialising our own types into a Vec cannot fail: no maps with non-string keys, no
    // sequences of unknown length.
    let out_vec = std::mem::take(out);
    let mut out_vec = postcard::to_extend(value, out_vec).expect("postcard encoding of protocol types is infallible");
    let len = (out_vec.len() - start - PREFIX_LEN) as u32;
    BigEndian::write_u32(&mut out_vec[start..start + PREFIX_LEN], len);
    *out = out_vec;
}

/// One frame as a fresh buffer.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_prefix_and_body_wait_for_more() {
        let frame = encode(&(7u32, "hi".to_string()));
        for cut in 0..frame.len() {
            assert_eq!(split(&frame[..cut], 1024), Ok(None), "cut at {cut}");
        }
        let (body, used) = split(&frame, 1024).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode_body::<(u32, String)>(body).unwrap(), (7, "hi".to_string()));
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(split(&buf, 65536), Err(FrameError::TooLarge { len: u32::MAX, max: 65536 }));
    }

    #[test]
    fn zero_length_is_an_error() {
        assert_eq!(split(&[0, 0, 0, 0, 1], 16), Err(FrameError::Empty));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        assert!(matches!(decode_body::<u8>(&[1, 2]), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut buf = Vec::new();
        encode_into(&1u8, &mut buf);
        encode_into(&2u8, &mut buf);
        let (a, used) = split(&buf, 16).unwrap().unwrap();
        assert_eq!(a, &[1]);
        let (b, _) = split(&buf[used..], 16).unwrap().unwrap();
        assert_eq!(b, &[2]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::protocol::{ClientFrame, ServerFrame};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_client_frame_round_trips(frame: ClientFrame) {
            let bytes = encode(&frame);
            let (body, used) = split(&bytes, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decode_body::<ClientFrame>(body).unwrap(), frame);
        }

        #[test]
        fn every_server_frame_round_trips(frame: ServerFrame) {
            let bytes = encode(&frame);
            let (body, _) = split(&bytes, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(decode_body::<ServerFrame>(body).unwrap(), frame);
        }

        #[test]
        fn random_bytes_give_frames_or_typed_errors(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut rest = &bytes[..];
            while let Ok(Some((body, used))) = split(rest, 1024) {
                // Any outcome but a panic is fine; errors must be typed.
                if let Err(e) = decode_body::<ClientFrame>(body) {
                    prop_assert!(matches!(e, FrameError::Malformed(_)));
                }
                rest = &rest[used..];
            }
        }

        #[test]
        fn truncated_frames_wait_for_more(frame: ClientFrame, cut in 0usize..4096) {
            let bytes = encode(&frame);
            let cut = cut % bytes.len();
            prop_assert_eq!(split(&bytes[..cut], u32::MAX), Ok(None));
        }

        #[test]
        fn a_truncated_body_never_decodes_as_the_whole(frame: ClientFrame, cut in 0usize..4096) {
            let bytes = encode(&frame);
            let body = &bytes[PREFIX_LEN..];
            let cut = cut % body.len();
            if let Ok(decoded) = decode_body::<ClientFrame>(&body[..cut]) {
                prop_assert_ne!(decoded, frame);
            }
        }
    }
}
