//! Length-prefixed protobuf frames over libp2p streams.
//!
//! The varint prefix is read byte by byte and checked against the size limit before any of the
//! body is buffered, so an oversized or hostile length costs nothing but the dropped stream.

use bavard_proto::varint;
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer announced a frame larger than we accept.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Our limit.
        max: usize,
    },
    /// The length prefix was not a valid unsigned varint (overlong, over u64, non-minimal).
    #[error("malformed length prefix: {0}")]
    BadPrefix(bavard_proto::FrameError),
    /// The frame body was not a valid protobuf message.
    #[error("malformed protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The stream failed or ended in the middle of a frame.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
///
/// The prefix is read byte by byte and decoded with `bavard_proto::varint` (the same strict
/// decoder as the synchronous framing); the body is read only once its length is within `max`,
/// into a buffer that grows with the bytes that arrive.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut prefix = Vec::with_capacity(varint::MAX_LEN);
    let len = loop {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            if prefix.is_empty() {
                return Ok(None);
            }
            return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        prefix.push(byte[0]);
        match varint::decode(&prefix).map_err(WireError::BadPrefix)? {
            Some((len, _)) => break len,
            None => continue,
        }
    };
    if len > max as u64 {
        return Err(WireError::TooLarge { len, max });
    }
    // The buffer grows with the bytes that arrive (doubling, up to the announced length), rather
    // than being allocated at the announced length: a peer that announces a large frame and
    // sends little of it costs what it sent, not the limit (4 MiB on `/bavard/admit/1`, which
    // strangers may open).
    let len = len as usize;
    let mut buf = Vec::with_capacity(len.min(INITIAL_BUFFER));
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            buf.reserve_exact(buf.capacity().min(len - buf.len()));
        }
        let start = buf.len();
        buf.resize(buf.capacity().min(len), 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some(buf))
}

/// The buffer a frame body starts with; it grows as the body arrives.
const INITIAL_BUFFER: usize = 4096;

/// Reads and decodes one protobuf message.
pub async fn read_message<M: prost::Message + Default, S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<Option<M>, WireError> {
    match read_frame(stream, max).await? {
        Some(bytes) => Ok(Some(M::decode(bytes.as_slice())?)),
        None => Ok(None),
    }
}

/// Writes one length-prefixed message and flushes; returns the bytes written.
pub async fn write_message<M: prost::Message, S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &M,
) -> Result<usize, WireError> {
    let bytes = msg.encode_length_delimited_to_vec();
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn oversized_prefix_is_rejected_before_reading_the_body() {
        // Prefix announces 1 MiB; only the prefix is present.
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(1 << 20, &mut prefix);
        let err = read_frame(&mut Cursor::new(prefix), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len, max: 1024 } if len == 1 << 20));
    }

    #[tokio::test]
    async fn overlong_varint_is_malformed() {
        let err = read_frame(&mut Cursor::new(vec![0xff; 11]), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::BadPrefix(_)));
    }

    #[tokio::test]
    async fn non_minimal_varint_is_malformed() {
        // 0x80 0x00 encodes 0 in two bytes: not the canonical encoding.
        let err = read_frame(&mut Cursor::new(vec![0x80, 0x00]), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::BadPrefix(_)));
    }

    #[tokio::test]
    async fn truncated_body_is_an_io_error_and_clean_end_is_none() {
        let err = read_frame(&mut Cursor::new(vec![5, 1, 2]), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Io(_)));
        assert!(
            read_frame(&mut Cursor::new(vec![]), 1024)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn garbage_body_is_malformed_protobuf() {
        let frame = vec![3, 0xff, 0xff, 0xff];
        let err = read_message::<bavard_proto::kad::Message, _>(&mut Cursor::new(frame), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Malformed(_)));
    }
}
