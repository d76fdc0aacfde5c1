//! A member's metadata: its cluster certificate, then its listen addresses; each entry a varint
//! length and the bytes (the certificate as [`crate::admission::Certificate::encode`] writes it,
//! empty while the node has none; each address as the multiaddr's bytes).
//!
//! The certificate is what makes a signed `Alive` claim acceptable (see [`super::auth`]).
//! Encoding stops before the address that would exceed the membership's `max_meta_len`, so the
//! metadata is always accepted by peers; decoding skips nothing silently: a truncated or invalid
//! entry ends the list (what came before is kept, as the addresses are only dialing hints).

use libp2p::Multiaddr;

fn entry(bytes: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(bytes.len() + 2);
    prost::encoding::encode_varint(bytes.len() as u64, &mut entry);
    entry.extend_from_slice(bytes);
    entry
}

fn next<'a>(meta: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(prost::encoding::decode_varint(meta).ok()?).ok()?;
    if len > meta.len() {
        return None;
    }
    let (entry, rest) = meta.split_at(len);
    *meta = rest;
    Some(entry)
}

/// Encodes `certificate` and `addrs` into at most `max_len` bytes (the certificate always: it
/// is 147 bytes, well within the 512 of the default `max_meta_len`).
pub(crate) fn encode(certificate: &[u8], addrs: &[Multiaddr], max_len: usize) -> Vec<u8> {
    let mut out = entry(certificate);
    for a in addrs {
        let entry = entry(&a.to_vec());
        if out.len() + entry.len() > max_len {
            break;
        }
        out.extend_from_slice(&entry);
    }
    out
}

/// The certificate in `meta`, if it carries a non-empty one.
pub(crate) fn certificate(mut meta: &[u8]) -> Option<&[u8]> {
    next(&mut meta).filter(|c| !c.is_empty())
}

/// Decodes at most `max` addresses from metadata written by [`encode`].
pub(crate) fn addrs(mut meta: &[u8], max: usize) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    if next(&mut meta).is_none() {
        return out;
    }
    while out.len() < max
        && let Some(entry) = next(&mut meta)
    {
        match Multiaddr::try_from(entry.to_vec()) {
            Ok(a) => out.push(a),
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_addresses_roundtrip_within_the_budget() {
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/memory/1234".parse().unwrap(),
        ];
        let cert = [9u8; 147];
        let meta = encode(&cert, &addrs, 512);
        assert_eq!(certificate(&meta), Some(&cert[..]));
        assert_eq!(super::addrs(&meta, 8), addrs);
        // A budget that fits only the first address keeps only the first.
        let first = encode(&cert, &addrs[..1], 512).len();
        assert_eq!(super::addrs(&encode(&cert, &addrs, first), 8), addrs[..1]);
        assert!(super::addrs(&encode(&cert, &addrs, 10), 8).is_empty());
        // No certificate yet: none shown, addresses still readable.
        let bare = encode(&[], &addrs, 512);
        assert_eq!(certificate(&bare), None);
        assert_eq!(super::addrs(&bare, 8), addrs);
    }

    #[test]
    fn garbage_metadata_decodes_to_what_is_valid() {
        assert!(addrs(&[0xff, 0xff, 0xff], 8).is_empty());
        assert_eq!(certificate(&[0xff, 0xff, 0xff]), None);
        assert_eq!(certificate(&[5, 1, 2]), None, "truncated certificate");
        assert!(addrs(&[0, 5, 1, 2], 8).is_empty());
        let mut meta = encode(&[1, 2], &["/memory/7".parse().unwrap()], 64);
        meta.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
        assert_eq!(addrs(&meta, 8).len(), 1);
        assert_eq!(addrs(&meta, 0).len(), 0);
        assert!(addrs(&[], 8).is_empty());
    }
}
