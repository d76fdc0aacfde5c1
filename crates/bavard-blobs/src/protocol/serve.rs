//! The serving side: what to answer a request, from the store.

use std::time::SystemTime;

use super::{ErrorCode, HaveAnswer, Limits, Request, Response};
use crate::encoding::{EncodeError, RangeEncoder};
use crate::ranges::{BlockRanges, block_count};
use crate::store::{BlobReader, Store, StoreError};

/// What to send back for one request.
#[derive(Debug)]
pub enum Answer {
    /// One message, then close the stream.
    One(Response),
    /// A get being served: send `header`, then each of `frames` as it comes, then close.
    Stream {
        /// [`Response::Header`].
        header: Response,
        /// The blocks, read and re-verified one at a time.
        frames: DataFrames,
    },
}

/// The data frames of a get, each re-verified as it is read from disk.
///
/// On `Err(EncodeError::Corrupt { blocks })`, close the stream (the peer sees a truncated
/// response) and call [`Store::forget_blocks`]; on an IO error, just close it.
#[derive(Debug)]
pub struct DataFrames(RangeEncoder<BlobReader>);

impl Iterator for DataFrames {
    type Item = Result<Response, EncodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|frame| frame.map(Response::Data))
    }
}

/// Answers `request` from `store`: only verified blocks are ever offered or served.
///
/// Takes the store only to open the blob: the returned frames read through their own file
/// handles, so the node can release the store's lock and stream them from a blocking task.
/// A size proof found corrupt on disk is forgotten here and answered as not available.
pub fn respond(store: &mut Store, request: &Request, limits: &Limits, now: SystemTime) -> Answer {
    let hash = request.hash();
    let not_found = || Answer::One(Response::error(ErrorCode::NotFound, "blob not here"));
    match request {
        Request::Have { .. } => {
            let Some((size, verified)) = store.have(hash) else {
                return not_found();
            };
            let complete = verified.block_count() == block_count(size);
            // A bitfield over the limit is cut to the prefix that fits.
            let max_blocks = (limits.max_bitfield_len as u64).saturating_mul(8);
            let blocks = if complete || verified.end() <= max_blocks {
                verified
            } else {
                verified
                    .iter()
                    .map(|r| r.start..r.end.min(max_blocks))
                    .collect::<BlockRanges>()
            };
            Answer::One(Response::Have(HaveAnswer {
                size,
                blocks,
                complete,
            }))
        }
        Request::Size { .. } => {
            let reader = match store.reader(hash, now) {
                Ok(reader) => reader,
                Err(StoreError::NotFound(_)) => return not_found(),
                Err(e) => return Answer::One(Response::error(ErrorCode::Busy, e)),
            };
            match reader.size_proof() {
                Ok(proof) => Answer::One(Response::Size {
                    size: reader.size(),
                    proof,
                }),
                Err(e) => {
                    if let StoreError::Encode(EncodeError::Corrupt { blocks }) = &e {
                        // Best effort: if forgetting fails too, the next read finds it again.
                        let _ = store.forget_blocks(hash, blocks.clone());
                    }
                    Answer::One(Response::error(ErrorCode::NotAvailable, e))
                }
            }
        }
        Request::Get { ranges, .. } => {
            let reader = match store.reader(hash, now) {
                Ok(reader) => reader,
                Err(StoreError::NotFound(_)) => return not_found(),
                Err(e) => return Answer::One(Response::error(ErrorCode::Busy, e)),
            };
            let size = reader.size();
            if ranges.end() > block_count(size) {
                return Answer::One(Response::error(
                    ErrorCode::BadRequest,
                    format!("blocks past the end of a {size}-byte blob"),
                ));
            }
            match reader.into_encoder(ranges) {
                Ok(encoder) => Answer::Stream {
                    header: Response::Header { size },
                    frames: DataFrames(encoder),
                },
                Err(e) => Answer::One(Response::error(ErrorCode::NotAvailable, e)),
            }
        }
    }
}
