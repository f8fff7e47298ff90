//! Node identities on the wire and the document indexed for the hot path:
//! a node's libp2p PeerId is derived from its ed25519 identity key (the
//! key the network document lists and Sphinx headers address), so Noise
//! authenticates every link to a document entry.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use mtos_crypto::Identity;
use mtos_crypto::sphinx::NodeAddress;
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::{NetworkDocument, NodeEntry};

/// Why a node key gives no PeerId.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ed25519 key")]
pub struct NotEd25519;

/// The libp2p PeerId of the node whose ed25519 key is `key`.
pub fn peer_id_of(key: &[u8; 32]) -> Result<PeerId, NotEd25519> {
    let public =
        libp2p::identity::ed25519::PublicKey::try_from_bytes(key).map_err(|_| NotEd25519)?;
    Ok(libp2p::identity::PublicKey::from(public).to_peer_id())
}

/// The libp2p keypair of a node: its ed25519 identity key.
pub fn libp2p_keypair(identity: &Identity) -> libp2p::identity::Keypair {
    let mut seed = identity.ed25519_seed();
    // `ed25519_from_bytes` zeroizes the buffer it is given.
    match libp2p::identity::Keypair::ed25519_from_bytes(&mut seed[..]) {
        Ok(k) => k,
        // 32 bytes always make an ed25519 secret key.
        Err(_) => libp2p::identity::Keypair::generate_ed25519(),
    }
}

/// The address syntax the network document's node entries must have
/// (libp2p multiaddrs): the [`mtos_mixnode::directory::AddressCheck`]
/// every driver verifies documents and descriptors with.
pub fn check_multiaddr(addr: &str) -> Result<(), String> {
    addr.parse::<Multiaddr>()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// What a libp2p speaker needs of a document's node entry.
pub trait NodeEntryExt {
    /// Its PeerId (derived from its key, which a verified document has
    /// checked against the listed one).
    fn peer(&self) -> Result<PeerId, NotEd25519>;
    /// Its addresses, parsed.
    fn multiaddrs(&self) -> Vec<Multiaddr>;
}

impl NodeEntryExt for NodeEntry {
    fn peer(&self) -> Result<PeerId, NotEd25519> {
        peer_id_of(&self.key)
    }

    fn multiaddrs(&self) -> Vec<Multiaddr> {
        self.addrs.iter().filter_map(|a| a.parse().ok()).collect()
    }
}

/// A document indexed for the driver's hot path.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The document.
    pub document: NetworkDocument,
    by_peer: HashMap<PeerId, usize>,
    by_address: HashMap<NodeAddress, usize>,
}

impl Topology {
    /// Indexes a verified document.
    pub fn new(document: NetworkDocument) -> Self {
        let mut by_peer = HashMap::new();
        let mut by_address = HashMap::new();
        for (i, node) in document.nodes.iter().enumerate() {
            if let Ok(peer) = node.peer() {
                by_peer.insert(peer, i);
            }
            by_address.insert(node.address(), i);
        }
        Self {
            document,
            by_peer,
            by_address,
        }
    }

    /// Where a connected peer sits; peers not in the document are clients.
    pub fn position_of(&self, peer: &PeerId) -> Position {
        self.by_peer
            .get(peer)
            .map_or(Position::Client, |&i| self.document.nodes[i].position())
    }

    /// The node with this PeerId.
    pub fn node_by_peer(&self, peer: &PeerId) -> Option<&NodeEntry> {
        self.by_peer.get(peer).map(|&i| &self.document.nodes[i])
    }

    /// The node at a Sphinx address.
    pub fn node(&self, address: &NodeAddress) -> Option<&NodeEntry> {
        self.by_address
            .get(address)
            .map(|&i| &self.document.nodes[i])
    }

    /// The nodes at a position.
    pub fn at(&self, position: Position) -> impl Iterator<Item = &NodeEntry> {
        self.document
            .nodes
            .iter()
            .filter(move |n| n.position() == position)
    }
}
