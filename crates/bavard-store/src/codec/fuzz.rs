//! Fuzz targets (stable Rust, proptest; see `bavard_tests::fuzz`) for the row decoding: arbitrary
//! bytes and mutants of valid rows. Each asserts: no panic; a typed error or a row whose
//! re-encoding is the input (the encoding is canonical); nothing decoded larger than the row.
//!
//! `BAVARD_FUZZ_CASES=1000000 cargo test --release -p bavard-store --lib fuzz_`

use bavard_tests::fuzz::{self, blob};
use proptest::prelude::*;

use super::*;
use crate::hlc::HlcTimestamp;

fn record() -> impl Strategy<Value = Record> {
    (
        blob(1..16),
        prop_oneof![
            blob(0..64).prop_map(Value::Data),
            any::<u64>().prop_map(|deleted_at_ms| Value::Tombstone { deleted_at_ms }),
            (any::<[u8; 32]>(), any::<u64>()).prop_map(|(hash, size)| Value::Blob { hash, size }),
        ],
        prop::option::of(blob(0..40)),
        prop::option::of(any::<u64>()),
        (any::<u64>(), any::<u16>(), blob(0..40)),
    )
        .prop_map(
            |(key, value, publisher, expires_at_ms, (ms, counter, writer))| {
                let version = Version::new(HlcTimestamp::new(ms >> 16, counter), writer);
                Record {
                    key,
                    value,
                    publisher,
                    expires_at_ms,
                    version,
                }
            },
        )
}

fn provider() -> impl Strategy<Value = ProviderRecord> {
    (
        blob(0..16),
        blob(0..40),
        prop::collection::vec(blob(0..24), 0..4),
        any::<u64>(),
    )
        .prop_map(|(key, provider, addrs, expires)| {
            ProviderRecord::new(key, provider, addrs, expires)
        })
}

fn size(r: &Record) -> usize {
    r.data().map_or(0, <[u8]>::len)
        + r.version.writer.len()
        + r.publisher.as_ref().map_or(0, Vec::len)
}

proptest! {
    #![proptest_config(fuzz::config(2.0))]

    #[test]
    fn fuzz_record_rows_decode_to_a_canonical_record_or_a_typed_error(
        input in fuzz::inputs(record().prop_map(|r| encode_record(&r)), 256),
    ) {
        let row = input.bytes();
        match decode_record(b"k", row) {
            Ok(record) => {
                prop_assert_eq!(&encode_record(&record), row, "canonical: re-encodes to the row");
                prop_assert!(size(&record) <= row.len(), "nothing decoded beyond the row");
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_provider_rows_and_table_keys_decode_or_fail_typed(
        p in provider(),
        input in fuzz::inputs(provider().prop_map(|p| encode_provider(&p)), 256),
        table_key in fuzz::inputs(provider().prop_map(|p| provider_key(&p.key, &p.provider)), 64),
    ) {
        // A valid table key with a fuzzed row, and a fuzzed table key with a valid row.
        let key = provider_key(&p.key, &p.provider);
        match decode_provider(&key, input.bytes()) {
            Ok(decoded) => {
                prop_assert_eq!(&encode_provider(&decoded), input.bytes());
                prop_assert_eq!((&decoded.key, &decoded.provider), (&p.key, &p.provider));
                let held: usize = decoded.addrs.iter().map(Vec::len).sum();
                prop_assert!(held + 4 * decoded.addrs.len() <= input.bytes().len());
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
        match split_provider_key(table_key.bytes()) {
            Ok((k, provider)) => {
                prop_assert_eq!(provider_key(k, provider), table_key.bytes().to_vec());
                let row = encode_provider(&p);
                prop_assert!(decode_provider(table_key.bytes(), &row).is_ok());
            }
            Err(_) => prop_assert!(!table_key.must_decode()),
        }
    }
}
