//! The authority's bookkeeping: the latest descriptor of every node, and
//! the document it signs from them for each epoch. Sans-IO: it takes
//! `now` (Unix seconds) as an argument.

use std::collections::BTreeMap;

use mtos_crypto::Identity;
use serde::{Deserialize, Serialize};

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
    /// The largest share of a layer one family may hold, percent.
    pub family_cap_percent: u8,
    /// The syntax node addresses must have.
    pub addresses: AddressCheck,
}

impl NetworkParams {
    /// The settings part of a vote.
    pub fn vote_params(&self) -> VoteParams {
        VoteParams {
            schedule: self.schedule,
            geometry: Geometry::compiled(),
            mixing: self.mixing,
            rates: self.rates,
            layers: self.layers,
            storage: self.storage,
            family_cap_percent: self.family_cap_percent,
        }
    }
}

/// What an authority operator decided about one node key
/// (`mtos-node authority approve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The operator family the node belongs to (one operator, one
    /// hosting provider): capped per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The layer the operator pins the node to (mixes), instead of the
    /// one the consensus would give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// The key this one replaces (`approve NEW --replaces OLD`, §6.5): the
    /// old key is voted for until the new one is listed, then no more.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub replaces: Option<[u8; 32]>,
}

/// Which nodes an authority votes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Any node that signs a valid descriptor, in the layer it asks for:
    /// a testnet setting, refused outside testnets.
    Open,
    /// Only approved keys; layers are the consensus's (or the approval's).
    Approved(BTreeMap<[u8; 32], Approval>),
}

/// What the authority remembers of a node it has seen listed: what its
/// votes propose for it, so a node keeps its `since`, salt and layer
/// while its key is the same (§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    /// The epoch it was first listed in.
    pub since: u32,
    /// Its salt, once it has one.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub salt: Option<[u8; 32]>,
    /// Its layer in the latest document that listed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// The latest epoch that listed it.
    pub last: u32,
}

/// How long an authority remembers a node that is no longer listed:
/// the records' retention (30 days), so a node that leaves and comes back
/// within it keeps its salt and cannot draw a new one.
pub const REMEMBER_SECS: u64 = 30 * 86_400;

/// The authority's state: the latest descriptor of every node, what it
/// remembers of the nodes listed, and which nodes it admits.
#[derive(Debug)]
pub struct Authority {
    params: NetworkParams,
    /// Each node's latest descriptor, its signed bytes, and when the node was
    /// last heard from (Unix seconds).
    descriptors: BTreeMap<[u8; 32], (Descriptor, Vec<u8>, u64)>,
    /// Sum of the descriptor bodies held: bounds the document's size.
    total_bytes: usize,
    admission: Admission,
    registry: BTreeMap<[u8; 32], Registered>,
    serial: u64,
    cached: Option<(u32, Vec<u8>)>,
    /// Most nodes listed at once (bounds memory under descriptor spam).
    pub max_nodes: usize,
}

impl Authority {
    /// An authority with no nodes yet, admitting any node (a testnet's).
    pub fn new(params: NetworkParams) -> Self {
        Self {
            params,
            descriptors: BTreeMap::new(),
            total_bytes: 0,
            admission: Admission::Open,
            registry: BTreeMap::new(),
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
        self.set_admission(match keys {
            None => Admission::Open,
            Some(keys) => {
                Admission::Approved(keys.into_iter().map(|k| (k, Approval::default())).collect())
            }
        });
    }

    /// Sets which nodes this authority votes for; descriptors of nodes no
    /// longer admitted are dropped.
    pub fn set_admission(&mut self, admission: Admission) {
        if let Admission::Approved(approved) = &admission {
            let before = self.descriptors.len();
            self.descriptors.retain(|k, _| approved.contains_key(k));
            self.total_bytes = self.descriptors.values().map(|(_, b, _)| b.len()).sum();
            if self.descriptors.len() != before {
                self.cached = None;
            }
        }
        self.admission = admission;
    }

    /// What the authority remembers of listed nodes (persisted by its
    /// driver).
    pub fn registry(&self) -> &BTreeMap<[u8; 32], Registered> {
        &self.registry
    }

    /// Restores what [`Authority::registry`] returned.
    pub fn restore_registry(&mut self, registry: BTreeMap<[u8; 32], Registered>) {
        self.registry = registry;
    }

    /// Learns from a document the authorities agreed on: each listed
    /// node's `since`, salt and layer; nodes unlisted for longer than
    /// [`REMEMBER_SECS`] are forgotten.
    pub fn record(&mut self, doc: &NetworkDocument) {
        for node in &doc.nodes {
            let since = node.since.unwrap_or(doc.epoch);
            let entry = self.registry.entry(node.key).or_insert(Registered {
                since,
                salt: None,
                layer: None,
                last: doc.epoch,
            });
            entry.since = entry.since.min(since);
            entry.salt = entry.salt.or(node.salt);
            entry.layer = node.layer;
            entry.last = entry.last.max(doc.epoch);
        }
        let keep = REMEMBER_SECS.div_ceil(self.params.schedule.epoch_secs.max(1));
        let keep = u32::try_from(keep).unwrap_or(u32::MAX);
        self.registry
            .retain(|_, r| r.last.saturating_add(keep) >= doc.epoch);
    }

    /// The nodes this authority votes for in `epoch` at `now`: every
    /// admitted node heard from within the liveness window whose
    /// descriptor holds a key for `epoch`, with what it proposes for the
    /// authorities' fields. Descriptors without a key for `epoch` or later
    /// are stale, and a node silent for the liveness window is gone: both
    /// are forgotten.
    pub fn vote_nodes(&mut self, epoch: u32, now: u64) -> Vec<VoteEntry> {
        self.forget_stale(epoch, now);
        let superseded = self.superseded();
        self.descriptors
            .values()
            .filter(|(d, _, _)| d.node.sphinx_keys.iter().any(|k| k.epoch == epoch))
            .filter(|(d, _, _)| !superseded.contains(&d.node.key))
            .map(|(d, signed, _)| {
                let key = d.node.key;
                let known = self.registry.get(&key);
                let approval = match &self.admission {
                    Admission::Approved(a) => a.get(&key),
                    Admission::Open => None,
                };
                // Approved nodes: the operator's pin, else the layer it
                // held. On an open testnet: the one it asks for.
                let layer = match (d.node.role, &self.admission) {
                    (Role::Mix, Admission::Open) => d.node.layer.or(known.and_then(|r| r.layer)),
                    (Role::Mix, Admission::Approved(_)) => approval
                        .and_then(|a| a.layer)
                        .or(known.and_then(|r| r.layer)),
                    _ => None,
                };
                VoteEntry {
                    key,
                    descriptor: data_encoding::HEXLOWER.encode(signed),
                    since: known.map(|r| r.since),
                    salt: known.and_then(|r| r.salt),
                    family: approval.and_then(|a| a.family.clone()),
                    layer,
                    // Pinned: the operator's pin; on an open testnet, the
                    // layer the node asks for.
                    pinned: d.node.role == Role::Mix
                        && match &self.admission {
                            Admission::Open => d.node.layer.is_some(),
                            Admission::Approved(_) => approval.is_some_and(|a| a.layer.is_some()),
                        },
                }
            })
            .collect()
    }

    /// Approved keys whose replacement (`Approval::replaces`) has been
    /// listed with a salt: a re-keyed node leaves with its old key once
    /// its new one is in a document and places records (a storage node
    /// without a salt takes none), so it is never listed twice for long,
    /// nor absent, nor holding no records.
    fn superseded(&self) -> std::collections::BTreeSet<[u8; 32]> {
        match &self.admission {
            Admission::Open => std::collections::BTreeSet::new(),
            Admission::Approved(approved) => approved
                .iter()
                .filter(|(new, _)| self.registry.get(*new).is_some_and(|r| r.salt.is_some()))
                .filter_map(|(_, a)| a.replaces)
                .collect(),
        }
    }

    /// Forgets descriptors without a key for `epoch` or later, and nodes
    /// silent for the liveness window.
    fn forget_stale(&mut self, epoch: u32, now: u64) {
        let liveness = self.params.schedule.liveness_secs();
        let before = self.descriptors.len();
        self.descriptors.retain(|_, (d, _, seen)| {
            d.node.sphinx_keys.iter().any(|k| k.epoch >= epoch)
                && seen.saturating_add(liveness) > now
        });
        if self.descriptors.len() != before {
            self.total_bytes = self.descriptors.values().map(|(_, b, _)| b.len()).sum();
            self.cached = None;
        }
    }

    /// This authority's vote for round `serial` of `epoch` at `now`.
    pub fn vote(
        &mut self,
        epoch: u32,
        serial: u64,
        now: u64,
        random: RandomVote,
        me: [u8; 32],
    ) -> Vote {
        Vote {
            version: DOCUMENT_VERSION,
            network: self.params.network.clone(),
            authority: me,
            epoch,
            serial,
            params: self.params.vote_params(),
            nodes: self.vote_nodes(epoch, now),
            random,
        }
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
        if let Admission::Approved(approved) = &self.admission
            && !approved.contains_key(&d.node.key)
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
            Some((_, b, _)) => b.len(),
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
        self.descriptors
            .insert(d.node.key, (d, bytes.to_vec(), now));
        self.cached = None;
        Ok(())
    }

    /// The keys of the nodes this authority knows: those it approved and
    /// those whose descriptors it holds (its driver serves them from a
    /// pool of their own).
    pub fn node_keys(&self) -> std::collections::BTreeSet<[u8; 32]> {
        let mut keys: std::collections::BTreeSet<[u8; 32]> =
            self.descriptors.keys().copied().collect();
        if let Admission::Approved(approved) = &self.admission {
            keys.extend(approved.keys().copied());
        }
        keys
    }

    /// Nodes currently known.
    pub fn known(&self) -> usize {
        self.descriptors.len()
    }

    /// A document signed by this authority alone, for the epoch at
    /// `now`: the consensus of its own vote, as a network with one
    /// authority has (tests and tools; a network of several runs
    /// [`super::Voting`]). Re-made (serial + 1) only when something
    /// changed.
    pub fn document(&mut self, now: u64, signer: &Identity) -> Vec<u8> {
        let epoch = self.params.schedule.epoch_at(now);
        let me = *signer.verify_key().as_bytes();
        self.forget_stale(epoch, now);
        if let Some((e, bytes)) = &self.cached
            && *e == epoch
        {
            return bytes.clone();
        }
        self.serial += 1;
        let random = RandomVote {
            commit: [0; 32],
            reveal: None,
            commits: Vec::new(),
            previous: None,
            current: None,
        };
        let vote = self.vote(epoch, self.serial, now, random, me);
        let signed_vote = vote.sign(signer);
        let digest = super::vote::vote_digest(&signed_vote);
        let bytes = match compute_consensus(
            &self.params.network,
            &[me],
            epoch,
            self.serial,
            &[(vote, digest)],
            self.params.addresses,
        ) {
            Ok(doc) => {
                self.record(&doc);
                doc.sign(signer)
            }
            Err(_) => Vec::new(),
        };
        self.cached = Some((epoch, bytes.clone()));
        bytes
    }
}
