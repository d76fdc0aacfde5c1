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
//!
//! `cluster partition` and `cluster isolate` record each cut in `DIR/partition.json`
//! ([`Cuts`]); `cluster heal` and `cluster down` remove it. Nothing here reads the record back
//! to decide anything: it tells `cluster status` and `cluster ui` which side each node is on.
//! On loopback a restarted node comes back without its own blocks, but the other side still
//! refuses it, so the recorded cut keeps holding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

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

/// The cuts made since the last heal: `DIR/partition.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cuts {
    /// Each cut as its two sides, in the order they were made.
    pub(crate) cuts: Vec<(Vec<usize>, Vec<usize>)>,
}

impl Cuts {
    /// Which side of each cut each node `0..n` is on: `A` or `B` for the first and second set of
    /// a cut, `-` for neither, joined with `/` when there are several cuts (`A/-`). Empty strings
    /// when nothing is cut.
    pub(crate) fn sides(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let each: Vec<&str> = self
                    .cuts
                    .iter()
                    .map(|(a, b)| {
                        if a.contains(&i) {
                            "A"
                        } else if b.contains(&i) {
                            "B"
                        } else {
                            "-"
                        }
                    })
                    .collect();
                each.join("/")
            })
            .collect()
    }

    /// The nodes `0..n` grouped by [`sides`](Self::sides): the groups a drawing separates. A
    /// node on neither side of a cut keeps its links to both, but is drawn apart from each, as
    /// it is on neither. Groups are ordered by their smallest member.
    pub(crate) fn groups(&self, n: usize) -> Vec<Vec<usize>> {
        let sides = self.sides(n);
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, side) in sides.into_iter().enumerate() {
            match out.iter_mut().find(|(s, _)| *s == side) {
                Some((_, members)) => members.push(i),
                None => out.push((side, vec![i])),
            }
        }
        out.into_iter().map(|(_, members)| members).collect()
    }

    /// One line per cut, for `cluster status`.
    pub(crate) fn describe(&self) -> String {
        let lines: Vec<String> = self
            .cuts
            .iter()
            .map(|(a, b)| format!("partition   nodes {a:?} cut off from nodes {b:?}"))
            .collect();
        lines.join("\n")
    }
}

fn cuts_path(dir: &Path) -> PathBuf {
    dir.join("partition.json")
}

/// The cuts recorded in `dir`, or `None` when the links are whole.
pub(crate) fn load_cuts(dir: &Path) -> anyhow::Result<Option<Cuts>> {
    let path = cuts_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Adds the cut between `a` and `b` to the record in `dir`.
pub(crate) fn record_cut(dir: &Path, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
    let mut cuts = load_cuts(dir)?.unwrap_or_default();
    cuts.cuts.push((a.to_vec(), b.to_vec()));
    let path = cuts_path(dir);
    std::fs::write(&path, serde_json::to_string(&cuts)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Forgets every recorded cut in `dir`.
pub(crate) fn clear_cuts(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(cuts_path(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", cuts_path(dir).display()))
        }
        _ => Ok(()),
    }
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
    fn each_node_is_on_a_side_of_each_cut_and_nodes_on_the_same_sides_are_grouped() {
        let none = Cuts::default();
        assert_eq!(none.sides(3), ["", "", ""]);
        assert_eq!(none.groups(3), [vec![0, 1, 2]]);
        let halves = Cuts {
            cuts: vec![(vec![0, 1], vec![2, 3, 4])],
        };
        assert_eq!(halves.sides(5), ["A", "A", "B", "B", "B"]);
        assert_eq!(halves.groups(5), [vec![0, 1], vec![2, 3, 4]]);
        let isolated = Cuts {
            cuts: vec![(vec![2], vec![0, 1, 3])],
        };
        assert_eq!(isolated.groups(4), [vec![0, 1, 3], vec![2]]);
        // Node 4 is on neither side (down when the cut was made, say): a group of its own.
        let bystander = Cuts {
            cuts: vec![(vec![0, 1], vec![2, 3])],
        };
        assert_eq!(bystander.sides(5)[4], "-");
        assert_eq!(bystander.groups(5), [vec![0, 1], vec![2, 3], vec![4]]);
        // Two cuts: a side per cut.
        let two = Cuts {
            cuts: vec![(vec![0, 1], vec![2, 3]), (vec![0], vec![1, 2, 3])],
        };
        assert_eq!(two.sides(4), ["A/A", "A/B", "B/B", "B/B"]);
        assert_eq!(two.groups(4), [vec![0], vec![1], vec![2, 3]]);
    }

    #[test]
    fn cuts_are_recorded_added_to_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cuts(dir.path()).unwrap(), None);
        record_cut(dir.path(), &[0], &[1, 2]).unwrap();
        record_cut(dir.path(), &[1], &[2]).unwrap();
        let cuts = load_cuts(dir.path()).unwrap().unwrap();
        assert_eq!(cuts.cuts, [(vec![0], vec![1, 2]), (vec![1], vec![2])]);
        assert_eq!(
            cuts.describe(),
            "partition   nodes [0] cut off from nodes [1, 2]\n\
             partition   nodes [1] cut off from nodes [2]"
        );
        clear_cuts(dir.path()).unwrap();
        clear_cuts(dir.path()).unwrap();
        assert_eq!(load_cuts(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_partition_cuts_each_cross_link_in_both_directions_and_nothing_else() {
        let links = cut_links(&[0, 3], &[1]);
        assert_eq!(links, [(0, 1), (1, 0), (3, 1), (1, 3)]);
        assert!(!links.contains(&(0, 3)));
        assert!(cut_links(&[], &[1]).is_empty());
    }
}
