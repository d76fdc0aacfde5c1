//! Length-prefixed framing: `varint(len) ‖ payload`.
//!
//! Every libp2p Kademlia RPC message travels as its protobuf encoding prefixed with its
//! length as an unsigned varint (see [`crate::varint`]); bavard's own protocols use the
//! same framing. Streams may carry several frames back to back, so the decoder is
//! incremental: feed it whatever bytes arrived, take out each complete frame.
//!
//! Sending: [`encode_frame`]. Receiving from a stream: a [`FrameDecoder`] over a
//! [`BytesMut`] read buffer, then [`decode_message`] on each frame. Receiving one frame
//! already in memory: [`decode_one`].
//!
//! ```
//! use bavard_proto::framing::{FrameDecoder, decode_message, encode_frame};
//! use bavard_proto::kad::{Message, message::MessageType};
//! use bytes::BytesMut;
//!
//! let request = Message {
//!     r#type: MessageType::FindNode as i32,
//!     key: b"some peer id".to_vec(),
//!     ..Message::default()
//! };
//! let wire = encode_frame(&request);
//!
//! // Bytes arrive in pieces; the decoder waits until a whole frame is there.
//! let mut decoder = FrameDecoder::default();
//! let mut buf = BytesMut::from(&wire[..3]);
//! assert_eq!(decoder.decode(&mut buf)?, None);
//! buf.extend_from_slice(&wire[3..]);
//! let frame = decoder.decode(&mut buf)?.expect("a whole frame");
//! assert_eq!(decode_message::<Message>(&frame)?, request);
//! # Ok::<(), bavard_proto::FrameError>(())
//! ```
//!
//! The size limit is checked as soon as the prefix is complete, before any of the body is
//! buffered or allocated, so a peer announcing a huge frame costs at most
//! [`varint::MAX_LEN`] bytes. After any [`FrameError`] the byte stream cannot be
//! resynchronised (where the next frame starts is unknown): drop the stream.

use bytes::{Buf, Bytes, BytesMut};

use crate::varint;

/// The default maximum payload size of one frame: 128 KiB.
///
/// Large enough for a Kademlia record with a value of up to 64 KiB (rust-libp2p's
/// `MemoryStore` accepts 65 KiB values) plus its key, publisher and a reply's 20 closer
/// and provider peers with their addresses, a few KiB more. rust-libp2p's default of
/// 16 KiB would refuse such records; go-libp2p's 4 MiB lets a single peer make us buffer
/// megabytes per stream. Callers with other needs choose their own with
/// [`FrameDecoder::new`].
///
/// This bounds what we *accept*. A stock rust-libp2p peer still refuses inbound frames
/// above its own 16 KiB default, so a sender talking to one should keep requests small.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 * 1024;

/// Why a frame could not be decoded.
///
/// No variant is recoverable on the same byte stream: where the next frame starts is
/// unknown, so the caller should drop the stream. The decoder itself keeps no state
/// about the failed frame, and [`FrameDecoder::decode`] consumes nothing from its buffer
/// when it fails.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces a payload larger than the limit. Detected before any
    /// of the payload is buffered.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The payload length the prefix announced.
        len: u64,
        /// The limit it broke.
        max: usize,
    },
    /// The length prefix is longer than the 10 bytes a `u64` varint can take, or its
    /// value overflows `u64`.
    #[error("malformed length prefix: longer than 10 bytes or above u64::MAX")]
    VarintOverflow,
    /// The length prefix is not minimally encoded (e.g. `0x80 0x00` for 0), which the
    /// multiformats unsigned-varint spec forbids.
    #[error("malformed length prefix: not minimally encoded")]
    NonMinimalVarint,
    /// The input ended in the middle of a frame (its prefix or its payload). Only
    /// [`decode_one`] returns this: the incremental decoder waits for more bytes instead.
    #[error("input ends in the middle of a frame")]
    Truncated,
    /// The payload is not a valid protobuf encoding of the expected message.
    #[error("malformed protobuf message: {0}")]
    Malformed(#[from] prost::DecodeError),
}

/// Encodes `msg` as one frame: its length as a varint, then its protobuf encoding.
pub fn encode_frame(msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(varint::encoded_len(len as u64) + len);
    varint::encode(len as u64, &mut out);
    msg.encode_raw(&mut out);
    out
}

/// Decodes a frame's payload as a protobuf message of type `M`.
///
/// Unknown fields are skipped and unknown enum values kept as their raw `i32`, as
/// protobuf prescribes; anything that is not valid protobuf is
/// [`FrameError::Malformed`].
pub fn decode_message<M: prost::Message + Default>(payload: &[u8]) -> Result<M, FrameError> {
    Ok(M::decode(payload)?)
}

/// Decodes the single frame at the start of `input` as a message of type `M`, and returns
/// it with the bytes after the frame.
///
/// For a frame already fully in memory; an `input` that ends before the frame does is
/// [`FrameError::Truncated`]. An announced length above `max_size` is
/// [`FrameError::TooLarge`], even when that many bytes are present.
pub fn decode_one<M: prost::Message + Default>(
    input: &[u8],
    max_size: usize,
) -> Result<(M, &[u8]), FrameError> {
    let (len, prefix_len) = varint::decode(input)?.ok_or(FrameError::Truncated)?;
    let len = check_len(len, max_size)?;
    let rest = &input[prefix_len..];
    if rest.len() < len {
        return Err(FrameError::Truncated);
    }
    let (payload, rest) = rest.split_at(len);
    Ok((decode_message(payload)?, rest))
}

/// Checks an announced payload length against the limit.
fn check_len(len: u64, max: usize) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge { len, max }),
    }
}

/// An incremental decoder of length-prefixed frames, with a maximum payload size.
///
/// Append the bytes read from a stream to a [`BytesMut`] and call
/// [`decode`](Self::decode) until it returns `Ok(None)`; each `Ok(Some(frame))` is one
/// payload, ready for [`decode_message`]. The decoder holds no buffered data itself, so it
/// can be shared by the streams of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    /// The largest payload accepted, in bytes (the prefix not included).
    pub max_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder that accepts payloads of up to `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        Self { max_size }
    }

    /// Takes the next complete frame's payload out of `buf`.
    ///
    /// Returns `Ok(Some(payload))` and removes the frame from `buf` when a whole frame is
    /// there; `Ok(None)` when more bytes are needed (then `buf` is unchanged, but may have
    /// reserved room for the rest of the frame, at most `max_size` bytes); an error when the
    /// prefix is malformed or announces more than `max_size` bytes. The length is checked
    /// as soon as the prefix is complete, before the payload arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some((len, prefix_len)) = varint::decode(buf)? else {
            return Ok(None);
        };
        let len = check_len(len, self.max_size)?;
        let frame_len = prefix_len + len;
        if buf.len() < frame_len {
            buf.reserve(frame_len - buf.len());
            return Ok(None);
        }
        buf.advance(prefix_len);
        Ok(Some(buf.split_to(len).freeze()))
    }
}
