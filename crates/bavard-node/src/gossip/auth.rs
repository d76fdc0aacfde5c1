//! The node's gossip authenticators: membership claims and topic messages signed with the
//! author's ed25519 peer key, and accepted only from cluster members.
//!
//! A peer id names its key (ed25519 ids embed the public key), so a signature proves who made a
//! claim without any lookup. A key alone proves nothing about membership: anyone can make keys.
//! So a member's `Alive` claim carries its cluster certificate in its metadata ([`super::meta`]),
//! checked against the cluster authority; a claim without a valid, unrevoked certificate is
//! dropped like a forged one. A topic message is accepted only from a publisher this node knows
//! as admitted (from a hello, or from a membership claim whose certificate it checked).

use std::sync::Arc;

use bavard_gossip::broadcast::{self, SignedGossip};
use bavard_gossip::membership::{self, MemberState, SignedFields};
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};

use crate::admission::Admission;

/// The public key a peer id names, when it embeds one (ed25519 and other small keys use the
/// identity multihash; ids hashed with SHA-256 cannot be verified without the key).
pub(crate) fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let hash = peer.as_ref();
    (hash.code() == 0).then(|| PublicKey::try_decode_protobuf(hash.digest()).ok())?
}

fn verify_by(peer: &PeerId, bytes: &[u8], signature: &[u8]) -> bool {
    public_key(peer).is_some_and(|key| key.verify(bytes, signature))
}

fn sign(keypair: &Keypair, bytes: &[u8]) -> Vec<u8> {
    // Signing with an ed25519 key cannot fail; an empty signature is refused by every peer.
    keypair.sign(bytes).unwrap_or_default()
}

/// Signs and checks membership claims (SWIM self-updates).
pub(crate) struct MemberAuth {
    pub(crate) keypair: Keypair,
    pub(crate) admission: Arc<Admission>,
}

impl membership::Authenticator<PeerId> for MemberAuth {
    fn sign(&mut self, update: &SignedFields<'_, PeerId>) -> Vec<u8> {
        sign(
            &self.keypair,
            &update.signing_bytes(&update.member.to_bytes()),
        )
    }

    fn verify(&self, update: &SignedFields<'_, PeerId>, signature: &[u8]) -> bool {
        let member = update.member;
        if !verify_by(member, &update.signing_bytes(&member.to_bytes()), signature) {
            return false;
        }
        match update.state {
            // Alive makes a member, so it must show it belongs to the cluster.
            MemberState::Alive => {
                let Some(cert) = super::meta::certificate(update.meta) else {
                    return false;
                };
                self.admission.check(member, cert).is_ok()
            }
            // A member leaving speaks only for itself; its signature is enough.
            _ => true,
        }
    }
}

/// Signs and checks topic messages.
pub(crate) struct TopicAuth {
    pub(crate) keypair: Keypair,
    pub(crate) me: PeerId,
    pub(crate) admission: Arc<Admission>,
}

impl broadcast::Authenticator<PeerId> for TopicAuth {
    fn sign(&mut self, message: &SignedGossip<'_, PeerId>) -> Vec<u8> {
        sign(
            &self.keypair,
            &message.signing_bytes(&message.publisher.to_bytes()),
        )
    }

    fn verify(&self, message: &SignedGossip<'_, PeerId>, signature: &[u8]) -> bool {
        let publisher = message.publisher;
        (publisher == &self.me || self.admission.is_admitted(publisher))
            && verify_by(
                publisher,
                &message.signing_bytes(&publisher.to_bytes()),
                signature,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_peer_id_names_its_key_and_signatures_check_against_it() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        assert_eq!(public_key(&peer), Some(key.public()));
        let sig = sign(&key, b"claim");
        assert!(verify_by(&peer, b"claim", &sig));
        assert!(!verify_by(&peer, b"claim!", &sig));
        let other = Keypair::generate_ed25519().public().to_peer_id();
        assert!(!verify_by(&other, b"claim", &sig), "another id's key");
        assert!(!verify_by(&peer, b"claim", &[]), "empty signature");
        assert!(!verify_by(&peer, b"claim", &[0; 300]), "garbage signature");
    }

    #[test]
    fn a_peer_id_that_hashes_its_key_cannot_be_verified() {
        // A SHA-256 multihash id (as RSA keys get): no key inside.
        let digest = [7u8; 32];
        let mh = libp2p::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
        let peer = PeerId::from_multihash(mh).unwrap();
        assert_eq!(public_key(&peer), None);
        assert!(!verify_by(&peer, b"x", &[1; 64]));
    }
}
