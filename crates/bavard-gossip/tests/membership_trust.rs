//! The membership's trust rules: a member's claims about itself are signed by it and relayed
//! with the original signature, forgeries are dropped and counted, suspicions and deaths cannot
//! jump incarnations, and no incarnation arithmetic overflows. Signatures come from the keyed
//! hash of `common::Keyed` (a stand-in for ed25519).

mod common;

use std::time::Instant;

use bavard_gossip::NoAuth;
use bavard_gossip::membership::{
    Member, MemberState, Membership, MembershipConfig, MembershipError, MembershipEvent, Message,
    RejectedUpdates, SignedFields, Update,
};
use common::{Keyed, sign_update};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Node = Membership<u64, ChaCha8Rng>;

const MAX: u64 = u64::MAX;

fn node_with(id: u64, config: MembershipConfig, now: Instant) -> Node {
    Membership::new(
        id,
        vec![id as u8],
        config,
        ChaCha8Rng::seed_from_u64(id),
        now,
    )
    .with_authenticator(Keyed::boxed(id))
}

fn node(id: u64, now: Instant) -> Node {
    node_with(id, MembershipConfig::default(), now)
}

/// `member`'s own claim, signed by `signer` (a forger when it is someone else).
fn claim(member: u64, incarnation: u64, state: MemberState, signer: u64) -> Update<u64> {
    let meta = if state == MemberState::Alive {
        vec![member as u8]
    } else {
        vec![]
    };
    let fields = SignedFields {
        member: &member,
        incarnation,
        state,
        meta: &meta,
    };
    Update {
        member,
        incarnation,
        state,
        signature: sign_update(signer, &fields),
        meta,
        from: member,
    }
}

/// A suspicion or death of `member`, asserted by `from` (unsigned, as they are).
fn about(member: u64, incarnation: u64, state: MemberState, from: u64) -> Update<u64> {
    Update {
        member,
        incarnation,
        state,
        meta: vec![],
        signature: vec![],
        from,
    }
}

fn gossip(n: &mut Node, now: Instant, from: u64, updates: Vec<Update<u64>>) {
    n.handle_message(now, from, Message::Gossip { piggyback: updates })
        .unwrap();
}

/// Node 0, knowing members 1..=3 alive at incarnation 0 from their own signed claims.
fn node_with_members() -> (Node, Instant) {
    let now = Instant::now();
    let mut n = node(0, now);
    let states = (1..=3)
        .map(|m| claim(m, 0, MemberState::Alive, m))
        .collect();
    n.handle_message(
        now,
        1,
        Message::PushPull {
            join: false,
            reply: true,
            states,
        },
    )
    .unwrap();
    assert_eq!(n.alive_count(), 4, "genuine claims are accepted");
    drain(&mut n);
    (n, now)
}

type Output = (Vec<(u64, Message<u64>)>, Vec<MembershipEvent<u64>>);

fn drain(n: &mut Node) -> Output {
    let sent = std::iter::from_fn(|| n.poll_transmit()).collect();
    let events = std::iter::from_fn(|| n.poll_event()).collect();
    (sent, events)
}

fn view(n: &Node) -> Vec<Member<u64>> {
    n.members().cloned().collect()
}

/// The claim about `member` that `n` would relay: what it holds, with the signature it holds.
fn held_claim(n: &Node, member: u64) -> Update<u64> {
    let m = n.member(&member).unwrap();
    Update {
        member,
        incarnation: m.incarnation(),
        state: m.state(),
        meta: m.meta().to_vec(),
        signature: m.signature().to_vec(),
        from: member,
    }
}

#[test]
fn a_forged_alive_about_another_member_is_dropped_and_the_member_is_unchanged() {
    let (mut n, now) = node_with_members();
    let before = view(&n);
    let queued = n.queued_updates();
    // Member 2 says, in 1's name, that 1 is alive at a higher incarnation with other metadata.
    let mut forged = claim(1, 5, MemberState::Alive, 2);
    forged.meta = b"evil".to_vec();
    gossip(&mut n, now, 2, vec![forged]);
    assert_eq!(view(&n), before, "nothing changed");
    assert_eq!(n.rejected_updates().bad_signature, 1, "and it was counted");
    assert_eq!(drain(&mut n), (vec![], vec![]), "no event, nothing sent");
    assert_eq!(n.queued_updates(), queued, "and nothing queued for relay");
    // Nor can a forged or unsigned claim introduce a member.
    let mut unsigned = claim(8, 0, MemberState::Alive, 8);
    unsigned.signature.clear();
    gossip(
        &mut n,
        now,
        2,
        vec![claim(9, 0, MemberState::Alive, 2), unsigned],
    );
    assert!(n.member(&9).is_none() && n.member(&8).is_none());
    assert_eq!(n.rejected_updates().bad_signature, 3);
    // A signature of other fields does not carry over: 1's own signature of incarnation 0
    // does not make incarnation 1 its claim.
    let mut replayed = claim(1, 0, MemberState::Alive, 1);
    replayed.incarnation = 1;
    gossip(&mut n, now, 2, vec![replayed]);
    assert_eq!(view(&n), before);
    assert_eq!(n.rejected_updates().bad_signature, 4);
}

#[test]
fn a_genuine_alive_relayed_by_another_member_is_accepted_with_its_original_signature() {
    let now = Instant::now();
    let (mut a, mut b, mut c) = (node(1, now), node(2, now), node(3, now));
    // a joins through b: b learns a from a's own claim.
    a.join(now, vec![2]);
    let (sent, _) = drain(&mut a);
    for (to, msg) in sent {
        assert_eq!(to, 2);
        b.handle_message(now, 1, msg).unwrap();
    }
    drain(&mut b);
    assert_eq!(held_claim(&b, 1), held_claim(&a, 1));
    // c joins through b: b's push-pull answer relays a's claim, with a's signature.
    c.join(now, vec![2]);
    let (sent, _) = drain(&mut c);
    for (_, msg) in sent {
        b.handle_message(now, 3, msg).unwrap();
    }
    let (sent, _) = drain(&mut b);
    for (to, msg) in sent.into_iter().filter(|(to, _)| *to == 3) {
        assert_eq!(to, 3);
        c.handle_message(now, 2, msg).unwrap();
    }
    let relayed = c.member(&1).expect("c learned a through b");
    assert_eq!(relayed.state(), MemberState::Alive);
    assert_eq!(relayed.signature(), a.member(&1).unwrap().signature());
    assert!(!relayed.signature().is_empty());

    // a changes its metadata; b hears it from a and piggybacks it on an ack to c.
    a.set_local_meta(b"a, second address".to_vec());
    b.handle_message(
        now,
        1,
        Message::Gossip {
            piggyback: vec![held_claim(&a, 1)],
        },
    )
    .unwrap();
    drain(&mut b);
    b.handle_message(
        now,
        3,
        Message::Ping {
            seq: 7,
            piggyback: vec![],
        },
    )
    .unwrap();
    let (sent, _) = drain(&mut b);
    let [(3, ack @ Message::Ack { seq: 7, .. })] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert!(
        ack.updates().contains(&held_claim(&a, 1)),
        "relayed unchanged"
    );
    c.handle_message(now, 2, ack.clone()).unwrap();
    assert_eq!(held_claim(&c, 1), held_claim(&a, 1));
    assert_eq!(c.member(&1).unwrap().meta(), b"a, second address");
    for n in [&a, &b, &c] {
        assert_eq!(n.rejected_updates(), RejectedUpdates::default());
    }
}

#[test]
fn a_forged_left_is_dropped_and_a_genuine_one_relayed_by_anyone_is_applied() {
    let (mut n, now) = node_with_members();
    let before = view(&n);
    gossip(&mut n, now, 2, vec![claim(1, 1, MemberState::Left, 2)]);
    assert_eq!(view(&n), before);
    assert_eq!(n.rejected_updates().bad_signature, 1);
    assert_eq!(drain(&mut n).1, vec![], "no MemberLeft");
    // The same leave, signed by 1 and relayed by 3, is 1's.
    gossip(&mut n, now, 3, vec![claim(1, 1, MemberState::Left, 1)]);
    assert_eq!(n.member(&1).unwrap().state(), MemberState::Left);
    assert_eq!(
        drain(&mut n).1,
        vec![MembershipEvent::MemberLeft {
            id: 1,
            incarnation: 1
        }]
    );
}

#[test]
fn a_refutation_is_signed_by_the_suspect_and_accepted_by_the_others() {
    let now = Instant::now();
    let (mut a, mut b) = (node(1, now), node(2, now));
    a.join(now, vec![2]);
    for (_, msg) in drain(&mut a).0 {
        b.handle_message(now, 1, msg).unwrap();
    }
    for (_, msg) in drain(&mut b).0 {
        a.handle_message(now, 2, msg).unwrap();
    }
    drain(&mut a);
    // 3 tells b that a is suspect; b tells a.
    gossip(&mut b, now, 3, vec![about(1, 0, MemberState::Suspect, 3)]);
    assert_eq!(b.member(&1).unwrap().state(), MemberState::Suspect);
    drain(&mut b);
    gossip(&mut a, now, 2, vec![about(1, 0, MemberState::Suspect, 3)]);
    assert_eq!(a.local_incarnation(), 1, "a refutes");
    let fields = SignedFields {
        member: &1,
        incarnation: 1,
        state: MemberState::Alive,
        meta: &[1],
    };
    assert_eq!(a.member(&1).unwrap().signature(), sign_update(1, &fields));
    // The refutation goes out on a's next message and clears the suspicion at b.
    a.handle_message(
        now,
        2,
        Message::Ping {
            seq: 1,
            piggyback: vec![],
        },
    )
    .unwrap();
    for (_, msg) in drain(&mut a).0 {
        b.handle_message(now, 1, msg).unwrap();
    }
    assert_eq!(b.member(&1).unwrap().state(), MemberState::Alive);
    assert_eq!(b.member(&1).unwrap().incarnation(), 1);
    assert!(drain(&mut b).1.contains(&MembershipEvent::MemberRecovered {
        id: 1,
        incarnation: 1
    }));
    assert_eq!(b.rejected_updates(), RejectedUpdates::default());
}

#[test]
fn a_forged_alive_about_the_local_node_is_not_outbid_but_its_own_old_claim_is() {
    let (mut n, now) = node_with_members();
    gossip(&mut n, now, 2, vec![claim(0, 1_000, MemberState::Alive, 2)]);
    assert_eq!(n.local_incarnation(), 0, "no refutation of a forgery");
    assert_eq!(n.health_score(), 0);
    assert_eq!(n.rejected_updates().bad_signature, 1);
    // Its own signature from a previous life of its id: outbid it.
    gossip(&mut n, now, 2, vec![claim(0, 1_000, MemberState::Alive, 0)]);
    assert_eq!(n.local_incarnation(), 1_001);
}

#[test]
fn a_suspicion_or_death_at_u64_max_changes_nothing_and_a_refutation_still_works() {
    let (mut n, now) = node_with_members();
    let before = view(&n);
    let queued = n.queued_updates();
    gossip(
        &mut n,
        now,
        2,
        vec![
            about(1, MAX, MemberState::Suspect, 2),
            about(3, MAX, MemberState::Dead, 2),
            about(0, MAX, MemberState::Suspect, 2),
            about(0, MAX, MemberState::Dead, 2),
        ],
    );
    n.handle_message(
        now,
        2,
        Message::PushPull {
            join: false,
            reply: true,
            states: vec![about(1, MAX, MemberState::Dead, 2)],
        },
    )
    .unwrap();
    assert_eq!(
        view(&n),
        before,
        "the view, the local node included, is unchanged"
    );
    assert_eq!(n.local_incarnation(), 0);
    assert_eq!(n.rejected_updates().incarnation_jump, 5);
    assert_eq!(drain(&mut n), (vec![], vec![]));
    assert_eq!(n.queued_updates(), queued);
    assert!(n.suspicion_deadline(&1).is_none());
    // Members not known yet: ignored as always, so not counted.
    gossip(
        &mut n,
        now,
        2,
        vec![about(42, MAX, MemberState::Suspect, 2)],
    );
    assert!(n.member(&42).is_none());
    assert_eq!(n.rejected_updates().incarnation_jump, 5);

    // Within the bound nothing changed: a suspicion of the local node is refuted just above it.
    gossip(&mut n, now, 2, vec![about(0, 7, MemberState::Suspect, 2)]);
    assert_eq!(n.local_incarnation(), 8);
    assert_eq!(n.member(&0).unwrap().state(), MemberState::Alive);
    // And a suspicion exactly `max_incarnation_jump` ahead is applied, one more is not.
    let jump = MembershipConfig::default().max_incarnation_jump;
    gossip(
        &mut n,
        now,
        2,
        vec![about(1, jump, MemberState::Suspect, 2)],
    );
    assert_eq!(n.member(&1).unwrap().state(), MemberState::Suspect);
    assert_eq!(n.member(&1).unwrap().incarnation(), jump);
    gossip(
        &mut n,
        now,
        2,
        vec![about(1, 2 * jump + 1, MemberState::Dead, 2)],
    );
    assert_eq!(n.member(&1).unwrap().state(), MemberState::Suspect);
    assert_eq!(n.rejected_updates().incarnation_jump, 6);
}

#[test]
fn at_incarnation_u64_max_nothing_overflows_and_the_node_can_still_leave() {
    // Without the bound (and without signatures) the local incarnation can be driven to the
    // top; even then nothing panics.
    let config = MembershipConfig {
        max_incarnation_jump: MAX,
        ..MembershipConfig::default()
    };
    let now = Instant::now();
    let mut n: Node = Membership::new(0, b"me".to_vec(), config, ChaCha8Rng::seed_from_u64(1), now)
        .with_authenticator(Box::new(NoAuth));
    gossip(
        &mut n,
        now,
        2,
        vec![about(0, MAX - 1, MemberState::Suspect, 2)],
    );
    assert_eq!(n.local_incarnation(), MAX);
    gossip(&mut n, now, 2, vec![about(0, MAX, MemberState::Dead, 2)]);
    let mut left = claim(0, MAX, MemberState::Left, 0);
    left.signature.clear();
    gossip(&mut n, now, 2, vec![left]);
    assert_eq!(n.local_incarnation(), MAX);
    assert_eq!(n.rejected_updates().incarnation_exhausted, 2);
    n.set_local_meta(b"new".to_vec());
    assert_eq!(n.member(&0).unwrap().meta(), b"me", "cannot outbid MAX");
    assert_eq!(n.rejected_updates().incarnation_exhausted, 3);
    n.leave(now);
    assert_eq!(n.member(&0).unwrap().state(), MemberState::Left);
    assert_eq!(
        n.local_incarnation(),
        MAX,
        "Left(MAX) still outranks Alive(MAX)"
    );
}

#[test]
fn an_oversized_signature_is_rejected_without_changing_state() {
    let (mut n, now) = node_with_members();
    let before = view(&n);
    let limit = MembershipConfig::default().max_signature_len;
    let mut big = claim(1, 1, MemberState::Alive, 1);
    big.signature = vec![0; limit + 1];
    assert_eq!(
        n.handle_message(
            now,
            2,
            Message::Gossip {
                piggyback: vec![big],
            }
        ),
        Err(MembershipError::SignatureTooLarge {
            len: limit + 1,
            limit
        })
    );
    assert_eq!(view(&n), before);
}

#[test]
fn suspicions_and_deaths_are_relayed_without_a_signature() {
    let (mut n, now) = node_with_members();
    let mut suspect = about(1, 0, MemberState::Suspect, 2);
    suspect.signature = vec![1, 2, 3];
    suspect.meta = vec![4];
    gossip(&mut n, now, 2, vec![suspect]);
    assert_eq!(n.member(&1).unwrap().state(), MemberState::Suspect);
    assert!(n.member(&1).unwrap().signature().is_empty());
    n.handle_message(
        now,
        3,
        Message::Ping {
            seq: 1,
            piggyback: vec![],
        },
    )
    .unwrap();
    let (sent, _) = drain(&mut n);
    let relayed: Vec<&Update<u64>> = sent
        .iter()
        .flat_map(|(_, m)| m.updates())
        .filter(|u| u.member == 1)
        .collect();
    assert_eq!(relayed, vec![&about(1, 0, MemberState::Suspect, 2)]);
}

fn arb_claim() -> impl proptest::strategy::Strategy<Value = (Update<u64>, u64)> {
    use proptest::prelude::*;
    let incarnation = prop_oneof![
        0u64..4,
        Just(1 << 16),
        Just((1 << 17) + 1),
        Just(MAX - 1),
        Just(MAX)
    ];
    (0u64..6, incarnation, 0usize..4, 0u64..6, 1u64..6).prop_map(
        |(member, incarnation, s, signer, sender)| {
            let state = [
                MemberState::Alive,
                MemberState::Suspect,
                MemberState::Dead,
                MemberState::Left,
            ][s];
            let update = if matches!(state, MemberState::Alive | MemberState::Left) {
                claim(member, incarnation, state, signer)
            } else {
                about(member, incarnation, state, signer)
            };
            (update, sender)
        },
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever incarnations arrive (`u64::MAX` included), signed by whoever, nothing panics,
    /// the local node stays alive, and every member's claim that is its own carries its own
    /// signature.
    #[test]
    fn any_claims_at_any_incarnation_leave_a_consistent_signed_view(
        claims in proptest::collection::vec(arb_claim(), 1..60),
    ) {
        let (mut n, now) = node_with_members();
        for (update, sender) in claims {
            let _ = n.handle_message(now, sender, Message::Gossip { piggyback: vec![update] });
            drain(&mut n);
            proptest::prop_assert_eq!(n.member(&0).unwrap().state(), MemberState::Alive);
            for m in n.members() {
                let own = matches!(m.state(), MemberState::Alive | MemberState::Left);
                let fields = SignedFields {
                    member: m.id(),
                    incarnation: m.incarnation(),
                    state: m.state(),
                    meta: if m.state() == MemberState::Alive { m.meta() } else { &[] },
                };
                if own {
                    proptest::prop_assert_eq!(m.signature(), sign_update(*m.id(), &fields));
                } else {
                    proptest::prop_assert!(m.signature().is_empty());
                }
            }
        }
    }
}
