//! The consensus rule (`specs/directory.md` §6.3): the document of one
//! round, computed from the authorities' votes alone, so that every
//! authority and any auditor holding the same votes computes the same
//! bytes. Sans-IO and deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::vote::{Commit, Vote, VoteEntry, VoteParams, commit_digest};
use super::*;

mod place;
use place::{Listed, place};

const RANDOM_CONTEXT: &[u8] = b"mtos-directory-random-v1";
const LAYER_CONTEXT: &[u8] = b"mtos-directory-layer-v1";

/// The shared random value of an epoch (§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRandom {
    /// The value.
    #[serde(with = "hex32")]
    pub value: [u8; 32],
    /// Whether no authority's reveal counted, so the value is the
    /// fallback every one can compute in advance (Tor's disaster value).
    pub fallback: bool,
}

/// A vote a document was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VoteRef {
    /// The authority that cast it.
    #[serde(with = "hex32")]
    pub authority: [u8; 32],
    /// SHA-256 of the signed vote.
    #[serde(with = "hex32")]
    pub digest: [u8; 32],
}

/// How the authorities agreed on a document. Open: readers ignore fields
/// they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusRecord {
    /// The votes counted, by authority.
    #[serde(default)]
    pub votes: Vec<VoteRef>,
    /// The epoch's shared random value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_random: Option<SharedRandom>,
    /// The epoch before's, as the votes held it.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub previous_random: Option<[u8; 32]>,
    /// The counted authorities' commitments to their next epoch's secrets.
    #[serde(default)]
    pub commits: Vec<Commit>,
    /// The family cap the layers were filled under (percent).
    #[serde(default = "full_share")]
    pub family_cap_percent: u8,
    /// Authorities that committed to this epoch's secret but whose reveal
    /// did not count (absent, withheld, or not matching) in the round
    /// that computed the shared value: the bias of §6.4, on the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex32_vec")]
    pub withheld: Vec<[u8; 32]>,
}

fn full_share() -> u8 {
    100
}

impl Default for ConsensusRecord {
    fn default() -> Self {
        Self {
            votes: Vec::new(),
            shared_random: None,
            previous_random: None,
            commits: Vec::new(),
            family_cap_percent: full_share(),
            withheld: Vec::new(),
        }
    }
}

/// Why a round made no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// Fewer votes than a majority of the configured authorities.
    #[error("{got} votes counted; a majority of {of} authorities needs {need}")]
    TooFewVotes {
        /// Votes counted.
        got: usize,
        /// Configured authorities.
        of: usize,
        /// A majority of them.
        need: usize,
    },
    /// No settings proposed by a majority.
    #[error("no network settings proposed by a majority of the authorities")]
    NoAgreedSettings,
    /// No majority holds the same commitments or previous value for the
    /// shared random value: computing it from a minority's would let that
    /// minority choose it.
    #[error("no majority holds the same commitments to this epoch's shared random value")]
    NoAgreedRandom,
    /// The result is not a valid document (a rule and its checks
    /// disagree: a bug, or settings no node could follow).
    #[error("the consensus is not a valid document: {0}")]
    Invalid(DirectoryError),
}

/// The value held by the most of `values`, with its count; ties go to the
/// smallest JSON encoding, so the choice is the same everywhere.
fn plurality<T: Serialize + Clone>(values: impl IntoIterator<Item = T>) -> Option<(T, usize)> {
    let mut counts: BTreeMap<Vec<u8>, (T, usize)> = BTreeMap::new();
    for v in values {
        let key = serde_json::to_vec(&v).unwrap_or_default();
        counts.entry(key).or_insert((v, 0)).1 += 1;
    }
    let mut best: Option<(T, usize)> = None;
    for (_, (v, n)) in counts {
        if best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((v, n));
        }
    }
    best
}

/// Where a node falls in the order the layers are filled in: SHA-256 of
/// the context, the epoch's shared random value and the node's key.
pub fn layer_draw(random: &[u8; 32], key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LAYER_CONTEXT);
    h.update(random);
    h.update(key);
    h.finalize().into()
}

fn random_value(
    network: &str,
    epoch: u32,
    previous: Option<[u8; 32]>,
    reveals: &[([u8; 32], [u8; 32])],
) -> SharedRandom {
    let mut h = Sha256::new();
    h.update(RANDOM_CONTEXT);
    h.update([network.len() as u8]);
    h.update(network.as_bytes());
    h.update(epoch.to_be_bytes());
    h.update(previous.unwrap_or([0; 32]));
    h.update((reveals.len() as u32).to_be_bytes());
    for (authority, secret) in reveals {
        h.update(authority);
        h.update(secret);
    }
    SharedRandom {
        value: h.finalize().into(),
        fallback: reveals.is_empty(),
    }
}

/// The document of round `serial` of `epoch` from `votes` (each with the
/// digest of its signed bytes), for a network whose authorities are
/// `authorities`. Votes of other rounds or by others are not counted; an
/// authority with two different votes counts with neither (it
/// equivocated). The result is unsigned: each authority signs its bytes.
pub fn compute_consensus(
    network: &str,
    authorities: &[[u8; 32]],
    epoch: u32,
    serial: u64,
    votes: &[(Vote, [u8; 32])],
    addresses: AddressCheck,
) -> Result<NetworkDocument, ConsensusError> {
    let configured: BTreeSet<[u8; 32]> = authorities.iter().copied().collect();
    let n = configured.len();
    let majority = AuthoritySet::majority_of(n);
    let mut by_authority: BTreeMap<[u8; 32], Vec<(&Vote, [u8; 32])>> = BTreeMap::new();
    for (vote, digest) in votes {
        if configured.contains(&vote.authority)
            && vote.network == network
            && vote.epoch == epoch
            && vote.serial == serial
            && vote.version == DOCUMENT_VERSION
        {
            let held = by_authority.entry(vote.authority).or_default();
            if !held.iter().any(|(_, d)| d == digest) {
                held.push((vote, *digest));
            }
        }
    }
    let counted: Vec<(&Vote, [u8; 32])> = by_authority
        .into_values()
        .filter(|held| held.len() == 1)
        .flatten()
        .collect();
    if counted.len() < majority {
        return Err(ConsensusError::TooFewVotes {
            got: counted.len(),
            of: n,
            need: majority,
        });
    }
    let params: VoteParams = match plurality(counted.iter().map(|(v, _)| v.params.clone())) {
        Some((p, count)) if count >= majority => p,
        _ => return Err(ConsensusError::NoAgreedSettings),
    };
    let (random, withheld) = shared_random(network, epoch, &counted, majority)?;
    let nodes = listed_nodes(
        network, epoch, serial, &params, &random, &counted, majority, addresses,
    );
    let commits = counted
        .iter()
        .map(|(v, _)| Commit {
            authority: v.authority,
            digest: v.random.commit,
        })
        .collect();
    let previous_random = plurality(counted.iter().filter_map(|(v, _)| v.random.previous))
        .filter(|(_, count)| *count >= majority)
        .map(|(p, _)| p);
    let schedule = params.schedule;
    let doc = NetworkDocument {
        version: DOCUMENT_VERSION,
        network: network.to_owned(),
        epoch,
        serial,
        schedule,
        valid_after: schedule.start(epoch),
        // The next epoch's start plus half an epoch of grace: packets
        // built late with this epoch's keys are still accepted then
        // (nodes keep the previous key through the next epoch).
        valid_until: schedule
            .start(epoch.saturating_add(1))
            .saturating_add(schedule.epoch_secs / 2),
        geometry: params.geometry,
        mixing: params.mixing,
        rates: params.rates,
        layers: params.layers,
        storage: params.storage,
        nodes,
        consensus: ConsensusRecord {
            votes: counted
                .iter()
                .map(|(v, digest)| VoteRef {
                    authority: v.authority,
                    digest: *digest,
                })
                .collect(),
            shared_random: Some(random),
            previous_random,
            commits,
            family_cap_percent: params.family_cap_percent,
            withheld,
        },
    };
    doc.validate(addresses).map_err(ConsensusError::Invalid)?;
    Ok(doc)
}

/// The epoch's shared random value: the one a majority already holds from
/// an earlier round of the epoch; otherwise from the reveals that match
/// the commitments a majority holds; with none, the fallback.
fn shared_random(
    network: &str,
    epoch: u32,
    counted: &[(&Vote, [u8; 32])],
    majority: usize,
) -> Result<(SharedRandom, Vec<[u8; 32]>), ConsensusError> {
    if let Some(current) = agreed(
        counted.iter().filter_map(|(v, _)| v.random.current),
        majority,
    ) {
        return Ok((current, Vec::new()));
    }
    let commits: Vec<Commit> = agreed(
        counted.iter().map(|(v, _)| v.random.commits.clone()),
        majority,
    )
    .ok_or(ConsensusError::NoAgreedRandom)?;
    let previous = agreed(counted.iter().map(|(v, _)| v.random.previous), majority)
        .ok_or(ConsensusError::NoAgreedRandom)?;
    // `counted` is in authority order.
    let reveals: Vec<([u8; 32], [u8; 32])> = counted
        .iter()
        .filter_map(|(v, _)| {
            let secret = v.random.reveal?;
            let committed = commits.iter().find(|c| c.authority == v.authority)?;
            (committed.digest == commit_digest(network, &v.authority, epoch, &secret))
                .then_some((v.authority, secret))
        })
        .collect();
    let withheld = commits
        .iter()
        .map(|c| c.authority)
        .filter(|a| !reveals.iter().any(|(r, _)| r == a))
        .collect();
    Ok((random_value(network, epoch, previous, &reveals), withheld))
}

/// The value at least `majority` of `values` hold, if one does.
fn agreed<T: Serialize + Clone>(values: impl IntoIterator<Item = T>, majority: usize) -> Option<T> {
    plurality(values)
        .filter(|(_, count)| *count >= majority)
        .map(|(v, _)| v)
}

/// The nodes a majority voted for, each from its own newest signed
/// descriptor among the votes (no authority can change a node's keys or
/// addresses), with its `since`, salt, family and proposed layer as a
/// majority of the authorities hold them (else the defaults: listed now,
/// no salt, no family, no layer); over a family's cap, a node is left
/// out.
#[allow(clippy::too_many_arguments)]
fn listed_nodes(
    network: &str,
    epoch: u32,
    serial: u64,
    params: &VoteParams,
    random: &SharedRandom,
    counted: &[(&Vote, [u8; 32])],
    majority: usize,
    addresses: AddressCheck,
) -> Vec<NodeEntry> {
    // Per node: each vote's entry, with its descriptor verified.
    type Proposal<'a> = (&'a VoteEntry, Descriptor, Vec<u8>);
    let mut entries: BTreeMap<[u8; 32], Vec<Proposal>> = BTreeMap::new();
    for (vote, _) in counted {
        for entry in &vote.nodes {
            let Ok(bytes) = data_encoding::HEXLOWER.decode(entry.descriptor.as_bytes()) else {
                continue;
            };
            let Ok(d) = Descriptor::verify(&bytes, network, params.layers, addresses) else {
                continue;
            };
            if d.node.key == entry.key {
                entries
                    .entry(entry.key)
                    .or_default()
                    .push((entry, d, bytes));
            }
        }
    }
    // The network's first epoch: its nodes take its (known) value at once
    // (§6.4: the founders'; operators approve only founders' nodes in it,
    // and `authority approve` warns them).
    let founding = epoch == 0;
    let mut listed: Vec<Listed> = Vec::new();
    for (_, proposals) in entries {
        if proposals.len() < majority {
            continue;
        }
        // The node's newest statement of itself (ties: the smaller bytes).
        let Some((_, newest, _)) = proposals
            .iter()
            .max_by(|a, b| a.1.published.cmp(&b.1.published).then(b.2.cmp(&a.2)))
        else {
            continue;
        };
        let mut node = NodeEntry {
            layer: None,
            since: None,
            salt: None,
            family: None,
            ..newest.node.clone()
        };
        node.sphinx_keys
            .retain(|k| k.epoch == epoch || k.epoch == epoch.wrapping_add(1));
        node.sphinx_keys.sort_by_key(|k| k.epoch);
        node.sphinx_keys.dedup_by_key(|k| k.epoch);
        if node.sphinx_key(epoch).is_none() {
            continue;
        }
        let since = agreed(proposals.iter().map(|p| p.0.since), majority)
            .flatten()
            .map_or(epoch, |s| s.min(epoch));
        let salt = agreed(proposals.iter().map(|p| p.0.salt), majority).flatten();
        // A node's salt is the shared value of the first epoch after it
        // was first listed (§6.4): fixed before it is known, so no key can
        // be ground against it. A fallback value is known in advance, so
        // it salts no one (the node waits for an epoch with reveals),
        // except in the network's first document, whose nodes (the
        // founders', stated in the spec) take it.
        let fresh = (since < epoch && !random.fallback) || founding;
        node.salt = salt.or(fresh.then_some(random.value));
        node.since = Some(since);
        node.family = agreed(proposals.iter().map(|p| p.0.family.clone()), majority).flatten();
        let layer = match node.role {
            Role::Mix => agreed(proposals.iter().map(|p| p.0.layer), majority)
                .flatten()
                .filter(|l| (1..=params.layers).contains(l)),
            _ => None,
        };
        let pinned =
            layer.is_some() && agreed(proposals.iter().map(|p| p.0.pinned), majority) == Some(true);
        listed.push(Listed {
            node,
            layer,
            pinned,
        });
    }
    // Layers are evened out only in an epoch's first document: a mix that
    // moves drops the packets in flight to it in its old layer.
    place(listed, params, random, serial == 0)
}
