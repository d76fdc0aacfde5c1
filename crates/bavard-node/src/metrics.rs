//! Prometheus metrics (prometheus-client), served as text on `GET /metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A Kademlia request type, as a metric label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RequestKind {
    /// FIND_NODE
    FindNode,
    /// GET_VALUE
    GetValue,
    /// PUT_VALUE
    PutValue,
    /// GET_PROVIDERS
    GetProviders,
    /// ADD_PROVIDER
    AddProvider,
    /// PING
    Ping,
}

/// Labels for requests served.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The request type.
    pub kind: RequestKind,
}

/// A stage of a request's path, as a metric label (`bavard_stage_seconds{stage}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Stage {
    /// A KV put through the HTTP API, handler entry to response.
    http_put,
    /// A KV get through the HTTP API.
    http_get,
    /// Placement of a key (the preference list; a lookup before the membership converged).
    place,
    /// A coordinated write, from its start until W replicas acknowledged.
    coordinate_put,
    /// A coordinated read, until R replicas answered.
    coordinate_get,
    /// One replica-protocol request to a peer, as the coordinator waits for it (permit, stream,
    /// round trip).
    replica_call,
    /// Waiting for a per-peer stream permit (our streams to a peer are bounded).
    stream_permit,
    /// Opening a new outbound stream (when no idle one could be reused).
    stream_open,
    /// Serving one replica-protocol request (frame read to answer written).
    replica_serve,
    /// A client's write (a coordinator's own share, a replica store of one record) waiting in
    /// the group committer's queue before its batch starts.
    commit_queue,
    /// A repair write (anti-entropy, hint delivery) waiting in the group committer's queue.
    commit_queue_background,
    /// One group commit (the batch write and its fsync).
    commit,
}

/// Labels of the stage histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// The stage.
    pub stage: Stage,
}

fn stage_histogram() -> Histogram {
    // 50 µs to ~13 s, doubling: fine enough for p99 and p999 of both fsyncs and timeouts.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 19,
    ))
}

/// Times stages into `bavard_stage_seconds`; cheap to clone.
#[derive(Clone)]
pub struct Stages(Family<StageLabels, Histogram, fn() -> Histogram>);

impl Default for Stages {
    fn default() -> Self {
        Self(Family::new_with_constructor(stage_histogram))
    }
}

impl Stages {
    /// Records that `stage` took `elapsed`.
    pub fn observe(&self, stage: Stage, elapsed: std::time::Duration) {
        self.0
            .get_or_create(&StageLabels { stage })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time since `start` for `stage`.
    pub fn since(&self, stage: Stage, start: std::time::Instant) {
        self.observe(stage, start.elapsed());
    }

    /// How many times `stage` was observed, read from the text exposition.
    #[cfg(test)]
    pub(crate) fn count(&self, stage: Stage) -> u64 {
        let mut registry = Registry::default();
        registry.register("stage_seconds", "stages", self.0.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let prefix = format!("stage_seconds_count{{stage=\"{stage:?}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }
}

/// Labels for rejected inbound traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Why it was rejected.
    pub reason: String,
}

/// Labels for the membership gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberStateLabels {
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Peers with at least one open connection.
    pub connected_peers: Gauge,
    /// Entries in the routing table.
    pub routing_table_size: Gauge,
    /// Records in the local store.
    pub records_stored: Gauge,
    /// Inbound Kademlia requests served, by type.
    pub requests_served: Family<RequestLabels, Counter>,
    /// Inbound streams or requests rejected, by reason.
    pub inbound_rejected: Family<RejectLabels, Counter>,
    /// Time spent in each stage of the request path (see [`Stage`]).
    pub stages: Stages,
    /// Lookup duration in seconds.
    pub lookup_duration: Histogram,
    /// Lookup hops.
    pub lookup_hops: Histogram,
    /// Protocol bytes received.
    pub bytes_in: Counter,
    /// Protocol bytes sent.
    pub bytes_out: Counter,
    /// Hints queued for replicas that are down.
    pub hints_queued: Gauge,
    /// Writes handed to a fallback node as a hint.
    pub hints_handed: Counter,
    /// Hints delivered to their owners.
    pub hints_delivered: Counter,
    /// Records this node held without replicating them, written to their replicas at quorum
    /// after its membership grew (see `crate::replica::rehome`).
    pub records_rehomed: Counter,
    /// This node's copies of rehomed records, dropped once a quorum of their replicas held
    /// them (unchanged since they were sent).
    pub rehomed_copies_dropped: Counter,
    /// Reads or writes that did not reach their consistency level.
    pub quorum_failures: Counter,
    /// Replicas sent a newer version after a read.
    pub read_repairs: Counter,
    /// Reads that asked more replicas than their consistency level needs, because the first
    /// ones were slow or failed (see `[replication] speculative_read_ms`).
    pub read_speculations: Counter,
    /// KV writes of a value above the inline limit (stored as a blob), coordinated here.
    pub kv_large_writes: Counter,
    /// KV reads answered with a value stored as a blob, coordinated here.
    pub kv_large_reads: Counter,
    /// Records of large values whose blob was not here and was fetched to hold the record (as
    /// a replica, a hint holder, or by anti-entropy; records of one blob arriving together
    /// share one fetch and count once each).
    pub kv_blob_fetches: Counter,
    /// Records refused or put off because the blob of their value could not be fetched or
    /// pinned here (the record is not stored; the sender or the next round retries).
    pub kv_blob_fetch_failures: Counter,
    /// Blobs of large values unpinned here because no record references them any more (they
    /// may then be evicted under the blob quota).
    pub kv_blobs_released: Counter,
    /// Anti-entropy rounds completed.
    pub anti_entropy_rounds: Counter,
    /// Keys pulled or pushed by anti-entropy.
    pub anti_entropy_keys: Counter,
    /// Anti-entropy rounds that failed, by reason.
    pub anti_entropy_failures: Family<RejectLabels, Counter>,
    /// The sum of `anti_entropy_failures` over its reasons (for the status; not exported).
    anti_entropy_failures_sum: Counter,
    /// Bytes anti-entropy exchanged (estimated encoded size).
    pub anti_entropy_bytes: Counter,
    /// Keys anti-entropy found newer on a partner and has not stored here yet.
    pub anti_entropy_keys_behind: Gauge,
    /// Differing digest ranges not compared yet.
    pub anti_entropy_ranges_pending: Gauge,
    /// Times the node's storage failed (a full or failing disk).
    pub storage_failures: Counter,
    /// 1 while the storage is failed (the node takes no writes and is out of the cluster).
    pub storage_failed: Gauge,
    /// Corrupt rows skipped by scans and expiry.
    pub store_corrupt_rows: Counter,
    /// Members known, by state (this node included).
    pub gossip_members: Family<MemberStateLabels, Gauge>,
    /// Topic messages published by this node.
    pub gossip_published: Counter,
    /// Topic messages delivered to this node (each once).
    pub gossip_delivered: Counter,
    /// Topic payloads received again (already delivered).
    pub gossip_duplicates: Counter,
    /// Membership probe acks received (direct or relayed round trips).
    pub gossip_probe_acks: Counter,
    /// The compare-and-set path (`bavard_cas_*`).
    pub cas: crate::replica::paxos::CasMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `bavard` prefix.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("bavard"),
            connected_peers: Gauge::default(),
            routing_table_size: Gauge::default(),
            records_stored: Gauge::default(),
            requests_served: Family::default(),
            inbound_rejected: Family::default(),
            stages: Stages::default(),
            lookup_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            lookup_hops: Histogram::new((1..=10).map(f64::from)),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            hints_queued: Gauge::default(),
            hints_handed: Counter::default(),
            hints_delivered: Counter::default(),
            records_rehomed: Counter::default(),
            rehomed_copies_dropped: Counter::default(),
            quorum_failures: Counter::default(),
            read_repairs: Counter::default(),
            read_speculations: Counter::default(),
            kv_large_writes: Counter::default(),
            kv_large_reads: Counter::default(),
            kv_blob_fetches: Counter::default(),
            kv_blob_fetch_failures: Counter::default(),
            kv_blobs_released: Counter::default(),
            anti_entropy_rounds: Counter::default(),
            anti_entropy_keys: Counter::default(),
            anti_entropy_failures: Family::default(),
            anti_entropy_failures_sum: Counter::default(),
            storage_failures: Counter::default(),
            storage_failed: Gauge::default(),
            store_corrupt_rows: Counter::default(),
            anti_entropy_bytes: Counter::default(),
            anti_entropy_keys_behind: Gauge::default(),
            anti_entropy_ranges_pending: Gauge::default(),
            gossip_members: Family::default(),
            gossip_published: Counter::default(),
            gossip_delivered: Counter::default(),
            gossip_duplicates: Counter::default(),
            gossip_probe_acks: Counter::default(),
            cas: Default::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "connected_peers",
            "Peers with an open connection",
            m.connected_peers.clone(),
        );
        registry.register(
            "routing_table_size",
            "Entries in the routing table",
            m.routing_table_size.clone(),
        );
        registry.register(
            "records_stored",
            "Records in the local store",
            m.records_stored.clone(),
        );
        registry.register(
            "kad_requests_served",
            "Inbound Kademlia requests served",
            m.requests_served.clone(),
        );
        registry.register(
            "inbound_rejected",
            "Inbound streams or requests rejected",
            m.inbound_rejected.clone(),
        );
        registry.register(
            "stage_seconds",
            "Time spent in each stage of the request path",
            m.stages.0.clone(),
        );
        registry.register(
            "lookup_duration_seconds",
            "Duration of DHT lookups",
            m.lookup_duration.clone(),
        );
        registry.register("lookup_hops", "Hops of DHT lookups", m.lookup_hops.clone());
        registry.register(
            "protocol_bytes_in",
            "Protocol bytes received",
            m.bytes_in.clone(),
        );
        registry.register(
            "protocol_bytes_out",
            "Protocol bytes sent",
            m.bytes_out.clone(),
        );
        registry.register(
            "hints_queued",
            "Hints queued for replicas that are down",
            m.hints_queued.clone(),
        );
        registry.register(
            "hints_handed",
            "Writes handed to a fallback node as a hint",
            m.hints_handed.clone(),
        );
        registry.register(
            "hints_delivered",
            "Hints delivered to their owners",
            m.hints_delivered.clone(),
        );
        registry.register(
            "records_rehomed",
            "Records held by a non-replica, written to their replicas after the membership grew",
            m.records_rehomed.clone(),
        );
        registry.register(
            "rehomed_copies_dropped",
            "Copies of rehomed records this node dropped once their replicas held them",
            m.rehomed_copies_dropped.clone(),
        );
        registry.register(
            "quorum_failures",
            "Reads or writes below their consistency level",
            m.quorum_failures.clone(),
        );
        registry.register(
            "read_repairs",
            "Replicas repaired after a read",
            m.read_repairs.clone(),
        );
        registry.register(
            "read_speculations",
            "Reads that asked more replicas than their consistency level needs",
            m.read_speculations.clone(),
        );
        registry.register(
            "kv_large_writes",
            "KV writes of values stored as blobs, coordinated here",
            m.kv_large_writes.clone(),
        );
        registry.register(
            "kv_large_reads",
            "KV reads of values stored as blobs, coordinated here",
            m.kv_large_reads.clone(),
        );
        registry.register(
            "kv_blob_fetches",
            "Blobs of large KV values fetched to hold a record",
            m.kv_blob_fetches.clone(),
        );
        registry.register(
            "kv_blob_fetch_failures",
            "Records not stored because their value's blob could not be fetched or pinned",
            m.kv_blob_fetch_failures.clone(),
        );
        registry.register(
            "kv_blobs_released",
            "Blobs of large KV values unpinned once no record references them",
            m.kv_blobs_released.clone(),
        );
        registry.register(
            "anti_entropy_rounds",
            "Anti-entropy rounds completed",
            m.anti_entropy_rounds.clone(),
        );
        registry.register(
            "anti_entropy_keys",
            "Keys exchanged by anti-entropy",
            m.anti_entropy_keys.clone(),
        );
        registry.register(
            "anti_entropy_failures",
            "Anti-entropy rounds that failed, by reason",
            m.anti_entropy_failures.clone(),
        );
        registry.register(
            "anti_entropy_bytes",
            "Bytes exchanged by anti-entropy",
            m.anti_entropy_bytes.clone(),
        );
        registry.register(
            "anti_entropy_keys_behind",
            "Keys anti-entropy found newer on a partner and has not stored here yet",
            m.anti_entropy_keys_behind.clone(),
        );
        registry.register(
            "anti_entropy_ranges_pending",
            "Differing digest ranges not compared yet",
            m.anti_entropy_ranges_pending.clone(),
        );
        registry.register(
            "storage_failures",
            "Times the storage failed (full or failing disk)",
            m.storage_failures.clone(),
        );
        registry.register(
            "storage_failed",
            "1 while the storage is failed and the node out of the cluster",
            m.storage_failed.clone(),
        );
        registry.register(
            "store_corrupt_rows",
            "Corrupt rows skipped by scans and expiry",
            m.store_corrupt_rows.clone(),
        );
        registry.register(
            "gossip_members",
            "Members known, by state",
            m.gossip_members.clone(),
        );
        registry.register(
            "gossip_published",
            "Topic messages published",
            m.gossip_published.clone(),
        );
        registry.register(
            "gossip_delivered",
            "Topic messages delivered",
            m.gossip_delivered.clone(),
        );
        registry.register(
            "gossip_duplicates",
            "Topic payloads received again",
            m.gossip_duplicates.clone(),
        );
        registry.register(
            "gossip_probe_acks",
            "Membership probe acks received",
            m.gossip_probe_acks.clone(),
        );
        m.cas.register(registry);
        m
    }

    /// The counter of inbound streams or requests rejected for `reason`.
    pub fn rejected(&self, reason: &str) -> Counter {
        self.inbound_rejected
            .get_or_create(&RejectLabels {
                reason: reason.to_string(),
            })
            .clone()
    }

    /// Counts a rejected inbound stream or request.
    pub fn reject(&self, reason: &str) {
        self.inbound_rejected
            .get_or_create(&RejectLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a failed anti-entropy round.
    pub fn anti_entropy_failure(&self, reason: &str) {
        self.anti_entropy_failures
            .get_or_create(&RejectLabels {
                reason: reason.to_string(),
            })
            .inc();
        self.anti_entropy_failures_sum.inc();
    }

    /// Failed anti-entropy rounds, every reason together.
    pub fn anti_entropy_failures_total(&self) -> u64 {
        self.anti_entropy_failures_sum.get()
    }

    /// The registry, to register more metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
