//! Abstract and real packets: how the simulator builds a packet and
//! reads a delivered message's id, the only difference between the two
//! packet modes.

use super::*;

/// Builds packets and reads message ids: the only difference between
/// abstract and real runs.
pub trait Mode {
    /// The engine's packet format.
    type Format: PacketFormat;
    /// Keys for `nodes` nodes.
    fn new(nodes: u32, seed: u64) -> Self;
    /// Node `i`'s key.
    fn key(&self, node: u32) -> <Self::Format as PacketFormat>::Key;
    /// A packet with this id along `route` (node indices) to `dest`, in
    /// a link frame of `epoch`: the key tag of the epoch it is sent in,
    /// then the packet.
    fn build_frame(
        &mut self,
        id: u64,
        route: &[u32],
        delays: &[Duration],
        dest: u32,
        epoch: u32,
    ) -> Vec<u8>;
    /// The id of a delivered payload.
    fn message_id(payload: &[u8]) -> Option<u64>;
    /// The id of the packet in a link frame, where the format shows it
    /// (abstract packets: what a held node knows of its own packets).
    fn frame_id(frame: &[u8]) -> Option<u64>;
}

/// Abstract packets.
#[derive(Debug)]
pub struct AbstractMode;

impl Mode for AbstractMode {
    type Format = Abstract;
    fn new(_nodes: u32, _seed: u64) -> Self {
        Self
    }
    fn key(&self, node: u32) -> mtos_crypto::sphinx::NodeAddress {
        node_address(node)
    }
    // Written in place: the hot path of every send.
    fn build_frame(
        &mut self,
        id: u64,
        route: &[u32],
        delays: &[Duration],
        dest: u32,
        epoch: u32,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + crate::packet::ABSTRACT_PACKET_SIZE);
        out.push((epoch % 256) as u8);
        crate::packet::encode_into(&mut out, id, 0, route, delays, dest, &[0; 16]);
        out
    }
    fn message_id(payload: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
    }
    fn frame_id(frame: &[u8]) -> Option<u64> {
        // A key-tag byte, then the packet, whose first 8 bytes are its id.
        if frame.len() != 1 + crate::packet::ABSTRACT_PACKET_SIZE {
            return None;
        }
        Some(u64::from_be_bytes(frame.get(1..9)?.try_into().ok()?))
    }
}

/// Real Sphinx packets.
#[derive(Debug)]
pub struct RealMode {
    secrets: Vec<SphinxSecret>,
    hops: Vec<Hop>,
    crypto: ChaCha20Rng,
}

impl Mode for RealMode {
    type Format = Sphinx;
    fn new(nodes: u32, seed: u64) -> Self {
        let mut rng = component_rng(seed, "node keys", 0);
        let secrets: Vec<SphinxSecret> = (0..nodes)
            .map(|_| SphinxSecret::generate(&mut rng))
            .collect();
        let hops = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| Hop {
                address: node_address(i as u32),
                sphinx_key: s.public(),
            })
            .collect();
        Self {
            secrets,
            hops,
            // Crypto randomness is its own stream, so real and abstract runs
            // make the same routing and delay draws.
            crypto: component_rng(seed, "packet crypto", 0),
        }
    }
    fn key(&self, node: u32) -> SphinxSecret {
        self.secrets[node as usize].clone()
    }
    fn build_frame(
        &mut self,
        id: u64,
        route: &[u32],
        delays: &[Duration],
        dest: u32,
        epoch: u32,
    ) -> Vec<u8> {
        let hops: Vec<Hop> = route.iter().map(|n| self.hops[*n as usize]).collect();
        let destination = Destination {
            address: client_address(dest),
            surb_id: [0; 16],
        };
        let packet = build_forward(
            &mut self.crypto,
            &hops,
            &destination,
            delays,
            &id.to_be_bytes(),
        )
        .unwrap_or_default();
        let mut frame = Vec::with_capacity(1 + packet.len());
        frame.push((epoch % 256) as u8);
        frame.extend_from_slice(&packet);
        frame
    }
    fn message_id(payload: &[u8]) -> Option<u64> {
        let m = sphinx::open_forward_payload(payload).ok()?;
        Some(u64::from_be_bytes(m.get(..8)?.try_into().ok()?))
    }
    fn frame_id(_frame: &[u8]) -> Option<u64> {
        None
    }
}
