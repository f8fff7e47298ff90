//! The authority's bookkeeping: the latest descriptor of every node, and
//! the document it signs from them for each epoch. Sans-IO: it takes
//! `now` (Unix seconds) as an argument.

use std::collections::BTreeMap;

use mtos_crypto::Identity;

use super::*;

/// The settings an authority publishes besides the nodes.
#[derive(Debug, Clone)]
pub struct NetworkParams {
    /// Network id.
    pub network: String,
    /// Epoch schedule.
    pub schedule: EpochSchedule,
    /// Mixing.
    pub mixing: Mixing,
    /// Rates.
    pub rates: Rates,
    /// Mix layers.
    pub layers: u8,
    /// What storage nodes take.
    pub storage: StorageRules,
    /// The syntax node addresses must have.
    pub addresses: AddressCheck,
}

/// The authority's state: the latest descriptor of every node, and the
/// document it signs from them.
#[derive(Debug)]
pub struct Authority {
    params: NetworkParams,
    /// Each node's latest descriptor, its size, and when the node was
    /// last heard from (Unix seconds).
    descriptors: BTreeMap<[u8; 32], (Descriptor, usize, u64)>,
    /// Sum of the descriptor bodies held: bounds the document's size.
    total_bytes: usize,
    allowed: Option<std::collections::BTreeSet<[u8; 32]>>,
    serial: u64,
    cached: Option<(u32, Vec<u8>)>,
    /// Most nodes listed at once (bounds memory under descriptor spam).
    pub max_nodes: usize,
}

impl Authority {
    /// An authority with no nodes yet.
    pub fn new(params: NetworkParams) -> Self {
        Self {
            params,
            descriptors: BTreeMap::new(),
            total_bytes: 0,
            allowed: None,
            serial: 0,
            cached: None,
            max_nodes: 10_000,
        }
    }

    /// The network's parameters.
    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    /// Lists only these node keys from now on (`None`: any node that
    /// signs a valid descriptor, as on a testnet).
    pub fn set_allowlist(&mut self, keys: Option<std::collections::BTreeSet<[u8; 32]>>) {
        if let Some(allowed) = &keys {
            let before = self.descriptors.len();
            self.descriptors.retain(|k, _| allowed.contains(k));
            self.total_bytes = self.descriptors.values().map(|(_, n, _)| n).sum();
            if self.descriptors.len() != before {
                self.cached = None;
            }
        }
        self.allowed = keys;
    }

    /// Takes a signed descriptor at `now` (Unix seconds). A node's newer
    /// descriptor replaces its older one; an identical one changes
    /// nothing; an older one, one from the future, one from a node not on
    /// the allowlist, or one that would make the document too large is
    /// refused.
    pub fn accept_descriptor(&mut self, bytes: &[u8], now: u64) -> Result<(), DirectoryError> {
        let d = Descriptor::verify(
            bytes,
            &self.params.network,
            self.params.layers,
            self.params.addresses,
        )?;
        if self
            .allowed
            .as_ref()
            .is_some_and(|a| !a.contains(&d.node.key))
        {
            return Err(body_error("this node is not on the authority's allowlist"));
        }
        if d.published > now.saturating_add(CLOCK_SKEW) {
            return Err(body_error(format!(
                "published {} is in the future (now {now}): check the node's clock",
                d.published
            )));
        }
        let size = bytes.len();
        let full = self.descriptors.len() >= self.max_nodes;
        let old_size = match self.descriptors.get_mut(&d.node.key) {
            // The heartbeat: the same descriptor again keeps the node
            // listed and changes nothing else.
            Some((old, _, seen)) if *old == d => {
                *seen = (*seen).max(now);
                return Ok(());
            }
            Some((old, _, _)) if old.published > d.published => {
                return Err(body_error(format!(
                    "older than the descriptor held (published {} < {})",
                    d.published, old.published
                )));
            }
            Some((_, n, _)) => *n,
            None if full => {
                return Err(body_error(
                    "the authority lists its maximum number of nodes",
                ));
            }
            None => 0,
        };
        if self.total_bytes - old_size + size > MAX_DOCUMENT_BODY - (64 << 10) {
            return Err(body_error(
                "the network document would exceed its size limit",
            ));
        }
        self.total_bytes = self.total_bytes - old_size + size;
        self.descriptors.insert(d.node.key, (d, size, now));
        self.cached = None;
        Ok(())
    }

    /// Nodes currently known.
    pub fn known(&self) -> usize {
        self.descriptors.len()
    }

    /// The signed document for the epoch at `now`: every node heard from
    /// within the liveness window whose descriptor holds a key for that
    /// epoch, with its keys for that epoch and the next. Re-signed
    /// (serial + 1) only when something changed.
    pub fn document(&mut self, now: u64, signer: &Identity) -> Vec<u8> {
        let epoch = self.params.schedule.epoch_at(now);
        let liveness = self.params.schedule.liveness_secs();
        // Descriptors without a key for this epoch or later are stale,
        // and a node silent for the liveness window is gone.
        let before = self.descriptors.len();
        self.descriptors.retain(|_, (d, _, seen)| {
            d.node.sphinx_keys.iter().any(|k| k.epoch >= epoch)
                && seen.saturating_add(liveness) > now
        });
        if self.descriptors.len() != before {
            self.total_bytes = self.descriptors.values().map(|(_, n, _)| n).sum();
            self.cached = None;
        }
        if let Some((e, bytes)) = &self.cached
            && *e == epoch
        {
            return bytes.clone();
        }
        self.serial += 1;
        let nodes = self
            .descriptors
            .values()
            .filter(|(d, _, _)| d.node.sphinx_keys.iter().any(|k| k.epoch == epoch))
            .map(|(d, _, _)| {
                let mut node = d.node.clone();
                node.sphinx_keys
                    .retain(|k| k.epoch == epoch || k.epoch == epoch.wrapping_add(1));
                node.sphinx_keys.sort_by_key(|k| k.epoch);
                node
            })
            .collect();
        let schedule = self.params.schedule;
        let doc = NetworkDocument {
            version: VERSION,
            network: self.params.network.clone(),
            epoch,
            serial: self.serial,
            schedule,
            valid_after: schedule.start(epoch),
            // The next epoch's start plus half an epoch of grace: packets
            // built late with this epoch's keys are still accepted then
            // (nodes keep the previous key through the next epoch).
            valid_until: schedule
                .start(epoch.saturating_add(1))
                .saturating_add(schedule.epoch_secs / 2),
            geometry: Geometry::compiled(),
            mixing: self.params.mixing,
            rates: self.params.rates,
            layers: self.params.layers,
            storage: self.params.storage,
            nodes,
        };
        let bytes = doc.sign(signer);
        self.cached = Some((epoch, bytes.clone()));
        bytes
    }
}
