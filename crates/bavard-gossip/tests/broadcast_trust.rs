//! The broadcast's trust rules: publications are signed by their publisher and verified by every
//! node, forged copies are neither delivered nor forwarded nor allowed to displace or block the
//! genuine message, and Plumtree messages are only taken from active-view neighbours.
//! Signatures come from the keyed hash of `common::Keyed` (a stand-in for ed25519).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastError, BroadcastEvent, IHaveEntry, Message, MessageBody,
    MessageId, Priority, SignedGossip, TopicId,
};
use common::{Keyed, sign_gossip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const TOPIC: TopicId = TopicId([7; 32]);

type Node = Broadcast<u64, ChaCha8Rng>;

fn node(id: u64) -> Node {
    Broadcast::new(
        id,
        BroadcastConfig::default(),
        ChaCha8Rng::seed_from_u64(id),
    )
    .with_authenticator(Keyed::boxed(id))
}

fn msg(body: MessageBody<u64>) -> Message<u64> {
    Message { topic: TOPIC, body }
}

/// `publisher`'s message `id`, signed by `signer` (a forger when it is someone else).
fn gossip(id: u8, publisher: u64, payload: &[u8], signer: u64) -> MessageBody<u64> {
    let id = MessageId([id; 32]);
    let signature = sign_gossip(
        signer,
        &SignedGossip {
            publisher: &publisher,
            topic: &TOPIC,
            id: &id,
            payload,
        },
    );
    MessageBody::Gossip {
        id,
        hops: 0,
        publisher,
        payload: payload.to_vec(),
        signature,
    }
}

type Output = (Vec<(u64, Message<u64>)>, Vec<BroadcastEvent<u64>>);

fn drain(n: &mut Node) -> Output {
    let sent = std::iter::from_fn(|| n.poll_transmit()).collect();
    let events = std::iter::from_fn(|| n.poll_event()).collect();
    (sent, events)
}

/// Node 0 with neighbours 1 and 2 (both joined through it), eager to both.
fn node_with_neighbours() -> (Node, Instant) {
    let now = Instant::now();
    let mut a = node(0);
    a.join_topic(now, TOPIC, vec![]).unwrap();
    for peer in [1, 2] {
        a.handle_message(now, peer, msg(MessageBody::Join)).unwrap();
    }
    drain(&mut a);
    assert_eq!(a.eager_peers(&TOPIC), vec![1, 2]);
    (a, now)
}

fn received(events: &[BroadcastEvent<u64>]) -> Vec<(MessageId, Vec<u8>, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            BroadcastEvent::Received {
                id,
                payload,
                publisher,
                ..
            } => Some((*id, payload.clone(), *publisher)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_forged_topic_message_is_neither_delivered_nor_forwarded_while_the_genuine_one_is() {
    let (mut a, now) = node_with_neighbours();
    // Neighbour 1 passes off its own payload as 7's.
    let forged = gossip(1, 7, b"evil", 1);
    assert_eq!(
        a.handle_message(now, 1, msg(forged)),
        Err(BroadcastError::BadSignature(MessageId([1; 32])))
    );
    assert_eq!(
        drain(&mut a),
        (vec![], vec![]),
        "not delivered, not forwarded"
    );
    assert_eq!(a.seen_messages(&TOPIC), 0, "its id is not remembered");
    assert_eq!(a.eager_peers(&TOPIC), vec![1, 2]);

    // 7's own message, relayed by 1: delivered as 7's, forwarded with 7's signature.
    let genuine = gossip(1, 7, b"hello", 7);
    a.handle_message(now, 1, msg(genuine.clone())).unwrap();
    let (sent, events) = drain(&mut a);
    assert_eq!(
        received(&events),
        vec![(MessageId([1; 32]), b"hello".to_vec(), 7)]
    );
    let MessageBody::Gossip { signature, .. } = &genuine else {
        unreachable!()
    };
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        &sent[0],
        (2, Message { body: MessageBody::Gossip { hops: 1, publisher: 7, payload, signature: s, .. }, .. })
            if payload == b"hello" && s == signature
    ));
}

#[test]
fn a_forged_copy_under_a_known_id_neither_displaces_nor_blocks_the_genuine_one() {
    let (mut a, now) = node_with_neighbours();
    let id = MessageId([1; 32]);
    a.handle_message(now, 1, msg(gossip(1, 7, b"genuine", 7)))
        .unwrap();
    assert_eq!(received(&drain(&mut a).1).len(), 1);

    // A copy with another payload and a bad signature: refused before it touches anything (no
    // prune either: the link is fine, the message was not).
    assert_eq!(
        a.handle_message(now, 2, msg(gossip(1, 7, b"forged", 2))),
        Err(BroadcastError::BadSignature(id))
    );
    assert_eq!(drain(&mut a), (vec![], vec![]));
    assert_eq!(a.eager_peers(&TOPIC), vec![1, 2]);

    // Member 8 publishes, validly signed, under the same id: a duplicate, not delivered.
    a.handle_message(now, 2, msg(gossip(1, 8, b"squatter", 8)))
        .unwrap();
    let (sent, events) = drain(&mut a);
    assert_eq!(received(&events), vec![]);
    assert_eq!(sent, vec![(2, msg(MessageBody::Prune))]);

    // What a graft gets back is still the genuine message, with its publisher's signature.
    a.handle_message(now, 2, msg(MessageBody::Graft { id: Some(id) }))
        .unwrap();
    let (sent, _) = drain(&mut a);
    let MessageBody::Gossip {
        publisher,
        payload,
        signature,
        ..
    } = gossip(1, 7, b"genuine", 7)
    else {
        unreachable!()
    };
    assert!(matches!(
        &sent[..],
        [(2, Message { body: MessageBody::Gossip { publisher: p, payload: d, signature: s, .. }, .. })]
            if *p == publisher && *d == payload && *s == signature
    ));

    // A forged copy that arrives first does not block the genuine one either.
    let other = MessageId([2; 32]);
    assert_eq!(
        a.handle_message(now, 1, msg(gossip(2, 7, b"first, forged", 1))),
        Err(BroadcastError::BadSignature(other))
    );
    a.handle_message(now, 2, msg(gossip(2, 7, b"second, genuine", 7)))
        .unwrap();
    assert_eq!(
        received(&drain(&mut a).1),
        vec![(other, b"second, genuine".to_vec(), 7)]
    );
}

#[test]
fn plumtree_messages_from_a_peer_outside_the_active_view_are_refused() {
    let (mut a, now) = node_with_neighbours();
    let config = a.config().plumtree.clone();
    let id = MessageId([1; 32]);
    let genuine = gossip(1, 7, b"hello", 7);
    // Today's code delivered and forwarded a stranger's payload; now it is refused whole.
    assert_eq!(
        a.handle_message(now, 9, msg(genuine.clone())),
        Err(BroadcastError::NotNeighbor)
    );
    assert_eq!(drain(&mut a), (vec![], vec![]));
    assert_eq!(a.seen_messages(&TOPIC), 0);
    // A stranger's announcement is not followed by a graft.
    let ihave = MessageBody::IHave {
        entries: vec![IHaveEntry {
            id: MessageId([3; 32]),
            hops: 0,
        }],
    };
    assert_eq!(
        a.handle_message(now, 9, msg(ihave)),
        Err(BroadcastError::NotNeighbor)
    );
    let later = now + config.graft_timeout_1 + config.graft_timeout_2;
    a.handle_timeout(later);
    assert!(
        drain(&mut a)
            .0
            .iter()
            .all(|(_, m)| !matches!(m.body, MessageBody::Graft { .. }))
    );
    // The neighbour's copy is delivered: the stranger's did not poison the id.
    a.handle_message(later, 1, msg(genuine)).unwrap();
    assert_eq!(received(&drain(&mut a).1).len(), 1);
    // A stranger's graft gets no payload, its prune changes nothing.
    for body in [MessageBody::Graft { id: Some(id) }, MessageBody::Prune] {
        assert_eq!(
            a.handle_message(later, 9, msg(body)),
            Err(BroadcastError::NotNeighbor)
        );
    }
    assert_eq!(drain(&mut a), (vec![], vec![]));
    // A former neighbour whose messages crossed our `Disconnect` (here: it left the active view
    // for the passive one) is dropped the same way, but that race is no error.
    a.handle_message(later, 2, msg(MessageBody::Disconnect { alive: true }))
        .unwrap();
    assert!(a.passive_view(&TOPIC).contains(&2));
    drain(&mut a);
    assert_eq!(
        a.handle_message(later, 2, msg(gossip(5, 7, b"late", 7))),
        Ok(())
    );
    assert_eq!(drain(&mut a), (vec![], vec![]));
    // HyParView's messages come from non-neighbours by design; once 9 is a neighbour, its
    // payloads are taken.
    a.handle_message(
        later,
        9,
        msg(MessageBody::Neighbor {
            priority: Priority::Low,
        }),
    )
    .unwrap();
    assert!(a.active_view(&TOPIC).contains(&9));
    a.handle_message(later, 9, msg(gossip(4, 7, b"via 9", 7)))
        .unwrap();
    assert_eq!(received(&drain(&mut a).1).len(), 1);
}

#[test]
fn an_oversized_signature_is_rejected_without_changing_state() {
    let (mut a, now) = node_with_neighbours();
    let max = a.config().plumtree.max_signature_len;
    let MessageBody::Gossip {
        id,
        hops,
        publisher,
        payload,
        ..
    } = gossip(1, 7, b"x", 7)
    else {
        unreachable!()
    };
    let big = MessageBody::Gossip {
        id,
        hops,
        publisher,
        payload,
        signature: vec![0; max + 1],
    };
    assert_eq!(
        a.handle_message(now, 1, msg(big)),
        Err(BroadcastError::SignatureTooLarge { size: max + 1, max })
    );
    assert_eq!(drain(&mut a), (vec![], vec![]));
}

/// Delivers every queued message until none is left; returns what each node delivered as
/// (id, payload, publisher). Every message must be accepted.
fn settle(
    nodes: &mut BTreeMap<u64, Node>,
    now: Instant,
) -> BTreeMap<u64, Vec<(MessageId, Vec<u8>, u64)>> {
    let mut delivered: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    loop {
        let mut moved = false;
        let ids: Vec<u64> = nodes.keys().copied().collect();
        for from in ids {
            let (sent, events) = drain(nodes.get_mut(&from).unwrap());
            delivered.entry(from).or_default().extend(received(&events));
            for (to, m) in sent {
                moved = true;
                if let Some(n) = nodes.get_mut(&to) {
                    n.handle_message(now, from, m.clone())
                        .unwrap_or_else(|e| panic!("{from} → {to}: {m:?} refused: {e}"));
                }
            }
        }
        if !moved {
            return delivered;
        }
    }
}

#[test]
fn a_publication_is_signed_and_every_node_delivers_it_with_its_publisher() {
    let now = Instant::now();
    let mut nodes: BTreeMap<u64, Node> = (1..=4).map(|i| (i, node(i))).collect();
    nodes
        .get_mut(&1)
        .unwrap()
        .join_topic(now, TOPIC, vec![])
        .unwrap();
    for i in 2..=4 {
        let contact = i - 1;
        nodes
            .get_mut(&i)
            .unwrap()
            .join_topic(now, TOPIC, vec![contact])
            .unwrap();
        settle(&mut nodes, now);
    }
    for publisher in [1, 4] {
        let id = nodes
            .get_mut(&publisher)
            .unwrap()
            .publish(now, TOPIC, vec![publisher as u8])
            .unwrap();
        let delivered = settle(&mut nodes, now);
        for (node, got) in delivered {
            let expected = if node == publisher {
                vec![]
            } else {
                vec![(id, vec![publisher as u8], publisher)]
            };
            assert_eq!(got, expected, "node {node}");
        }
    }
}

#[test]
fn a_new_neighbour_hears_of_recent_messages_only_once_the_link_is_mutual() {
    let now = Instant::now();
    let mut nodes: BTreeMap<u64, Node> = [(0, node(0)), (5, node(5))].into();
    let a = nodes.get_mut(&0).unwrap();
    a.join_topic(now, TOPIC, vec![]).unwrap();
    let id = a.publish(now, TOPIC, b"earlier".to_vec()).unwrap();
    drain(a);
    // 5 joins through 0: 0 tells 5 it is a neighbour before it announces its recent messages,
    // so 5 takes the announcement (a non-neighbour's would be refused).
    let b = nodes.get_mut(&5).unwrap();
    b.join_topic(now, TOPIC, vec![0]).unwrap();
    let (sent, _) = drain(b);
    let a = nodes.get_mut(&0).unwrap();
    for (_, m) in sent {
        a.handle_message(now, 5, m).unwrap();
    }
    let (sent, _) = drain(a);
    let kinds: Vec<&MessageBody<u64>> = sent
        .iter()
        .filter(|(to, _)| *to == 5)
        .map(|(_, m)| &m.body)
        .collect();
    assert!(matches!(
        &kinds[..],
        [
            MessageBody::Neighbor { .. },
            MessageBody::IHave { entries }
        ] if entries[0].id == id
    ));
    let b = nodes.get_mut(&5).unwrap();
    for (_, m) in sent {
        b.handle_message(now, 0, m).unwrap();
    }
    // 5 grafts the announced message after its timeout and gets it, signed by 0.
    let later = now + BroadcastConfig::default().plumtree.graft_timeout_1;
    nodes.get_mut(&5).unwrap().handle_timeout(later);
    let delivered = settle(&mut nodes, later);
    assert_eq!(delivered[&5], vec![(id, b"earlier".to_vec(), 0)]);
}
