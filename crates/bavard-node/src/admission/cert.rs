//! The signed objects of cluster admission: member certificates, revocation lists and join
//! tokens, and the authority that signs them.
//!
//! The **cluster authority** is an ed25519 key the operator holds (on the node that created the
//! cluster, `DATA_DIR/cluster.key`); its public key names the cluster. A **certificate** binds a
//! member's peer id to the cluster until an expiry; any node that knows the cluster's public key
//! verifies it offline, and members cannot make one (they do not hold the key). A **revocation
//! list** is a versioned, signed list of peer ids no longer admitted. A **join token** lets one
//! new node obtain a certificate: it names the authority's node and addresses and carries a
//! random secret that the authority accepts once, before the token expires.
//!
//! Encodings are fixed-layout binary (canonical, so signatures are over exactly these bytes):
//!
//! ```text
//! certificate:  "bcc1" ‖ authority key (32) ‖ u8 len ‖ peer id ‖ u64 not_after_ms ‖ signature (64)
//! revocations:  "bcr1" ‖ authority key (32) ‖ u64 version ‖ u32 count ‖ count × (u8 len ‖ peer id)
//!               ‖ signature (64)
//! join token:   "bavard-join-1." ‖ base64url(authority key (32) ‖ u8 len ‖ admin peer id ‖
//!               u64 not_after_ms ‖ secret (16) ‖ u8 count ‖ count × (u16 len ‖ multiaddr))
//! ```
//!
//! Signatures cover a domain-separation string followed by every byte before the signature.

use base64::Engine as _;
use libp2p::identity::ed25519;
use libp2p::{Multiaddr, PeerId};
use sha2::{Digest as _, Sha256};

const CERT_MAGIC: &[u8; 4] = b"bcc1";
const REVOKED_MAGIC: &[u8; 4] = b"bcr1";
const TOKEN_PREFIX: &str = "bavard-join-1.";
const CERT_CONTEXT: &[u8] = b"bavard-member-certificate-v1";
const REVOKED_CONTEXT: &[u8] = b"bavard-revocations-v1";
const SIGNATURE_LEN: usize = 64;
/// Most addresses a join token carries.
const MAX_TOKEN_ADDRS: usize = 4;
/// Most peers a revocation list may name (bounds decoding).
pub const MAX_REVOKED: usize = 100_000;

/// Why an admission object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// It does not decode.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which object.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// It was signed by another cluster's authority.
    #[error("signed by another cluster's authority")]
    OtherCluster,
    /// The signature does not verify.
    #[error("the {0}'s signature does not verify")]
    BadSignature(&'static str),
    /// A certificate for another peer than the one presenting it.
    #[error("the certificate is for {certified}, not for {presenter}")]
    WrongPeer {
        /// Who it certifies.
        certified: String,
        /// Who presented it.
        presenter: String,
    },
    /// Expired.
    #[error("the {0} has expired")]
    Expired(&'static str),
    /// The peer was revoked.
    #[error("{0} was revoked from the cluster")]
    Revoked(String),
}

fn malformed(what: &'static str, why: impl Into<String>) -> AdmissionError {
    AdmissionError::Malformed {
        what,
        why: why.into(),
    }
}

/// A cluster's id for people: the first 8 bytes of SHA-256 of its authority key, hex.
pub fn cluster_id(authority: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(authority)[..8])
}

/// A member certificate (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The authority that signed it.
    pub authority: [u8; 32],
    /// The member.
    pub peer: PeerId,
    /// Valid until (unix ms).
    pub not_after_ms: u64,
    signature: Vec<u8>,
}

impl Certificate {
    fn signed_part(authority: &[u8; 32], peer: &PeerId, not_after_ms: u64) -> Vec<u8> {
        let id = peer.to_bytes();
        let mut out = Vec::with_capacity(4 + 32 + 1 + id.len() + 8);
        out.extend_from_slice(CERT_MAGIC);
        out.extend_from_slice(authority);
        out.push(id.len() as u8);
        out.extend_from_slice(&id);
        out.extend_from_slice(&not_after_ms.to_be_bytes());
        out
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::signed_part(&self.authority, &self.peer, self.not_after_ms);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads the wire form (without checking the signature: see [`Certificate::verify`]).
    ///
    /// # Errors
    ///
    /// [`AdmissionError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, AdmissionError> {
        let what = "certificate";
        let mut r = Reader(bytes);
        if r.take(4).ok_or_else(|| malformed(what, "truncated"))? != CERT_MAGIC {
            return Err(malformed(what, "bad magic"));
        }
        let authority = r
            .array32()
            .ok_or_else(|| malformed(what, "truncated key"))?;
        let id_len = r.u8().ok_or_else(|| malformed(what, "truncated peer id"))?;
        let id = r
            .take(usize::from(id_len))
            .ok_or_else(|| malformed(what, "truncated peer id"))?;
        let peer = PeerId::from_bytes(id).map_err(|e| malformed(what, e.to_string()))?;
        let not_after_ms = r.u64().ok_or_else(|| malformed(what, "truncated expiry"))?;
        let signature = r
            .take(SIGNATURE_LEN)
            .ok_or_else(|| malformed(what, "truncated signature"))?
            .to_vec();
        if !r.0.is_empty() {
            return Err(malformed(what, "trailing bytes"));
        }
        Ok(Self {
            authority,
            peer,
            not_after_ms,
            signature,
        })
    }

    /// Checks that the certificate was signed by `authority`, names `presenter` and has not
    /// expired at `now_ms`.
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn verify(
        &self,
        authority: &[u8; 32],
        presenter: &PeerId,
        now_ms: u64,
    ) -> Result<(), AdmissionError> {
        if &self.authority != authority {
            return Err(AdmissionError::OtherCluster);
        }
        let key = ed25519::PublicKey::try_from_bytes(authority)
            .map_err(|_| malformed("cluster key", "not an ed25519 key"))?;
        let mut msg = CERT_CONTEXT.to_vec();
        msg.extend_from_slice(&Self::signed_part(
            &self.authority,
            &self.peer,
            self.not_after_ms,
        ));
        if !key.verify(&msg, &self.signature) {
            return Err(AdmissionError::BadSignature("certificate"));
        }
        if &self.peer != presenter {
            return Err(AdmissionError::WrongPeer {
                certified: self.peer.to_string(),
                presenter: presenter.to_string(),
            });
        }
        if now_ms >= self.not_after_ms {
            return Err(AdmissionError::Expired("certificate"));
        }
        Ok(())
    }
}

/// A signed revocation list (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Increases with every change; 0 is the empty list nobody signed.
    pub version: u64,
    /// The revoked members.
    pub peers: Vec<PeerId>,
    authority: [u8; 32],
    signature: Vec<u8>,
}

impl Revocations {
    fn signed_part(authority: &[u8; 32], version: u64, peers: &[PeerId]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 32 + 8 + 4 + peers.len() * 40);
        out.extend_from_slice(REVOKED_MAGIC);
        out.extend_from_slice(authority);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(peers.len() as u32).to_be_bytes());
        for p in peers {
            let id = p.to_bytes();
            out.push(id.len() as u8);
            out.extend_from_slice(&id);
        }
        out
    }

    /// The wire form; empty for the unsigned empty list.
    pub fn encode(&self) -> Vec<u8> {
        if self.version == 0 {
            return Vec::new();
        }
        let mut out = Self::signed_part(&self.authority, self.version, &self.peers);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads and verifies a list signed by `authority` (empty bytes: the empty list).
    ///
    /// # Errors
    ///
    /// [`AdmissionError::Malformed`], [`AdmissionError::OtherCluster`] or
    /// [`AdmissionError::BadSignature`].
    pub fn decode_verified(bytes: &[u8], authority: &[u8; 32]) -> Result<Self, AdmissionError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let what = "revocation list";
        let mut r = Reader(bytes);
        if r.take(4).ok_or_else(|| malformed(what, "truncated"))? != REVOKED_MAGIC {
            return Err(malformed(what, "bad magic"));
        }
        let signer = r
            .array32()
            .ok_or_else(|| malformed(what, "truncated key"))?;
        if &signer != authority {
            return Err(AdmissionError::OtherCluster);
        }
        let version = r
            .u64()
            .ok_or_else(|| malformed(what, "truncated version"))?;
        let count = r.u32().ok_or_else(|| malformed(what, "truncated count"))? as usize;
        if count > MAX_REVOKED {
            return Err(malformed(
                what,
                format!("{count} peers, over {MAX_REVOKED}"),
            ));
        }
        let mut peers = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let len = r.u8().ok_or_else(|| malformed(what, "truncated peer"))?;
            let id = r
                .take(usize::from(len))
                .ok_or_else(|| malformed(what, "truncated peer"))?;
            peers.push(PeerId::from_bytes(id).map_err(|e| malformed(what, e.to_string()))?);
        }
        let signature = r
            .take(SIGNATURE_LEN)
            .ok_or_else(|| malformed(what, "truncated signature"))?
            .to_vec();
        if !r.0.is_empty() {
            return Err(malformed(what, "trailing bytes"));
        }
        let key = ed25519::PublicKey::try_from_bytes(authority)
            .map_err(|_| malformed("cluster key", "not an ed25519 key"))?;
        let mut msg = REVOKED_CONTEXT.to_vec();
        msg.extend_from_slice(&Self::signed_part(authority, version, &peers));
        if !key.verify(&msg, &signature) {
            return Err(AdmissionError::BadSignature("revocation list"));
        }
        Ok(Self {
            version,
            peers,
            authority: signer,
            signature,
        })
    }
}

/// A join token (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The cluster's authority key.
    pub authority: [u8; 32],
    /// The node that holds the authority and redeems the token.
    pub admin: PeerId,
    /// Where to reach it.
    pub addrs: Vec<Multiaddr>,
    /// The one-time secret.
    pub secret: [u8; 16],
    /// Valid until (unix ms).
    pub not_after_ms: u64,
}

impl JoinToken {
    /// The token as a string to hand to `bavard node --join`.
    pub fn encode(&self) -> String {
        let admin = self.admin.to_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&self.authority);
        out.push(admin.len() as u8);
        out.extend_from_slice(&admin);
        out.extend_from_slice(&self.not_after_ms.to_be_bytes());
        out.extend_from_slice(&self.secret);
        let addrs: Vec<Vec<u8>> = self
            .addrs
            .iter()
            .take(MAX_TOKEN_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        out.push(addrs.len() as u8);
        for a in addrs {
            out.extend_from_slice(&(a.len() as u16).to_be_bytes());
            out.extend_from_slice(&a);
        }
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Reads a token string.
    ///
    /// # Errors
    ///
    /// [`AdmissionError::Malformed`] naming what is wrong.
    pub fn decode(text: &str) -> Result<Self, AdmissionError> {
        let what = "join token";
        let body = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| malformed(what, format!("it does not start with {TOKEN_PREFIX}")))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| malformed(what, e.to_string()))?;
        let mut r = Reader(&bytes);
        let authority = r.array32().ok_or_else(|| malformed(what, "truncated"))?;
        let len = r.u8().ok_or_else(|| malformed(what, "truncated"))?;
        let admin = PeerId::from_bytes(
            r.take(usize::from(len))
                .ok_or_else(|| malformed(what, "truncated"))?,
        )
        .map_err(|e| malformed(what, e.to_string()))?;
        let not_after_ms = r.u64().ok_or_else(|| malformed(what, "truncated"))?;
        let mut secret = [0u8; 16];
        secret.copy_from_slice(r.take(16).ok_or_else(|| malformed(what, "truncated"))?);
        let count = r.u8().ok_or_else(|| malformed(what, "truncated"))?;
        let mut addrs = Vec::new();
        for _ in 0..count.min(MAX_TOKEN_ADDRS as u8) {
            let len = r
                .u16()
                .ok_or_else(|| malformed(what, "truncated address"))?;
            let a = r
                .take(usize::from(len))
                .ok_or_else(|| malformed(what, "truncated address"))?;
            addrs
                .push(Multiaddr::try_from(a.to_vec()).map_err(|e| malformed(what, e.to_string()))?);
        }
        Ok(Self {
            authority,
            admin,
            addrs,
            secret,
            not_after_ms,
        })
    }
}

/// The cluster authority: the key that signs certificates and revocation lists.
pub struct Authority {
    key: ed25519::Keypair,
}

impl Authority {
    /// A new authority (a new cluster).
    pub fn generate() -> Self {
        Self {
            key: ed25519::Keypair::generate(),
        }
    }

    /// The authority from its secret key bytes.
    ///
    /// # Errors
    ///
    /// [`AdmissionError::Malformed`] when they are not an ed25519 secret key.
    pub fn from_secret(secret: &[u8]) -> Result<Self, AdmissionError> {
        let mut bytes = secret.to_vec();
        let secret = ed25519::SecretKey::try_from_bytes(&mut bytes)
            .map_err(|e| malformed("cluster key", e.to_string()))?;
        Ok(Self {
            key: ed25519::Keypair::from(secret),
        })
    }

    /// Its secret key bytes (to store, mode 0600).
    pub fn secret(&self) -> Vec<u8> {
        self.key.secret().as_ref().to_vec()
    }

    /// Its public key: the cluster's name.
    pub fn public(&self) -> [u8; 32] {
        self.key.public().to_bytes()
    }

    /// A certificate for `peer`, valid until `not_after_ms`.
    pub fn certify(&self, peer: PeerId, not_after_ms: u64) -> Certificate {
        let authority = self.public();
        let mut msg = CERT_CONTEXT.to_vec();
        msg.extend_from_slice(&Certificate::signed_part(&authority, &peer, not_after_ms));
        Certificate {
            authority,
            peer,
            not_after_ms,
            signature: self.key.sign(&msg),
        }
    }

    /// A revocation list at `version` naming `peers`.
    pub fn revocations(&self, version: u64, peers: Vec<PeerId>) -> Revocations {
        let authority = self.public();
        let mut msg = REVOKED_CONTEXT.to_vec();
        msg.extend_from_slice(&Revocations::signed_part(&authority, version, &peers));
        Revocations {
            version,
            peers,
            authority,
            signature: self.key.sign(&msg),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    }
    fn array32(&mut self) -> Option<[u8; 32]> {
        self.take(32).map(|b| {
            let mut a = [0u8; 32];
            a.copy_from_slice(b);
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_verifies_for_its_peer_and_cluster_only() {
        let ca = Authority::generate();
        let peer = PeerId::random();
        let cert = ca.certify(peer, 10_000);
        let wire = cert.encode();
        let back = Certificate::decode(&wire).unwrap();
        assert_eq!(back, cert);
        assert_eq!(back.verify(&ca.public(), &peer, 5_000), Ok(()));
        assert_eq!(
            back.verify(&ca.public(), &peer, 10_000),
            Err(AdmissionError::Expired("certificate"))
        );
        let thief = PeerId::random();
        assert!(matches!(
            back.verify(&ca.public(), &thief, 5_000),
            Err(AdmissionError::WrongPeer { .. })
        ));
        let other = Authority::generate();
        assert_eq!(
            back.verify(&other.public(), &peer, 5_000),
            Err(AdmissionError::OtherCluster)
        );
        // A member cannot extend its own certificate.
        let mut extended = wire.clone();
        let at = wire.len() - SIGNATURE_LEN - 8;
        extended[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            Certificate::decode(&extended)
                .unwrap()
                .verify(&ca.public(), &peer, 5_000),
            Err(AdmissionError::BadSignature("certificate"))
        );
        for n in 0..wire.len() {
            assert!(Certificate::decode(&wire[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn revocation_lists_verify_and_refuse_forgery() {
        let ca = Authority::generate();
        let revoked = vec![PeerId::random(), PeerId::random()];
        let list = ca.revocations(3, revoked.clone());
        let wire = list.encode();
        let back = Revocations::decode_verified(&wire, &ca.public()).unwrap();
        assert_eq!(back.version, 3);
        assert_eq!(back.peers, revoked);
        let mut tampered = wire.clone();
        tampered[40] ^= 1; // the version
        assert_eq!(
            Revocations::decode_verified(&tampered, &ca.public()),
            Err(AdmissionError::BadSignature("revocation list"))
        );
        assert_eq!(
            Revocations::decode_verified(&wire, &Authority::generate().public()),
            Err(AdmissionError::OtherCluster)
        );
        assert_eq!(
            Revocations::decode_verified(&[], &ca.public()),
            Ok(Revocations::default())
        );
    }

    #[test]
    fn join_tokens_round_trip_and_garbage_is_a_typed_error() {
        let token = JoinToken {
            authority: Authority::generate().public(),
            admin: PeerId::random(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            secret: [7; 16],
            not_after_ms: 99,
        };
        let text = token.encode();
        assert!(text.starts_with("bavard-join-1."));
        assert_eq!(JoinToken::decode(&text), Ok(token));
        assert!(JoinToken::decode("hello").is_err());
        assert!(JoinToken::decode("bavard-join-1.!!!").is_err());
        assert!(JoinToken::decode("bavard-join-1.AAAA").is_err());
    }
}
