//! Provider records: announcing this node as a provider of a key (ADD_PROVIDER to the k closest
//! nodes a lookup finds) and finding the providers of a key (GET_PROVIDERS along a lookup).

use std::collections::HashMap;

use bavard_store::{ProviderRecord, RecordStore as _};
use libp2p::{Multiaddr, PeerId};

use super::client::Kad;
use super::lookup::LookupKind;
use super::{KadPeer, Request};
use crate::api::{NodeError, PeerInfo};
use crate::config::secs;
use crate::util::unix_ms;

impl Kad {
    /// Announces this node as a provider of `key` to the k closest nodes; returns how many
    /// accepted the announcement (this node included).
    pub(crate) async fn provide(&self, key: Vec<u8>) -> Result<usize, NodeError> {
        let now = unix_ms();
        let ttl = secs(self.ctx.config.kad.provider_ttl_secs).as_millis() as u64;
        let listen = self.ctx.listen_addrs();
        let local = ProviderRecord::new(
            key.clone(),
            self.ctx.peer_id.to_bytes(),
            listen.iter().map(|a| a.to_vec()).collect(),
            now.saturating_add(ttl),
        );
        self.storage
            .store
            .add_provider(local, now)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let outcome = self.lookup(&key, LookupKind::FindNode).await?;
        let me = KadPeer {
            id: self.ctx.peer_id,
            addrs: listen,
            connected: true,
        };
        let sends = outcome.closest.into_iter().map(|peer| {
            let kad = self.clone();
            let req = Request::AddProvider {
                key: key.clone(),
                provider: me.clone(),
            };
            async move { kad.request(peer, req).await.is_ok() }
        });
        let acks = futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        Ok(acks + 1)
    }

    /// The providers of `key` known locally and found by a lookup.
    pub(crate) async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerInfo>, NodeError> {
        let mut list: Vec<PeerInfo> = self
            .provider_peers(key)
            .await?
            .into_iter()
            .map(|p| PeerInfo {
                peer_id: p.id.to_string(),
                addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(list)
    }

    /// The providers of `key` known locally and found by a lookup, with their addresses.
    pub(crate) async fn provider_peers(&self, key: Vec<u8>) -> Result<Vec<KadPeer>, NodeError> {
        let mut found: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        let local = self
            .storage
            .store
            .providers(&key, unix_ms())
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        for p in local {
            if let Ok(id) = PeerId::from_bytes(&p.provider) {
                let addrs = p
                    .addrs
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a).ok())
                    .collect();
                found.insert(id, addrs);
            }
        }
        let outcome = self.lookup(&key, LookupKind::GetProviders).await?;
        for p in outcome.providers {
            let entry = found.entry(p.id).or_default();
            if entry.is_empty() {
                *entry = p.addrs;
            }
        }
        let mut peers: Vec<KadPeer> = found
            .into_iter()
            .map(|(id, addrs)| KadPeer {
                id,
                // A record may name an address twice (a stock node's listen and observed
                // address can be the same): list each once, in the order given.
                addrs: unique(addrs),
                connected: false,
            })
            .collect();
        peers.sort_by_key(|p| p.id);
        Ok(peers)
    }

    /// Stops announcing this node as a provider of `key`: its local record goes, so it is
    /// no longer republished (the copies at other nodes expire with their TTL). Blocking
    /// (a store write).
    pub(crate) fn unprovide(&self, key: &[u8]) {
        if let Err(e) = self
            .storage
            .store
            .remove_provider(key, &self.ctx.peer_id.to_bytes())
        {
            tracing::warn!("cannot withdraw a provider record: {e}");
        }
    }

    /// The keys this node provides. Blocking (a store read).
    pub(crate) fn provided_keys(&self) -> std::collections::HashSet<Vec<u8>> {
        match self.storage.store.provided(unix_ms()) {
            Ok(records) => records.into_iter().map(|r| r.key).collect(),
            Err(e) => {
                tracing::warn!("cannot list the provided keys: {e}");
                std::collections::HashSet::new()
            }
        }
    }
}

/// `addrs` without repeats, first occurrences kept in order.
fn unique(addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let mut seen = std::collections::HashSet::new();
    addrs
        .into_iter()
        .filter(|a| seen.insert(a.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_named_twice_is_listed_once_in_its_first_place() {
        let a: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let b: Multiaddr = "/memory/7".parse().unwrap();
        assert_eq!(
            unique(vec![a.clone(), b.clone(), a.clone(), b.clone()]),
            [a, b]
        );
    }
}
