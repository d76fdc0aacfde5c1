//! The clients' operations: what each one does next, from its own seeded stream.
//!
//! Each operation is a put (45%), a delete (10%) or a get (45%) of one of `keys` keys
//! (`k0`, `k1`, …, uniformly), at a consistency level drawn uniformly from one, quorum and all.
//! A put writes a value unique to it, `c{client}-{n}` (its client and that client's operation
//! number), so that a value read names the write that wrote it, as the checker requires.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::node::{ClientOp, Consistency};

/// Draws client `client`'s `seq`-th operation.
pub(crate) fn next_op(
    rng: &mut ChaCha8Rng,
    client: usize,
    seq: u64,
    keys: u32,
) -> (ClientOp, Consistency) {
    let key = format!("k{}", rng.random_range(0..keys.max(1)));
    let op = match rng.random_range(0..100u32) {
        0..45 => ClientOp::Put {
            key,
            value: format!("c{client}-{seq}"),
        },
        45..55 => ClientOp::Delete { key },
        _ => ClientOp::Get { key },
    };
    let level = match rng.random_range(0..3u32) {
        0 => Consistency::One,
        1 => Consistency::Quorum,
        _ => Consistency::All,
    };
    (op, level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    #[test]
    fn values_are_unique_and_every_kind_and_level_comes_up() {
        let mut rng = seeded(1, 2);
        let mut values = std::collections::HashSet::new();
        let (mut puts, mut deletes, mut gets) = (0, 0, 0);
        let mut levels = std::collections::HashSet::new();
        for seq in 0..1_000 {
            let (op, level) = next_op(&mut rng, 3, seq, 10);
            levels.insert(level);
            match op {
                ClientOp::Put { value, .. } => {
                    puts += 1;
                    assert!(values.insert(value));
                }
                ClientOp::Delete { .. } => deletes += 1,
                ClientOp::Get { .. } => gets += 1,
                other => panic!("the mixed workload issues no {other:?}"),
            }
        }
        assert!(
            puts > 350 && deletes > 50 && gets > 350,
            "{puts} {deletes} {gets}"
        );
        assert_eq!(levels.len(), 3);
    }
}
