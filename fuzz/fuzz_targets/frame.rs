//! The long-link frame decoder, fed arbitrary bytes in arbitrary chunks: it must never panic,
//! and every frame it yields must re-encode to the bytes it came from. The codec cuts frames
//! with `cut_frame`, as the server's reader does (`crates/access/src/frames.rs`); that is
//! fuzzed directly too.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use missive_proto::frame::{Frame, FrameCodec, cut_frame};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let mut codec = FrameCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut consumed = Vec::new();
    for chunk in bytes.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => consumed.extend_from_slice(&frame.to_bytes()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(&consumed[..], &bytes[..consumed.len()]);
    let _ = Frame::decode_exact(bytes, 4096);

    // The server's way: cut frames off a buffer that grows only with what arrived.
    let mut buf = BytesMut::new();
    let mut cut = Vec::new();
    for chunk in bytes.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match cut_frame(&mut buf, 4096) {
                Ok(Some(frame)) => cut.extend_from_slice(&frame.to_bytes()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(cut, consumed, "the server and the codec cut the same frames");
});
