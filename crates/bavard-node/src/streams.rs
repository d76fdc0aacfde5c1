//! Raw libp2p streams for the node's own protocols: a behaviour that hands each negotiated
//! inbound stream to its protocol's accept loop, and opens outbound streams on request.
//!
//! It replaces `libp2p-stream`, whose two queues lose or serialise work under load: its inbound
//! hand-off is a channel with one slot per protocol, so a burst of streams negotiated in one
//! poll of the swarm drops all but one ("Channel is full, dropping inbound stream"; a request
//! lost that way costs its sender a timeout or a retry, the tail of issue 13), and it negotiates
//! one outbound stream per connection at a time. Here:
//!
//! - each protocol's inbound queue holds `capacity` streams (`[limits]
//!   max_queued_inbound_streams`); only past that is a stream dropped, and counted
//!   (`bavard_inbound_rejected{reason="accept_queue_full"}`). The accept loops only spawn a task
//!   per stream, so the queue drains at once; the bound is there for a peer that floods faster
//!   than any loop could spawn.
//! - a connection negotiates any number of outbound streams concurrently; each request carries
//!   its own reply channel through the upgrade, and a request whose caller has given up (its
//!   timeout fired) is skipped rather than negotiated.
//! - opening a stream to a peer without a connection dials it once, whoever asks; requests wait
//!   for the connection (at most `MAX_WAITING_PER_PEER` of them) and fail with the dial's error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    DialError, DialFailure, FromSwarm, ListenFailure, NetworkBehaviour, Stream, StreamProtocol,
    StreamUpgradeError, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

/// Requests for streams to one peer that may wait for its connection; more fail at once.
pub const MAX_WAITING_PER_PEER: usize = 1024;

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum OpenStreamError {
    /// The peer does not speak the protocol.
    UnsupportedProtocol(StreamProtocol),
    /// No connection: the dial failed, or too many requests already wait for one.
    NotConnected(String),
    /// The connection broke, or the negotiation failed or timed out.
    Io(io::Error),
}

impl fmt::Display for OpenStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedProtocol(p) => write!(f, "the peer does not support {p}"),
            Self::NotConnected(why) => write!(f, "not connected: {why}"),
            Self::Io(e) => write!(f, "stream negotiation failed: {e}"),
        }
    }
}

impl std::error::Error for OpenStreamError {}

/// The protocol is already being accepted by another loop.
#[derive(Debug)]
pub struct AlreadyRegistered;

impl fmt::Display for AlreadyRegistered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the protocol is already registered")
    }
}

impl std::error::Error for AlreadyRegistered {}

type Reply = oneshot::Sender<Result<Stream, OpenStreamError>>;

/// One request for an outbound stream.
struct NewStream {
    protocol: StreamProtocol,
    reply: Reply,
}

struct Shared {
    /// Each accepted protocol's queue.
    inbound: HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>,
    capacity: usize,
    /// Connections whose handler exists but which the swarm has not confirmed yet (another
    /// behaviour may still deny them).
    created: HashMap<ConnectionId, (PeerId, mpsc::UnboundedSender<NewStream>)>,
    /// Established connections, each with the queue of its handler.
    connections: HashMap<ConnectionId, (PeerId, mpsc::UnboundedSender<NewStream>)>,
    by_peer: HashMap<PeerId, Vec<ConnectionId>>,
    /// Requests waiting for a connection to their peer.
    waiting: HashMap<PeerId, Vec<NewStream>>,
    dials: VecDeque<PeerId>,
    dialing: HashSet<PeerId>,
    next: usize,
    dropped: Counter,
    waker: Option<Waker>,
}

impl Shared {
    fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
        shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn protocols(&mut self) -> Vec<StreamProtocol> {
        self.inbound.retain(|_, tx| !tx.is_closed());
        self.inbound.keys().cloned().collect()
    }

    /// Queues `new` on a connection to `peer`, or has it wait for one (dialing if needed).
    fn open(&mut self, peer: PeerId, new: NewStream) {
        let mut new = Some(new);
        if let Some(ids) = self.by_peer.get(&peer) {
            for _ in 0..ids.len() {
                self.next = self.next.wrapping_add(1);
                let id = ids[self.next % ids.len()];
                if let Some((_, tx)) = self.connections.get(&id) {
                    match tx.send(new.take().expect("a request")) {
                        Ok(()) => return,
                        Err(mpsc::error::SendError(back)) => new = Some(back),
                    }
                }
            }
        }
        let new = new.expect("a request");
        let waiting = self.waiting.entry(peer).or_default();
        waiting.retain(|w| !w.reply.is_closed());
        if waiting.len() >= MAX_WAITING_PER_PEER {
            let _ = new.reply.send(Err(OpenStreamError::NotConnected(format!(
                "{MAX_WAITING_PER_PEER} streams already wait for a connection"
            ))));
            return;
        }
        waiting.push(new);
        if self.dialing.insert(peer) {
            self.dials.push_back(peer);
        }
    }

    fn established(&mut self, id: ConnectionId, peer: PeerId) {
        let Some(entry) = self.created.remove(&id) else {
            return;
        };
        self.dialing.remove(&peer);
        for new in self.waiting.remove(&peer).unwrap_or_default() {
            if !new.reply.is_closed() {
                let _ = entry.1.send(new);
            }
        }
        self.connections.insert(id, entry);
        self.by_peer.entry(peer).or_default().push(id);
    }

    fn closed(&mut self, id: ConnectionId) {
        self.created.remove(&id);
        if let Some((peer, _)) = self.connections.remove(&id)
            && let Some(ids) = self.by_peer.get_mut(&peer)
        {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    fn dial_failed(&mut self, peer: PeerId, why: String) {
        self.dialing.remove(&peer);
        if self.by_peer.contains_key(&peer) {
            // Connected meanwhile by another dial: the waiting requests went there.
            return;
        }
        for new in self.waiting.remove(&peer).unwrap_or_default() {
            let _ = new
                .reply
                .send(Err(OpenStreamError::NotConnected(why.clone())));
        }
    }

    fn handler(&mut self, id: ConnectionId, peer: PeerId) -> Handler {
        let (tx, rx) = mpsc::unbounded_channel();
        self.created.insert(id, (peer, tx));
        Handler {
            remote: peer,
            shared: None,
            requests: rx,
        }
    }
}

/// The behaviour; take [`Control`]s with [`Behaviour::new_control`].
pub struct Behaviour {
    shared: Arc<Mutex<Shared>>,
}

impl Behaviour {
    /// A behaviour whose protocols each queue up to `capacity` inbound streams; drops past it
    /// are counted in `dropped`.
    pub fn new(capacity: usize, dropped: Counter) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                inbound: HashMap::new(),
                capacity: capacity.max(1),
                created: HashMap::new(),
                connections: HashMap::new(),
                by_peer: HashMap::new(),
                waiting: HashMap::new(),
                dials: VecDeque::new(),
                dialing: HashSet::new(),
                next: 0,
                dropped,
                waker: None,
            })),
        }
    }

    /// A handle to open streams and accept protocols.
    pub fn new_control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }

    fn handler(&mut self, id: ConnectionId, peer: PeerId) -> Handler {
        let mut handler = Shared::lock(&self.shared).handler(id, peer);
        handler.shared = Some(self.shared.clone());
        handler
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(id, peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(id, peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let mut shared = Shared::lock(&self.shared);
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => shared.established(connection_id, peer_id),
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                shared.closed(connection_id)
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                shared.closed(connection_id)
            }
            FromSwarm::DialFailure(DialFailure {
                peer_id,
                error,
                connection_id,
            }) => {
                shared.closed(connection_id);
                match (peer_id, error) {
                    // Someone else is dialing or connected: their connection serves the waiters.
                    (_, DialError::DialPeerConditionFalse(_)) => {}
                    (Some(peer), error) => shared.dial_failed(peer, error.to_string()),
                    (None, _) => {}
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let mut shared = Shared::lock(&self.shared);
        match shared.dials.pop_front() {
            Some(peer) => Poll::Ready(ToSwarm::Dial {
                opts: DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            }),
            None => {
                // `Control::open_stream` wakes the swarm task when it queues a dial.
                shared.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Opens streams and registers accepted protocols; cheap to clone.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Control")
    }
}

impl Control {
    /// Opens a stream of `protocol` to `peer`, dialing it when not connected. Callers bound the
    /// wait with their own timeout; a request given up is never negotiated.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, OpenStreamError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut shared = Shared::lock(&self.shared);
            shared.open(peer, NewStream { protocol, reply });
            if !shared.dials.is_empty()
                && let Some(waker) = shared.waker.take()
            {
                waker.wake(); // the swarm task polls the behaviour, which starts the dial
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(OpenStreamError::Io(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the connection closed before the stream was negotiated",
            )))
        })
    }

    /// Starts accepting `protocol`: its inbound streams come out of the returned queue.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<Incoming, AlreadyRegistered> {
        let mut shared = Shared::lock(&self.shared);
        shared.inbound.retain(|_, tx| !tx.is_closed());
        if shared.inbound.contains_key(&protocol) {
            return Err(AlreadyRegistered);
        }
        let (tx, rx) = mpsc::channel(shared.capacity);
        shared.inbound.insert(protocol, tx);
        Ok(Incoming { rx })
    }
}

/// The inbound streams of one protocol, with the peer that opened each.
pub struct Incoming {
    rx: mpsc::Receiver<(PeerId, Stream)>,
}

impl futures::Stream for Incoming {
    type Item = (PeerId, Stream);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The connection handler: negotiates what the behaviour asks and hands inbound streams over.
pub struct Handler {
    remote: PeerId,
    shared: Option<Arc<Mutex<Shared>>>,
    requests: mpsc::UnboundedReceiver<NewStream>,
}

impl Handler {
    fn inbound(&self, stream: Stream, protocol: StreamProtocol) {
        let Some(shared) = &self.shared else { return };
        let shared = Shared::lock(shared);
        let Some(tx) = shared.inbound.get(&protocol) else {
            return; // no longer accepted: dropping the stream resets it
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((self.remote, stream)) {
            shared.dropped.inc();
            tracing::debug!(peer = %self.remote, %protocol, "accept queue full, stream dropped");
        }
    }
}

/// Negotiates one of a set of protocols and yields the raw stream.
pub struct Upgrade {
    protocols: Vec<StreamProtocol>,
}

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.protocols.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = (StreamProtocol, Reply);

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        let protocols = match &self.shared {
            Some(shared) => Shared::lock(shared).protocols(),
            None => Vec::new(),
        };
        SubstreamProtocol::new(Upgrade { protocols }, ())
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, (StreamProtocol, Reply), Infallible>> {
        while let Poll::Ready(Some(new)) = self.requests.poll_recv(cx) {
            if new.reply.is_closed() {
                continue; // its caller gave up
            }
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    Upgrade {
                        protocols: vec![new.protocol.clone()],
                    },
                    (new.protocol, new.reply),
                ),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Upgrade, Upgrade, (), (StreamProtocol, Reply)>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.inbound(stream, protocol),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: (_, reply),
            }) => {
                let _ = reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: (protocol, reply),
                error,
            }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => {
                        OpenStreamError::UnsupportedProtocol(protocol)
                    }
                    StreamUpgradeError::Timeout => {
                        OpenStreamError::Io(io::Error::from(io::ErrorKind::TimedOut))
                    }
                    StreamUpgradeError::Io(e) => OpenStreamError::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}
