//! Single-instance tests of the membership rules: SWIM precedence, refutation, Lifeguard
//! suspicion and nacks, and the bounds on hostile input.

use std::time::{Duration, Instant};

use bavard_gossip::membership::{
    MemberState, Membership, MembershipConfig, MembershipError, MembershipEvent, Message, Update,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Node = Membership<u64, ChaCha8Rng>;

fn node(config: MembershipConfig) -> (Node, Instant) {
    let now = Instant::now();
    (
        Membership::new(0, b"me".to_vec(), config, ChaCha8Rng::seed_from_u64(7), now),
        now,
    )
}

fn upd(member: u64, incarnation: u64, state: MemberState, from: u64) -> Update<u64> {
    Update {
        member,
        incarnation,
        state,
        meta: if state == MemberState::Alive {
            vec![member as u8]
        } else {
            vec![]
        },
        signature: vec![],
        from,
    }
}

fn gossip(
    n: &mut Node,
    now: Instant,
    from: u64,
    updates: Vec<Update<u64>>,
) -> Result<(), MembershipError> {
    n.handle_message(now, from, Message::Gossip { piggyback: updates })
}

/// A node that knows members 1..=count alive at incarnation 0.
fn node_with_members(count: u64) -> (Node, Instant) {
    let (mut n, now) = node(MembershipConfig::default());
    let states = (1..=count)
        .map(|m| upd(m, 0, MemberState::Alive, m))
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
    drain(&mut n);
    (n, now)
}

/// Messages sent and events reported.
type Output = (Vec<(u64, Message<u64>)>, Vec<MembershipEvent<u64>>);

fn drain(n: &mut Node) -> Output {
    let mut t = Vec::new();
    while let Some(x) = n.poll_transmit() {
        t.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = n.poll_event() {
        e.push(x);
    }
    (t, e)
}

/// `from` pings `n` with an empty piggyback; what `n` sends and reports then (the ack first).
fn pinged(n: &mut Node, now: Instant, from: u64, seq: u64) -> Output {
    n.handle_message(
        now,
        from,
        Message::Ping {
            seq,
            piggyback: vec![],
        },
    )
    .unwrap();
    drain(n)
}

fn state(n: &Node, id: u64) -> (MemberState, u64) {
    let m = n.member(&id).unwrap();
    (m.state(), m.incarnation())
}

#[test]
fn forged_alive_with_the_same_incarnation_does_not_clear_a_suspicion() {
    let (mut n, now) = node_with_members(3);
    gossip(&mut n, now, 2, vec![upd(1, 0, MemberState::Suspect, 2)]).unwrap();
    assert_eq!(state(&n, 1), (MemberState::Suspect, 0));
    gossip(&mut n, now, 2, vec![upd(1, 0, MemberState::Alive, 1)]).unwrap();
    assert_eq!(
        state(&n, 1),
        (MemberState::Suspect, 0),
        "alive(i) does not override suspect(i)"
    );
    gossip(&mut n, now, 2, vec![upd(1, 1, MemberState::Alive, 2)]).unwrap();
    assert_eq!(
        state(&n, 1),
        (MemberState::Suspect, 0),
        "only the member itself may say it is alive"
    );
    gossip(&mut n, now, 2, vec![upd(1, 1, MemberState::Alive, 1)]).unwrap();
    assert_eq!(
        state(&n, 1),
        (MemberState::Alive, 1),
        "alive(i+1) is a refutation"
    );
    let (_, events) = drain(&mut n);
    assert!(events.contains(&MembershipEvent::MemberRecovered {
        id: 1,
        incarnation: 1
    }));
}

#[test]
fn a_dead_member_is_revived_only_by_a_higher_incarnation() {
    let (mut n, now) = node_with_members(3);
    gossip(&mut n, now, 2, vec![upd(1, 2, MemberState::Dead, 2)]).unwrap();
    assert_eq!(state(&n, 1), (MemberState::Dead, 2));
    gossip(
        &mut n,
        now,
        3,
        vec![
            upd(1, 2, MemberState::Alive, 1),
            upd(1, 2, MemberState::Suspect, 3),
        ],
    )
    .unwrap();
    assert_eq!(
        state(&n, 1),
        (MemberState::Dead, 2),
        "neither alive(i) nor suspect(i) revives dead(i)"
    );
    gossip(&mut n, now, 3, vec![upd(1, 1, MemberState::Alive, 1)]).unwrap();
    assert_eq!(state(&n, 1), (MemberState::Dead, 2), "stale alive ignored");
    assert_eq!(n.alive_count(), 3);
    gossip(&mut n, now, 1, vec![upd(1, 3, MemberState::Alive, 1)]).unwrap();
    assert_eq!(state(&n, 1), (MemberState::Alive, 3));
    let (_, events) = drain(&mut n);
    assert!(events.contains(&MembershipEvent::MemberDown {
        id: 1,
        incarnation: 2
    }));
    assert!(events.contains(&MembershipEvent::MemberUp {
        id: 1,
        meta: vec![1]
    }));
    assert_eq!(n.alive_count(), 4);
}

#[test]
fn dead_overrides_suspect_and_left_overrides_dead_at_the_same_incarnation() {
    let (mut n, now) = node_with_members(3);
    gossip(
        &mut n,
        now,
        2,
        vec![
            upd(1, 0, MemberState::Suspect, 2),
            upd(1, 0, MemberState::Dead, 3),
        ],
    )
    .unwrap();
    assert_eq!(state(&n, 1), (MemberState::Dead, 0));
    assert!(n.suspicion_deadline(&1).is_none());
    gossip(&mut n, now, 2, vec![upd(1, 0, MemberState::Left, 2)]).unwrap();
    assert_eq!(
        state(&n, 1),
        (MemberState::Dead, 0),
        "only the member itself may leave"
    );
    gossip(&mut n, now, 2, vec![upd(1, 0, MemberState::Left, 1)]).unwrap();
    assert_eq!(state(&n, 1), (MemberState::Left, 0));
}

#[test]
fn suspicion_about_the_local_node_is_refuted_with_a_higher_incarnation() {
    let (mut n, now) = node_with_members(3);
    gossip(&mut n, now, 2, vec![upd(0, 5, MemberState::Suspect, 2)]).unwrap();
    assert_eq!(n.local_incarnation(), 6);
    assert_eq!(
        n.health_score(),
        1,
        "being suspected counts against local health"
    );
    assert_eq!(state(&n, 0), (MemberState::Alive, 6));
    // The refutation goes out on the very next message.
    let (sent, _) = pinged(&mut n, now, 3, 9);
    let (to, Message::Ack { seq: 9, piggyback }) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(*to, 3);
    assert!(piggyback.contains(&Update {
        member: 0,
        incarnation: 6,
        state: MemberState::Alive,
        meta: b"me".to_vec(),
        signature: vec![],
        from: 0
    }));
    // A stale suspicion (older incarnation) is ignored.
    gossip(&mut n, now, 2, vec![upd(0, 3, MemberState::Dead, 2)]).unwrap();
    assert_eq!(n.local_incarnation(), 6);
}

#[test]
fn dynamic_suspicion_timeout_shrinks_with_distinct_confirmations() {
    // 10 members: min = 4 · max(1, log10 10) · 1 s = 4 s, max = 6 · min = 24 s, k = 2.
    let (mut n, now) = node_with_members(9);
    gossip(&mut n, now, 1, vec![upd(5, 0, MemberState::Suspect, 1)]).unwrap();
    assert_eq!(
        n.suspicion_deadline(&5),
        Some(now + Duration::from_secs(24))
    );
    let later = now + Duration::from_secs(1);
    gossip(&mut n, later, 2, vec![upd(5, 0, MemberState::Suspect, 2)]).unwrap();
    let one = n.suspicion_deadline(&5).unwrap();
    assert!(
        one < now + Duration::from_secs(24) && one > now + Duration::from_secs(4),
        "{:?}",
        one - now
    );
    gossip(
        &mut n,
        later,
        3,
        vec![
            upd(5, 0, MemberState::Suspect, 2),
            upd(5, 0, MemberState::Suspect, 1),
        ],
    )
    .unwrap();
    assert_eq!(
        n.suspicion_deadline(&5),
        Some(one),
        "repeated confirmers do not count"
    );
    gossip(&mut n, later, 3, vec![upd(5, 0, MemberState::Suspect, 3)]).unwrap();
    assert_eq!(n.suspicion_confirmations(&5), Some(2));
    assert_eq!(n.suspicion_deadline(&5), Some(now + Duration::from_secs(4)));
    n.handle_timeout(now + Duration::from_secs(4));
    assert_eq!(state(&n, 5), (MemberState::Dead, 0));
}

#[test]
fn failed_probe_suspects_the_target_and_tells_it_directly() {
    let (mut n, now) = node_with_members(4);
    let mut t = now;
    // Run until a probe has been sent.
    let target = loop {
        t = n.poll_timeout().unwrap().max(t);
        n.handle_timeout(t);
        let (sent, _) = drain(&mut n);
        if let Some((to, _)) = sent.iter().find(|(_, m)| matches!(m, Message::Ping { .. })) {
            break *to;
        }
    };
    let start = t;
    // No ack: after the probe timeout, ping-req goes to the 3 others.
    n.handle_timeout(start + Duration::from_millis(500));
    let (sent, _) = drain(&mut n);
    let relays: Vec<u64> = sent
        .iter()
        .filter(|(_, m)| matches!(m, Message::PingReq { .. }))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(relays.len(), 3);
    assert!(!relays.contains(&target));
    // And the target is pinged once more directly (the fallback ping).
    assert!(
        sent.iter()
            .any(|(to, m)| *to == target && matches!(m, Message::Ping { .. })),
        "{sent:?}"
    );
    // End of the period: suspect, and the suspect hears it first.
    n.handle_timeout(start + Duration::from_secs(1));
    assert_eq!(state(&n, target).0, MemberState::Suspect);
    let (sent, events) = drain(&mut n);
    assert!(events.contains(&MembershipEvent::MemberSuspect {
        id: target,
        incarnation: 0
    }));
    assert!(sent.iter().any(|(to, m)| *to == target
        && matches!(m, Message::Gossip { piggyback } if piggyback[0].state == MemberState::Suspect)));
    assert_eq!(n.health_score(), 3, "three relays that did not even nack");
}

#[test]
fn an_ack_to_the_fallback_ping_saves_the_target_from_suspicion() {
    for fallback in [true, false] {
        let (mut n, now) = node(MembershipConfig {
            fallback_ping: fallback,
            ..MembershipConfig::lan()
        });
        for m in 1..=6 {
            gossip(&mut n, now, m, vec![upd(m, 0, MemberState::Alive, m)]).unwrap();
        }
        let _ = drain(&mut n);
        let mut t = now;
        let (target, first_seq) = loop {
            t = n.poll_timeout().unwrap().max(t);
            n.handle_timeout(t);
            let (sent, _) = drain(&mut n);
            if let Some((to, Message::Ping { seq, .. })) =
                sent.iter().find(|(_, m)| matches!(m, Message::Ping { .. }))
            {
                break (*to, *seq);
            }
        };
        let start = t;
        n.handle_timeout(start + Duration::from_millis(500));
        let (sent, _) = drain(&mut n);
        let relays = sent
            .iter()
            .filter(|(_, m)| matches!(m, Message::PingReq { .. }))
            .count();
        assert_eq!(relays, 5, "k = 5 relays out of the 5 other members");
        let fallback_seq = sent.iter().find_map(|(to, m)| match m {
            Message::Ping { seq, .. } if *to == target => Some(*seq),
            _ => None,
        });
        assert_eq!(fallback_seq.is_some(), fallback, "{sent:?}");
        if let Some(seq) = fallback_seq {
            assert_eq!(seq, first_seq, "the probe's own sequence number");
            // The first ping (or its ack) was lost; the fallback's ack arrives.
            n.handle_message(
                start + Duration::from_millis(600),
                target,
                Message::Ack {
                    seq,
                    piggyback: vec![],
                },
            )
            .unwrap();
        }
        n.handle_timeout(start + Duration::from_secs(1));
        let expected = if fallback {
            MemberState::Alive
        } else {
            MemberState::Suspect
        };
        assert_eq!(state(&n, target).0, expected, "fallback ping {fallback}");
    }
}

#[test]
fn a_relayed_refutation_is_piggybacked_before_newer_news() {
    let (mut n, now) = node(MembershipConfig {
        max_piggyback_updates: 2,
        ..MembershipConfig::lan()
    });
    for m in 1..=10 {
        gossip(&mut n, now, m, vec![upd(m, 0, MemberState::Alive, m)]).unwrap();
    }
    gossip(&mut n, now, 2, vec![upd(5, 0, MemberState::Suspect, 2)]).unwrap();
    // Member 5 refutes; then news about 20 newcomers arrives after it.
    gossip(&mut n, now, 5, vec![upd(5, 1, MemberState::Alive, 5)]).unwrap();
    assert_eq!(state(&n, 5), (MemberState::Alive, 1));
    for m in 20..40 {
        gossip(&mut n, now, m, vec![upd(m, 0, MemberState::Alive, m)]).unwrap();
    }
    let _ = drain(&mut n);
    let (sent, _) = pinged(&mut n, now, 7, 9);
    let Some((7, Message::Ack { piggyback, .. })) = sent.first() else {
        panic!("{sent:?}");
    };
    // Without the priority, the two newest newcomers would fill the ack.
    assert!(
        piggyback
            .iter()
            .any(|u| u.member == 5 && u.state == MemberState::Alive && u.incarnation == 1),
        "{piggyback:?}"
    );
}

#[test]
fn ping_req_relay_forwards_the_ack_or_nacks_in_time() {
    let (mut n, now) = node_with_members(3);
    n.handle_message(
        now,
        1,
        Message::PingReq {
            seq: 77,
            target: 2,
            piggyback: vec![],
        },
    )
    .unwrap();
    let (sent, _) = drain(&mut n);
    let (2, Message::Ping { seq, .. }) = sent[0] else {
        panic!("{sent:?}")
    };
    n.handle_message(
        now,
        2,
        Message::Ack {
            seq,
            piggyback: vec![],
        },
    )
    .unwrap();
    let (sent, _) = drain(&mut n);
    assert!(matches!(sent[0], (1, Message::Ack { seq: 77, .. })));

    n.handle_message(
        now,
        1,
        Message::PingReq {
            seq: 78,
            target: 3,
            piggyback: vec![],
        },
    )
    .unwrap();
    drain(&mut n);
    n.handle_timeout(now + Duration::from_millis(399));
    assert!(
        !drain(&mut n)
            .0
            .iter()
            .any(|(_, m)| matches!(m, Message::Nack { .. }))
    );
    n.handle_timeout(now + Duration::from_millis(400));
    let (sent, _) = drain(&mut n);
    assert!(sent.contains(&(1, Message::Nack { seq: 78 })));
}

#[test]
fn handle_timeout_called_early_or_twice_is_harmless() {
    let (mut n, now) = node_with_members(3);
    n.handle_timeout(now);
    n.handle_timeout(now);
    let (sent, events) = drain(&mut n);
    assert!(sent.is_empty() && events.is_empty(), "{sent:?} {events:?}");
    let t = n.poll_timeout().unwrap();
    n.handle_timeout(t);
    let first = drain(&mut n).0.len();
    n.handle_timeout(t);
    assert_eq!(drain(&mut n).0.len(), 0);
    assert!(first > 0);
    assert!(n.poll_timeout().unwrap() > t);
}

#[test]
fn a_message_that_would_exceed_max_members_is_rejected_without_changing_state() {
    let config = MembershipConfig {
        max_members: 5,
        ..MembershipConfig::default()
    };
    let (mut n, now) = node(config);
    let states: Vec<_> = (1..=4).map(|m| upd(m, 0, MemberState::Alive, m)).collect();
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
    drain(&mut n);
    let queued = n.queued_updates();
    let err = gossip(
        &mut n,
        now,
        1,
        vec![
            upd(5, 0, MemberState::Alive, 5),
            upd(6, 0, MemberState::Alive, 6),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err,
        MembershipError::TooManyMembers {
            would_be: 7,
            limit: 5
        }
    );
    let bad_push = Message::PushPull {
        join: true,
        reply: false,
        states: vec![
            upd(9, 0, MemberState::Alive, 9),
            upd(10, 0, MemberState::Alive, 10),
        ],
    };
    assert!(matches!(
        n.handle_message(now, 9, bad_push),
        Err(MembershipError::TooManyMembers { .. })
    ));
    assert_eq!(n.members().count(), 5);
    assert_eq!(n.queued_updates(), queued);
    assert_eq!(
        drain(&mut n),
        (vec![], vec![]),
        "nothing answered, nothing reported"
    );
    // Updates about known members still pass.
    gossip(&mut n, now, 1, vec![upd(2, 1, MemberState::Alive, 2)]).unwrap();
}

#[test]
fn oversized_piggybacks_and_metadata_are_rejected_without_changing_state() {
    let (mut n, now) = node_with_members(3);
    let many: Vec<_> = (100..165)
        .map(|m| upd(m, 0, MemberState::Alive, m))
        .collect();
    assert_eq!(
        n.handle_message(
            now,
            1,
            Message::Ping {
                seq: 1,
                piggyback: many
            }
        ),
        Err(MembershipError::TooManyUpdates {
            count: 65,
            limit: 64
        })
    );
    let mut big = upd(100, 0, MemberState::Alive, 100);
    big.meta = vec![0; 513];
    assert_eq!(
        gossip(&mut n, now, 1, vec![big]),
        Err(MembershipError::MetaTooLarge {
            len: 513,
            limit: 512
        })
    );
    assert_eq!(
        gossip(&mut n, now, 0, vec![]),
        Err(MembershipError::FromSelf)
    );
    assert_eq!(n.members().count(), 4);
    assert_eq!(
        drain(&mut n),
        (vec![], vec![]),
        "no ack for a rejected ping"
    );
}

#[test]
fn graceful_leave_bumps_the_incarnation_and_stops_probing() {
    let (mut n, now) = node_with_members(3);
    n.leave(now);
    assert_eq!(state(&n, 0), (MemberState::Left, 1));
    let (sent, _) = drain(&mut n);
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|(_, m)| matches!(m, Message::Gossip { piggyback }
        if piggyback.contains(&Update { member: 0, incarnation: 1, state: MemberState::Left, meta: vec![], signature: vec![], from: 0 }))));
    // Suspicions about a departed node are not refuted, and no probes go out any more.
    gossip(&mut n, now, 1, vec![upd(0, 1, MemberState::Suspect, 1)]).unwrap();
    assert_eq!(n.local_incarnation(), 1);
    n.handle_timeout(now + Duration::from_secs(10));
    assert!(
        !drain(&mut n)
            .0
            .iter()
            .any(|(_, m)| matches!(m, Message::Ping { .. } | Message::PushPull { .. }))
    );
}

fn arb_update() -> impl Strategy<Value = Update<u64>> {
    (0u64..8, 0u64..4, 0usize..4, 0u64..8, 0usize..3).prop_map(|(member, inc, s, from, meta)| {
        Update {
            member,
            incarnation: inc,
            state: [
                MemberState::Alive,
                MemberState::Suspect,
                MemberState::Dead,
                MemberState::Left,
            ][s],
            meta: vec![7; meta],
            signature: vec![],
            from,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever arrives, counters match the view, suspicions exist exactly for suspects, and
    /// the local node is never seen as anything but alive.
    #[test]
    fn random_input_keeps_the_view_consistent(
        msgs in proptest::collection::vec((1u64..8, proptest::collection::vec(arb_update(), 0..6), 0u64..3000), 1..40)
    ) {
        let (mut n, start) = node(MembershipConfig::default());
        let mut now = start;
        for (from, updates, dt) in msgs {
            now += Duration::from_millis(dt);
            n.handle_timeout(now);
            let _ = n.handle_message(now, from, Message::Gossip { piggyback: updates });
            drain(&mut n);
            let alive = n.members().filter(|m| m.state() == MemberState::Alive).count();
            let live = n.members().filter(|m| m.state().is_live()).count();
            prop_assert_eq!(n.alive_count(), alive);
            prop_assert_eq!(n.live_count(), live);
            prop_assert_eq!(state(&n, 0), (MemberState::Alive, n.local_incarnation()));
            for m in n.members() {
                if *m.id() != 0 {
                    prop_assert_eq!(m.state() == MemberState::Suspect, n.suspicion_deadline(m.id()).is_some());
                }
            }
        }
    }
}

#[test]
fn push_pull_merges_by_precedence_and_takes_remote_deaths_as_suspicions() {
    let (mut n, now) = node_with_members(4);
    gossip(&mut n, now, 2, vec![upd(3, 2, MemberState::Alive, 3)]).unwrap();
    let states = vec![
        upd(1, 0, MemberState::Dead, 2), // remote death → only a suspicion here
        upd(2, 1, MemberState::Alive, 2), // newer alive → accepted
        upd(3, 1, MemberState::Suspect, 2), // older than our Alive(3, 2) → ignored
        upd(4, 0, MemberState::Left, 4), // the member's own leave → accepted
        upd(9, 0, MemberState::Dead, 2), // death of a stranger → not tracked
    ];
    n.handle_message(
        now,
        2,
        Message::PushPull {
            join: false,
            reply: false,
            states,
        },
    )
    .unwrap();
    assert_eq!(state(&n, 1), (MemberState::Suspect, 0));
    assert_eq!(state(&n, 2), (MemberState::Alive, 1));
    assert_eq!(state(&n, 3), (MemberState::Alive, 2));
    assert_eq!(state(&n, 4), (MemberState::Left, 0));
    assert!(n.member(&9).is_none());
    // The request is answered with our full state.
    let (sent, _) = drain(&mut n);
    let (
        to,
        Message::PushPull {
            reply: true,
            states,
            ..
        },
    ) = &sent[0]
    else {
        panic!("{sent:?}")
    };
    assert_eq!(*to, 2);
    assert_eq!(states.len(), 5);
}

#[test]
fn piggyback_respects_the_count_and_byte_budget() {
    let (mut n, now) = node(MembershipConfig::default());
    // 60 new members, each with 100 bytes of metadata, all queued for dissemination.
    let mut states: Vec<_> = (1..=60).map(|m| upd(m, 0, MemberState::Alive, m)).collect();
    for u in &mut states {
        u.meta = vec![1; 100];
    }
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
    drain(&mut n);
    let (sent, _) = pinged(&mut n, now, 1, 1);
    let (_, ack) = &sent[0];
    assert!(
        ack.encoded_len_estimate() <= 1400,
        "{}",
        ack.encoded_len_estimate()
    );
    assert!(
        ack.updates().len() >= 5,
        "the budget is used: {}",
        ack.updates().len()
    );
    let config = MembershipConfig {
        max_piggyback_updates: 3,
        ..MembershipConfig::default()
    };
    let (mut n, now) = node(config);
    let states: Vec<_> = (1..=20).map(|m| upd(m, 0, MemberState::Alive, m)).collect();
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
    let (sent, _) = pinged(&mut n, now, 1, 1);
    assert!(
        sent.iter()
            .any(|(_, m)| matches!(m, Message::Ack { piggyback, .. } if piggyback.len() == 3))
    );
}

#[test]
fn metadata_changes_bump_the_incarnation_and_are_reported() {
    let (mut n, now) = node_with_members(2);
    n.set_local_meta(b"/ip4/10.0.0.9/tcp/4001".to_vec());
    assert_eq!(n.local_incarnation(), 1);
    let (sent, _) = pinged(&mut n, now, 1, 4);
    assert!(sent.iter().any(|(_, m)| {
        m.updates()
            .iter()
            .any(|u| u.member == 0 && u.incarnation == 1 && u.meta == b"/ip4/10.0.0.9/tcp/4001")
    }));
    let mut changed = upd(2, 1, MemberState::Alive, 2);
    changed.meta = b"new".to_vec();
    gossip(&mut n, now, 1, vec![changed]).unwrap();
    let (_, events) = drain(&mut n);
    assert_eq!(
        events,
        vec![MembershipEvent::MemberMetaChanged {
            id: 2,
            meta: b"new".to_vec()
        }]
    );
    assert_eq!(n.member(&2).unwrap().meta(), b"new");
}

#[test]
fn a_suspicion_repeated_in_a_push_pull_is_not_an_independent_confirmation() {
    let (mut n, now) = node_with_members(9);
    gossip(&mut n, now, 1, vec![upd(5, 0, MemberState::Suspect, 1)]).unwrap();
    assert_eq!(n.suspicion_confirmations(&5), Some(0));
    // A full state pushed by member 2 that also suspects 5 only repeats what it heard.
    n.handle_message(
        now,
        2,
        Message::PushPull {
            join: false,
            reply: true,
            states: vec![upd(5, 0, MemberState::Suspect, 2)],
        },
    )
    .unwrap();
    assert_eq!(n.suspicion_confirmations(&5), Some(0));
    assert_eq!(
        n.suspicion_deadline(&5),
        Some(now + Duration::from_secs(24))
    );
    // The same claim gossiped is one.
    gossip(&mut n, now, 2, vec![upd(5, 0, MemberState::Suspect, 2)]).unwrap();
    assert_eq!(n.suspicion_confirmations(&5), Some(1));
}

/// Runs `count` protocol periods, acking every probe, and returns the probed members in order.
fn probe_targets(n: &mut Node, mut t: Instant, count: usize) -> (Vec<u64>, Instant) {
    let mut targets = Vec::new();
    while targets.len() < count {
        t = n.poll_timeout().unwrap().max(t);
        n.handle_timeout(t);
        let (sent, _) = drain(n);
        for (to, m) in sent {
            if let Message::Ping { seq, .. } = m {
                targets.push(to);
                let ack = Message::Ack {
                    seq,
                    piggyback: vec![],
                };
                n.handle_message(t, to, ack).unwrap();
            }
        }
    }
    (targets, t)
}

#[test]
fn every_other_period_probes_a_ring_neighbour_and_the_round_robin_still_covers_everyone() {
    let (mut n, now) = node_with_members(8);
    assert_eq!(n.config().ring_probe_every, 2);
    let (targets, t) = probe_targets(&mut n, now, 16);
    // Periods 2, 6, 10, 14 probe the successor of 0 (1); periods 4, 8, 12, 16 its predecessor,
    // which wraps around to 8.
    for (i, target) in targets.iter().enumerate() {
        match (i + 1) % 4 {
            2 => assert_eq!(*target, 1, "period {}", i + 1),
            0 => assert_eq!(*target, 8, "period {}", i + 1),
            _ => {}
        }
    }
    // The other eight probes are the round-robin: one full pass over the eight members.
    let mut round_robin: Vec<u64> = targets.iter().step_by(2).copied().collect();
    round_robin.sort_unstable();
    assert_eq!(round_robin, (1..=8).collect::<Vec<_>>());

    // A dead neighbour is skipped: the ring monitor moves to the next live member.
    gossip(&mut n, t, 2, vec![upd(1, 0, MemberState::Dead, 2)]).unwrap();
    drain(&mut n);
    let (targets, _) = probe_targets(&mut n, t, 8);
    assert_eq!((targets[1], targets[3]), (2, 8));
    assert_eq!((targets[5], targets[7]), (2, 8));
    assert!(!targets.contains(&1), "dead members are not probed");
}

#[test]
fn the_ring_wraps_around_and_can_be_turned_off() {
    let now = Instant::now();
    let seed = ChaCha8Rng::seed_from_u64(3);
    let mut n: Node = Membership::new(9, vec![], MembershipConfig::default(), seed, now);
    let states = (3..=5).map(|m| upd(m, 0, MemberState::Alive, m)).collect();
    let push_pull = Message::PushPull {
        join: false,
        reply: true,
        states,
    };
    n.handle_message(now, 3, push_pull.clone()).unwrap();
    drain(&mut n);
    let (targets, _) = probe_targets(&mut n, now, 4);
    assert_eq!((targets[1], targets[3]), (3, 5), "9's successor wraps to 3");

    let off = MembershipConfig {
        ring_probe_every: 0,
        ..MembershipConfig::default()
    };
    let mut n: Node = Membership::new(9, vec![], off, ChaCha8Rng::seed_from_u64(3), now);
    n.handle_message(now, 3, push_pull).unwrap();
    drain(&mut n);
    let (targets, _) = probe_targets(&mut n, now, 9);
    // Pure round-robin: three full passes, each member once per pass.
    for pass in targets.chunks(3) {
        let mut pass = pass.to_vec();
        pass.sort_unstable();
        assert_eq!(pass, vec![3, 4, 5]);
    }
}

/// Advances `n` to `until`, acking every probe; returns every message sent on the way.
fn run_until(n: &mut Node, mut t: Instant, until: Instant) -> Vec<(u64, Message<u64>)> {
    let mut all = Vec::new();
    while let Some(next) = n.poll_timeout() {
        if next > until {
            break;
        }
        t = next.max(t);
        n.handle_timeout(t);
        let (sent, _) = drain(n);
        for (to, m) in sent {
            if let Message::Ping { seq, .. } = m {
                let ack = Message::Ack {
                    seq,
                    piggyback: vec![],
                };
                n.handle_message(t, to, ack).unwrap();
            }
            all.push((to, m));
        }
    }
    n.handle_timeout(until);
    all.extend(drain(n).0);
    all
}

/// Whether `id` was sent a message carrying nothing but its suspicion (the last chance; the
/// regular gossip to it carries every queued update).
fn told_directly_it_is_suspected(sent: &[(u64, Message<u64>)], id: u64) -> bool {
    sent.iter().any(|(to, m)| {
        *to == id
            && matches!(m, Message::Gossip { piggyback } if matches!(piggyback.as_slice(),
                [u] if u.member == id && u.state == MemberState::Suspect))
    })
}

#[test]
fn an_unconfirmed_suspicion_asks_the_suspect_before_declaring_it_dead() {
    // Nine members: two confirmations expected, minimum timeout 4 s, maximum 24 s.
    let (mut n, now) = node_with_members(8);
    gossip(&mut n, now, 2, vec![upd(3, 0, MemberState::Suspect, 2)]).unwrap();
    drain(&mut n);
    let max = n.suspicion_deadline(&3).unwrap();
    assert_eq!(max - now, Duration::from_secs(24));
    let sent = run_until(&mut n, now, max + Duration::from_millis(1));
    // Not dead yet: asked directly instead.
    assert_eq!(state(&n, 3).0, MemberState::Suspect);
    assert!(told_directly_it_is_suspected(&sent, 3));
    // The suspect is alive and had refuted long ago: it answers with its incarnation.
    let alive = gossip(&mut n, max, 3, vec![upd(3, 1, MemberState::Alive, 3)]);
    alive.unwrap();
    assert_eq!(state(&n, 3), (MemberState::Alive, 1));
    assert_eq!(n.suspicion_deadline(&3), None);
}

#[test]
fn a_suspect_that_does_not_answer_its_last_chance_is_declared_dead() {
    let (mut n, now) = node_with_members(8);
    gossip(&mut n, now, 2, vec![upd(3, 0, MemberState::Suspect, 2)]).unwrap();
    drain(&mut n);
    let max = n.suspicion_deadline(&3).unwrap();
    run_until(&mut n, now, max + Duration::from_millis(1));
    assert_eq!(state(&n, 3).0, MemberState::Suspect);
    // Two protocol periods later, still silent: dead.
    let last_chance = n.suspicion_deadline(&3).unwrap();
    assert_eq!(last_chance - max, Duration::from_secs(2));
    run_until(&mut n, max, last_chance + Duration::from_millis(1));
    assert_eq!(state(&n, 3).0, MemberState::Dead);
}

#[test]
fn a_confirmed_suspicion_ends_at_its_timeout_without_a_last_chance() {
    let (mut n, now) = node_with_members(8);
    gossip(&mut n, now, 2, vec![upd(3, 0, MemberState::Suspect, 2)]).unwrap();
    gossip(&mut n, now, 4, vec![upd(3, 0, MemberState::Suspect, 4)]).unwrap();
    gossip(&mut n, now, 5, vec![upd(3, 0, MemberState::Suspect, 5)]).unwrap();
    drain(&mut n);
    let deadline = n.suspicion_deadline(&3).unwrap();
    assert_eq!(deadline - now, Duration::from_secs(4));
    let sent = run_until(&mut n, now, deadline + Duration::from_millis(1));
    assert_eq!(state(&n, 3).0, MemberState::Dead);
    assert!(!told_directly_it_is_suspected(&sent, 3));
}

#[test]
fn seeded_members_join_the_view_alive_without_events_or_messages() {
    let (mut n, now) = node(MembershipConfig {
        max_members: 4,
        ..MembershipConfig::default()
    });
    let meta: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"addr"[..]);
    // The local id and a repeated id are skipped; nothing goes past `max_members`.
    let added = n.seed_alive_members(
        now,
        [0, 1, 2, 2, 3, 4].map(|id| (id, 5, std::sync::Arc::clone(&meta))),
    );
    assert_eq!(added, 3);
    assert_eq!(n.alive_count(), 4);
    assert_eq!(n.member(&4), None);
    assert_eq!(state(&n, 2), (MemberState::Alive, 5));
    assert_eq!(n.member(&2).unwrap().meta(), b"addr");
    assert_eq!(n.member(&2).unwrap().signature(), b"");
    let (sent, events) = drain(&mut n);
    assert!(sent.is_empty() && events.is_empty());
    // The seeded members are probed like any other.
    n.handle_timeout(now + Duration::from_secs(2));
    let (sent, _) = drain(&mut n);
    assert!(
        sent.iter()
            .any(|(to, m)| (1..=3).contains(to) && matches!(m, Message::Ping { .. }))
    );
}
