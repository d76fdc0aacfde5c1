//! Network faults on a running cluster: cut every link between two node sets, isolate a node,
//! heal.
//!
//! Two mechanisms, chosen by how the cluster runs:
//!
//! - **loopback** (the default): every node shares 127.0.0.1, so the kernel cannot tell the links
//!   apart; the xtask asks each node to refuse the other side instead
//!   (`PUT /v1/admin/blocked/{peer}` on both ends of every cut link). Healing lifts every block
//!   between every pair (`DELETE`), which needs no record of what was cut.
//! - **network namespaces** (`cluster up --netns`): each node has its own address, and nftables
//!   rules inside each namespace drop the traffic from and to the other set (see
//!   [`crate::netns`]). Healing flushes the rules.
//!
//! Either way a cut is symmetric: neither side can reach the other.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cluster::{ClusterState, parse_indices};
use crate::http;

/// Parses the two sides of a partition (`0-4` and `5-9`, `0,3` and `1,2,4`) for an `n`-node
/// cluster. The sides must be non-empty and disjoint; nodes in neither side keep every link.
pub(crate) fn parse_sides(a: &str, b: &str, n: usize) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let a = parse_indices(a, n).with_context(|| format!("bad first node set {a:?}"))?;
    let b = parse_indices(b, n).with_context(|| format!("bad second node set {b:?}"))?;
    if let Some(both) = a.iter().find(|i| b.contains(i)) {
        bail!("node {both} is on both sides of the partition: the sets must be disjoint");
    }
    Ok((a, b))
}

/// The links a partition between `a` and `b` cuts, each as (from, to), both directions.
pub(crate) fn cut_links(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(2 * a.len() * b.len());
    for &x in a {
        for &y in b {
            out.push((x, y));
            out.push((y, x));
        }
    }
    out
}

/// Cuts every link between the node sets `a` and `b`, in both directions.
pub(crate) fn partition(state: &ClusterState, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
    if let Some(ns) = &state.netns {
        return ns.partition(a, b);
    }
    let mut errors = Vec::new();
    for (from, to) in cut_links(a, b) {
        if let Err(e) = block(state, from, to, true) {
            errors.push(format!("{e:#}"));
        }
    }
    report(errors, "partition")
}

/// Cuts every link of node `i`.
pub(crate) fn isolate(state: &ClusterState, i: usize) -> anyhow::Result<()> {
    let others: Vec<usize> = (0..state.nodes.len()).filter(|&j| j != i).collect();
    partition(state, &[i], &others)
}

/// Restores every link between every pair of nodes. On loopback a node that does not answer
/// (down, paused) keeps its blocks until restarted; blocks are not persisted, so a restarted node
/// starts with none.
pub(crate) fn heal(state: &ClusterState) -> anyhow::Result<()> {
    if let Some(ns) = &state.netns {
        return ns.heal();
    }
    let n = state.nodes.len();
    let mut errors = Vec::new();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            if let Err(e) = block(state, from, to, false) {
                errors.push(format!("{e:#}"));
                // One error per unreachable node is enough.
                break;
            }
        }
    }
    report(errors, "heal")
}

/// Asks node `from` to refuse (or accept again) node `to`.
fn block(state: &ClusterState, from: usize, to: usize, on: bool) -> anyhow::Result<()> {
    let node = &state.nodes[from];
    let peer = &state.nodes[to].peer_id;
    let method = if on { "PUT" } else { "DELETE" };
    let path = format!("/v1/admin/blocked/{peer}");
    let r = http::request(&node.api, method, &path, &[], Duration::from_secs(3))
        .with_context(|| format!("node {from} did not answer {method} {path}"))?;
    if r.status != 200 {
        bail!(
            "node {from}: {method} {path}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(())
}

fn report(errors: Vec<String>, what: &str) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    bail!(
        "{what} incomplete ({} errors): {}",
        errors.len(),
        errors.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_sides_accept_ranges_and_lists() {
        assert_eq!(
            parse_sides("0-4", "5-9", 10).unwrap(),
            (vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9])
        );
        assert_eq!(
            parse_sides("0,3", "1,2,4", 5).unwrap(),
            (vec![0, 3], vec![1, 2, 4])
        );
        // A node in neither set is allowed: it keeps its links to both.
        assert_eq!(parse_sides("0", "2", 3).unwrap(), (vec![0], vec![2]));
    }

    #[test]
    fn overlapping_empty_or_out_of_range_sides_are_rejected() {
        let err = parse_sides("0-2", "2-4", 5).unwrap_err().to_string();
        assert!(err.contains("node 2 is on both sides"), "{err}");
        assert!(parse_sides("", "1", 5).is_err());
        assert!(parse_sides("0", "5", 5).is_err());
        assert!(parse_sides("0-x", "1", 5).is_err());
    }

    #[test]
    fn a_partition_cuts_each_cross_link_in_both_directions_and_nothing_else() {
        let links = cut_links(&[0, 3], &[1]);
        assert_eq!(links, [(0, 1), (1, 0), (3, 1), (1, 3)]);
        assert!(!links.contains(&(0, 3)));
        assert!(cut_links(&[], &[1]).is_empty());
    }
}
