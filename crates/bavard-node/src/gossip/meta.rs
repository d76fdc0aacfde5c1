//! A member's metadata: its listen addresses, each as a varint length and the multiaddr's bytes.
//!
//! Encoding stops before the address that would exceed the membership's `max_meta_len`, so the
//! metadata is always accepted by peers; decoding skips nothing silently: a truncated or invalid
//! entry ends the list (what came before is kept, as the addresses are only dialing hints).

use libp2p::Multiaddr;

/// Encodes `addrs` into at most `max_len` bytes.
pub(crate) fn encode_addrs(addrs: &[Multiaddr], max_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs {
        let bytes = a.to_vec();
        let mut entry = Vec::with_capacity(bytes.len() + 2);
        prost::encoding::encode_varint(bytes.len() as u64, &mut entry);
        entry.extend_from_slice(&bytes);
        if out.len() + entry.len() > max_len {
            break;
        }
        out.extend_from_slice(&entry);
    }
    out
}

/// Decodes at most `max` addresses from metadata written by [`encode_addrs`].
pub(crate) fn decode_addrs(mut meta: &[u8], max: usize) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    while !meta.is_empty() && out.len() < max {
        let Ok(len) = prost::encoding::decode_varint(&mut meta) else {
            break;
        };
        let Ok(len) = usize::try_from(len) else { break };
        if len > meta.len() {
            break;
        }
        let (entry, rest) = meta.split_at(len);
        match Multiaddr::try_from(entry.to_vec()) {
            Ok(a) => out.push(a),
            Err(_) => break,
        }
        meta = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_roundtrip_within_the_budget() {
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/memory/1234".parse().unwrap(),
        ];
        let meta = encode_addrs(&addrs, 512);
        assert_eq!(decode_addrs(&meta, 8), addrs);
        // A budget that fits only the first address keeps only the first.
        let first = encode_addrs(&addrs[..1], 512).len();
        assert_eq!(decode_addrs(&encode_addrs(&addrs, first), 8), addrs[..1]);
        assert!(encode_addrs(&addrs, 3).is_empty());
    }

    #[test]
    fn garbage_metadata_decodes_to_what_is_valid() {
        assert!(decode_addrs(&[0xff, 0xff, 0xff], 8).is_empty());
        assert!(decode_addrs(&[5, 1, 2], 8).is_empty());
        let mut meta = encode_addrs(&["/memory/7".parse().unwrap()], 64);
        meta.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
        assert_eq!(decode_addrs(&meta, 8).len(), 1);
        assert_eq!(decode_addrs(&meta, 0).len(), 0);
    }
}
