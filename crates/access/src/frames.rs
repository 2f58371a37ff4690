//! Frames over a byte stream (a TCP socket, a TLS stream), with buffers that exist only while a
//! frame is in flight.
//!
//! Most long links are idle phones, so what an idle link holds is what sizes a node. A
//! general-purpose framed stream keeps a read buffer and a write buffer of several KiB for the
//! connection's whole life; these keep none while nothing is moving:
//! - [`FrameReader`] reads into a chunk on the stack and copies what came into a heap buffer
//!   only when part of a frame is left over, or to cut the frame out of; the buffer is given up
//!   as soon as it has been emptied. It grows with the bytes that actually arrive, never with
//!   the length a header announces, so a stranger who sends only headers of large frames makes
//!   the node hold what they sent, not what they claimed.
//! - [`FrameWriter`] encodes frames into a buffer that is given up once it has been written
//!   out.

use crate::link::LinkError;
use bytes::{Buf, BytesMut};
use futures_util::{Sink, Stream};
use missive_proto::frame::{Frame, cut_frame};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time into the stack chunk.
const READ_CHUNK_BYTES: usize = 4096;
/// Encoded bytes a writer holds before it takes no more frames until some are written.
const WRITE_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// The frames of a byte stream, cut as the frame codec cuts them (docs/protocol.md §2).
pub(crate) struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet cut into a frame; no allocation when empty.
    buffer: BytesMut,
    body_bytes_max: u32,
    /// The stream has ended; what is in the buffer is all there will be.
    ended: bool,
}

impl<R> FrameReader<R> {
    pub(crate) fn new(io: R, body_bytes_max: u32) -> Self {
        FrameReader { io, buffer: BytesMut::new(), body_bytes_max, ended: false }
    }

    /// The heap bytes this reader holds now (0 when no frame is in flight).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The next whole frame in the buffer, if there is one (`cut_frame`, which the frame
    /// fuzz target feeds arbitrary bytes).
    fn cut(&mut self) -> Result<Option<Frame>, LinkError> {
        let frame = cut_frame(&mut self.buffer, self.body_bytes_max)?;
        if frame.is_some() && self.buffer.is_empty() {
            // The body keeps what it needs of the old allocation, for as long as it lives.
            self.buffer = BytesMut::new();
        }
        Ok(frame)
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Frame, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.cut() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(error) => {
                    this.buffer = BytesMut::new();
                    this.ended = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            if this.ended {
                if this.buffer.is_empty() {
                    return Poll::Ready(None);
                }
                this.buffer = BytesMut::new();
                let error = "the stream ended in the middle of a frame";
                return Poll::Ready(Some(Err(LinkError::Transport(error.into()))));
            }
            let read = if this.buffer.capacity() - this.buffer.len() >= READ_CHUNK_BYTES {
                // Room left from the buffer's last growth: read into it directly.
                let before = this.buffer.len();
                ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buffer))
                    .map(|_| this.buffer.len() - before)
            } else {
                let mut chunk = [0u8; READ_CHUNK_BYTES];
                let mut chunk = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk)).map(|()| {
                    this.buffer.extend_from_slice(chunk.filled());
                    chunk.filled().len()
                })
            };
            match read {
                Ok(0) => this.ended = true,
                Ok(_) => {}
                Err(error) => {
                    this.buffer = BytesMut::new();
                    this.ended = true;
                    return Poll::Ready(Some(Err(LinkError::Transport(error.to_string()))));
                }
            }
        }
    }
}

/// A sink of frames onto a byte stream.
pub(crate) struct FrameWriter<W> {
    io: W,
    /// Encoded bytes not yet written; no allocation when empty.
    buffer: BytesMut,
}

impl<W> FrameWriter<W> {
    pub(crate) fn new(io: W) -> Self {
        FrameWriter { io, buffer: BytesMut::new() }
    }

    /// The heap bytes this writer holds now (0 when everything has been written).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.buffer.capacity()
    }
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Writes the whole buffer out, then gives it up.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buffer.is_empty() {
            let written = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buffer))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buffer.advance(written);
        }
        self.buffer = BytesMut::new();
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> Sink<Frame> for FrameWriter<W> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffer.len() >= WRITE_BUFFER_BYTES_MAX {
            ready!(this.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> io::Result<()> {
        frame.encode_into(&mut self.get_mut().buffer);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use missive_proto::frame::{FrameError, HEADER_BYTES, Kind};
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Request), Just(Kind::Response), Just(Kind::Push)]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        (
            kind(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..9000),
        )
            .prop_map(|(kind, command, status, seq, body)| Frame {
                kind,
                command,
                status,
                seq,
                body: Bytes::from(body),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the frames and however the stream cuts them, the reader gives them back in
        /// order, and holds no buffer whenever it waits between frames.
        #[test]
        fn frames_come_back_whole_in_any_cuts_and_no_buffer_waits_between_them(
            frames in prop::collection::vec(frame(), 1..6),
            cuts in prop::collection::vec(1usize..5000, 1..20),
        ) {
            runtime().block_on(async {
                let mut wire = Vec::new();
                for frame in &frames {
                    wire.extend_from_slice(&frame.to_bytes());
                }
                let (mut client, server) = tokio::io::duplex(64 * 1024);
                let mut reader = FrameReader::new(server, 16 * 1024);
                let mut got = Vec::new();
                let mut rest = &wire[..];
                let mut cut = cuts.iter().cycle();
                while !rest.is_empty() {
                    let n = (*cut.next().unwrap()).min(rest.len());
                    client.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                    // Take every frame that is whole by now.
                    loop {
                        match reader.next().now_or_never() {
                            Some(Some(frame)) => got.push(frame.unwrap()),
                            Some(None) => panic!("ended early"),
                            None => break,
                        }
                    }
                    let at_boundary = got.iter().map(|f: &Frame| HEADER_BYTES + f.body.len()).sum::<usize>()
                        == wire.len() - rest.len();
                    if at_boundary {
                        assert_eq!(reader.buffered_capacity(), 0, "no buffer between frames");
                    }
                }
                drop(client);
                assert!(reader.next().await.is_none(), "the stream ends after the last frame");
                assert_eq!(got, frames);
            });
        }

        /// Frames written through the writer arrive as the codec encodes them, and the writer
        /// holds no buffer once flushed.
        #[test]
        fn written_frames_arrive_encoded_and_the_buffer_goes_after_the_flush(
            frames in prop::collection::vec(frame(), 1..6),
        ) {
            runtime().block_on(async {
                let (client, server) = tokio::io::duplex(256 * 1024);
                let mut writer = FrameWriter::new(server);
                for frame in &frames {
                    writer.feed(frame.clone()).await.unwrap();
                }
                writer.flush().await.unwrap();
                assert_eq!(writer.buffered_capacity(), 0);
                drop(writer);
                let mut reader = FrameReader::new(client, u32::MAX);
                let mut got = Vec::new();
                while let Some(frame) = reader.next().await {
                    got.push(frame.unwrap());
                }
                assert_eq!(got, frames);
            });
        }
    }

    #[test]
    fn a_header_announcing_a_large_body_reserves_nothing_for_it() {
        runtime().block_on(async {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut reader = FrameReader::new(server, 1 << 20);
            let frame = Frame::request(1, 1, Bytes::from(vec![7; 1 << 20]));
            client.write_all(&frame.to_bytes()[..HEADER_BYTES + 10]).await.unwrap();
            assert!(reader.next().now_or_never().is_none(), "the frame is not whole");
            assert!(reader.buffered_capacity() < 1024, "{} bytes held", reader.buffered_capacity());
        });
    }

    #[test]
    fn a_bad_header_or_a_cut_frame_is_an_error_and_then_the_end() {
        runtime().block_on(async {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut reader = FrameReader::new(server, 16);
            client
                .write_all(&Frame::request(1, 1, Bytes::from(vec![0; 17])).to_bytes())
                .await
                .unwrap();
            let error = reader.next().await.unwrap().unwrap_err();
            assert!(matches!(error, LinkError::Frame(FrameError::TooLarge { .. })), "{error}");
            assert!(reader.next().await.is_none());

            let (mut client, server) = tokio::io::duplex(1024);
            let mut reader = FrameReader::new(server, 16);
            client
                .write_all(&Frame::request(1, 1, Bytes::from(vec![0; 9])).to_bytes()[..20])
                .await
                .unwrap();
            drop(client);
            let error = reader.next().await.unwrap().unwrap_err();
            assert!(matches!(error, LinkError::Transport(_)), "{error}");
            assert!(reader.next().await.is_none());
        });
    }
}
