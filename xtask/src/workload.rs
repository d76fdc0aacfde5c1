//! The client workload of `cargo xtask scenario`: threads that put and get keys through random
//! nodes' HTTP APIs and record every operation for the checker, a publisher, and subscribers that
//! count deliveries.
//!
//! How an operation's outcome is classified (the checker relies on it):
//! - the node could not be reached at all (connection refused): the request never left, so the
//!   client fails over to another random node (up to [`ATTEMPTS`] nodes) and records `fail` only
//!   if none could be reached;
//! - a reply 200 (and 404 for a read) is `ok`; 503 and other 4xx are `fail` (a failed write may
//!   still have reached a replica, which the checker allows);
//! - anything else after the request was sent (a timeout, a dropped connection, a 504) is
//!   `unknown`: the write may or may not have happened.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bavard_tests::{Op, OpKind, Outcome};
use rand::Rng as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use crate::http;

/// Nodes a client tries before giving up on an operation that could not be sent.
pub(crate) const ATTEMPTS: usize = 3;
/// The topic the publisher and subscribers use.
pub(crate) const TOPIC: &str = "scenario";

/// What the workload threads share with the scenario driver.
pub(crate) struct Shared {
    /// The API address of each node (a restart may change it).
    pub(crate) apis: RwLock<Vec<String>>,
    /// Set to stop every workload thread.
    pub(crate) stop: AtomicBool,
    /// The start of the run: op times are ms since then.
    pub(crate) start: Instant,
    /// Every kv operation, in completion order.
    pub(crate) history: Mutex<Vec<Op>>,
    /// Every publish.
    pub(crate) publishes: Mutex<Vec<Publish>>,
    /// Per subscriber, the payloads it received.
    pub(crate) received: Vec<Mutex<HashSet<String>>>,
    /// The client request timeout.
    pub(crate) timeout: Duration,
}

impl Shared {
    /// State for a run against `apis` with `subscribers` subscribers.
    pub(crate) fn new(apis: Vec<String>, subscribers: usize, timeout: Duration) -> Self {
        Self {
            apis: RwLock::new(apis),
            stop: AtomicBool::new(false),
            start: Instant::now(),
            history: Mutex::new(Vec::new()),
            publishes: Mutex::new(Vec::new()),
            received: (0..subscribers)
                .map(|_| Mutex::new(HashSet::new()))
                .collect(),
            timeout,
        }
    }

    pub(crate) fn api(&self, i: usize) -> String {
        self.apis.read().expect("lock")[i].clone()
    }

    pub(crate) fn nodes(&self) -> usize {
        self.apis.read().expect("lock").len()
    }

    pub(crate) fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One publish as the publisher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// How long it took.
    pub(crate) latency: Duration,
    /// The payload, unique per publish.
    pub(crate) payload: String,
    /// The node it was published through, if one was reached. A node delivers to its own
    /// subscribers only what *others* publish (`Node::subscribe`), so this node's subscribers
    /// are not expected to see it.
    pub(crate) node: Option<usize>,
}

/// The result of one HTTP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// The connection could not be made: nothing was sent.
    NotSent,
    /// Sent, but no complete answer came back.
    Unknown,
    /// An answer: status, `x-bavard-version` header, body.
    Reply(u16, Option<String>, Vec<u8>),
}

/// Sends one request, telling apart "never sent" from "sent, answer unknown".
pub(crate) fn call(addr: &str, method: &str, path: &str, body: &[u8], timeout: Duration) -> Call {
    let Some(sock) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return Call::NotSent;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, timeout.min(Duration::from_secs(2)))
    else {
        return Call::NotSent;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    let extra = format!("Content-Length: {}\r\nConnection: close\r\n", body.len());
    let mut req = http::head(method, path, addr, &extra).into_bytes();
    req.extend_from_slice(body);
    let mut raw = Vec::new();
    if stream.write_all(&req).is_err() || stream.read_to_end(&mut raw).is_err() {
        return Call::Unknown;
    }
    match http::parse_response(&raw) {
        Ok(r) => Call::Reply(r.status, header(&raw, "x-bavard-version"), r.body),
        Err(_) => Call::Unknown,
    }
}

/// The value of header `name` in a raw response.
pub(crate) fn header(raw: &[u8], name: &str) -> Option<String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Sends to a random node, failing over to other random nodes while none can be reached.
fn call_any(shared: &Shared, rng: &mut ChaCha8Rng, method: &str, path: &str, body: &[u8]) -> Call {
    call_any_node(shared, rng, method, path, body).0
}

/// [`call_any`], also returning the node that was reached.
pub(crate) fn call_any_node(
    shared: &Shared,
    rng: &mut ChaCha8Rng,
    method: &str,
    path: &str,
    body: &[u8],
) -> (Call, Option<usize>) {
    let n = shared.nodes();
    let first = rng.random_range(0..n);
    for k in 0..ATTEMPTS.min(n) {
        let node = (first + k * (1 + n / ATTEMPTS)) % n;
        match call(&shared.api(node), method, path, body, shared.timeout) {
            Call::NotSent => continue,
            other => return (other, Some(node)),
        }
    }
    (Call::NotSent, None)
}

/// Classifies a reply to a write.
pub(crate) fn write_outcome(c: &Call) -> (Outcome, Option<u64>) {
    match c {
        Call::Reply(200, _, body) => {
            let version = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["version"].as_str().and_then(|s| s.parse().ok()));
            match version {
                Some(v) => (Outcome::Ok, Some(v)),
                // Acknowledged without a readable version: the checker cannot use it.
                None => (Outcome::Unknown, None),
            }
        }
        Call::NotSent => (Outcome::Fail, None),
        Call::Reply(503 | 400..=499, ..) => (Outcome::Fail, None),
        Call::Reply(..) | Call::Unknown => (Outcome::Unknown, None),
    }
}

/// Classifies a reply to a read: outcome, value, version.
pub(crate) fn read_outcome(c: &Call) -> (Outcome, Option<String>, Option<u64>) {
    match c {
        Call::Reply(200, version, body) => (
            Outcome::Ok,
            Some(String::from_utf8_lossy(body).into_owned()),
            version.as_deref().and_then(|v| v.parse().ok()),
        ),
        Call::Reply(404, ..) => (Outcome::Ok, None, None),
        Call::NotSent | Call::Reply(503 | 400..=499, ..) => (Outcome::Fail, None, None),
        Call::Reply(..) | Call::Unknown => (Outcome::Unknown, None, None),
    }
}

/// The key of index `k`.
pub(crate) fn key(k: usize) -> String {
    format!("k{k}")
}

/// One client: random puts (unique values `c{client}-{seq}`) and gets on `keys` keys at
/// `consistency`, until stopped.
pub(crate) fn client(shared: &Shared, id: usize, seed: u64, keys: usize, consistency: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let mut seq = 0u64;
    while !shared.stopped() {
        let k = key(rng.random_range(0..keys));
        let path = format!("/v1/kv/{k}?consistency={consistency}");
        let invoked_ms = shared.ms();
        let op = if rng.random_bool(0.5) {
            seq += 1;
            let value = format!("c{id}-{seq}");
            let c = call_any(shared, &mut rng, "PUT", &path, value.as_bytes());
            let (outcome, version) = write_outcome(&c);
            Op {
                client: id,
                key: k,
                kind: OpKind::Write,
                outcome,
                value: Some(value),
                version,
                invoked_ms,
                completed_ms: shared.ms(),
            }
        } else {
            let c = call_any(shared, &mut rng, "GET", &path, &[]);
            let (outcome, value, version) = read_outcome(&c);
            Op {
                client: id,
                key: k,
                kind: OpKind::Read,
                outcome,
                value,
                version,
                invoked_ms,
                completed_ms: shared.ms(),
            }
        };
        let failed = op.outcome == Outcome::Fail;
        shared.history.lock().expect("lock").push(op);
        if failed {
            // Do not spin on a cluster that refuses everything.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Publishes `payload` through a random node.
pub(crate) fn publish_one(shared: &Shared, rng: &mut ChaCha8Rng, payload: &str) -> Publish {
    let path = format!("/v1/topics/{TOPIC}");
    let t = Instant::now();
    let (c, node) = call_any_node(shared, rng, "POST", &path, payload.as_bytes());
    let outcome = match c {
        Call::Reply(200, ..) => Outcome::Ok,
        Call::NotSent | Call::Reply(503 | 400..=499, ..) => Outcome::Fail,
        Call::Reply(..) | Call::Unknown => Outcome::Unknown,
    };
    Publish {
        outcome,
        latency: t.elapsed(),
        payload: payload.to_string(),
        node,
    }
}

/// The publisher: one message every `every` until stopped.
pub(crate) fn publisher(shared: &Shared, seed: u64, every: Duration) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7075_626c);
    let mut seq = 0u64;
    while !shared.stopped() {
        seq += 1;
        let payload = format!("m{seq}");
        let p = publish_one(shared, &mut rng, &payload);
        let wait = every.saturating_sub(p.latency);
        shared.publishes.lock().expect("lock").push(p);
        std::thread::sleep(wait);
    }
}

/// The payloads of the `data:` lines in a piece of an SSE stream; `partial` carries an
/// unterminated line over to the next piece.
pub(crate) fn sse_data(partial: &mut String, chunk: &str) -> Vec<String> {
    partial.push_str(chunk);
    let mut out = Vec::new();
    while let Some(nl) = partial.find('\n') {
        let line: String = partial.drain(..=nl).collect();
        if let Some(data) = line.trim_end().strip_prefix("data:") {
            out.push(data.trim_start().to_string());
        }
    }
    out
}

/// Subscriber `slot` on node `node`: follows the topic's event stream, reconnecting when it
/// drops, and records every payload until stopped.
pub(crate) fn subscriber(shared: &Shared, slot: usize, node: usize) {
    let path = format!("/v1/topics/{TOPIC}/events");
    follow_sse(
        || shared.api(node),
        &path,
        || shared.stopped(),
        |got| shared.received[slot].lock().expect("lock").extend(got),
    );
}

/// Follows the Server-Sent Events stream `path` on the node at `api()` (asked again on every
/// reconnection, as a restart may move it) until `stopped()`, passing the payloads of the
/// `data:` lines of each piece read to `on_data`.
pub(crate) fn follow_sse(
    api: impl Fn() -> String,
    path: &str,
    stopped: impl Fn() -> bool,
    mut on_data: impl FnMut(Vec<String>),
) {
    while !stopped() {
        let api = api();
        let stream = api
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .and_then(|s| TcpStream::connect_timeout(&s, Duration::from_secs(1)).ok());
        let Some(mut stream) = stream else {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
        let req = http::head("GET", path, &api, "Accept: text/event-stream\r\n");
        if stream.write_all(req.as_bytes()).is_err() {
            continue;
        }
        let mut partial = String::new();
        let mut buf = [0u8; 8192];
        while !stopped() {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let got = sse_data(&mut partial, &String::from_utf8_lossy(&buf[..n]));
                    if !got.is_empty() {
                        on_data(got);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_ok_only_with_a_version_and_refusals_fail_while_timeouts_are_unknown() {
        let ok = Call::Reply(
            200,
            None,
            br#"{"key":"k","version":"42","acks":2}"#.to_vec(),
        );
        assert_eq!(write_outcome(&ok), (Outcome::Ok, Some(42)));
        let no_version = Call::Reply(200, None, b"{}".to_vec());
        assert_eq!(write_outcome(&no_version).0, Outcome::Unknown);
        assert_eq!(
            write_outcome(&Call::Reply(503, None, vec![])).0,
            Outcome::Fail
        );
        assert_eq!(write_outcome(&Call::NotSent).0, Outcome::Fail);
        assert_eq!(
            write_outcome(&Call::Reply(504, None, vec![])).0,
            Outcome::Unknown
        );
        assert_eq!(write_outcome(&Call::Unknown).0, Outcome::Unknown);
    }

    #[test]
    fn reads_return_the_value_and_version_and_404_is_a_successful_empty_read() {
        let r = Call::Reply(200, Some("7".into()), b"c1-3".to_vec());
        assert_eq!(
            read_outcome(&r),
            (Outcome::Ok, Some("c1-3".into()), Some(7))
        );
        assert_eq!(
            read_outcome(&Call::Reply(404, None, vec![])),
            (Outcome::Ok, None, None)
        );
        assert_eq!(
            read_outcome(&Call::Reply(503, None, vec![])).0,
            Outcome::Fail
        );
        assert_eq!(read_outcome(&Call::Unknown).0, Outcome::Unknown);
    }

    #[test]
    fn the_version_header_is_found_case_insensitively() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Bavard-Version: 123\r\ncontent-length: 1\r\n\r\nv";
        assert_eq!(header(raw, "x-bavard-version"), Some("123".into()));
        assert_eq!(header(raw, "etag"), None);
        assert_eq!(header(b"garbage", "x"), None);
    }

    #[test]
    fn sse_data_lines_are_extracted_across_chunk_boundaries() {
        let mut partial = String::new();
        assert_eq!(
            sse_data(&mut partial, "event: message\ndata: m1\nid: x\n\nda"),
            ["m1"]
        );
        assert_eq!(sse_data(&mut partial, "ta: m2\n\n:keep-alive\n"), ["m2"]);
        assert!(partial.is_empty());
    }

    #[test]
    fn an_unreachable_node_is_never_sent_anything() {
        // Port 1 on loopback: nothing listens there.
        assert_eq!(
            call("127.0.0.1:1", "GET", "/", &[], Duration::from_secs(1)),
            Call::NotSent
        );
    }
}
