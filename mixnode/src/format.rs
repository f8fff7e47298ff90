//! What the engine needs from a packet format. The node runs real Sphinx
//! ([`Sphinx`]); the simulator can also run an abstract format that makes
//! the same routing, delay and mixing decisions without public-key work,
//! through this same engine.

use std::fmt;

use mtos_crypto::geometry::SPHINX_PACKET_SIZE;
use mtos_crypto::sphinx::{self, HeaderChecked, Processed, SphinxError, SphinxSecret};

/// Why a packet of the right size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    /// Not authentic for this key (the header MAC fails).
    Mac,
    /// Authentic, but it does not process.
    Malformed,
}

/// A packet format the engine can mix.
pub trait PacketFormat {
    /// A node's per-epoch key.
    type Key: Clone + fmt::Debug;
    /// A packet whose authenticity was checked.
    type Checked;
    /// Every packet's size in bytes (frames add one key-tag byte).
    const PACKET_SIZE: usize;
    /// Checks a packet's authenticity under `key`.
    fn check(packet: &[u8], key: &Self::Key) -> Result<Self::Checked, CheckError>;
    /// The replay tag: the same for every copy of this packet at this hop.
    fn replay_tag(checked: &Self::Checked) -> [u8; 32];
    /// Unwraps one layer.
    fn process(checked: Self::Checked) -> Result<Processed, CheckError>;
}

/// Real Sphinx packets (`specs/sphinx.md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sphinx;

impl PacketFormat for Sphinx {
    type Key = SphinxSecret;
    type Checked = HeaderChecked;
    const PACKET_SIZE: usize = SPHINX_PACKET_SIZE;

    fn check(packet: &[u8], key: &SphinxSecret) -> Result<HeaderChecked, CheckError> {
        sphinx::check_header(packet, key).map_err(|e| match e {
            SphinxError::HeaderMac => CheckError::Mac,
            _ => CheckError::Malformed,
        })
    }

    fn replay_tag(checked: &HeaderChecked) -> [u8; 32] {
        checked.replay_tag()
    }

    fn process(checked: HeaderChecked) -> Result<Processed, CheckError> {
        checked.process().map_err(|_| CheckError::Malformed)
    }
}
