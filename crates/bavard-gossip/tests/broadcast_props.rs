//! Property tests: whatever peers send, a node's views and push sets keep their invariants and
//! nothing panics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, IHaveEntry, Message, MessageBody, MessageId, Priority, TopicId,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const TOPIC: TopicId = TopicId([1; 32]);

#[derive(Clone, Debug)]
enum Input {
    Msg(u64, MessageBody<u64>),
    PeerDown(u64),
    Tick(u64),
    Publish(usize),
}

fn peer() -> impl Strategy<Value = u64> {
    1..25u64
}

fn body() -> impl Strategy<Value = MessageBody<u64>> {
    let id = (0..6u8).prop_map(|b| MessageId([b; 32]));
    prop_oneof![
        Just(MessageBody::Join),
        (peer(), 0..8u16).prop_map(|(peer, ttl)| MessageBody::ForwardJoin { peer, ttl }),
        any::<bool>().prop_map(|high| MessageBody::Neighbor {
            priority: if high { Priority::High } else { Priority::Low }
        }),
        any::<bool>().prop_map(|accepted| MessageBody::NeighborReply { accepted }),
        any::<bool>().prop_map(|alive| MessageBody::Disconnect { alive }),
        (peer(), 0..8u16, prop::collection::vec(peer(), 0..10))
            .prop_map(|(origin, ttl, peers)| MessageBody::Shuffle { origin, ttl, peers }),
        prop::collection::vec(peer(), 0..10).prop_map(|peers| MessageBody::ShuffleReply { peers }),
        (id.clone(), 0..20u16, 0..100usize).prop_map(|(id, hops, n)| MessageBody::Gossip {
            id,
            hops,
            publisher: 3,
            payload: vec![0; n],
            signature: vec![],
        }),
        prop::collection::vec((id.clone(), 0..20u16), 0..70).prop_map(|e| MessageBody::IHave {
            entries: e
                .into_iter()
                .map(|(id, hops)| IHaveEntry { id, hops })
                .collect()
        }),
        prop::option::of(id).prop_map(|id| MessageBody::Graft { id }),
        Just(MessageBody::Prune),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (peer(), body()).prop_map(|(p, b)| Input::Msg(p, b)),
        1 => peer().prop_map(Input::PeerDown),
        1 => (1..3_000u64).prop_map(Input::Tick),
        1 => (0..200usize).prop_map(Input::Publish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn views_and_push_sets_keep_their_invariants_under_any_input(
        seed in any::<u64>(),
        inputs in prop::collection::vec(input(), 1..150),
    ) {
        let mut node = Broadcast::new(0u64, BroadcastConfig::default(), ChaCha8Rng::seed_from_u64(seed));
        let mut now = Instant::now();
        node.join_topic(now, TOPIC, vec![1, 2]).unwrap();
        for input in inputs {
            match input {
                Input::Msg(from, body) => {
                    // Errors are fine (typed rejections); panics are not.
                    let _ = node.handle_message(now, from, Message { topic: TOPIC, body });
                }
                Input::PeerDown(peer) => node.peer_down(now, &peer),
                Input::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    node.handle_timeout(now);
                }
                Input::Publish(n) => {
                    let _ = node.publish(now, TOPIC, vec![7; n]);
                }
            }
            while let Some((to, msg)) = node.poll_transmit() {
                prop_assert_ne!(to, 0, "never sends to itself");
                prop_assert_eq!(msg.topic, TOPIC);
                if let MessageBody::IHave { entries } = &msg.body {
                    prop_assert!(entries.len() <= 64);
                }
            }
            while node.poll_event().is_some() {}

            let active: BTreeSet<u64> = node.active_view(&TOPIC).into_iter().collect();
            let passive: BTreeSet<u64> = node.passive_view(&TOPIC).into_iter().collect();
            let eager: BTreeSet<u64> = node.eager_peers(&TOPIC).into_iter().collect();
            let lazy: BTreeSet<u64> = node.lazy_peers(&TOPIC).into_iter().collect();
            prop_assert!(active.len() <= BroadcastConfig::default().hyparview.active_view_capacity);
            prop_assert!(passive.len() <= 30);
            prop_assert!(!active.contains(&0) && !passive.contains(&0));
            prop_assert!(active.is_disjoint(&passive));
            prop_assert!(eager.is_disjoint(&lazy));
            let push: BTreeSet<u64> = eager.union(&lazy).copied().collect();
            prop_assert_eq!(push, active, "eager ∪ lazy is the active view");
            prop_assert!(node.poll_timeout().is_some());
        }
    }
}
