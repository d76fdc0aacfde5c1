//! A test authenticator: a keyed hash of the signed bytes with a per-member secret, standing in
//! for ed25519. The verifier knows every member's secret (as it would know every public key);
//! a signature made with any other secret is refused, which is all the tests need.

#![allow(dead_code)] // each test file uses its half

use std::hash::{DefaultHasher, Hash, Hasher};

use bavard_gossip::broadcast::{self, SignedGossip};
use bavard_gossip::membership::{self, SignedFields};

/// Member `id`'s secret.
pub(crate) fn secret(id: u64) -> u64 {
    id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed
}

/// `signer`'s signature of `bytes`.
pub(crate) fn tag(signer: u64, bytes: &[u8]) -> Vec<u8> {
    let mut h = DefaultHasher::new();
    secret(signer).hash(&mut h);
    bytes.hash(&mut h);
    h.finish().to_be_bytes().to_vec()
}

/// Signs as `me` (whatever the fields say: a forger signs with its own secret), verifies with
/// the secret of the member or publisher named in the fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed {
    pub(crate) me: u64,
}

impl Keyed {
    pub(crate) fn boxed(me: u64) -> Box<Self> {
        Box::new(Self { me })
    }
}

/// `signer`'s signature of a membership claim.
pub(crate) fn sign_update(signer: u64, fields: &SignedFields<'_, u64>) -> Vec<u8> {
    tag(signer, &fields.signing_bytes(&fields.member.to_be_bytes()))
}

/// `signer`'s signature of a topic message.
pub(crate) fn sign_gossip(signer: u64, message: &SignedGossip<'_, u64>) -> Vec<u8> {
    tag(
        signer,
        &message.signing_bytes(&message.publisher.to_be_bytes()),
    )
}

impl membership::Authenticator<u64> for Keyed {
    fn sign(&mut self, update: &SignedFields<'_, u64>) -> Vec<u8> {
        sign_update(self.me, update)
    }

    fn verify(&self, update: &SignedFields<'_, u64>, signature: &[u8]) -> bool {
        sign_update(*update.member, update) == signature
    }
}

impl broadcast::Authenticator<u64> for Keyed {
    fn sign(&mut self, message: &SignedGossip<'_, u64>) -> Vec<u8> {
        sign_gossip(self.me, message)
    }

    fn verify(&self, message: &SignedGossip<'_, u64>, signature: &[u8]) -> bool {
        sign_gossip(*message.publisher, message) == signature
    }
}
