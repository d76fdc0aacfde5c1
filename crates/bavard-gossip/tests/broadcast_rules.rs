//! Rules of one HyParView + Plumtree node, driven by hand: pruning of duplicates, size and flood
//! limits, unknown topics, the bounded seen cache, leaving. Whole-overlay properties (RMR, LDH,
//! reliability under crashes and loss) are simulated on the harness of `bavard-sim`
//! (`crates/bavard-sim/tests/broadcast_overlay.rs`).

use std::time::Instant;

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastError, BroadcastEvent, IHaveEntry, Message, MessageBody,
    MessageId, TopicId,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const TOPIC: TopicId = TopicId([7; 32]);

type Node = Broadcast<u64, ChaCha8Rng>;

fn two_neighbours() -> (Node, Instant) {
    let now = Instant::now();
    let mut a = Broadcast::new(
        0u64,
        BroadcastConfig::default(),
        ChaCha8Rng::seed_from_u64(9),
    );
    a.join_topic(now, TOPIC, vec![]).unwrap();
    for peer in [1, 2] {
        a.handle_message(
            now,
            peer,
            Message {
                topic: TOPIC,
                body: MessageBody::Join,
            },
        )
        .unwrap();
    }
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
    (a, now)
}

#[test]
fn duplicate_payload_is_answered_with_prune_and_the_link_turns_lazy() {
    let (mut a, now) = two_neighbours();
    assert_eq!(a.eager_peers(&TOPIC), vec![1, 2]);
    let gossip = MessageBody::Gossip {
        id: MessageId([1; 32]),
        hops: 0,
        publisher: 5,
        payload: b"x".to_vec(),
        signature: vec![],
    };
    a.handle_message(
        now,
        1,
        Message {
            topic: TOPIC,
            body: gossip.clone(),
        },
    )
    .unwrap();
    let forwarded: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].0, 2);
    assert!(matches!(
        forwarded[0].1.body,
        MessageBody::Gossip { hops: 1, .. }
    ));
    assert!(matches!(
        a.poll_event(),
        Some(BroadcastEvent::Received {
            from: 1,
            hops: 1,
            ..
        })
    ));

    a.handle_message(
        now,
        2,
        Message {
            topic: TOPIC,
            body: gossip,
        },
    )
    .unwrap();
    assert_eq!(
        a.poll_transmit(),
        Some((
            2,
            Message {
                topic: TOPIC,
                body: MessageBody::Prune
            }
        ))
    );
    assert_eq!(a.poll_event(), None, "a duplicate is not delivered again");
    assert_eq!(a.eager_peers(&TOPIC), vec![1]);
    assert_eq!(a.lazy_peers(&TOPIC), vec![2]);
}

#[test]
fn oversized_publish_and_oversized_received_payload_are_rejected() {
    let (mut a, now) = two_neighbours();
    let max = a.config().plumtree.max_message_size;
    assert_eq!(
        a.publish(now, TOPIC, vec![0; max + 1]),
        Err(BroadcastError::MessageTooLarge { size: max + 1, max })
    );
    assert!(
        a.publish(now, TOPIC, vec![0; max]).is_ok(),
        "the limit itself is allowed"
    );
    while a.poll_transmit().is_some() {}
    let big = MessageBody::Gossip {
        id: MessageId([2; 32]),
        hops: 0,
        publisher: 5,
        payload: vec![0; max + 1],
        signature: vec![],
    };
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: big
            }
        ),
        Err(BroadcastError::MessageTooLarge { size: max + 1, max })
    );
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.poll_event(), None);
}

#[test]
fn message_for_an_unknown_topic_is_rejected_without_touching_state() {
    let (mut a, now) = two_neighbours();
    let other = TopicId([9; 32]);
    let result = a.handle_message(
        now,
        5,
        Message {
            topic: other,
            body: MessageBody::Join,
        },
    );
    assert_eq!(result, Err(BroadcastError::UnknownTopic(other)));
    assert_eq!(
        a.publish(now, other, vec![1]),
        Err(BroadcastError::UnknownTopic(other))
    );
    assert_eq!(a.poll_transmit(), None);
    assert!(!a.is_joined(&other));
    assert_eq!(a.active_view(&TOPIC), vec![1, 2]);
    let from_self = a.handle_message(
        now,
        0,
        Message {
            topic: TOPIC,
            body: MessageBody::Prune,
        },
    );
    assert_eq!(from_self, Err(BroadcastError::FromSelf));
}

#[test]
fn floods_are_rejected_with_typed_errors() {
    let (mut a, now) = two_neighbours();
    let entries = vec![
        IHaveEntry {
            id: MessageId([3; 32]),
            hops: 1
        };
        65
    ];
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: MessageBody::IHave { entries }
            }
        ),
        Err(BroadcastError::TooManyIds { count: 65, max: 64 })
    );
    let peers: Vec<u64> = (10..40).collect();
    let shuffle = MessageBody::Shuffle {
        origin: 1,
        ttl: 3,
        peers,
    };
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: shuffle
            }
        ),
        Err(BroadcastError::TooManyPeers { count: 30, max: 8 })
    );

    let mut config = BroadcastConfig::default();
    config.limits.max_topics = 2;
    config.limits.max_queued_transmits = 10;
    let mut b = Broadcast::new(0u64, config, ChaCha8Rng::seed_from_u64(1));
    b.join_topic(now, TopicId([1; 32]), vec![]).unwrap();
    b.join_topic(now, TopicId([2; 32]), vec![]).unwrap();
    assert_eq!(
        b.join_topic(now, TopicId([3; 32]), vec![]),
        Err(BroadcastError::TooManyTopics { max: 2 })
    );
    // A peer flooding Joins while nobody drains the queue is refused once it is full.
    let topic = TopicId([1; 32]);
    let mut refused = 0;
    for peer in 1..100u64 {
        match b.handle_message(
            now,
            peer,
            Message {
                topic,
                body: MessageBody::Join,
            },
        ) {
            Ok(()) => {}
            Err(BroadcastError::TransmitQueueFull { max: 10 }) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 80, "the flood was refused, {refused} of 99");
    assert!(
        b.active_view(&topic).len() <= BroadcastConfig::default().hyparview.active_view_capacity
    );
}

#[test]
fn seen_cache_stays_bounded_under_many_messages() {
    let mut config = BroadcastConfig::default();
    config.plumtree.seen_cache_capacity = 50;
    let now = Instant::now();
    let mut a = Broadcast::new(0u64, config, ChaCha8Rng::seed_from_u64(5));
    a.join_topic(now, TOPIC, vec![]).unwrap();
    a.handle_message(
        now,
        1,
        Message {
            topic: TOPIC,
            body: MessageBody::Join,
        },
    )
    .unwrap();
    for n in 0..500u32 {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let body = MessageBody::Gossip {
            id: MessageId(id),
            hops: 0,
            publisher: 5,
            payload: vec![1],
            signature: vec![],
        };
        a.handle_message(now, 1, Message { topic: TOPIC, body })
            .unwrap();
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
        assert!(a.seen_messages(&TOPIC) <= 50);
    }
    assert_eq!(a.seen_messages(&TOPIC), 50);
}

#[test]
fn leaving_a_topic_says_goodbye_to_every_neighbour() {
    let (mut a, now) = two_neighbours();
    assert!(a.leave_topic(now, TOPIC));
    let goodbyes: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(goodbyes.len(), 2);
    assert!(
        goodbyes
            .iter()
            .all(|(_, m)| m.body == MessageBody::Disconnect { alive: false })
    );
    assert!(!a.is_joined(&TOPIC));
    assert_eq!(a.poll_timeout(), None);
    assert!(!a.leave_topic(now, TOPIC));
}
