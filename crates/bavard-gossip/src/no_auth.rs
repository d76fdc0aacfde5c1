//! [`NoAuth`]: the authenticator that authenticates nothing.

use crate::broadcast::{self, SignedGossip};
use crate::membership::{self, SignedFields};

/// Signs with an empty signature and accepts every signature: the default of
/// [`Membership`](crate::membership::Membership) and [`Broadcast`](crate::broadcast::Broadcast),
/// for the simulator, tests and clusters that trust every member.
///
/// With it none of the content checks hold: anyone who can send a message can claim that another
/// member is alive (with any metadata and incarnation) or has left, and can publish a topic
/// message in anyone's name. The other rules (precedence, bounded incarnation jumps, topic
/// messages only from neighbours, size bounds) still apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAuth;

impl<P> membership::Authenticator<P> for NoAuth {
    fn sign(&mut self, _update: &SignedFields<'_, P>) -> Vec<u8> {
        Vec::new()
    }

    fn verify(&self, _update: &SignedFields<'_, P>, _signature: &[u8]) -> bool {
        true
    }
}

impl<P> broadcast::Authenticator<P> for NoAuth {
    fn sign(&mut self, _message: &SignedGossip<'_, P>) -> Vec<u8> {
        Vec::new()
    }

    fn verify(&self, _message: &SignedGossip<'_, P>, _signature: &[u8]) -> bool {
        true
    }
}
