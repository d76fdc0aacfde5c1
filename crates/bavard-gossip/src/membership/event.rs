//! Events reported to the application by the membership state machine.

/// A change in the membership view, returned by
/// [`Membership::poll_event`](super::Membership::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent<P> {
    /// A member appeared, or came back after being dead or having left.
    MemberUp {
        /// The member.
        id: P,
        /// Its metadata.
        meta: Vec<u8>,
    },
    /// A member is suspected of having failed.
    MemberSuspect {
        /// The member.
        id: P,
        /// The incarnation suspected.
        incarnation: u64,
    },
    /// A suspected member refuted the suspicion and is alive again.
    MemberRecovered {
        /// The member.
        id: P,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// A member was declared dead.
    MemberDown {
        /// The member.
        id: P,
        /// The incarnation declared dead.
        incarnation: u64,
    },
    /// A member left gracefully.
    MemberLeft {
        /// The member.
        id: P,
        /// The incarnation of the leave.
        incarnation: u64,
    },
    /// A live member changed its metadata.
    MemberMetaChanged {
        /// The member.
        id: P,
        /// Its new metadata.
        meta: Vec<u8>,
    },
    /// A dead or departed member was forgotten after `gossip_to_the_dead_time`.
    MemberReaped {
        /// The member.
        id: P,
    },
    /// A seed answered the join request: the local node now has the cluster's state.
    Joined {
        /// The member that answered.
        via: P,
    },
}
