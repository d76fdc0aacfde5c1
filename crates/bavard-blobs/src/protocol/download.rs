//! The fetching side: the responses to one request, verified.

use super::{ErrorCode, Response};
use crate::encoding::{DecodeError, RangeDecoder, VerifiedBlock, verify_size_proof};
use crate::hash::BlobHash;
use crate::ranges::BlockRanges;

/// What the scheduler should make of a failed request (see
/// [`Fetch`](crate::swarm::Fetch)'s inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The peer sent data that does not verify, or broke the protocol:
    /// [`Fetch::handle_bad_data`](crate::swarm::Fetch::handle_bad_data).
    BadData,
    /// The peer does not hold the blocks:
    /// [`Fetch::handle_not_available`](crate::swarm::Fetch::handle_not_available).
    NotAvailable,
    /// The exchange failed without proof of bad faith (refused, busy, cut short):
    /// [`Fetch::handle_request_failed`](crate::swarm::Fetch::handle_request_failed).
    Failed,
}

/// Why a download (or a size query) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// The peer answered with an error.
    #[error("the peer refused: {code:?}: {message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The peer's header claims another size than the proven one.
    #[error("the peer claims {claimed} bytes, the proven size is {proven}")]
    SizeMismatch {
        /// What it says.
        claimed: u64,
        /// What was proven.
        proven: u64,
    },
    /// A message that has no place here (data before the header, a second header, …).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// The data failed verification, or ended early.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended before the header.
    #[error("the stream ended before any answer")]
    NoAnswer,
}

impl DownloadError {
    /// How the scheduler should take it.
    pub fn verdict(&self) -> Verdict {
        match self {
            DownloadError::Refused {
                code: ErrorCode::NotAvailable,
                ..
            } => Verdict::NotAvailable,
            DownloadError::Refused { .. } | DownloadError::NoAnswer => Verdict::Failed,
            DownloadError::SizeMismatch { .. } | DownloadError::Unexpected(_) => Verdict::BadData,
            DownloadError::Decode(e) => match e {
                DecodeError::BadBlock { .. }
                | DecodeError::BadParent { .. }
                | DecodeError::TrailingData
                | DecodeError::Overfull { .. } => Verdict::BadData,
                DecodeError::Truncated { .. }
                | DecodeError::OutOfBounds { .. }
                | DecodeError::Failed => Verdict::Failed,
            },
        }
    }
}

/// The responses to one get, verified block by block.
///
/// Feed every response of the stream to [`handle`](Self::handle), take out the verified
/// blocks with [`next_block`](Self::next_block) after each (write them to the store, tell
/// the scheduler), and call [`finish`](Self::finish) when the stream ends. The first error
/// ends the download; its [`verdict`](DownloadError::verdict) says what to tell the
/// scheduler.
#[derive(Debug)]
pub struct Download {
    size: u64,
    decoder: RangeDecoder,
    header: bool,
}

impl Download {
    /// A download of `ranges` of blob `hash`, whose proven size is `size`.
    pub fn new(hash: BlobHash, size: u64, ranges: &BlockRanges) -> Result<Self, DecodeError> {
        Ok(Download {
            size,
            decoder: RangeDecoder::new(hash, size, ranges)?,
            header: false,
        })
    }

    /// Takes the next response of the stream.
    pub fn handle(&mut self, response: Response) -> Result<(), DownloadError> {
        match (self.header, response) {
            (false, Response::Header { size }) if size == self.size => {
                self.header = true;
                Ok(())
            }
            (false, Response::Header { size }) => Err(DownloadError::SizeMismatch {
                claimed: size,
                proven: self.size,
            }),
            (false, Response::Error { code, message }) => {
                Err(DownloadError::Refused { code, message })
            }
            (false, _) => Err(DownloadError::Unexpected("data before the header")),
            (true, Response::Data(bytes)) => Ok(self.decoder.push(&bytes)?),
            (true, _) => Err(DownloadError::Unexpected(
                "a second answer after the header",
            )),
        }
    }

    /// The next verified block, an error at the first bad one, or `None` for now.
    pub fn next_block(&mut self) -> Option<Result<VerifiedBlock, DownloadError>> {
        self.decoder
            .next_block()
            .map(|block| block.map_err(DownloadError::from))
    }

    /// The stream ended: an error if blocks are missing. Drains nothing: call
    /// [`next_block`](Self::next_block) until `None` first.
    pub fn finish(self) -> Result<(), DownloadError> {
        if !self.header {
            return Err(DownloadError::NoAnswer);
        }
        Ok(self.decoder.finish()?)
    }
}

/// Checks the answer to a size query for blob `hash`: on success the size is proven and
/// the returned block starts the fetch ([`Store::begin_fetch`](crate::store::Store::begin_fetch)).
pub fn check_size_answer(
    hash: BlobHash,
    response: Response,
) -> Result<VerifiedBlock, DownloadError> {
    match response {
        Response::Size { size, proof } => Ok(verify_size_proof(hash, size, &proof)?),
        Response::Error { code, message } => Err(DownloadError::Refused { code, message }),
        _ => Err(DownloadError::Unexpected("not a size answer")),
    }
}
