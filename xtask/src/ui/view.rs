//! What the testbed page draws, computed from what each node answered: no IO here.
//!
//! Every second the server asks each running node for `/v1/status`, `/v1/members` and
//! `/v1/topics` ([`Probe`]) and folds the answers into one [`View`]:
//!
//! - a node's colour is its state **as the majority of the other nodes see it** (SWIM's view is
//!   per member, and a node's opinion of itself is always "alive"); a tie goes to the worse
//!   state, and a node whose process is gone is `down` whatever the others still think;
//! - a membership link joins two nodes with what each end thinks of the other;
//! - topic-tree edges are the eager and lazy peers each node lists for the chosen topic
//!   (Plumtree's spanning tree and its lazy links); a node that answers `/v1/topics` with 404
//!   (an older node) contributes none, and the page says so;
//! - each node's side of the recorded cuts, and the groups of nodes on the same sides, which the
//!   page draws apart with a cut line between them ([`crate::faults::Cuts`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cluster::{NodeStatus, ProcState};
use crate::faults::Cuts;

/// A membership entry of `GET /v1/members`, the fields the page needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Member {
    /// Its peer id.
    pub(crate) peer_id: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub(crate) state: String,
}

/// A topic of `GET /v1/topics`, the fields the page needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Topic {
    /// Its name.
    pub(crate) topic: String,
    /// Peers the node pushes messages to (tree edges).
    #[serde(default)]
    pub(crate) eager: Vec<String>,
    /// Peers the node only announces message ids to.
    #[serde(default)]
    pub(crate) lazy: Vec<String>,
}

/// How a node answered `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topics {
    /// It did not answer (down, paused, timed out, or some other error).
    Unknown,
    /// 404: it predates the endpoint.
    Unsupported,
    /// Its topics.
    List(Vec<Topic>),
}

/// What one node answered in one poll.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    /// Its index.
    pub(crate) index: usize,
    /// Its peer id.
    pub(crate) peer_id: String,
    /// Its API address.
    pub(crate) api: String,
    /// What the OS says about its process.
    pub(crate) process: ProcState,
    /// `/v1/status`, if it answered.
    pub(crate) status: Option<NodeStatus>,
    /// `/v1/members`, if it answered.
    pub(crate) members: Option<Vec<Member>>,
    /// `/v1/topics`.
    pub(crate) topics: Topics,
}

/// One node as the page draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NodeView {
    /// Its index.
    pub(crate) index: usize,
    /// Its peer id.
    pub(crate) peer_id: String,
    /// Its API address.
    pub(crate) api: String,
    /// `running`, `paused` or `down`.
    pub(crate) process: &'static str,
    /// Whether it answered `/v1/status` in this poll.
    pub(crate) answers: bool,
    /// Its colour: `alive`, `suspect`, `dead`, `left`, `down` (process gone) or `unknown` (no
    /// other node has an opinion and it does not answer).
    pub(crate) state: String,
    /// How many of the answering other nodes hold each state for it.
    pub(crate) votes: BTreeMap<String, usize>,
    /// Its side of the recorded cuts (`A`, `B`, `-`; empty when nothing is cut).
    pub(crate) side: String,
    /// From its `/v1/status`.
    pub(crate) members_alive: Option<usize>,
    /// From its `/v1/status`.
    pub(crate) connected_peers: Option<usize>,
    /// From its `/v1/status`.
    pub(crate) routing_table_size: Option<usize>,
}

/// A membership link between nodes `a < b`: what each thinks of the other (`None`: not in its
/// member list, or it did not answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Link {
    /// The lower index.
    pub(crate) a: usize,
    /// The higher index.
    pub(crate) b: usize,
    /// `a`'s view of `b`.
    pub(crate) a_sees_b: Option<String>,
    /// `b`'s view of `a`.
    pub(crate) b_sees_a: Option<String>,
}

/// A topic-tree edge, as node `from` lists node `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TreeEdge {
    /// The node listing the peer.
    pub(crate) from: usize,
    /// The peer.
    pub(crate) to: usize,
    /// Eager (tree) or lazy.
    pub(crate) eager: bool,
}

/// Everything the page draws for one poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct View {
    /// The nodes, by index.
    pub(crate) nodes: Vec<NodeView>,
    /// Membership links, each pair once.
    pub(crate) links: Vec<Link>,
    /// The chosen topic.
    pub(crate) topic: String,
    /// Its tree edges.
    pub(crate) tree: Vec<TreeEdge>,
    /// Whether some answering node serves `/v1/topics`; false when every one said 404.
    pub(crate) topics_supported: bool,
    /// The nodes grouped by side of the recorded cuts (one group: no partition).
    pub(crate) groups: Vec<Vec<usize>>,
}

/// How bad a member state is, for breaking ties toward the worse.
fn severity(state: &str) -> u8 {
    match state {
        "alive" => 0,
        "suspect" => 1,
        "left" => 2,
        _ => 3,
    }
}

/// The state held by most voters, a tie going to the worse one; `None` without votes.
pub(crate) fn majority(votes: &BTreeMap<String, usize>) -> Option<String> {
    votes
        .iter()
        .max_by_key(|(state, count)| (**count, severity(state)))
        .map(|(state, _)| state.clone())
}

/// Folds one poll's probes (by index) and the recorded cuts into the view of `topic`.
pub(crate) fn build(probes: &[Probe], topic: &str, cuts: &Cuts) -> View {
    let sides = cuts.sides(probes.len());
    let index_of: HashMap<&str, usize> = probes
        .iter()
        .map(|p| (p.peer_id.as_str(), p.index))
        .collect();
    // views[i][j]: what node i thinks of node j, for i != j.
    let views: Vec<HashMap<usize, &str>> = probes
        .iter()
        .map(|p| {
            p.members
                .iter()
                .flatten()
                .filter_map(|m| {
                    let j = *index_of.get(m.peer_id.as_str())?;
                    (j != p.index).then_some((j, m.state.as_str()))
                })
                .collect()
        })
        .collect();
    let nodes = probes
        .iter()
        .map(|p| {
            let mut votes = BTreeMap::new();
            for (i, view) in views.iter().enumerate() {
                if i != p.index
                    && let Some(s) = view.get(&p.index)
                {
                    *votes.entry((*s).to_string()).or_insert(0) += 1;
                }
            }
            let process = match p.process {
                ProcState::Running => "running",
                ProcState::Stopped => "paused",
                ProcState::Gone => "down",
            };
            let state = if p.process == ProcState::Gone {
                "down".to_string()
            } else if let Some(s) = majority(&votes) {
                s
            } else if p.status.is_some() {
                // Nobody else has an opinion (a one-node cluster, or every other node is away).
                "alive".to_string()
            } else {
                "unknown".to_string()
            };
            NodeView {
                index: p.index,
                peer_id: p.peer_id.clone(),
                api: p.api.clone(),
                process,
                answers: p.status.is_some(),
                state,
                votes,
                side: sides.get(p.index).cloned().unwrap_or_default(),
                members_alive: p.status.as_ref().map(|s| s.members_alive),
                connected_peers: p.status.as_ref().map(|s| s.connected_peers),
                routing_table_size: p.status.as_ref().map(|s| s.routing_table_size),
            }
        })
        .collect();
    let mut links = Vec::new();
    for a in 0..probes.len() {
        for b in a + 1..probes.len() {
            let a_sees_b = views[a].get(&b).map(|s| (*s).to_string());
            let b_sees_a = views[b].get(&a).map(|s| (*s).to_string());
            if a_sees_b.is_some() || b_sees_a.is_some() {
                links.push(Link {
                    a,
                    b,
                    a_sees_b,
                    b_sees_a,
                });
            }
        }
    }
    let mut tree = Vec::new();
    let mut supported = false;
    let mut unsupported = false;
    for p in probes {
        let list = match &p.topics {
            Topics::Unknown => continue,
            Topics::Unsupported => {
                unsupported = true;
                continue;
            }
            Topics::List(list) => list,
        };
        supported = true;
        for t in list.iter().filter(|t| t.topic == topic) {
            let peers = t
                .eager
                .iter()
                .map(|id| (id, true))
                .chain(t.lazy.iter().map(|id| (id, false)));
            for (id, eager) in peers {
                if let Some(&to) = index_of.get(id.as_str())
                    && to != p.index
                {
                    tree.push(TreeEdge {
                        from: p.index,
                        to,
                        eager,
                    });
                }
            }
        }
    }
    View {
        nodes,
        links,
        topic: topic.to_string(),
        tree,
        // Nobody answered at all: say supported, so the page does not claim a 404 it never saw.
        topics_supported: supported || !unsupported,
        groups: cuts.groups(probes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Option<NodeStatus> {
        Some(NodeStatus {
            routing_table_size: 4,
            members_alive: 5,
            records_stored: 0,
            connected_peers: 4,
        })
    }

    fn id(i: usize) -> String {
        format!("peer{i}")
    }

    /// A running node that sees each `(j, state)`.
    fn probe(index: usize, sees: &[(usize, &str)]) -> Probe {
        Probe {
            index,
            peer_id: id(index),
            api: format!("127.0.0.1:{}", 5000 + index),
            process: ProcState::Running,
            status: status(),
            members: Some(
                sees.iter()
                    .map(|(j, s)| Member {
                        peer_id: id(*j),
                        state: (*s).into(),
                    })
                    .collect(),
            ),
            topics: Topics::List(vec![]),
        }
    }

    fn gone(index: usize) -> Probe {
        Probe {
            process: ProcState::Gone,
            status: None,
            members: None,
            topics: Topics::Unknown,
            ..probe(index, &[])
        }
    }

    #[test]
    fn a_node_takes_the_state_most_others_see_and_a_tie_goes_to_the_worse() {
        let probes = vec![
            probe(0, &[(0, "alive"), (1, "alive"), (2, "suspect")]),
            probe(1, &[(0, "alive"), (2, "alive")]),
            probe(2, &[(0, "alive"), (1, "alive")]),
            probe(3, &[(0, "alive"), (1, "suspect"), (2, "suspect")]),
        ];
        let v = build(&probes, "t", &Cuts::default());
        assert_eq!(v.nodes[0].state, "alive");
        // Node 1: alive for nodes 0 and 2, suspect for node 3.
        assert_eq!(v.nodes[1].state, "alive");
        assert_eq!(
            v.nodes[1].votes,
            BTreeMap::from([("alive".into(), 2), ("suspect".into(), 1)])
        );
        // Node 2: suspect for 0 and 3, alive for 1 (its own "alive" of itself is no vote).
        assert_eq!(v.nodes[2].state, "suspect");
        // Node 3 is in nobody's list but answers: alive by its own word.
        assert_eq!(v.nodes[3].state, "alive");
        assert!(v.nodes[3].votes.is_empty());
        let tie = BTreeMap::from([("alive".to_string(), 1), ("dead".to_string(), 1)]);
        assert_eq!(majority(&tie).as_deref(), Some("dead"));
        assert_eq!(majority(&BTreeMap::new()), None);
    }

    #[test]
    fn a_node_whose_process_is_gone_is_down_whatever_the_others_still_think() {
        let probes = vec![
            probe(0, &[(1, "alive"), (2, "alive")]),
            probe(1, &[(0, "alive"), (2, "alive")]),
            gone(2),
        ];
        let v = build(&probes, "t", &Cuts::default());
        assert_eq!(v.nodes[2].state, "down");
        assert_eq!(v.nodes[2].process, "down");
        assert!(!v.nodes[2].answers);
        assert_eq!(v.nodes[2].votes["alive"], 2);
        assert_eq!(v.nodes[2].members_alive, None);
        // A paused node that nobody has an opinion on and that does not answer is unknown.
        let paused = Probe {
            process: ProcState::Stopped,
            status: None,
            members: None,
            ..probe(0, &[])
        };
        let v = build(&[paused], "t", &Cuts::default());
        assert_eq!(
            (v.nodes[0].process, v.nodes[0].state.as_str()),
            ("paused", "unknown")
        );
    }

    #[test]
    fn links_carry_both_ends_views_once_per_pair_and_ignore_strangers() {
        let mut p0 = probe(0, &[(1, "alive"), (2, "dead")]);
        p0.members.as_mut().unwrap().push(Member {
            peer_id: "stranger".into(),
            state: "alive".into(),
        });
        let probes = vec![p0, probe(1, &[(0, "alive")]), gone(2)];
        let v = build(&probes, "t", &Cuts::default());
        assert_eq!(
            v.links,
            [
                Link {
                    a: 0,
                    b: 1,
                    a_sees_b: Some("alive".into()),
                    b_sees_a: Some("alive".into())
                },
                Link {
                    a: 0,
                    b: 2,
                    a_sees_b: Some("dead".into()),
                    b_sees_a: None
                },
            ]
        );
    }

    #[test]
    fn tree_edges_are_the_chosen_topics_eager_and_lazy_peers() {
        let mut p0 = probe(0, &[]);
        p0.topics = Topics::List(vec![
            Topic {
                topic: "ui-demo".into(),
                eager: vec![id(1), "stranger".into()],
                lazy: vec![id(2)],
            },
            Topic {
                topic: "other".into(),
                eager: vec![id(2)],
                lazy: vec![],
            },
        ]);
        let mut p1 = probe(1, &[]);
        p1.topics = Topics::Unsupported;
        let v = build(&[p0, p1, gone(2)], "ui-demo", &Cuts::default());
        assert_eq!(
            v.tree,
            [
                TreeEdge {
                    from: 0,
                    to: 1,
                    eager: true
                },
                TreeEdge {
                    from: 0,
                    to: 2,
                    eager: false
                },
            ]
        );
        assert!(v.topics_supported);
    }

    #[test]
    fn topics_are_unsupported_only_when_every_answer_was_404() {
        let mut p0 = probe(0, &[]);
        p0.topics = Topics::Unsupported;
        let v = build(&[p0.clone(), gone(1)], "t", &Cuts::default());
        assert!(!v.topics_supported);
        assert!(v.tree.is_empty());
        // Nobody answered: nothing is known, and nothing is claimed.
        let v = build(&[gone(0), gone(1)], "t", &Cuts::default());
        assert!(v.topics_supported);
    }

    #[test]
    fn each_node_carries_its_side_of_the_cut() {
        let cuts = Cuts {
            cuts: vec![(vec![0], vec![1])],
        };
        let v = build(&[probe(0, &[]), probe(1, &[]), gone(2)], "t", &cuts);
        let sides: Vec<&str> = v.nodes.iter().map(|n| n.side.as_str()).collect();
        assert_eq!(sides, ["A", "B", "-"]);
        assert_eq!(v.groups, [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn topic_answers_keep_only_the_fields_the_page_needs() {
        let text = r#"[{"topic":"ui-demo","eager":["a"],"lazy":[],"passive":["b"],"seen":12}]"#;
        let t: Vec<Topic> = serde_json::from_str(text).unwrap();
        assert_eq!(t[0].eager, ["a"]);
        let m: Vec<Member> = serde_json::from_str(
            r#"[{"peer_id":"p","state":"suspect","incarnation":3,"addrs":[]}]"#,
        )
        .unwrap();
        assert_eq!(m[0].state, "suspect");
    }
}
