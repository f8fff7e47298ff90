//! The network document and node descriptors (`specs/directory.md`):
//! what they hold (here), their signed form (`signed`) and the
//! authority's bookkeeping (`authority`). Routes over a document are
//! `crate::route`; its index by PeerId is `mtos_net::Topology`. Sans-IO:
//! everything that depends on time takes `now` (Unix seconds).

use mtos_crypto::VerifyKey;
use mtos_crypto::geometry::{MAX_PATH_LENGTH, SPHINX_PAYLOAD_SIZE};
use mtos_crypto::sphinx::NodeAddress;
use serde::{Deserialize, Serialize};

use crate::admission::Position;
use crate::engine::{EngineConfig, MixingMode};

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
/// Most addresses one node may list.
pub const MAX_ADDRS: usize = 8;
/// Most mix layers a network may have.
pub const MAX_LAYERS: u8 = 8;
/// A document that claims to start further in the future than this is
/// refused (clock skew allowance), in seconds.
pub const CLOCK_SKEW: u64 = 300;
/// The format version of descriptor and document bodies.
pub const VERSION: u32 = 1;

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

/// How the network mixes (one setting for every node).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mixing {
    /// `poisson` or `pool`.
    pub mode: MixingKind,
    /// Mean per-hop delay, ms (Poisson; also the final hop's own wait).
    pub mean_delay_ms: u64,
    /// Longest hold a header may ask for, ms.
    pub max_delay_ms: u64,
    /// Pool mode: flush interval, ms.
    #[serde(default)]
    pub pool_interval_ms: u64,
    /// Pool mode: packets always kept.
    #[serde(default)]
    pub pool_min: u32,
    /// Pool mode: share sent per flush.
    #[serde(default)]
    pub pool_fraction: f64,
}

/// The mixing modes of `specs/mixing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixingKind {
    /// Continuous-time mixing.
    Poisson,
    /// Timed dynamic pool.
    Pool,
}

impl Mixing {
    /// The engine configuration these settings give, with the node's own
    /// queue limit.
    pub fn engine_config(&self, queue_limit: usize) -> EngineConfig {
        let ms = std::time::Duration::from_millis;
        EngineConfig {
            mode: match self.mode {
                MixingKind::Poisson => MixingMode::Poisson,
                MixingKind::Pool => MixingMode::Pool {
                    interval: ms(self.pool_interval_ms),
                    min_pool: self.pool_min as usize,
                    fraction: self.pool_fraction,
                },
            },
            mean_delay: ms(self.mean_delay_ms),
            max_delay: ms(self.max_delay_ms),
            queue_limit,
            output_limit: queue_limit,
        }
    }

    /// Checks the ranges every node enforces; the error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let field = |field: &str, problem: String| DirectoryError::Field {
            field: format!("mixing.{field}"),
            problem,
        };
        if self.max_delay_ms == 0 || self.max_delay_ms > MAX_MIXING_MS {
            return Err(field(
                "max_delay_ms",
                format!("{}: must be 1 to {MAX_MIXING_MS}", self.max_delay_ms),
            ));
        }
        if self.mean_delay_ms > self.max_delay_ms {
            return Err(field(
                "mean_delay_ms",
                format!("{} exceeds max_delay_ms", self.mean_delay_ms),
            ));
        }
        if self.mode == MixingKind::Pool {
            // Nodes follow a new document's mode at once: a pool that
            // never flushes, or flushes once an hour, would hold every
            // packet.
            if self.pool_interval_ms == 0 || self.pool_interval_ms > MAX_MIXING_MS {
                return Err(field(
                    "pool_interval_ms",
                    format!(
                        "{}: pool mixing needs 1 to {MAX_MIXING_MS}",
                        self.pool_interval_ms
                    ),
                ));
            }
            if !(self.pool_fraction > 0.0 && self.pool_fraction <= 1.0) {
                return Err(field(
                    "pool_fraction",
                    format!("{}: pool mixing needs (0, 1]", self.pool_fraction),
                ));
            }
            if self.pool_min > MAX_POOL_MIN {
                return Err(field(
                    "pool_min",
                    format!("{}: at most {MAX_POOL_MIN}", self.pool_min),
                ));
            }
        }
        Ok(())
    }
}

/// The longest a mixing delay or pool interval may be, ms (an hour).
pub const MAX_MIXING_MS: u64 = 3_600_000;
/// The most packets a pool may keep back: a node holds at least this
/// many (its default queue limit is 100,000).
pub const MAX_POOL_MIN: u32 = 10_000;

/// What storage nodes take (`specs/storage.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRules {
    /// The least effort a put's stamp carries (1 to [`MAX_STAMP_FLOOR`]);
    /// replicas ask more as they fill.
    pub stamp_floor: u32,
}

/// The stamp floor of a document that sets none: 16 Equi-X solutions,
/// about 50 ms of one core per put.
pub const DEFAULT_STAMP_FLOOR: u32 = 16;
/// The highest stamp floor a document may set (about 3 minutes of one
/// core per put).
pub const MAX_STAMP_FLOOR: u32 = 1 << 16;

impl Default for StorageRules {
    fn default() -> Self {
        Self {
            stamp_floor: DEFAULT_STAMP_FLOOR,
        }
    }
}

impl StorageRules {
    /// Checks the floor's range; the error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        if (1..=MAX_STAMP_FLOOR).contains(&self.stamp_floor) {
            Ok(())
        } else {
            Err(DirectoryError::Field {
                field: "storage.stamp_floor".to_owned(),
                problem: format!("{}; must be 1 to {MAX_STAMP_FLOOR}", self.stamp_floor),
            })
        }
    }
}

/// Cover and payload rates (per second) of `specs/mixing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// λP: a client's payload stream (real or drop cover).
    pub payload: f64,
    /// λL: a client's loops.
    pub loops: f64,
    /// λD: a client's drops.
    pub drops: f64,
    /// λM: a mix node's loops.
    pub node_loops: f64,
}

/// The lowest rate a stream may have but zero, per second (one packet
/// every ~17 minutes): a gap of 1/λ must be a time a timer can hold, and
/// a rate like 1e-320 (subnormal) would overflow it.
pub const MIN_RATE: f64 = 0.001;
/// The highest rate of any stream, per second.
pub const MAX_RATE: f64 = 10_000.0;

impl Rates {
    /// Checks every rate: finite, and 0 (the stream is off; not for λP,
    /// the stream every real packet rides) or within [`MIN_RATE`] and
    /// [`MAX_RATE`]. The error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        for (field, v, may_be_off) in [
            ("rates.payload", self.payload, false),
            ("rates.loops", self.loops, true),
            ("rates.drops", self.drops, true),
            ("rates.node_loops", self.node_loops, true),
        ] {
            let in_range = (MIN_RATE..=MAX_RATE).contains(&v);
            if !(in_range || (may_be_off && v == 0.0)) {
                let allowed = if may_be_off { "0 or " } else { "" };
                return Err(DirectoryError::Field {
                    field: field.to_owned(),
                    problem: format!("{v:e} per second; must be {allowed}{MIN_RATE} to {MAX_RATE}"),
                });
            }
        }
        Ok(())
    }

    /// The rate at which a gateway writes delivery frames to each client
    /// (`specs/client.md` §3): what comes back to a client is one packet
    /// per payload slot (a reply, or cover that returns as one) and its
    /// loops, `λP + λL` a second, so the stream runs at the client's whole
    /// send rate `λP + λL + λD`, and never below `1.25 (λP + λL)`: a
    /// mailbox fed as fast as it is drained would grow without bound.
    pub fn delivery(&self) -> f64 {
        let back = self.payload + self.loops;
        (back + self.drops).max(1.25 * back)
    }
}

/// When epochs start: epoch `e` runs from `genesis + e·epoch_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochSchedule {
    /// Start of epoch 0, Unix seconds.
    pub genesis: u64,
    /// Length of an epoch, seconds.
    pub epoch_secs: u64,
    /// How often a node re-uploads its descriptor, seconds: the
    /// authority lists only nodes heard from within
    /// [`LIVENESS_HEARTBEATS`] heartbeats, so a dead node leaves the
    /// document (and its records are repaired elsewhere) within minutes,
    /// not at the end of its published keys.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
}

/// Heartbeats a node may miss before the authority stops listing it.
pub const LIVENESS_HEARTBEATS: u64 = 3;

/// The heartbeat an authority config without one gets.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 20;

fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}

impl EpochSchedule {
    /// The epoch at `now` (epoch 0 before genesis).
    pub fn epoch_at(&self, now: u64) -> u32 {
        let e = now.saturating_sub(self.genesis) / self.epoch_secs.max(1);
        u32::try_from(e).unwrap_or(u32::MAX)
    }

    /// How long the authority lists a node without hearing from it.
    pub fn liveness_secs(&self) -> u64 {
        self.heartbeat_secs
            .max(1)
            .saturating_mul(LIVENESS_HEARTBEATS)
    }

    /// The start of `epoch`, Unix seconds.
    pub fn start(&self, epoch: u32) -> u64 {
        self.genesis
            .saturating_add(u64::from(epoch).saturating_mul(self.epoch_secs.max(1)))
    }
}

/// Packet geometry, checked against the compiled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    /// Sphinx payload bytes.
    pub payload: u32,
    /// Hops per route, gateway and final hop included.
    pub max_path: u8,
}

impl Geometry {
    /// The geometry this build speaks.
    pub fn compiled() -> Self {
        Self {
            payload: SPHINX_PAYLOAD_SIZE as u32,
            max_path: MAX_PATH_LENGTH as u8,
        }
    }
}

/// The signed topology of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkDocument {
    /// Format version (1).
    pub version: u32,
    /// The network id.
    pub network: String,
    /// The epoch this document describes.
    pub epoch: u32,
    /// Increases every time the authority re-signs within an epoch.
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
mod signed;

pub use authority::{Authority, NetworkParams};
pub use signed::add_signature;

#[cfg(test)]
mod tests;
