//! The libp2p transport every mtos peer runs: TCP + Noise + Yamux links,
//! identify, ping, connection limits and an address book fed from the
//! network document.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::PeerId;

use crate::gated::PeerGated;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, identity::Keypair};
use libp2p::{connection_limits, identify, noise, peer_store, ping, tcp, yamux};

/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/mtos/1";

/// The behaviours every mtos libp2p peer runs.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits (refuse beyond the configured counts).
    pub limits: connection_limits::Behaviour,
    /// Identify.
    pub identify: identify::Behaviour,
    /// Ping (keeps long-lived links alive and measures them).
    pub ping: ping::Behaviour,
    /// Raw streams for the mtos protocols.
    pub stream: libp2p_stream::Behaviour,
    /// Streams only the listed peers reach (an authority's protocol with
    /// the other authorities; empty elsewhere).
    pub gated: crate::gated::PeerGated,
    /// Addresses of the document's nodes, for dialling by PeerId.
    pub addresses: peer_store::Behaviour<peer_store::memory_store::MemoryStore>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
#[error("libp2p transport: {0}")]
pub struct TransportError(String);

/// Builds a swarm with `keypair`, accepting at most `max_connections`
/// established connections (and two per peer).
pub fn build_swarm(
    keypair: Keypair,
    max_connections: u32,
) -> Result<Swarm<Behaviour>, TransportError> {
    build_gated_swarm(keypair, max_connections, HashSet::new())
}

/// [`build_swarm`] whose [`Behaviour::gated`] streams reach `allowed`
/// peers (an authority's swarm, allowing the other authorities).
pub fn build_gated_swarm(
    keypair: Keypair,
    max_connections: u32,
    allowed: HashSet<PeerId>,
) -> Result<Swarm<Behaviour>, TransportError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| TransportError(e.to_string()))?
        .with_behaviour(|key| {
            let mut b = behaviour(key, max_connections);
            b.gated = PeerGated::new(allowed);
            b
        })
        .map_err(|e| TransportError(e.to_string()))?
        .with_swarm_config(swarm_config)
        .build();
    Ok(swarm)
}

/// The protocols every mtos peer runs, for a swarm built over another
/// transport (a client's Tor entry).
pub fn behaviour(key: &Keypair, max_connections: u32) -> Behaviour {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(max_connections))
        .with_max_pending_incoming(Some(max_connections.min(256)))
        .with_max_established_per_peer(Some(2));
    let store = peer_store::memory_store::MemoryStore::new(
        peer_store::memory_store::Config::default().set_remove_addr_on_dial_error(false),
    );
    Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.to_owned(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new()),
        stream: libp2p_stream::Behaviour::new(),
        gated: PeerGated::new(HashSet::new()),
        addresses: peer_store::Behaviour::new(store),
    }
}

/// The swarm settings every mtos peer uses.
pub fn swarm_config(c: libp2p::swarm::Config) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(Duration::from_secs(600))
}
