#![doc = include_str!("../README.md")]

pub mod error;
pub mod gated;
pub mod protocols;
pub mod topology;
pub mod transport;

pub use error::NetError;
pub use protocols::*;
pub use topology::{
    NodeEntryExt, NotEd25519, Topology, check_multiaddr, libp2p_keypair, peer_id_of,
};
pub use transport::{
    Behaviour, IDENTIFY_VERSION, TransportError, behaviour, build_gated_swarm, build_swarm,
    swarm_config,
};

/// Unix seconds now: the wall clock every driver stamps documents and
/// records with.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now: for schedules finer than a second (bulk
/// windows, voting phases).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
