//! The network document and node descriptors (`specs/directory.md`).
//! Sans-IO: encoding, signing, verification and the authority's
//! bookkeeping take `now` (Unix seconds) as an argument.
//!
//! A signed object is the exact body bytes plus a list of signatures over
//! them; verifiers check the bytes they received and only then parse
//! them, so nothing depends on re-encoding JSON.

use std::collections::BTreeMap;

use mtos_crypto::geometry::{MAX_PATH_LENGTH, SPHINX_PAYLOAD_SIZE};
use mtos_crypto::sphinx::{self, Destination, Hop, NodeAddress, sample_exponential};
use mtos_crypto::{Identity, VerifyKey};
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

/// The public Sphinx key a node holds for one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SphinxKeyEntry {
    /// The epoch.
    pub epoch: u32,
    /// The X25519 public key.
    #[serde(with = "hex32")]
    pub public: [u8; 32],
}

/// A node as the document lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

    /// Checks the ranges every node enforces.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        if self.max_delay_ms == 0 || self.max_delay_ms > 3_600_000 {
            return Err(body_error("mixing.max_delay_ms must be in 1..=3600000"));
        }
        if self.mean_delay_ms > self.max_delay_ms {
            return Err(body_error("mixing.mean_delay_ms exceeds max_delay_ms"));
        }
        if self.mode == MixingKind::Pool
            && (self.pool_interval_ms == 0
                || !(self.pool_fraction > 0.0 && self.pool_fraction <= 1.0))
        {
            return Err(body_error(
                "pool mixing needs pool_interval_ms > 0 and pool_fraction in (0, 1]",
            ));
        }
        Ok(())
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
#[serde(deny_unknown_fields)]
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

/// A signed object: body and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signed {
    body: Vec<u8>,
    signatures: Vec<([u8; 32], [u8; 64])>,
}

fn signing_message(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 4 + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn encode_signed(magic: &[u8; 8], signed: &Signed) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + signed.body.len() + 1 + 96 * signed.signatures.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(signed.body.len() as u32).to_be_bytes());
    out.extend_from_slice(&signed.body);
    out.push(signed.signatures.len() as u8);
    for (key, sig) in &signed.signatures {
        out.extend_from_slice(key);
        out.extend_from_slice(sig);
    }
    out
}

fn decode_signed(magic: &[u8; 8], bytes: &[u8], max_body: usize) -> Result<Signed, DirectoryError> {
    let rest = bytes
        .strip_prefix(magic.as_slice())
        .ok_or(DirectoryError::Framing("wrong magic"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(DirectoryError::Framing("truncated length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > max_body {
        return Err(DirectoryError::Framing("body too large"));
    }
    if rest.len() < len + 1 {
        return Err(DirectoryError::Framing("truncated body"));
    }
    let (body, rest) = rest.split_at(len);
    let (&count, mut rest) = rest
        .split_first()
        .ok_or(DirectoryError::Framing("truncated"))?;
    let count = count as usize;
    if count == 0 || count > MAX_SIGNATURES {
        return Err(DirectoryError::Framing("1 to 16 signatures required"));
    }
    if rest.len() != count * 96 {
        return Err(DirectoryError::Framing(
            "signature block of the wrong length",
        ));
    }
    let mut signatures = Vec::with_capacity(count);
    while let Some((key, tail)) = rest.split_first_chunk::<32>() {
        let Some((sig, tail)) = tail.split_first_chunk::<64>() else {
            return Err(DirectoryError::Framing("truncated signature"));
        };
        signatures.push((*key, *sig));
        rest = tail;
    }
    Ok(Signed {
        body: body.to_vec(),
        signatures,
    })
}

impl Descriptor {
    /// Encodes and signs with the node's identity (whose key must be
    /// `self.node.key`).
    pub fn sign(&self, identity: &Identity) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let sig = identity.sign(&signing_message(DESCRIPTOR_CONTEXT, &body));
        encode_signed(
            DESCRIPTOR_MAGIC,
            &Signed {
                body,
                signatures: vec![(*identity.verify_key().as_bytes(), sig)],
            },
        )
    }

    /// Checks a signed descriptor: framing, the node's own signature, the
    /// network, and the entry's consistency.
    pub fn verify(
        bytes: &[u8],
        network: &str,
        layers: u8,
        addresses: AddressCheck,
    ) -> Result<Self, DirectoryError> {
        let signed = decode_signed(DESCRIPTOR_MAGIC, bytes, MAX_DESCRIPTOR_BODY)?;
        let descriptor: Descriptor = serde_json::from_slice(&signed.body).map_err(body_error)?;
        if descriptor.version != VERSION {
            return Err(body_error(format!(
                "version {} (expected {VERSION})",
                descriptor.version
            )));
        }
        if descriptor.network != network {
            return Err(DirectoryError::WrongNetwork {
                got: descriptor.network,
                expected: network.to_owned(),
            });
        }
        let [(key, sig)] = signed.signatures.as_slice() else {
            return Err(DirectoryError::Signature("a descriptor has one signature"));
        };
        if *key != descriptor.node.key {
            return Err(DirectoryError::Signature("not signed by the node's key"));
        }
        let vk = VerifyKey::from_bytes(*key)
            .map_err(|_| DirectoryError::Signature("not an ed25519 key"))?;
        if !vk.verify(&signing_message(DESCRIPTOR_CONTEXT, &signed.body), sig) {
            return Err(DirectoryError::Signature(
                "descriptor signature does not verify",
            ));
        }
        descriptor.node.validate(layers, addresses)?;
        Ok(descriptor)
    }
}

impl NetworkDocument {
    /// A node at `position`, picked uniformly (routes take one node per
    /// position).
    pub fn pick<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        position: Position,
    ) -> Option<&NodeEntry> {
        let nodes: Vec<&NodeEntry> = self
            .nodes
            .iter()
            .filter(|n| n.position() == position)
            .collect();
        (!nodes.is_empty()).then(|| nodes[rand::RngExt::random_range(rng, 0..nodes.len())])
    }

    /// The hops of `route` under this document's epoch keys, and an
    /// exponential delay of the network's mean for each. `None` if a node
    /// lacks a key for the epoch.
    fn hops_and_delays<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
    ) -> Option<(Vec<Hop>, Vec<std::time::Duration>)> {
        let hops: Vec<Hop> = route
            .iter()
            .map(|n| {
                Some(Hop {
                    address: n.address(),
                    sphinx_key: n.sphinx_key(self.epoch)?,
                })
            })
            .collect::<Option<_>>()?;
        let mean = std::time::Duration::from_millis(self.mixing.mean_delay_ms);
        let delays = hops.iter().map(|_| sample_exponential(rng, mean)).collect();
        Some((hops, delays))
    }

    /// A link frame carrying `message` through `route` (the first node is
    /// the one the frame is sent to) to `destination`, under this
    /// document's epoch keys, each hop holding it an exponential delay of
    /// the network's mean. `None` if a node lacks a key for the epoch or
    /// the packet cannot be built.
    pub fn forward_frame<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &Destination,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let (hops, delays) = self.hops_and_delays(rng, route)?;
        let packet = sphinx::build_forward(rng, &hops, destination, &delays, message).ok()?;
        sphinx::Frame::encode((self.epoch % 256) as u8, &packet).ok()
    }

    /// A single-use reply block (SURB) through `route` to `destination`
    /// under this document's epoch keys, each hop holding the reply an
    /// exponential delay of the network's mean. Returns the block, what
    /// its creator keeps to read the reply, and the sum of its delays.
    pub fn reply_block<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &[u8; 32],
        surb_id: [u8; sphinx::SURB_ID_LEN],
    ) -> Option<(Vec<u8>, sphinx::SurbRecovery, std::time::Duration)> {
        let (hops, delays) = self.hops_and_delays(rng, route)?;
        let total = delays.iter().sum();
        let (surb, recovery) =
            sphinx::build_surb(rng, &hops, destination, surb_id, &delays).ok()?;
        Some((surb, recovery, total))
    }

    /// Encodes and signs with one authority key. More signatures can be
    /// added with [`add_signature`].
    pub fn sign(&self, authority: &Identity) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let sig = authority.sign(&signing_message(DOCUMENT_CONTEXT, &body));
        encode_signed(
            DOCUMENT_MAGIC,
            &Signed {
                body,
                signatures: vec![(*authority.verify_key().as_bytes(), sig)],
            },
        )
    }

    /// Checks a signed document against `trust` at `now` (Unix seconds):
    /// framing, at least `threshold` valid signatures by distinct trusted
    /// authorities, the network id, the validity window, the geometry
    /// and every node entry.
    pub fn verify(bytes: &[u8], trust: &Trust, now: u64) -> Result<Self, DirectoryError> {
        let signed = decode_signed(DOCUMENT_MAGIC, bytes, MAX_DOCUMENT_BODY)?;
        let message = signing_message(DOCUMENT_CONTEXT, &signed.body);
        let mut valid: Vec<[u8; 32]> = Vec::new();
        for (key, sig) in &signed.signatures {
            let Some(vk) = trust.authorities.iter().find(|a| a.as_bytes() == key) else {
                continue;
            };
            if !valid.contains(key) && vk.verify(&message, sig) {
                valid.push(*key);
            }
        }
        if trust.threshold == 0 || valid.len() < trust.threshold {
            return Err(DirectoryError::Signature(
                "not signed by enough of the configured authorities",
            ));
        }
        let doc: NetworkDocument = serde_json::from_slice(&signed.body).map_err(body_error)?;
        if doc.version != VERSION {
            return Err(body_error(format!(
                "version {} (expected {VERSION})",
                doc.version
            )));
        }
        if doc.network != trust.network {
            return Err(DirectoryError::WrongNetwork {
                got: doc.network,
                expected: trust.network.clone(),
            });
        }
        if now >= doc.valid_until {
            return Err(DirectoryError::Expired {
                epoch: doc.epoch,
                valid_until: doc.valid_until,
                now,
            });
        }
        if doc.valid_after > now.saturating_add(CLOCK_SKEW) {
            return Err(DirectoryError::NotYetValid {
                epoch: doc.epoch,
                valid_after: doc.valid_after,
                now,
            });
        }
        doc.validate(trust.addresses)?;
        Ok(doc)
    }

    fn validate(&self, addresses: AddressCheck) -> Result<(), DirectoryError> {
        if self.geometry != Geometry::compiled() {
            return Err(body_error(format!(
                "geometry {:?} differs from this build's {:?}",
                self.geometry,
                Geometry::compiled()
            )));
        }
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return Err(body_error(format!("layers must be 1..={MAX_LAYERS}")));
        }
        if usize::from(self.layers) + 2 > MAX_PATH_LENGTH {
            return Err(body_error(
                "gateway + layers + final hop exceed the path length",
            ));
        }
        if self.schedule.epoch_secs == 0 {
            return Err(body_error("schedule.epoch_secs must be > 0"));
        }
        if !(1..=self.schedule.epoch_secs.max(1)).contains(&self.schedule.heartbeat_secs) {
            return Err(body_error(
                "schedule.heartbeat_secs must be 1 to schedule.epoch_secs",
            ));
        }
        self.mixing.validate()?;
        let mut keys = std::collections::HashSet::new();
        for node in &self.nodes {
            node.validate(self.layers, addresses)?;
            if !keys.insert(node.key) {
                return Err(body_error(format!(
                    "node {} listed twice",
                    short(&node.key)
                )));
            }
        }
        Ok(())
    }
}

/// Adds an authority's signature to a signed document (for networks with
/// several authorities: each signs the same body).
pub fn add_signature(
    signed_document: &[u8],
    authority: &Identity,
) -> Result<Vec<u8>, DirectoryError> {
    let mut signed = decode_signed(DOCUMENT_MAGIC, signed_document, MAX_DOCUMENT_BODY)?;
    if signed.signatures.len() >= MAX_SIGNATURES {
        return Err(DirectoryError::Framing("too many signatures"));
    }
    let key = *authority.verify_key().as_bytes();
    signed.signatures.retain(|(k, _)| *k != key);
    let sig = authority.sign(&signing_message(DOCUMENT_CONTEXT, &signed.body));
    signed.signatures.push((key, sig));
    Ok(encode_signed(DOCUMENT_MAGIC, &signed))
}

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
            nodes,
        };
        let bytes = doc.sign(signer);
        self.cached = Some((epoch, bytes.clone()));
        bytes
    }
}

#[cfg(test)]
mod tests;
