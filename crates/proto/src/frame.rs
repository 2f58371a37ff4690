//! The long-link frame: a fixed 16-byte header, then the body (a protobuf message).
//!
//! ```text
//! offset size field
//!      0    2 magic          0x4D 0x56 ("MV")
//!      2    1 frame_version  1
//!      3    1 kind           0 request, 1 response, 2 push
//!      4    2 command        see `Command`
//!      6    2 status         0 in requests and pushes; a `Code` in responses
//!      8    4 seq            chosen by the client, echoed in the response; 0 in pushes
//!     12    4 body_len       bytes of body that follow
//! ```
//! All integers are big-endian. The same frames travel over raw TCP and, one frame per binary
//! message, over WebSocket.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub const MAGIC: u16 = 0x4D56;
pub const FRAME_VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 16;
/// The default bound on a frame body; servers and clients may configure another.
pub const BODY_BYTES_MAX_DEFAULT: u32 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 0,
    Response = 1,
    Push = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub command: u16,
    pub status: u16,
    pub seq: u32,
    pub body_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub command: u16,
    pub status: u16,
    pub seq: u32,
    pub body: Bytes,
}

impl Frame {
    pub fn request(command: u16, seq: u32, body: Bytes) -> Frame {
        Frame { kind: Kind::Request, command, status: 0, seq, body }
    }

    pub fn response(command: u16, seq: u32, status: u16, body: Bytes) -> Frame {
        Frame { kind: Kind::Response, command, status, seq, body }
    }

    pub fn push(command: u16, body: Bytes) -> Frame {
        Frame { kind: Kind::Push, command, status: 0, seq: 0, body }
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.reserve(HEADER_BYTES + self.body.len());
        dst.put_u16(MAGIC);
        dst.put_u8(FRAME_VERSION);
        dst.put_u8(self.kind as u8);
        dst.put_u16(self.command);
        dst.put_u16(self.status);
        dst.put_u32(self.seq);
        dst.put_u32(u32::try_from(self.body.len()).expect("frame body fits in u32"));
        dst.put_slice(&self.body);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_BYTES + self.body.len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Decodes exactly one whole frame (a WebSocket message must hold exactly one).
    pub fn decode_exact(bytes: &[u8], body_bytes_max: u32) -> Result<Frame, FrameError> {
        let header = parse_header(bytes, body_bytes_max)?.ok_or(FrameError::Truncated)?;
        let total = HEADER_BYTES + header.body_len as usize;
        if bytes.len() != total {
            return Err(if bytes.len() < total {
                FrameError::Truncated
            } else {
                FrameError::TrailingBytes
            });
        }
        Ok(Frame {
            kind: header.kind,
            command: header.command,
            status: header.status,
            seq: header.seq,
            body: Bytes::copy_from_slice(&bytes[HEADER_BYTES..]),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    #[error("unsupported frame version {0}")]
    BadVersion(u8),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// The header was read, so the answer can name the request it refuses.
    #[error("frame body of {} bytes exceeds the limit of {max} bytes", header.body_len)]
    TooLarge { header: Header, max: u32 },
    #[error("frame is truncated")]
    Truncated,
    #[error("bytes after the end of the frame")]
    TrailingBytes,
}

/// Parses and validates a header; `Ok(None)` when fewer than 16 bytes are available.
pub fn parse_header(src: &[u8], body_bytes_max: u32) -> Result<Option<Header>, FrameError> {
    if src.len() < HEADER_BYTES {
        // Reject garbage as soon as the first bytes show it, not after 16 of them.
        if src.len() >= 2 {
            let magic = u16::from_be_bytes([src[0], src[1]]);
            if magic != MAGIC {
                return Err(FrameError::BadMagic(magic));
            }
        }
        return Ok(None);
    }
    let mut buf = &src[..HEADER_BYTES];
    let magic = buf.get_u16();
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = buf.get_u8();
    if version != FRAME_VERSION {
        return Err(FrameError::BadVersion(version));
    }
    let kind = match buf.get_u8() {
        0 => Kind::Request,
        1 => Kind::Response,
        2 => Kind::Push,
        other => return Err(FrameError::BadKind(other)),
    };
    let header = Header {
        kind,
        command: buf.get_u16(),
        status: buf.get_u16(),
        seq: buf.get_u32(),
        body_len: buf.get_u32(),
    };
    if header.body_len > body_bytes_max {
        return Err(FrameError::TooLarge { header, max: body_bytes_max });
    }
    Ok(Some(header))
}

/// A `tokio_util` codec for the frame over a byte stream.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    body_bytes_max: u32,
}

impl FrameCodec {
    pub fn new(body_bytes_max: u32) -> Self {
        FrameCodec { body_bytes_max }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Cuts the first frame off the front of `src` when `src` holds all of it; else leaves `src`
/// as it is. It reserves nothing: what a buffer holds for a frame is what has arrived of it,
/// never what its header announces (the server reads strangers' bytes with it).
pub fn cut_frame(src: &mut BytesMut, body_bytes_max: u32) -> Result<Option<Frame>, FrameError> {
    let Some(header) = parse_header(src, body_bytes_max)? else {
        return Ok(None);
    };
    if src.len() < HEADER_BYTES + header.body_len as usize {
        return Ok(None);
    }
    src.advance(HEADER_BYTES);
    let body = src.split_to(header.body_len as usize).freeze();
    Ok(Some(Frame {
        kind: header.kind,
        command: header.command,
        status: header.status,
        seq: header.seq,
        body,
    }))
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if let Some(frame) = cut_frame(src, self.body_bytes_max)? {
            return Ok(Some(frame));
        }
        // The codec is the client's: its peer is the server, so room is made for the whole
        // frame at once.
        if let Some(header) = parse_header(src, self.body_bytes_max)? {
            src.reserve(HEADER_BYTES + header.body_len as usize - src.len());
        }
        Ok(None)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode_into(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Request), Just(Kind::Response), Just(Kind::Push)]
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(
            kind in kind(),
            command: u16,
            status: u16,
            seq: u32,
            body in proptest::collection::vec(any::<u8>(), 0..300),
            split in 0usize..400,
        ) {
            let frame = Frame { kind, command, status, seq, body: Bytes::from(body) };
            let wire = frame.to_bytes();
            let mut codec = FrameCodec::new(1024);
            let split = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..split]);
            let first = codec.decode(&mut buf).unwrap();
            if split < wire.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&wire[split..]);
                prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame.clone()));
            } else {
                prop_assert_eq!(first, Some(frame.clone()));
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(Frame::decode_exact(&wire, 1024).unwrap(), frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut codec = FrameCodec::new(16);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = codec.decode(&mut buf);
            let _ = Frame::decode_exact(&bytes, 16);
        }
    }

    #[test]
    fn rejects_bad_magic_early_and_oversized_bodies_with_their_header() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::from(&b"GE"[..]);
        assert!(matches!(codec.decode(&mut buf), Err(CodecError::Frame(FrameError::BadMagic(_)))));

        let big = Frame::request(8, 7, Bytes::from(vec![0; 9])).to_bytes();
        let mut buf = BytesMut::from(&big[..HEADER_BYTES]);
        match codec.decode(&mut buf) {
            Err(CodecError::Frame(FrameError::TooLarge { header, max })) => {
                assert_eq!((header.seq, header.command, header.body_len, max), (7, 8, 9, 8));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
