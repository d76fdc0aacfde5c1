//! Fuzz target (stable Rust, proptest; see `bavard_tests::fuzz`) for member metadata, which
//! arrives in every membership update: arbitrary bytes and mutants of valid metadata. Asserts: no
//! panic; at most `max` addresses; a certificate only from a well-formed entry; valid metadata
//! round-trips; encoding stays within its budget.
//!
//! `BAVARD_FUZZ_CASES=1000000 cargo test --release -p bavard-node --lib fuzz_`

use bavard_tests::fuzz::{self, blob};
use libp2p::Multiaddr;
use proptest::prelude::*;

use super::{addrs, certificate, encode};

fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    (0usize..3, any::<u16>()).prop_map(|(kind, port)| {
        match kind {
            0 => format!("/ip4/10.0.0.1/tcp/{port}"),
            1 => format!("/ip6/::1/udp/{port}/quic-v1"),
            _ => format!("/memory/{port}"),
        }
        .parse()
        .unwrap()
    })
}

fn valid() -> impl Strategy<Value = (Vec<u8>, Vec<Multiaddr>)> {
    (blob(0..160), prop::collection::vec(multiaddr(), 0..5))
}

proptest! {
    #![proptest_config(fuzz::config(2.0))]

    #[test]
    fn fuzz_member_metadata_decodes_what_is_valid_and_nothing_else(
        input in fuzz::inputs(valid().prop_map(|(c, a)| encode(&c, &a, 4096)), 300),
        max in 0usize..10,
    ) {
        let meta = input.bytes();
        let found = addrs(meta, max);
        prop_assert!(found.len() <= max);
        if let Some(cert) = certificate(meta) {
            prop_assert!(!cert.is_empty() && cert.len() < meta.len());
        }
    }

    #[test]
    fn fuzz_member_metadata_round_trips_within_its_budget(
        (cert, list) in valid(),
        budget in 0usize..600,
    ) {
        let meta = encode(&cert, &list, budget);
        let entry = |b: &[u8]| prost::encoding::encoded_len_varint(b.len() as u64) as usize + b.len();
        prop_assert!(meta.len() <= budget.max(entry(&cert)), "over the budget");
        prop_assert_eq!(certificate(&meta), (!cert.is_empty()).then_some(&cert[..]));
        let back = addrs(&meta, list.len());
        prop_assert_eq!(&back[..], &list[..back.len()], "a prefix of the addresses, in order");
        if budget >= 4096 {
            prop_assert_eq!(back, list);
        }
    }
}
