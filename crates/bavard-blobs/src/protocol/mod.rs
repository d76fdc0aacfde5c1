//! The wire protocol `/bavard/blobs/1`: messages, limits, and both ends of an exchange.
//!
//! # The exchange
//!
//! One stream per request, opened by the fetching node; messages are length-prefixed
//! protobuf ([`bavard_proto::framing`]), defined in `proto/blobs.proto`:
//!
//! | request | answer |
//! |---|---|
//! | [`Request::Size`] | one [`Response::Size`]: the size and its proof (the last block's frame) |
//! | [`Request::Have`] | one [`Response::Have`]: complete, or a bitfield of servable blocks |
//! | [`Request::Get`] | [`Response::Header`] with the size, then one [`Response::Data`] per block, in order; the stream ends |
//!
//! Any of them may instead be answered by one [`Response::Error`] ([`ErrorCode`]).
//!
//! The serving side is [`respond`]: it asks the store and returns either one response or a
//! header and an iterator of data frames, each re-verified as it is read. The fetching side
//! is [`Download`]: it takes the responses of one get and yields verified blocks, and
//! classifies what went wrong ([`DownloadError::verdict`]) the way the scheduler needs.
//!
//! # Limits
//!
//! Every message comes from an untrusted peer and every size in it is bounded
//! ([`Limits`]): a frame's length before it is buffered (the node's `FrameDecoder` uses
//! [`Limits::max_message_len`]), the number of ranges and of blocks in a get, the length of
//! a data frame and of a proof (one block and its parents, [`MAX_FRAME_LEN`]), of a
//! bitfield, of an error message, and a blob's size. Breaking one is a typed [`WireError`]
//! that names the limit; the node drops the stream.
//!
//! # Why the conversion lives here
//!
//! The prost structs are generated into `bavard-proto` like every bavard protocol's, and
//! converted once, here, with `TryFrom`, as `bavard-node/src/kad/protocol.rs` does for
//! Kademlia: the blob protocol is bavard's own, its rules (block alignment, proof sizes)
//! are this crate's, and keeping them next to the encoder and decoder lets its bad-input
//! tests run without the node. Nothing outside this module sees a prost struct.

mod download;
mod serve;

use bavard_proto::blobs as proto;
use bytes::Bytes;

pub use bavard_proto::blobs::PROTOCOL_NAME;
pub use download::{Download, DownloadError, Verdict, check_size_answer};
pub use serve::{Answer, DataFrames, respond};

use crate::bitfield::Bitfield;
use crate::encoding::MAX_FRAME_LEN;
use crate::hash::{BlobHash, ParseHashError};
use crate::ranges::{BlockRanges, block_count};

/// Bounds on what a peer may send. The defaults fit in bavard-proto's default frame limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest message, prefix excluded (default 128 KiB, bavard-proto's
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](bavard_proto::DEFAULT_MAX_MESSAGE_SIZE)).
    pub max_message_len: usize,
    /// The most ranges in one get (default 256).
    pub max_ranges: usize,
    /// The most blocks in one get (default 4096, 64 MiB): what one stream can tie up on
    /// the serving side.
    pub max_blocks_per_get: u64,
    /// The longest have-bitfield (default 64 KiB, 512 Ki blocks, 8 GiB of blob). A partial
    /// holder of a bigger blob advertises its first 8 GiB.
    pub max_bitfield_len: usize,
    /// The largest blob size a message may claim (default 1 TiB).
    pub max_blob_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: bavard_proto::DEFAULT_MAX_MESSAGE_SIZE,
            max_ranges: 256,
            max_blocks_per_get: 4096,
            max_bitfield_len: 64 * 1024,
            max_blob_size: 1 << 40,
        }
    }
}

/// The longest error message sent or accepted, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// What a fetching node asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The blob's size and its proof.
    Size {
        /// The blob.
        hash: BlobHash,
    },
    /// Which blocks the peer can serve.
    Have {
        /// The blob.
        hash: BlobHash,
    },
    /// These blocks, verified.
    Get {
        /// The blob.
        hash: BlobHash,
        /// The blocks (not empty).
        ranges: BlockRanges,
    },
}

impl Request {
    /// The blob asked about.
    pub fn hash(&self) -> BlobHash {
        match self {
            Request::Size { hash } | Request::Have { hash } | Request::Get { hash, .. } => *hash,
        }
    }
}

/// Which blocks a peer can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaveAnswer {
    /// The blob's size, as the peer knows it (proven to it, not yet to us).
    pub size: u64,
    /// The blocks it can serve (all of them when complete).
    pub blocks: BlockRanges,
    /// Whether it has every block.
    pub complete: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The blob is not here.
    NotFound,
    /// Some requested block is not verified here.
    NotAvailable,
    /// The request broke a rule or a limit.
    BadRequest,
    /// Too busy; ask someone else or later.
    Busy,
}

/// What a serving node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The first answer to a get.
    Header {
        /// The blob's size.
        size: u64,
    },
    /// One block's frame (parents and bytes).
    Data(Bytes),
    /// The answer to a size query.
    Size {
        /// The blob's size.
        size: u64,
        /// The last block's frame, which proves it.
        proof: Bytes,
    },
    /// The answer to a have query.
    Have(HaveAnswer),
    /// A refusal.
    Error {
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Why a message from a peer was refused. The node drops the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not protobuf of the expected message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message is longer than the limit.
    #[error("message of {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The hash is not 32 bytes.
    #[error("bad blob hash: {0}")]
    Hash(#[from] ParseHashError),
    /// Neither a get, a size query nor a have query (or no response kind).
    #[error("the message has no kind (or one this version does not know)")]
    NoKind,
    /// A get with no block.
    #[error("a get asks for no block")]
    EmptyGet,
    /// A range that is empty or backwards.
    #[error("block range {start}..{end} is empty")]
    EmptyRange {
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// Ranges out of order or overlapping.
    #[error("block ranges must be sorted and disjoint")]
    UnsortedRanges,
    /// Too many ranges in a get.
    #[error("{count} ranges in a get, over the limit of {max}")]
    TooManyRanges {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many blocks in a get.
    #[error("{count} blocks in a get, over the limit of {max}")]
    TooManyBlocks {
        /// How many.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A data frame or proof longer than a block and its parents can be.
    #[error("a frame of {len} bytes, over the {max}-byte limit")]
    FrameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A have-bitfield over the limit, or longer than the blob, or with bits set past it.
    #[error("a bitfield of {len} bytes does not fit a blob of {size} bytes (limit {max})")]
    BadBitfield {
        /// Its length.
        len: usize,
        /// The blob's size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A complete have answer that carries a bitfield anyway.
    #[error("a complete have answer carries a bitfield")]
    CompleteWithBitfield,
    /// A blob size over the limit.
    #[error("a blob of {size} bytes, over the limit of {max}")]
    SizeTooLarge {
        /// The size claimed.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An error code this version does not know.
    #[error("unknown error code {0}")]
    UnknownErrorCode(i32),
    /// An error message over [`MAX_ERROR_MESSAGE_LEN`].
    #[error("an error message of {len} bytes, over the limit of {MAX_ERROR_MESSAGE_LEN}")]
    ErrorMessageTooLong {
        /// Its length.
        len: usize,
    },
}

fn decode_message<M: prost::Message + Default>(
    payload: &[u8],
    limits: &Limits,
) -> Result<M, WireError> {
    if payload.len() > limits.max_message_len {
        return Err(WireError::TooLong {
            len: payload.len(),
            max: limits.max_message_len,
        });
    }
    M::decode(payload).map_err(|e| WireError::Malformed(e.to_string()))
}

fn check_size(size: u64, limits: &Limits) -> Result<u64, WireError> {
    if size > limits.max_blob_size {
        return Err(WireError::SizeTooLarge {
            size,
            max: limits.max_blob_size,
        });
    }
    Ok(size)
}

fn check_frame(bytes: &[u8]) -> Result<(), WireError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLong {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

impl Request {
    /// The message as a length-prefixed frame, ready to write.
    pub fn to_frame(&self) -> Vec<u8> {
        bavard_proto::encode_frame(&proto::Request::from(self))
    }

    /// Decodes a frame's payload (what the node's `FrameDecoder` yields), within `limits`.
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Self, WireError> {
        let message: proto::Request = decode_message(payload, limits)?;
        Request::try_from_proto(message, limits)
    }

    fn try_from_proto(message: proto::Request, limits: &Limits) -> Result<Self, WireError> {
        let hash = BlobHash::try_from(&message.hash[..])?;
        match message.kind.ok_or(WireError::NoKind)? {
            proto::request::Kind::Size(_) => Ok(Request::Size { hash }),
            proto::request::Kind::Have(_) => Ok(Request::Have { hash }),
            proto::request::Kind::Get(get) => {
                if get.ranges.len() > limits.max_ranges {
                    return Err(WireError::TooManyRanges {
                        count: get.ranges.len(),
                        max: limits.max_ranges,
                    });
                }
                if get.ranges.is_empty() {
                    return Err(WireError::EmptyGet);
                }
                let mut ranges = BlockRanges::new();
                let mut previous_end = 0;
                let mut count = 0u64;
                for (i, r) in get.ranges.iter().enumerate() {
                    if r.start >= r.end {
                        return Err(WireError::EmptyRange {
                            start: r.start,
                            end: r.end,
                        });
                    }
                    if i > 0 && r.start < previous_end {
                        return Err(WireError::UnsortedRanges);
                    }
                    previous_end = r.end;
                    count = count.saturating_add(r.end - r.start);
                    if count > limits.max_blocks_per_get {
                        return Err(WireError::TooManyBlocks {
                            count,
                            max: limits.max_blocks_per_get,
                        });
                    }
                    ranges.insert(r.start..r.end);
                }
                Ok(Request::Get { hash, ranges })
            }
        }
    }
}

impl From<&Request> for proto::Request {
    fn from(request: &Request) -> Self {
        let kind = match request {
            Request::Size { .. } => proto::request::Kind::Size(proto::SizeQuery {}),
            Request::Have { .. } => proto::request::Kind::Have(proto::HaveQuery {}),
            Request::Get { ranges, .. } => proto::request::Kind::Get(proto::Get {
                ranges: ranges
                    .iter()
                    .map(|r| proto::BlockRange {
                        start: r.start,
                        end: r.end,
                    })
                    .collect(),
            }),
        };
        proto::Request {
            hash: request.hash().as_bytes().to_vec(),
            kind: Some(kind),
        }
    }
}

impl Response {
    /// The message as a length-prefixed frame, ready to write.
    pub fn to_frame(&self) -> Vec<u8> {
        bavard_proto::encode_frame(&proto::Response::from(self))
    }

    /// Decodes a frame's payload, within `limits`.
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Self, WireError> {
        let message: proto::Response = decode_message(payload, limits)?;
        Response::try_from_proto(message, limits)
    }

    fn try_from_proto(message: proto::Response, limits: &Limits) -> Result<Self, WireError> {
        match message.kind.ok_or(WireError::NoKind)? {
            proto::response::Kind::Header(h) => Ok(Response::Header {
                size: check_size(h.size, limits)?,
            }),
            proto::response::Kind::Data(d) => {
                check_frame(&d.encoded)?;
                Ok(Response::Data(Bytes::from(d.encoded)))
            }
            proto::response::Kind::Size(s) => {
                check_frame(&s.proof)?;
                Ok(Response::Size {
                    size: check_size(s.size, limits)?,
                    proof: Bytes::from(s.proof),
                })
            }
            proto::response::Kind::Have(h) => {
                let size = check_size(h.size, limits)?;
                if h.complete {
                    if !h.bitfield.is_empty() {
                        return Err(WireError::CompleteWithBitfield);
                    }
                    return Ok(Response::Have(HaveAnswer {
                        size,
                        blocks: BlockRanges::all(size),
                        complete: true,
                    }));
                }
                let blocks = block_count(size);
                let bad = WireError::BadBitfield {
                    len: h.bitfield.len(),
                    size,
                    max: limits.max_bitfield_len,
                };
                let len = h.bitfield.len();
                if len > limits.max_bitfield_len || len as u64 > Bitfield::byte_len(blocks) {
                    return Err(bad);
                }
                // A shorter bitfield covers a prefix; bits past the blob's end are not allowed.
                let covered = (len as u64 * 8).min(blocks);
                let field = Bitfield::from_bytes(h.bitfield, covered).ok_or(bad)?;
                Ok(Response::Have(HaveAnswer {
                    size,
                    blocks: field.to_ranges(),
                    complete: false,
                }))
            }
            proto::response::Kind::Error(e) => {
                let code = match proto::ErrorCode::try_from(e.code) {
                    Ok(proto::ErrorCode::NotFound) => ErrorCode::NotFound,
                    Ok(proto::ErrorCode::NotAvailable) => ErrorCode::NotAvailable,
                    Ok(proto::ErrorCode::BadRequest) => ErrorCode::BadRequest,
                    Ok(proto::ErrorCode::Busy) => ErrorCode::Busy,
                    Ok(proto::ErrorCode::Unspecified) | Err(_) => {
                        return Err(WireError::UnknownErrorCode(e.code));
                    }
                };
                if e.message.len() > MAX_ERROR_MESSAGE_LEN {
                    return Err(WireError::ErrorMessageTooLong {
                        len: e.message.len(),
                    });
                }
                Ok(Response::Error {
                    code,
                    message: e.message,
                })
            }
        }
    }

    /// An error response, its message cut to [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub fn error(code: ErrorCode, message: impl std::fmt::Display) -> Self {
        let mut message = message.to_string();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut cut = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Response::Error { code, message }
    }
}

impl From<&Response> for proto::Response {
    fn from(response: &Response) -> Self {
        let kind = match response {
            Response::Header { size } => {
                proto::response::Kind::Header(proto::Header { size: *size })
            }
            Response::Data(bytes) => proto::response::Kind::Data(proto::Data {
                encoded: bytes.to_vec(),
            }),
            Response::Size { size, proof } => proto::response::Kind::Size(proto::Size {
                size: *size,
                proof: proof.to_vec(),
            }),
            Response::Have(have) => {
                let bitfield = if have.complete {
                    Vec::new()
                } else {
                    // Only as long as the last block held: a shorter bitfield covers a
                    // prefix, which is how a holder of a huge partial blob stays in bounds.
                    let mut field = Bitfield::new(have.blocks.end().min(block_count(have.size)));
                    for block in have.blocks.iter().flatten() {
                        field.set(block);
                    }
                    field.as_bytes().to_vec()
                };
                proto::response::Kind::Have(proto::Have {
                    size: have.size,
                    complete: have.complete,
                    bitfield,
                })
            }
            Response::Error { code, message } => proto::response::Kind::Error(proto::Error {
                code: match code {
                    ErrorCode::NotFound => proto::ErrorCode::NotFound,
                    ErrorCode::NotAvailable => proto::ErrorCode::NotAvailable,
                    ErrorCode::BadRequest => proto::ErrorCode::BadRequest,
                    ErrorCode::Busy => proto::ErrorCode::Busy,
                } as i32,
                message: message.clone(),
            }),
        };
        proto::Response { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests;
