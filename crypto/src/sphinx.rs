//! Sphinx packets and link frames. The Sphinx format itself is Nym's
//! `sphinx-packet` crate (audited, used in production); this module only
//! adapts it to mtos: fixed geometry, randomness from the caller's RNG,
//! a header-check step that exposes the replay tag only after the MAC
//! passed, and the fixed-size link frame. Normative: `specs/sphinx.md`.

use std::fmt;
use std::time::Duration;

use rand::CryptoRng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::header::keys::KeyMaterial;
use sphinx_packet::header::shared_secret::ExpandedSharedSecret;
use sphinx_packet::payload::Payload;
use sphinx_packet::payload::key::{PayloadKey, derive_payload_key};
use sphinx_packet::route::{
    Destination as SphinxDestination, DestinationAddressBytes, Node, NodeAddressBytes,
};
use sphinx_packet::version::{SINGLE_SEED_SURB_VERSION, Version};
use sphinx_packet::{ProcessedPacketData, SphinxPacket, SphinxPacketBuilder};
use zeroize::Zeroizing;

use crate::geometry::{
    MAX_PATH_LENGTH, SPHINX_PACKET_SIZE, SPHINX_PAYLOAD_OVERHEAD, SPHINX_PAYLOAD_SIZE, SURB_SIZE,
};

mod surb;

pub use surb::{SEED_LEN, SurbRecovery, build_surb, use_surb};

/// A link frame: one key-tag byte, then one Sphinx packet.
pub const FRAME_SIZE: usize = 1 + SPHINX_PACKET_SIZE;
/// The largest message one forward packet carries.
pub const MAX_MESSAGE: usize = SPHINX_PAYLOAD_SIZE - SPHINX_PAYLOAD_OVERHEAD;
/// Bytes of a SURB identifier.
pub const SURB_ID_LEN: usize = 16;
/// The header version of every packet mtos builds (`specs/sphinx.md` §1):
/// hops derive their payload keys from seeds, as reply blocks need.
const PACKET_VERSION: Version = SINGLE_SEED_SURB_VERSION;
/// The payload of the packet [`build_forward_raw`] takes its header from:
/// more than LIONESS's 32-byte half-block and Sphinx's overhead.
const THROWAWAY_PAYLOAD: usize = 64;

/// Why a packet, frame or SURB was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SphinxError {
    /// A frame or packet of the wrong size (checked before any crypto).
    #[error("wrong size: {got} bytes, expected {expected}")]
    WrongSize {
        /// Bytes received.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The header MAC does not verify under this key.
    #[error("header MAC does not verify")]
    HeaderMac,
    /// The header or routing information is malformed.
    #[error("malformed header: {0}")]
    Header(String),
    /// The payload is malformed or does not authenticate.
    #[error("malformed payload: {0}")]
    Payload(String),
    /// A route or SURB could not be built or used.
    #[error("bad route or SURB: {0}")]
    Route(String),
    /// A message longer than one packet carries.
    #[error("message of {got} bytes exceeds the {max}-byte packet capacity")]
    MessageTooLong {
        /// Its length.
        got: usize,
        /// The capacity.
        max: usize,
    },
}

fn map_err(e: sphinx_packet::Error) -> SphinxError {
    use sphinx_packet::ErrorKind as K;
    match e.kind() {
        K::InvalidPayload => SphinxError::Payload(e.to_string()),
        K::InvalidSURB => SphinxError::Route(e.to_string()),
        _ => SphinxError::Header(e.to_string()),
    }
}

/// A node's address in Sphinx headers: its 32-byte ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddress(pub [u8; 32]);

impl fmt::Debug for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeAddress({})",
            data_encoding::HEXLOWER.encode(&self.0[..8])
        )
    }
}

/// A node's X25519 Sphinx key for one epoch. Zeroized on drop.
#[derive(Clone)]
pub struct SphinxSecret(x25519_dalek::StaticSecret);

impl fmt::Debug for SphinxSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SphinxSecret")
            .field(
                "public",
                &data_encoding::HEXLOWER.encode(&self.public()[..8]),
            )
            .finish_non_exhaustive()
    }
}

impl SphinxSecret {
    /// A fresh key from the caller's RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The bytes, for storage.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key published in the network document.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }
}

/// One hop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The node's address.
    pub address: NodeAddress,
    /// The node's Sphinx public key for the packet's epoch.
    pub sphinx_key: [u8; 32],
}

/// Where a packet's final hop delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// The recipient's address (a client's or a service's 32 bytes).
    pub address: [u8; 32],
    /// The SURB identifier (all zero for forward packets).
    pub surb_id: [u8; SURB_ID_LEN],
}

fn route_nodes(route: &[Hop]) -> Result<Vec<Node>, SphinxError> {
    if route.is_empty() || route.len() > MAX_PATH_LENGTH {
        return Err(SphinxError::Route(format!(
            "a route has 1 to {MAX_PATH_LENGTH} hops, got {}",
            route.len()
        )));
    }
    Ok(route
        .iter()
        .map(|h| {
            Node::new(
                NodeAddressBytes::from_bytes(h.address.0),
                x25519_dalek::PublicKey::from(h.sphinx_key),
            )
        })
        .collect())
}

fn sphinx_delays(delays: &[Duration], hops: usize) -> Result<Vec<Delay>, SphinxError> {
    if delays.len() != hops {
        return Err(SphinxError::Route(format!(
            "{} delays for {hops} hops",
            delays.len()
        )));
    }
    Ok(delays
        .iter()
        .map(|d| Delay::new_from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .collect())
}

/// Samples an exponential delay with the given mean from the caller's RNG
/// (Poisson mixing: every hop holds a packet this long).
pub fn sample_exponential<R: rand::Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    // U in (0, 1]: 53 random bits, never zero, so ln(U) is finite.
    let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let secs = -u.ln() * mean.as_secs_f64();
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Builds a forward packet: `message` to `destination` through `route`,
/// each hop holding it for the matching entry of `delays`. The initial
/// secret comes from `rng`. Returns the packet bytes.
pub fn build_forward<R: CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[Hop],
    destination: &Destination,
    delays: &[Duration],
    message: &[u8],
) -> Result<Vec<u8>, SphinxError> {
    if message.len() > MAX_MESSAGE {
        return Err(SphinxError::MessageTooLong {
            got: message.len(),
            max: MAX_MESSAGE,
        });
    }
    let secret = SphinxSecret::generate(rng);
    let (packet, _) = library_packet(
        &secret,
        route,
        destination,
        delays,
        message,
        SPHINX_PAYLOAD_SIZE,
    )?;
    Ok(packet.to_bytes())
}

/// sphinx-packet's packet of `message` (in a payload of `payload_size`
/// bytes) through `route` to `destination` under the initial secret
/// `secret`, with the route's nodes as the library names them.
fn library_packet(
    secret: &SphinxSecret,
    route: &[Hop],
    destination: &Destination,
    delays: &[Duration],
    message: &[u8],
    payload_size: usize,
) -> Result<(SphinxPacket, Vec<Node>), SphinxError> {
    let nodes = route_nodes(route)?;
    let delays = sphinx_delays(delays, nodes.len())?;
    let destination = SphinxDestination::new(
        DestinationAddressBytes::from_bytes(destination.address),
        destination.surb_id,
    );
    let packet = SphinxPacketBuilder::new()
        .with_version(PACKET_VERSION)
        .with_payload_size(payload_size)
        .with_initial_secret(&secret.0)
        .build_packet(message, &nodes, &destination, &delays)
        .map_err(map_err)?;
    Ok((packet, nodes))
}

/// Builds a forward packet whose final hop receives `payload` exactly
/// (all [`SPHINX_PAYLOAD_SIZE`] bytes of it), with no Sphinx encoding
/// under the hop layers (`specs/sphinx.md` §1): a caller that fills it
/// with bytes that look random (an envelope and random padding) makes a
/// delivery the final hop cannot tell from a reply. The payload carries
/// no integrity check of its own; what it holds must (an envelope's AEAD
/// does), since a hop that alters it turns all of it into noise.
pub fn build_forward_raw<R: CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[Hop],
    destination: &Destination,
    delays: &[Duration],
    payload: &[u8],
) -> Result<Vec<u8>, SphinxError> {
    if payload.len() != SPHINX_PAYLOAD_SIZE {
        return Err(SphinxError::WrongSize {
            got: payload.len(),
            expected: SPHINX_PAYLOAD_SIZE,
        });
    }
    let secret = SphinxSecret::generate(rng);
    // sphinx-packet builds a header only together with an encoded payload
    // (its header constructor is crate-private), so the header is taken
    // from a packet built around an empty message, and the hops' payload
    // keys are derived again from the same initial secret through its
    // public key schedule. That costs the route's Diffie-Hellman steps
    // twice, not a second copy of its cryptography. The header does not
    // depend on the payload size, so the throwaway payload is the
    // smallest the library takes.
    let (packet, nodes) =
        library_packet(&secret, route, destination, delays, &[], THROWAWAY_PAYLOAD)?;
    let header = packet.header;
    let material = KeyMaterial::derive(&nodes, &secret.0);
    let seeds = material
        .expanded_shared_secrets
        .iter()
        .map(|hop| hop.payload_key_seed());
    Ok(SphinxPacket {
        header,
        payload: Payload::from_bytes(&layer_payload(payload, seeds)?).map_err(map_err)?,
    }
    .to_bytes())
}

/// A raw payload as its first hop receives it: one layer under each hop's
/// payload key seed (route order), added last hop first, so that each hop
/// removing its own leaves the next hop's (`specs/sphinx.md` §1).
pub fn layer_payload<'s>(
    payload: &[u8],
    hop_seeds: impl DoubleEndedIterator<Item = &'s [u8; SEED_LEN]>,
) -> Result<Vec<u8>, SphinxError> {
    let mut layered = Payload::from_bytes(payload).map_err(map_err)?;
    for seed in hop_seeds.rev() {
        let key = Zeroizing::new(derive_payload_key(seed));
        layered = add_layer(layered, &key)?;
    }
    Ok(layered.into_bytes())
}

// The key is passed by reference, so that no unzeroed copy is made.
#[allow(clippy::needless_borrows_for_generic_args)]
fn add_layer(payload: Payload, key: &PayloadKey) -> Result<Payload, SphinxError> {
    payload.add_encryption_layer(key).map_err(map_err)
}

/// A packet whose header MAC verified under the node's key: only now is
/// its replay tag meaningful (a tag from an unauthenticated header would
/// let garbage fill the replay filter).
pub struct HeaderChecked {
    packet: SphinxPacket,
    secret: ExpandedSharedSecret,
}

impl fmt::Debug for HeaderChecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderChecked").finish_non_exhaustive()
    }
}

/// What processing a packet yields.
#[derive(Debug)]
pub enum Processed {
    /// Forward to the next node after `delay`.
    Forward {
        /// The next hop.
        next: NodeAddress,
        /// How long to hold the packet (from the header).
        delay: Duration,
        /// The packet for the next hop.
        packet: Vec<u8>,
    },
    /// This node is the final hop.
    Final {
        /// The recipient.
        destination: Destination,
        /// The payload as the recipient receives it: still layered for a
        /// SURB reply (see [`SurbRecovery::recover`]), or a forward
        /// message (see [`open_forward_payload`]).
        payload: Vec<u8>,
    },
}

/// Parses a packet and verifies its header MAC under `key`. Checks the
/// size before any cryptography.
pub fn check_header(packet: &[u8], key: &SphinxSecret) -> Result<HeaderChecked, SphinxError> {
    if packet.len() != SPHINX_PACKET_SIZE {
        return Err(SphinxError::WrongSize {
            got: packet.len(),
            expected: SPHINX_PACKET_SIZE,
        });
    }
    let packet = SphinxPacket::from_bytes(packet).map_err(map_err)?;
    let secret = packet.header.compute_expanded_shared_secret(&key.0);
    packet
        .header
        .ensure_header_integrity(&secret)
        .map_err(|_| SphinxError::HeaderMac)?;
    Ok(HeaderChecked { packet, secret })
}

impl HeaderChecked {
    /// The replay tag: the same for every copy of this packet at this hop.
    pub fn replay_tag(&self) -> [u8; 32] {
        *self.secret.replay_tag()
    }

    /// Unwraps one layer (no second Diffie-Hellman).
    pub fn process(self) -> Result<Processed, SphinxError> {
        let processed = self
            .packet
            .process_with_expanded_secret(&self.secret)
            .map_err(map_err)?;
        Ok(match processed.data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet,
                next_hop_address,
                delay,
            } => Processed::Forward {
                next: NodeAddress(*next_hop_address.as_bytes()),
                delay: delay.to_duration(),
                packet: next_hop_packet.to_bytes(),
            },
            ProcessedPacketData::FinalHop {
                destination,
                identifier,
                payload,
            } => Processed::Final {
                destination: Destination {
                    address: destination.as_bytes(),
                    surb_id: identifier,
                },
                payload: payload.into_bytes(),
            },
        })
    }
}

/// The message of a forward packet at its final hop.
pub fn open_forward_payload(payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
    Payload::from_bytes(payload)
        .and_then(Payload::recover_plaintext)
        .map_err(map_err)
}

/// A link frame: the key tag (the epoch of the Sphinx key the receiving
/// node must use, mod 256) and the packet.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Epoch number mod 256 of the key to use.
    pub key_tag: u8,
    /// The Sphinx packet.
    pub packet: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits a frame; refuses any other size before looking inside.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SphinxError> {
        if bytes.len() != FRAME_SIZE {
            return Err(SphinxError::WrongSize {
                got: bytes.len(),
                expected: FRAME_SIZE,
            });
        }
        Ok(Self {
            key_tag: bytes[0],
            packet: &bytes[1..],
        })
    }

    /// Encodes a frame.
    pub fn encode(key_tag: u8, packet: &[u8]) -> Result<Vec<u8>, SphinxError> {
        if packet.len() != SPHINX_PACKET_SIZE {
            return Err(SphinxError::WrongSize {
                got: packet.len(),
                expected: SPHINX_PACKET_SIZE,
            });
        }
        let mut out = Vec::with_capacity(FRAME_SIZE);
        out.push(key_tag);
        out.extend_from_slice(packet);
        Ok(out)
    }
}

const _: () = assert!(SURB_SIZE == 348 + 32 + 16);

#[cfg(test)]
mod tests;
