//! Arbitrary bytes through the frame splitter and the request decoder: typed errors only,
//! never a panic, and whatever decodes must survive an encode/decode round trip. (Not byte
//! for byte: the decoder accepts overlong varints, such as `a8 00` for 40, which the
//! encoder never writes.)

#![no_main]

use confab::frame;
use confab::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((body, used))) = frame::split(rest, 64 * 1024) {
        if let Ok(request) = frame::decode_body::<ClientFrame>(body) {
            let again = frame::encode(&request);
            assert_eq!(frame::decode_body::<ClientFrame>(&again[frame::PREFIX_LEN..]).as_ref(), Ok(&request));
        }

        rest = &rest[used..];
    }
});
