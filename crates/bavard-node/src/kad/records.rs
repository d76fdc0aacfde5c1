//! DHT records: what anyone in the open DHT may put and get, validated by namespace as
//! go-libp2p-kad-dht does, and kept apart from the replicated KV store (nothing written through
//! Kademlia is ever served by `/v1/kv` or changes it).
//!
//! - **`/pk/<multihash>`**: a public key; the value is the protobuf-encoded libp2p public key
//!   and the key must name it (the peer id of the key). Immutable: any valid copy is the same.
//! - **`/signed/<SHA-256(public key ‖ salt)>`**: a signed mutable record in the spirit of BEP 44
//!   (Mainline DHT): an ed25519 public key, an optional salt (≤ 64 bytes), a sequence number, a
//!   value and a signature over the salt, the sequence number and the value. Nodes keep only a
//!   correctly signed record with a higher sequence number than the one they hold (the sequence
//!   number is the record's version, so the store's last-writer-wins keeps the highest); a put
//!   may name the sequence number it expects to replace (compare-and-swap).
//! - **any other key**: an opaque record, accepted only when `[dht] accept_unvalidated` is on
//!   (the default, for interoperability with rust-libp2p, which validates nothing); the latest
//!   put a node receives wins there.

use libp2p::PeerId;
use libp2p::identity::{PublicKey, ed25519};
use sha2::{Digest as _, Sha256};

/// Key prefix of public-key records.
pub const PK_PREFIX: &[u8] = b"/pk/";
/// Key prefix of signed mutable records.
pub const SIGNED_PREFIX: &[u8] = b"/signed/";
/// Longest salt of a signed record, in bytes (BEP 44's limit).
pub const MAX_SALT: usize = 64;

const SIGNED_MAGIC: &[u8; 4] = b"bsr1";
const SIGNING_CONTEXT: &[u8] = b"bavard-signed-record-v1";

/// Why a DHT record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A `/pk/` record whose value is not a public key, or not the one its key names.
    #[error("invalid public-key record: {0}")]
    PublicKey(String),
    /// A `/signed/` record that does not decode, or is stored under the wrong key.
    #[error("invalid signed record: {0}")]
    Malformed(String),
    /// A signed record whose signature does not verify.
    #[error("the signed record's signature does not verify")]
    BadSignature,
    /// A key in no known namespace while `[dht] accept_unvalidated` is off.
    #[error(
        "keys outside /pk/ and /signed/ are refused by this node ([dht] accept_unvalidated = false)"
    )]
    Unvalidated,
    /// A value over `[dht] max_value_size`.
    #[error("the value is {len} bytes, over the {max}-byte limit of DHT records")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// What a valid DHT record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A public key.
    PublicKey,
    /// A signed mutable record.
    Signed(SignedRecord),
    /// An opaque record.
    Opaque,
}

/// Checks a record put under `key`.
///
/// # Errors
///
/// A [`RecordError`] naming what is wrong.
pub fn validate(
    key: &[u8],
    value: &[u8],
    accept_unvalidated: bool,
    max_value: usize,
) -> Result<Kind, RecordError> {
    if value.len() > max_value {
        return Err(RecordError::TooLarge {
            len: value.len(),
            max: max_value,
        });
    }
    if let Some(name) = key.strip_prefix(PK_PREFIX) {
        let pk = PublicKey::try_decode_protobuf(value)
            .map_err(|e| RecordError::PublicKey(format!("not a public key: {e}")))?;
        if PeerId::from_public_key(&pk).to_bytes() != name {
            return Err(RecordError::PublicKey(
                "the key does not name this public key".into(),
            ));
        }
        return Ok(Kind::PublicKey);
    }
    if key.starts_with(SIGNED_PREFIX) {
        let record = SignedRecord::decode(value)?;
        if record.key() != key {
            return Err(RecordError::Malformed(
                "stored under another key than its public key and salt name".into(),
            ));
        }
        record.verify()?;
        return Ok(Kind::Signed(record));
    }
    if accept_unvalidated {
        Ok(Kind::Opaque)
    } else {
        Err(RecordError::Unvalidated)
    }
}

/// A signed mutable record (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// The ed25519 public key of its owner.
    pub public_key: [u8; 32],
    /// Distinguishes several records of one key (≤ [`MAX_SALT`] bytes).
    pub salt: Vec<u8>,
    /// Increases with every new value.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// ed25519 signature over the signing bytes.
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRecord")
            .field("public_key", &hex::encode(self.public_key))
            .field("salt", &String::from_utf8_lossy(&self.salt))
            .field("seq", &self.seq)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// The DHT key of the signed records of `public_key` with `salt`.
pub fn signed_key(public_key: &[u8; 32], salt: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(public_key);
    h.update(salt);
    let mut key = SIGNED_PREFIX.to_vec();
    key.extend_from_slice(&h.finalize());
    key
}

/// The bytes a signed record's signature covers.
pub fn signing_bytes(salt: &[u8], seq: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_CONTEXT.len() + 1 + salt.len() + 8 + value.len());
    out.extend_from_slice(SIGNING_CONTEXT);
    out.push(salt.len() as u8);
    out.extend_from_slice(salt);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(value);
    out
}

impl SignedRecord {
    /// Signs `value` as sequence `seq` of `keypair`'s record with `salt`.
    pub fn sign(keypair: &ed25519::Keypair, salt: &[u8], seq: u64, value: Vec<u8>) -> Self {
        let signature = keypair.sign(&signing_bytes(salt, seq, &value));
        Self {
            public_key: keypair.public().to_bytes(),
            salt: salt.to_vec(),
            seq,
            value,
            signature,
        }
    }

    /// Its DHT key.
    pub fn key(&self) -> Vec<u8> {
        signed_key(&self.public_key, &self.salt)
    }

    /// Checks the signature (and the salt's length).
    ///
    /// # Errors
    ///
    /// [`RecordError::BadSignature`], or [`RecordError::Malformed`] for a bad key or salt.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.salt.len() > MAX_SALT {
            return Err(RecordError::Malformed(format!(
                "a salt of {} bytes, over {MAX_SALT}",
                self.salt.len()
            )));
        }
        let pk = ed25519::PublicKey::try_from_bytes(&self.public_key)
            .map_err(|_| RecordError::Malformed("not an ed25519 public key".into()))?;
        if pk.verify(
            &signing_bytes(&self.salt, self.seq, &self.value),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(RecordError::BadSignature)
        }
    }

    /// The wire form (the value of the DHT record): `"bsr1" ‖ public key (32) ‖ u8 salt length ‖
    /// salt ‖ u64 seq ‖ u8 signature length ‖ signature ‖ value`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 32 + 1 + self.salt.len() + 8 + 1 + self.signature.len() + self.value.len(),
        );
        out.extend_from_slice(SIGNED_MAGIC);
        out.extend_from_slice(&self.public_key);
        out.push(self.salt.len() as u8);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(self.signature.len() as u8);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.value);
        out
    }

    /// Reads [`SignedRecord::encode`]'s form.
    ///
    /// # Errors
    ///
    /// [`RecordError::Malformed`] for anything truncated or unknown.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let bad = |what: &str| RecordError::Malformed(what.to_string());
        let rest = bytes
            .strip_prefix(SIGNED_MAGIC.as_slice())
            .ok_or_else(|| bad("not a signed record (bad magic)"))?;
        let (pk, rest) = split(rest, 32).ok_or_else(|| bad("truncated public key"))?;
        let (salt_len, rest) = split(rest, 1).ok_or_else(|| bad("truncated salt"))?;
        let (salt, rest) =
            split(rest, usize::from(salt_len[0])).ok_or_else(|| bad("truncated salt"))?;
        let (seq, rest) = split(rest, 8).ok_or_else(|| bad("truncated sequence number"))?;
        let (sig_len, rest) = split(rest, 1).ok_or_else(|| bad("truncated signature"))?;
        let (sig, value) =
            split(rest, usize::from(sig_len[0])).ok_or_else(|| bad("truncated signature"))?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pk);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(seq);
        Ok(Self {
            public_key,
            salt: salt.to_vec(),
            seq: u64::from_be_bytes(seq_bytes),
            value: value.to_vec(),
            signature: sig.to_vec(),
        })
    }
}

fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    #[test]
    fn a_public_key_record_must_name_its_key() {
        let kp = libp2p::identity::Keypair::generate_ed25519();
        let value = kp.public().encode_protobuf();
        let mut key = PK_PREFIX.to_vec();
        key.extend_from_slice(&kp.public().to_peer_id().to_bytes());
        assert_eq!(validate(&key, &value, false, MAX), Ok(Kind::PublicKey));
        let other = libp2p::identity::Keypair::generate_ed25519();
        assert!(matches!(
            validate(&key, &other.public().encode_protobuf(), true, MAX),
            Err(RecordError::PublicKey(_))
        ));
        assert!(matches!(
            validate(&key, b"garbage", true, MAX),
            Err(RecordError::PublicKey(_))
        ));
    }

    #[test]
    fn signed_records_verify_round_trip_and_refuse_tampering() {
        let kp = ed25519::Keypair::generate();
        let r = SignedRecord::sign(&kp, b"profile", 7, b"hello".to_vec());
        let key = r.key();
        assert!(key.starts_with(SIGNED_PREFIX));
        let wire = r.encode();
        assert_eq!(SignedRecord::decode(&wire).unwrap(), r);
        assert_eq!(
            validate(&key, &wire, false, MAX),
            Ok(Kind::Signed(r.clone()))
        );
        // Another value under the same signature.
        let mut forged = r.clone();
        forged.value = b"evil".to_vec();
        assert_eq!(
            validate(&key, &forged.encode(), true, MAX),
            Err(RecordError::BadSignature)
        );
        // A higher sequence number under the old signature.
        let mut replayed = r.clone();
        replayed.seq = 8;
        assert_eq!(
            validate(&key, &replayed.encode(), true, MAX),
            Err(RecordError::BadSignature)
        );
        // The right record under another key.
        let wrong_key = signed_key(&r.public_key, b"other salt");
        assert!(matches!(
            validate(&wrong_key, &wire, true, MAX),
            Err(RecordError::Malformed(_))
        ));
        // Every truncation is a typed error.
        for n in 0..wire.len() - r.value.len() {
            assert!(SignedRecord::decode(&wire[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn unknown_namespaces_are_opaque_only_when_allowed_and_sizes_are_bounded() {
        assert_eq!(validate(b"plain", b"v", true, MAX), Ok(Kind::Opaque));
        assert_eq!(
            validate(b"plain", b"v", false, MAX),
            Err(RecordError::Unvalidated)
        );
        assert!(matches!(
            validate(b"plain", &[0u8; 20], true, 10),
            Err(RecordError::TooLarge { len: 20, max: 10 })
        ));
    }
}
