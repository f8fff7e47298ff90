//! The network document and node descriptors (`specs/directory.md`):
//! what they hold (here), their signed form (`signed`) and the
//! authority's bookkeeping (`authority`). Routes over a document are
//! `crate::route`; its index by PeerId is `mtos_net::Topology`. Sans-IO:
//! everything that depends on time takes `now` (Unix seconds).

use mtos_crypto::VerifyKey;
use mtos_crypto::sphinx::NodeAddress;
use serde::{Deserialize, Serialize};

use crate::admission::Position;

/// The first bytes of a signed network document.
pub const DOCUMENT_MAGIC: &[u8; 8] = b"MTOSDOC1";
/// The first bytes of a signed node descriptor.
pub const DESCRIPTOR_MAGIC: &[u8; 8] = b"MTOSDSC1";
const DOCUMENT_CONTEXT: &[u8] = b"mtos-directory-document-v1";
const DESCRIPTOR_CONTEXT: &[u8] = b"mtos-directory-descriptor-v1";
/// Largest document body accepted.
pub const MAX_DOCUMENT_BODY: usize = 4 << 20;
/// Largest descriptor body accepted.
pub const MAX_DESCRIPTOR_BODY: usize = 16 << 10;
/// Most signatures on one object.
pub const MAX_SIGNATURES: usize = 16;
/// Longest family name, bytes.
pub const MAX_FAMILY: usize = 64;
/// Most addresses one node may list.
pub const MAX_ADDRS: usize = 8;
/// Most mix layers a network may have.
pub const MAX_LAYERS: u8 = 8;
/// A document that claims to start further in the future than this is
/// refused (clock skew allowance), in seconds.
pub const CLOCK_SKEW: u64 = 300;
/// The format version of descriptor bodies.
pub const VERSION: u32 = 1;
/// The format version of document and vote bodies: 2 since documents are
/// agreed by several authorities and placement takes each node's salt
/// (`specs/directory.md` §6), which a reader of version 1 would ignore
/// and so choose other replicas than the rest of the network.
pub const DOCUMENT_VERSION: u32 = 2;

/// Why a descriptor or document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Not the framing of a signed object.
    #[error("malformed signed object: {0}")]
    Framing(&'static str),
    /// The body is not a valid document or descriptor.
    #[error("malformed body: {0}")]
    Body(String),
    /// Signatures missing or invalid.
    #[error("bad signature: {0}")]
    Signature(&'static str),
    /// A document or descriptor of another network.
    #[error("wrong network id {got:?} (this node is on {expected:?})")]
    WrongNetwork {
        /// What the object says.
        got: String,
        /// What we are configured for.
        expected: String,
    },
    /// The document's epoch is over.
    #[error("document for epoch {epoch} expired at {valid_until} (now {now})")]
    Expired {
        /// Its epoch.
        epoch: u32,
        /// Its end of validity, Unix seconds.
        valid_until: u64,
        /// Now.
        now: u64,
    },
    /// The document starts in the future.
    #[error("document for epoch {epoch} is not valid before {valid_after} (now {now})")]
    NotYetValid {
        /// Its epoch.
        epoch: u32,
        /// Its start, Unix seconds.
        valid_after: u64,
        /// Now.
        now: u64,
    },
    /// A field missing, of the wrong type, or out of its range.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field, as the document names it (`rates.drops`).
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
}

fn body_error(what: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Body(what.to_string())
}

/// 32 bytes as 64 lowercase hex digits in JSON.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&data_encoding::HEXLOWER.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = data_encoding::HEXLOWER
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("expected 64 lowercase hex digits"))?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes (64 hex digits)"))
    }
}

/// `Option<[u8; 32]>` as 64 lowercase hex digits, or absent.
mod hex32_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::hex32::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::hex32")] [u8; 32]);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// `Vec<[u8; 32]>` as a list of 64-hex-digit strings.
mod hex32_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::hex32")] [u8; 32]);

    pub fn serialize<S: Serializer>(keys: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        keys.iter()
            .map(|k| Wrap(*k))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Ok(Vec::<Wrap>::deserialize(d)?
            .into_iter()
            .map(|w| w.0)
            .collect())
    }
}

/// The public Sphinx key a node holds for one epoch. (This, the node
/// entry and the document itself are open: a reader ignores fields it
/// does not know, `specs/directory.md` §2.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SphinxKeyEntry {
    /// The epoch.
    pub epoch: u32,
    /// The X25519 public key.
    #[serde(with = "hex32")]
    pub public: [u8; 32],
}

/// A node as the document lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The node's ed25519 key: its address in Sphinx headers and the key
    /// of its libp2p identity.
    #[serde(with = "hex32")]
    pub key: [u8; 32],
    /// Its libp2p PeerId (derived from `key`; listed for convenience and
    /// checked).
    pub peer_id: String,
    /// libp2p addresses.
    pub addrs: Vec<String>,
    /// Gateway, mix or service.
    pub role: Role,
    /// Mix layer (mix nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Whether it stores records.
    #[serde(default)]
    pub storage: bool,
    /// Sphinx public keys, by epoch.
    pub sphinx_keys: Vec<SphinxKeyEntry>,
    /// Documents only: the epoch the node was first listed in (its key
    /// since then), as the authorities agreed it (§6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u32>,
    /// Documents only: the node's placement salt, the shared random
    /// value of the first epoch after `since` (§6.4). A storage node
    /// without one stores nothing yet.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex32_opt")]
    pub salt: Option<[u8; 32]>,
    /// Documents only: the operator family an authority approved the
    /// node under; a family's share of each layer is capped (§6.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl NodeEntry {
    /// Where the node sits in the topology.
    pub fn position(&self) -> Position {
        match (self.role, self.layer) {
            (Role::Gateway, _) => Position::Gateway,
            (Role::Service, _) => Position::Service,
            (Role::Mix, Some(l)) => Position::Layer(l),
            (Role::Mix, None) => Position::Layer(0),
        }
    }

    /// Its Sphinx address.
    pub fn address(&self) -> NodeAddress {
        NodeAddress(self.key)
    }

    /// Its Sphinx public key for `epoch`.
    pub fn sphinx_key(&self, epoch: u32) -> Option<[u8; 32]> {
        self.sphinx_keys
            .iter()
            .find(|k| k.epoch == epoch)
            .map(|k| k.public)
    }

    /// Checks that its listed PeerId is the one its key gives.
    fn check_peer_id(&self) -> Result<(), DirectoryError> {
        if peer_id_text(&self.key) != self.peer_id {
            return Err(body_error(format!(
                "node {}: peer_id does not match its key",
                short(&self.key)
            )));
        }
        Ok(())
    }

    fn validate(&self, layers: u8, addresses: AddressCheck) -> Result<(), DirectoryError> {
        let who = short(&self.key);
        VerifyKey::from_bytes(self.key)
            .map_err(|_| body_error(format!("node {who}: key is not an ed25519 key")))?;
        self.check_peer_id()?;
        match (self.role, self.layer) {
            (Role::Mix, Some(l)) if (1..=layers).contains(&l) => {}
            (Role::Mix, l) => {
                return Err(body_error(format!(
                    "node {who}: mix layer {l:?} not in 1..={layers}"
                )));
            }
            (_, Some(_)) => {
                return Err(body_error(format!(
                    "node {who}: only mix nodes have a layer"
                )));
            }
            (_, None) => {}
        }
        if self.addrs.is_empty() || self.addrs.len() > MAX_ADDRS {
            return Err(body_error(format!(
                "node {who}: 1 to {MAX_ADDRS} addresses required"
            )));
        }
        for a in &self.addrs {
            addresses(a).map_err(|e| body_error(format!("node {who}: address {a:?}: {e}")))?;
        }
        if self.sphinx_keys.is_empty() || self.sphinx_keys.len() > 4 {
            return Err(body_error(format!(
                "node {who}: 1 to 4 Sphinx keys required"
            )));
        }
        if let Some(family) = &self.family
            && (family.is_empty()
                || family.len() > MAX_FAMILY
                || family.chars().any(char::is_control))
        {
            return Err(body_error(format!(
                "node {who}: a family is 1 to {MAX_FAMILY} bytes without control characters"
            )));
        }
        Ok(())
    }
}

fn short(key: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(&key[..8])
}

/// The text form of the libp2p PeerId of the node whose ed25519 key is
/// `key`: base58btc of the identity multihash of the protobuf-encoded
/// public key (libp2p's peer-id spec). Written out here so the core checks
/// a document's peer ids without linking libp2p; `mtos-net` derives the
/// same PeerId with libp2p and its tests hold the two equal.
pub fn peer_id_text(key: &[u8; 32]) -> String {
    // identity multihash (0x00), length 36; protobuf PublicKey { Type = 1
    // (Ed25519): 0x08 0x01, Data (field 2, 32 bytes): 0x12 0x20, key }.
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&[0x00, 36, 0x08, 0x01, 0x12, 0x20]);
    bytes.extend_from_slice(key);
    bs58::encode(bytes).into_string()
}

/// Checks the syntax of one node address. The core carries addresses as
/// opaque text and never dials them; the transport crate (`mtos-net`)
/// knows their grammar (multiaddrs) and supplies this check, so a
/// descriptor or document listing an address no peer could dial is
/// refused wherever it is verified.
pub type AddressCheck = fn(&str) -> Result<(), String>;

/// The role a node plays in the network document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Clients connect here; replies are delivered from here.
    Gateway,
    /// A mix in one of the layers.
    Mix,
    /// A final hop that answers requests (storage, later).
    Service,
}

/// What a node tells the authority about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// Format version (1).
    pub version: u32,
    /// The network.
    pub network: String,
    /// When it was made, Unix seconds.
    pub published: u64,
    /// The node.
    #[serde(flatten)]
    pub node: NodeEntry,
}

/// The signed topology of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkDocument {
    /// Format version ([`DOCUMENT_VERSION`]).
    pub version: u32,
    /// The network id.
    pub network: String,
    /// The epoch this document describes.
    pub epoch: u32,
    /// The voting round of the epoch that made it: 0 for the document
    /// voted before the epoch starts, then one per round (§6.1).
    pub serial: u64,
    /// The epoch schedule.
    pub schedule: EpochSchedule,
    /// Valid from, Unix seconds (the epoch's start).
    pub valid_after: u64,
    /// Valid until, Unix seconds.
    pub valid_until: u64,
    /// Packet geometry.
    pub geometry: Geometry,
    /// Network-wide mixing.
    pub mixing: Mixing,
    /// Network-wide rates.
    pub rates: Rates,
    /// Number of mix layers.
    pub layers: u8,
    /// What storage nodes take; a document without it has the defaults.
    #[serde(default)]
    pub storage: StorageRules,
    /// The nodes, sorted by key.
    pub nodes: Vec<NodeEntry>,
    /// How the authorities agreed on it: the votes counted, the shared
    /// random value, the commitments to the next one (§6). Open.
    #[serde(default)]
    pub consensus: ConsensusRecord,
}

/// Whom a node or client trusts to sign documents.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The network id.
    pub network: String,
    /// Authority keys.
    pub authorities: Vec<VerifyKey>,
    /// Valid signatures by distinct listed authorities required.
    pub threshold: usize,
    /// The syntax node addresses must have.
    pub addresses: AddressCheck,
}

mod authority;
mod authority_set;
mod consensus;
mod settings;
mod signed;
mod vote;
mod voting;

pub use authority::{Admission, Approval, Authority, NetworkParams, REMEMBER_SECS, Registered};
pub use authority_set::AuthoritySet;
pub use consensus::{
    ConsensusError, ConsensusRecord, SharedRandom, VoteRef, compute_consensus, layer_draw,
};
pub use settings::*;
pub use signed::{add_signature, document_signers};
pub use vote::{
    Commit, RandomVote, VOTE_MAGIC, Vote, VoteEntry, VoteParams, commit_digest, decode_votes,
    encode_votes, vote_digest,
};
pub use voting::{Phase, RoundId, VoteAdded, Voting, VotingError, VotingState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bulk;
