//! Cluster admission: who is a member of the cluster that holds the data.
//!
//! bavard joins an open DHT by design, but only nodes an operator admitted may join the
//! membership, hold replicas, speak `/bavard/kv/1` and `/bavard/gossip/1`, or neighbour in
//! topics. Admission is per node and revocable, and a member cannot admit others:
//!
//! - The first node started without cluster settings **creates a cluster**: it generates the
//!   cluster authority (an ed25519 key, `DATA_DIR/cluster.key`, mode 0600) and certifies itself.
//! - `bavard cluster token` asks that node for a **join token**: the authority's key, the node's
//!   peer id and addresses, a random one-time secret and an expiry.
//! - `bavard node --join TOKEN` redeems it over `/bavard/admit/1`: the authority's node signs a
//!   **certificate** for the peer id that opened the stream (Noise authenticated it), valid for
//!   `[cluster] certificate_days`. The node stores it in `DATA_DIR/cluster.cert`, so a restart
//!   needs no token.
//! - Nodes show each other their certificates (a `Hello` on `/bavard/admit/1` when they meet, and
//!   in their membership metadata) and cache the verified ones. A stream of a member protocol
//!   from a peer without a valid certificate is refused and counted
//!   (`bavard_inbound_rejected{reason="not_admitted"}`).
//! - `bavard cluster revoke PEER` makes the authority sign a new **revocation list** (versioned);
//!   its node pushes it to every member at once, and members pass newer lists on when they meet.
//!   A revoked peer's streams are refused and it leaves every placement.
//!
//! Like Nomad's and Consul's CAs, the authority lives on one node: losing it means no new joins
//! and no revocations until the operator restores `cluster.key` (it is an ordinary file; copy
//! it to move the authority). Certificate renewal is not automatic: a certificate that expires
//! needs a new token.

pub mod cert;
pub(crate) mod protocol;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use libp2p::{Multiaddr, PeerId};
use sha2::{Digest as _, Sha256};

pub use cert::{AdmissionError, Authority, Certificate, JoinToken, Revocations, cluster_id};

use crate::util::{unix_ms, write_atomically, write_private};

/// The certificate file in a data directory.
pub const CERT_FILE: &str = "cluster.cert";
/// The authority's secret key file (only on the node holding the authority).
pub const KEY_FILE: &str = "cluster.key";
const REVOKED_FILE: &str = "cluster.revoked";
const TOKENS_FILE: &str = "cluster.tokens";

/// How long a refused peer is not asked again.
const REFUSED_FOR_MS: u64 = 10_000;
/// Most verified or refused peers remembered.
const MAX_REMEMBERED: usize = 100_000;

/// What the node found in its data directory at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// It created a new cluster, with this id.
    Created(String),
    /// It is a member of this cluster.
    Member(String),
    /// It must redeem this token before it is a member.
    Joining(JoinToken),
}

/// The node's admission state (see the module docs).
pub struct Admission {
    me: PeerId,
    dir: PathBuf,
    certificate_ms: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The cluster's authority key (from the certificate, or from the join token).
    authority_key: Option<[u8; 32]>,
    own: Option<Certificate>,
    /// The authority itself, on the node that holds it.
    authority: Option<Authority>,
    verified: HashMap<PeerId, u64>,
    refused: HashMap<PeerId, u64>,
    revocations: Revocations,
    revoked: HashSet<PeerId>,
    /// Issued join tokens: SHA-256 of the secret → expiry, while unused.
    tokens: HashMap<[u8; 32], u64>,
}

impl Admission {
    /// Loads the node's admission state from `data_dir`, creating a new cluster when there is
    /// neither a certificate nor a `join` token.
    ///
    /// # Errors
    ///
    /// A file cannot be read or written, a token does not decode, or the node's own
    /// certificate is not valid for it (say which and what to do).
    pub fn open(
        data_dir: &Path,
        me: PeerId,
        join: Option<&str>,
        certificate_days: u64,
    ) -> anyhow::Result<(Self, Startup)> {
        let certificate_ms = certificate_days.saturating_mul(24 * 3600 * 1000);
        let admission = Self {
            me,
            dir: data_dir.to_path_buf(),
            certificate_ms,
            state: Mutex::new(State::default()),
        };
        let cert_path = data_dir.join(CERT_FILE);
        let startup = if cert_path.exists() {
            let bytes = std::fs::read(&cert_path)
                .with_context(|| format!("cannot read {}", cert_path.display()))?;
            let cert = Certificate::decode(&bytes)
                .with_context(|| format!("{} is not a certificate", cert_path.display()))?;
            cert.verify(&cert.authority, &me, unix_ms())
                .with_context(|| {
                    format!(
                        "{} is not valid for this node; ask the operator for a new join token \
                     (`bavard cluster token`), delete the file and start with --join",
                        cert_path.display()
                    )
                })?;
            let id = cluster_id(&cert.authority);
            let mut st = admission.lock();
            st.authority_key = Some(cert.authority);
            let key_path = data_dir.join(KEY_FILE);
            if key_path.exists() {
                let secret = std::fs::read(&key_path)
                    .with_context(|| format!("cannot read {}", key_path.display()))?;
                let authority = Authority::from_secret(&secret)
                    .with_context(|| format!("{} is not a cluster key", key_path.display()))?;
                anyhow::ensure!(
                    authority.public() == cert.authority,
                    "{} is another cluster's key than the one that certified this node",
                    key_path.display()
                );
                st.authority = Some(authority);
                st.tokens = load_tokens(&data_dir.join(TOKENS_FILE));
            }
            st.own = Some(cert);
            if let Ok(bytes) = std::fs::read(data_dir.join(REVOKED_FILE))
                && let Some(key) = st.authority_key
                && let Ok(list) = Revocations::decode_verified(&bytes, &key)
            {
                st.revoked = list.peers.iter().copied().collect();
                st.revocations = list;
            }
            drop(st);
            Startup::Member(id)
        } else if let Some(token) = join {
            let token = JoinToken::decode(token).context("invalid --join token")?;
            admission.lock().authority_key = Some(token.authority);
            Startup::Joining(token)
        } else {
            let authority = Authority::generate();
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            write_private(&data_dir.join(KEY_FILE), &authority.secret())?;
            let cert = authority.certify(me, unix_ms().saturating_add(certificate_ms));
            write_atomically(&cert_path, &cert.encode())?;
            let id = cluster_id(&authority.public());
            let mut st = admission.lock();
            st.authority_key = Some(authority.public());
            st.own = Some(cert);
            st.authority = Some(authority);
            drop(st);
            Startup::Created(id)
        };
        Ok((admission, startup))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("admission lock")
    }

    /// The cluster's id (known once created, joined or joining).
    pub fn cluster_id(&self) -> Option<String> {
        self.lock().authority_key.as_ref().map(cluster_id)
    }

    /// Whether this node holds the cluster authority.
    pub fn is_authority(&self) -> bool {
        self.lock().authority.is_some()
    }

    /// Whether this node is a member (it has a certificate).
    pub fn is_member(&self) -> bool {
        self.lock().own.is_some()
    }

    /// This node's certificate, encoded (empty while it has none).
    pub fn own_certificate(&self) -> Vec<u8> {
        self.lock()
            .own
            .as_ref()
            .map(Certificate::encode)
            .unwrap_or_default()
    }

    /// Whether `peer` holds a valid, unrevoked certificate this node has verified.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        let now = unix_ms();
        let st = self.lock();
        if st.revoked.contains(peer) {
            return false;
        }
        if peer == &self.me {
            return st.own.as_ref().is_some_and(|c| now < c.not_after_ms);
        }
        st.verified.get(peer).is_some_and(|until| now < *until)
    }

    /// Whether `peer` was refused recently (so it is not asked again at once).
    pub(crate) fn recently_refused(&self, peer: &PeerId) -> bool {
        self.lock()
            .refused
            .get(peer)
            .is_some_and(|until| unix_ms() < *until)
    }

    /// Remembers that `peer` could not show a valid certificate.
    pub(crate) fn refuse(&self, peer: PeerId) {
        let mut st = self.lock();
        bound(&mut st.refused);
        st.refused
            .insert(peer, unix_ms().saturating_add(REFUSED_FOR_MS));
    }

    /// Checks the certificate `presenter` showed; remembers it when valid.
    ///
    /// # Errors
    ///
    /// Why it is not admitted (no cluster known yet counts as another cluster).
    pub fn check(&self, presenter: &PeerId, certificate: &[u8]) -> Result<(), AdmissionError> {
        let cert = Certificate::decode(certificate)?;
        let mut st = self.lock();
        let authority = st.authority_key.ok_or(AdmissionError::OtherCluster)?;
        cert.verify(&authority, presenter, unix_ms())?;
        if st.revoked.contains(presenter) {
            return Err(AdmissionError::Revoked(presenter.to_string()));
        }
        bound(&mut st.verified);
        st.verified.insert(*presenter, cert.not_after_ms);
        st.refused.remove(presenter);
        Ok(())
    }

    /// The version of the revocation list this node holds.
    pub fn revocations_version(&self) -> u64 {
        self.lock().revocations.version
    }

    /// The revocation list this node holds, encoded (empty: none).
    pub fn revocations(&self) -> Vec<u8> {
        self.lock().revocations.encode()
    }

    /// Adopts a revocation list if it is valid and newer; true when it changed anything.
    ///
    /// # Errors
    ///
    /// The list is not the authority's.
    pub fn apply_revocations(&self, bytes: &[u8]) -> Result<bool, AdmissionError> {
        let mut st = self.lock();
        let authority = st.authority_key.ok_or(AdmissionError::OtherCluster)?;
        let list = Revocations::decode_verified(bytes, &authority)?;
        if list.version <= st.revocations.version {
            return Ok(false);
        }
        st.revoked = list.peers.iter().copied().collect();
        for p in &list.peers {
            st.verified.remove(p);
        }
        st.revocations = list;
        drop(st);
        if let Err(e) = write_atomically(&self.dir.join(REVOKED_FILE), bytes) {
            tracing::warn!("cannot save the revocation list: {e:#}");
        }
        Ok(true)
    }

    /// Issues a join token valid for `ttl_ms` (authority only).
    ///
    /// # Errors
    ///
    /// This node does not hold the authority, or the token store cannot be written.
    pub fn issue_token(&self, addrs: Vec<Multiaddr>, ttl_ms: u64) -> anyhow::Result<JoinToken> {
        let mut st = self.lock();
        let Some(authority) = &st.authority else {
            anyhow::bail!(
                "this node does not hold the cluster authority; ask the node that created the cluster"
            );
        };
        let now = unix_ms();
        let token = JoinToken {
            authority: authority.public(),
            admin: self.me,
            addrs,
            secret: rand::random(),
            not_after_ms: now.saturating_add(ttl_ms),
        };
        st.tokens.retain(|_, until| *until > now);
        st.tokens
            .insert(Sha256::digest(token.secret).into(), token.not_after_ms);
        save_tokens(&self.dir.join(TOKENS_FILE), &st.tokens)?;
        Ok(token)
    }

    /// Redeems a join token's secret for `peer` (authority only): its certificate and the
    /// current revocation list. The secret is spent.
    ///
    /// # Errors
    ///
    /// A typed reason: not the authority, unknown or spent secret, expired token, revoked peer.
    pub fn redeem(&self, secret: &[u8], peer: PeerId) -> Result<(Certificate, Vec<u8>), String> {
        let mut st = self.lock();
        if st.authority.is_none() {
            return Err("this node does not hold the cluster authority".into());
        }
        let digest: [u8; 32] = Sha256::digest(secret).into();
        let now = unix_ms();
        match st.tokens.remove(&digest) {
            None => return Err("unknown or already used join token".into()),
            Some(until) if until <= now => return Err("the join token has expired".into()),
            Some(_) => {}
        }
        if st.revoked.contains(&peer) {
            return Err(format!("{peer} was revoked from the cluster"));
        }
        let cert = st
            .authority
            .as_ref()
            .map(|a| a.certify(peer, now.saturating_add(self.certificate_ms)))
            .ok_or("this node does not hold the cluster authority")?;
        bound(&mut st.verified);
        st.verified.insert(peer, cert.not_after_ms);
        let revocations = st.revocations.encode();
        if let Err(e) = save_tokens(&self.dir.join(TOKENS_FILE), &st.tokens) {
            tracing::warn!("cannot save the join tokens: {e:#}");
        }
        Ok((cert, revocations))
    }

    /// Adopts the certificate the authority issued for this node (joining).
    ///
    /// # Errors
    ///
    /// It is not valid for this node and cluster, or cannot be saved.
    pub fn finish_join(&self, certificate: &[u8], revocations: &[u8]) -> anyhow::Result<String> {
        let cert = Certificate::decode(certificate)?;
        let authority = self.lock().authority_key.context("no cluster to join")?;
        cert.verify(&authority, &self.me, unix_ms())?;
        write_atomically(&self.dir.join(CERT_FILE), certificate)?;
        self.lock().own = Some(cert);
        if !revocations.is_empty() {
            self.apply_revocations(revocations)?;
        }
        Ok(cluster_id(&authority))
    }

    /// Revokes `peer` (authority only); returns the new list, encoded.
    ///
    /// # Errors
    ///
    /// This node does not hold the authority, or `peer` is this node.
    pub fn revoke(&self, peer: PeerId) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(peer != self.me, "the authority's node cannot revoke itself");
        let bytes = {
            let st = self.lock();
            let Some(authority) = &st.authority else {
                anyhow::bail!("this node does not hold the cluster authority");
            };
            let mut peers = st.revocations.peers.clone();
            if !peers.contains(&peer) {
                peers.push(peer);
            }
            authority
                .revocations(st.revocations.version + 1, peers)
                .encode()
        };
        self.apply_revocations(&bytes)?;
        Ok(bytes)
    }
}

/// Installs a certificate the authority issued offline (`Authority::certify`) in a node's data
/// directory, so the node starts as a member without redeeming a token: provisioning by files,
/// as an operator may do it for nodes whose peer ids it knows (and as tests do).
///
/// # Errors
///
/// The file cannot be written.
pub fn install_certificate(data_dir: &Path, certificate: &Certificate) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    write_atomically(&data_dir.join(CERT_FILE), &certificate.encode())
}

/// Keeps a remembered-peers map under [`MAX_REMEMBERED`] (expired entries first, then all).
fn bound(map: &mut HashMap<PeerId, u64>) {
    if map.len() >= MAX_REMEMBERED {
        let now = unix_ms();
        map.retain(|_, until| *until > now);
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
    }
}

fn load_tokens(path: &Path) -> HashMap<[u8; 32], u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let map: HashMap<String, u64> = serde_json::from_str(&text).unwrap_or_default();
    map.into_iter()
        .filter_map(|(k, v)| Some((hex::decode(k).ok()?.try_into().ok()?, v)))
        .collect()
}

fn save_tokens(path: &Path, tokens: &HashMap<[u8; 32], u64>) -> anyhow::Result<()> {
    let map: HashMap<String, u64> = tokens.iter().map(|(k, v)| (hex::encode(k), *v)).collect();
    write_private(path, serde_json::to_string(&map)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_node_creates_a_cluster_and_certifies_itself() {
        let dir = tempfile::tempdir().unwrap();
        let me = PeerId::random();
        let (a, startup) = Admission::open(dir.path(), me, None, 365).unwrap();
        assert!(matches!(startup, Startup::Created(_)));
        assert!(a.is_authority() && a.is_member() && a.is_admitted(&me));
        // A restart is a member of the same cluster, still the authority.
        let id = a.cluster_id();
        let (b, startup) = Admission::open(dir.path(), me, None, 365).unwrap();
        assert_eq!(startup, Startup::Member(id.clone().unwrap()));
        assert!(b.is_authority());
        // Another peer id cannot use this data directory's certificate.
        let Err(err) = Admission::open(dir.path(), PeerId::random(), None, 365) else {
            panic!("another peer id used this data directory's certificate");
        };
        assert!(
            format!("{err:#}").contains("not valid for this node"),
            "{err:#}"
        );
    }

    #[test]
    fn a_token_admits_one_node_once_and_revocation_removes_it() {
        let admin_dir = tempfile::tempdir().unwrap();
        let admin = PeerId::random();
        let (authority, _) = Admission::open(admin_dir.path(), admin, None, 365).unwrap();
        let token = authority.issue_token(Vec::new(), 60_000).unwrap();
        let joiner = PeerId::random();
        let joiner_dir = tempfile::tempdir().unwrap();
        let (newcomer, startup) =
            Admission::open(joiner_dir.path(), joiner, Some(&token.encode()), 365).unwrap();
        assert!(matches!(startup, Startup::Joining(_)));
        assert!(!newcomer.is_member());
        let (cert, revocations) = authority.redeem(&token.secret, joiner).unwrap();
        assert_eq!(
            authority
                .redeem(&token.secret, PeerId::random())
                .unwrap_err(),
            "unknown or already used join token"
        );
        newcomer.finish_join(&cert.encode(), &revocations).unwrap();
        assert!(newcomer.is_member());
        // Each side accepts the other's certificate.
        newcomer
            .check(&admin, &authority.own_certificate())
            .unwrap();
        assert!(newcomer.is_admitted(&admin));
        assert!(authority.is_admitted(&joiner));
        // A certificate shown by someone else is refused.
        assert!(matches!(
            authority.check(&PeerId::random(), &newcomer.own_certificate()),
            Err(AdmissionError::WrongPeer { .. })
        ));
        // Revocation spreads as a signed list.
        let list = authority.revoke(joiner).unwrap();
        assert!(!authority.is_admitted(&joiner));
        assert!(newcomer.apply_revocations(&list).unwrap());
        assert!(!newcomer.apply_revocations(&list).unwrap(), "not newer");
        assert!(matches!(
            authority.check(&joiner, &newcomer.own_certificate()),
            Err(AdmissionError::Revoked(_))
        ));
        // A member cannot issue tokens or revoke.
        assert!(newcomer.issue_token(Vec::new(), 1).is_err());
        assert!(newcomer.revoke(admin).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, _) = Admission::open(dir.path(), PeerId::random(), None, 365).unwrap();
        let token = authority.issue_token(Vec::new(), 0).unwrap();
        assert_eq!(
            authority
                .redeem(&token.secret, PeerId::random())
                .unwrap_err(),
            "the join token has expired"
        );
    }
}
