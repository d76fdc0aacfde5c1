//! Who may say what about a member: signed self-claims.
//!
//! SWIM lets any member relay any claim, which is what makes dissemination cheap, and also what
//! lets one hostile member speak for everybody. The claims a member makes about **itself** —
//! `Alive` (joining, changing its metadata, refuting a suspicion) and `Left` — are therefore
//! signed by that member: the [`Authenticator`] signs the local node's own claims when they are
//! made, the signature travels with the claim and is stored with the member, so every relay
//! (piggyback, push-pull) forwards the original signature unchanged, and every receiver verifies
//! it before the claim changes its view. A relay can repeat a member's claim; it cannot make one
//! up.
//!
//! `Suspect` and `Dead` are statements about someone else, made by whoever probed; they carry no
//! signature. What bounds them is precedence (a member outbids a suspicion with a higher,
//! signed, incarnation), admission (the node only takes membership messages from admitted
//! members, at the transport) and [`max_incarnation_jump`](super::MembershipConfig::max_incarnation_jump).

use std::fmt;

use super::member::MemberState;

/// The fields of a member's claim about itself that its signature covers.
///
/// `meta` is the member's metadata for `Alive` and always empty for `Left` (a leave is signed,
/// sent and relayed without metadata). The claim's `from` is not covered: for a self-claim it is
/// the member itself, and anything else is ignored before the signature is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedFields<'a, P> {
    /// The member making the claim, about itself.
    pub member: &'a P,
    /// The incarnation claimed.
    pub incarnation: u64,
    /// [`MemberState::Alive`] or [`MemberState::Left`].
    pub state: MemberState,
    /// The member's metadata (`Alive`), empty for `Left`.
    pub meta: &'a [u8],
}

impl<P> SignedFields<'_, P> {
    /// Domain-separation prefix of [`signing_bytes`](Self::signing_bytes), so that a signature
    /// over a membership claim can never be replayed as a signature over anything else.
    pub const DOMAIN: &'static [u8] = b"bavard/swim/self-update/v1";

    /// A canonical, unambiguous encoding of the fields for a signature scheme, given the bytes
    /// of the member id (the core is generic over the id and cannot serialise it):
    ///
    /// `DOMAIN ‖ u64be(len(member)) ‖ member ‖ u64be(incarnation) ‖ u8(state) ‖
    /// u64be(len(meta)) ‖ meta`, with state 1 = Alive, 2 = Suspect, 3 = Dead, 4 = Left (the
    /// protobuf `MemberState` numbers).
    pub fn signing_bytes(&self, member: &[u8]) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(Self::DOMAIN.len() + 8 + member.len() + 9 + 8 + self.meta.len());
        out.extend_from_slice(Self::DOMAIN);
        out.extend_from_slice(&(member.len() as u64).to_be_bytes());
        out.extend_from_slice(member);
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.push(match self.state {
            MemberState::Alive => 1,
            MemberState::Suspect => 2,
            MemberState::Dead => 3,
            MemberState::Left => 4,
        });
        out.extend_from_slice(&(self.meta.len() as u64).to_be_bytes());
        out.extend_from_slice(self.meta);
        out
    }
}

/// Signs the local node's claims about itself and verifies other members' claims about
/// themselves.
///
/// The claims a member makes about itself — `Alive` (joining, changing its metadata, refuting
/// a suspicion) and `Left` — are signed by that member when it makes them; the signature
/// travels with the claim and is stored with the member, so every relay (piggyback, push-pull)
/// forwards the original signature, and every receiver verifies it before the claim changes its
/// view: a relay can repeat a member's claim, not make one up. `Suspect` and `Dead` are about
/// someone else and carry no signature. The full rules are on
/// [`Membership`](super::Membership) ("Trust").
///
/// The node implements it with the member's ed25519 peer key (and checks the cluster
/// certificate carried in `meta` in [`verify`](Self::verify)); [`NoAuth`](crate::NoAuth) signs
/// nothing and accepts everything.
pub trait Authenticator<P>: Send {
    /// Signs an update this node makes about itself (Alive — including a refutation or a
    /// metadata change — or Left). Called once per claim; the result is kept with the local
    /// member and sent with every copy of the claim.
    fn sign(&mut self, update: &SignedFields<'_, P>) -> Vec<u8>;

    /// Whether `signature` is `update.member`'s own signature of this update and the update is
    /// admissible (the node also checks the member's cluster certificate carried in `meta`).
    /// Called only for claims that would change the view; a `false` drops the claim.
    fn verify(&self, update: &SignedFields<'_, P>, signature: &[u8]) -> bool;
}

/// Counts of the claims the trust rules dropped since the state machine was created, read with
/// [`Membership::rejected_updates`](super::Membership::rejected_updates).
///
/// Each count is of single updates, dropped one by one while the rest of their message was
/// applied: a dropped update **doesn't affect state** (nothing applied, nothing relayed, no
/// refutation). The driver may report them as metrics; it cannot tell which peer sent which, as
/// the forger and the relay of a genuine claim look alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectedUpdates {
    /// `Alive` or `Left` claims that would have changed the view but whose signature the
    /// [`Authenticator`] refused (forged, or signed over other fields).
    pub bad_signature: u64,
    /// `Suspect` or `Dead` claims more than `max_incarnation_jump` above the incarnation known
    /// for their member (the local node included).
    pub incarnation_jump: u64,
    /// Claims about the local node that it could only refute by raising its incarnation past
    /// `u64::MAX` (and metadata changes at `u64::MAX`); the node keeps its claim as it is.
    pub incarnation_exhausted: u64,
}

/// The boxed authenticator, so that `Membership` can stay `Debug`.
pub(crate) struct AuthBox<P>(pub(crate) Box<dyn Authenticator<P>>);

impl<P> fmt::Debug for AuthBox<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Authenticator")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_bytes_separate_every_field() {
        let f = |member: &'static [u8], incarnation, state, meta: &'static [u8]| {
            SignedFields {
                member: &(),
                incarnation,
                state,
                meta,
            }
            .signing_bytes(member)
        };
        let base = f(b"ab", 1, MemberState::Alive, b"c");
        assert!(base.starts_with(SignedFields::<()>::DOMAIN));
        // Moving a byte from the id into the metadata changes the bytes (length prefixes).
        assert_ne!(base, f(b"a", 1, MemberState::Alive, b"bc"));
        assert_ne!(base, f(b"ab", 2, MemberState::Alive, b"c"));
        assert_ne!(base, f(b"ab", 1, MemberState::Left, b"c"));
        assert_ne!(base, f(b"ab", 1, MemberState::Alive, b""));
        assert_eq!(base, f(b"ab", 1, MemberState::Alive, b"c"));
    }
}
