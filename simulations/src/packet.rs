//! The abstract packet format: the same routing, per-hop delays,
//! destinations and replay behaviour as Sphinx, carried in the clear, so a
//! simulation can skip the public-key work (about 80 µs per hop) while the
//! engine makes exactly the decisions it makes on real packets.

use std::time::Duration;

use mtos_crypto::geometry::MAX_PATH_LENGTH;
use mtos_crypto::sphinx::{Destination, NodeAddress, Processed};
use mtos_mixnode::{CheckError, PacketFormat};

/// Size of an abstract packet.
pub const ABSTRACT_PACKET_SIZE: usize = 8 + 1 + 1 + MAX_PATH_LENGTH * (4 + 8) + 4 + 16;

/// The simulator's node addresses: the node index in the first 4 bytes.
pub fn node_address(index: u32) -> NodeAddress {
    let mut a = [0u8; 32];
    a[..4].copy_from_slice(&index.to_be_bytes());
    a[31] = 0xab;
    NodeAddress(a)
}

/// The index back from an address.
pub fn node_index(address: &NodeAddress) -> Option<u32> {
    (address.0[31] == 0xab && address.0[4..31].iter().all(|b| *b == 0)).then(|| {
        let mut i = [0u8; 4];
        i.copy_from_slice(&address.0[..4]);
        u32::from_be_bytes(i)
    })
}

/// A client's destination address: the client index in the first 4 bytes.
pub fn client_address(index: u32) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..4].copy_from_slice(&index.to_be_bytes());
    a[31] = 0xcc;
    a
}

/// An abstract packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbstractPacket {
    /// Unique per packet in a run.
    pub id: u64,
    /// Index in `route` of the hop that processes it next.
    pub hop: u8,
    /// Node indices.
    pub route: Vec<u32>,
    /// Per-hop delays (the last one is not used, as in Sphinx).
    pub delays: Vec<Duration>,
    /// The destination client.
    pub destination: u32,
    /// SURB identifier (unused so far, zero).
    pub surb_id: [u8; 16],
}

impl AbstractPacket {
    /// Fixed-size encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ABSTRACT_PACKET_SIZE);
        encode_into(
            &mut out,
            self.id,
            self.hop,
            &self.route,
            &self.delays,
            self.destination,
            &self.surb_id,
        );
        out
    }

    /// Decodes; `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let p = CheckedAbstract::parse(b)?;
        Some(Self {
            id: p.u64_at(0),
            hop: p.0[HOP_AT],
            route: (0..p.len()).map(|i| p.route_at(i)).collect(),
            delays: (0..p.len()).map(|i| p.delay_at(i)).collect(),
            destination: p.u32_at(DEST_AT),
            surb_id: p.surb_id(),
        })
    }
}

/// Appends the fixed-size encoding of an abstract packet's fields to
/// `out` ([`AbstractPacket::encode`] without building one: a sender
/// writes its frame in place).
pub fn encode_into(
    out: &mut Vec<u8>,
    id: u64,
    hop: u8,
    route: &[u32],
    delays: &[Duration],
    destination: u32,
    surb_id: &[u8; 16],
) {
    out.extend_from_slice(&id.to_be_bytes());
    out.push(hop);
    out.push(route.len() as u8);
    for i in 0..MAX_PATH_LENGTH {
        out.extend_from_slice(&route.get(i).copied().unwrap_or(0).to_be_bytes());
    }
    for i in 0..MAX_PATH_LENGTH {
        let d = delays.get(i).copied().unwrap_or_default();
        out.extend_from_slice(
            &u64::try_from(d.as_nanos())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
    }
    out.extend_from_slice(&destination.to_be_bytes());
    out.extend_from_slice(surb_id);
}

/// The abstract format: a node's "key" is its own address; a packet is
/// "authentic" for the node its next hop names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Abstract;

/// An abstract packet well formed (length, route length, hop in the
/// route): its bytes, read in place (no allocation: the hot path of every
/// hop). [`AbstractPacket::decode`] reads its fields from it too.
#[derive(Debug, Clone)]
pub struct CheckedAbstract([u8; ABSTRACT_PACKET_SIZE]);

/// Byte offsets in an encoded abstract packet (the id is at 0).
const HOP_AT: usize = 8;
const LEN_AT: usize = 9;
const ROUTE_AT: usize = 10;
const DELAYS_AT: usize = ROUTE_AT + 4 * MAX_PATH_LENGTH;
const DEST_AT: usize = DELAYS_AT + 8 * MAX_PATH_LENGTH;

impl CheckedAbstract {
    /// `None` for anything malformed.
    fn parse(b: &[u8]) -> Option<Self> {
        let p = Self(b.try_into().ok()?);
        let n = p.len();
        (n > 0 && n <= MAX_PATH_LENGTH && p.hop() < n).then_some(p)
    }
    fn hop(&self) -> usize {
        usize::from(self.0[HOP_AT])
    }
    fn len(&self) -> usize {
        usize::from(self.0[LEN_AT])
    }
    fn route_at(&self, i: usize) -> u32 {
        self.u32_at(ROUTE_AT + 4 * i)
    }
    fn delay_at(&self, i: usize) -> Duration {
        Duration::from_nanos(self.u64_at(DELAYS_AT + 8 * i))
    }
    fn surb_id(&self) -> [u8; 16] {
        let mut surb_id = [0u8; 16];
        surb_id.copy_from_slice(&self.0[DEST_AT + 4..DEST_AT + 20]);
        surb_id
    }
    fn u32_at(&self, i: usize) -> u32 {
        let mut x = [0u8; 4];
        x.copy_from_slice(&self.0[i..i + 4]);
        u32::from_be_bytes(x)
    }
    fn u64_at(&self, i: usize) -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&self.0[i..i + 8]);
        u64::from_be_bytes(x)
    }
}

impl PacketFormat for Abstract {
    type Key = NodeAddress;
    type Checked = CheckedAbstract;
    const PACKET_SIZE: usize = ABSTRACT_PACKET_SIZE;

    fn check(packet: &[u8], key: &NodeAddress) -> Result<CheckedAbstract, CheckError> {
        let p = CheckedAbstract::parse(packet).ok_or(CheckError::Mac)?;
        if node_address(p.route_at(p.hop())) != *key {
            return Err(CheckError::Mac);
        }
        Ok(p)
    }

    fn replay_tag(p: &CheckedAbstract) -> [u8; 32] {
        // The id and the hop: the same for every copy at this hop, and
        // uniformly spread, as the replay filter needs (it takes a tag's
        // bits as they are). A SplitMix64 stream from them, not a
        // cryptographic hash: nothing here is secret or chosen by an
        // adversary, and blake3 was 9% of a large run's time.
        let key = (p.u64_at(0) << 8) | u64::from(p.0[HOP_AT]);
        let mut state = split_mix(key ^ 0x6d74_6f73_2d73_696d);
        let mut tag = [0u8; 32];
        for word in tag.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            word.copy_from_slice(&split_mix(state).to_le_bytes());
        }
        tag
    }

    fn process(mut p: CheckedAbstract) -> Result<Processed, CheckError> {
        let hop = p.hop();
        if hop + 1 < p.len() {
            let next = node_address(p.route_at(hop + 1));
            let delay = p.delay_at(hop);
            p.0[HOP_AT] += 1;
            // Room for the key tag the engine puts in front of it.
            let mut packet = Vec::with_capacity(1 + ABSTRACT_PACKET_SIZE);
            packet.extend_from_slice(&p.0);
            Ok(Processed::Forward {
                next,
                delay,
                packet,
            })
        } else {
            Ok(Processed::Final {
                destination: Destination {
                    address: client_address(p.u32_at(DEST_AT)),
                    surb_id: p.surb_id(),
                },
                payload: p.0[..8].to_vec(),
            })
        }
    }
}

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection
/// of u64 whose outputs pass BigCrush as a stream.
fn split_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_routing() {
        let p = AbstractPacket {
            id: 42,
            hop: 0,
            route: vec![3, 7, 9],
            delays: vec![Duration::from_millis(5); 3],
            destination: 11,
            surb_id: [0; 16],
        };
        let b = p.encode();
        assert_eq!(b.len(), ABSTRACT_PACKET_SIZE);
        assert_eq!(AbstractPacket::decode(&b).unwrap(), p);
        assert!(Abstract::check(&b, &node_address(7)).is_err());
        let c = Abstract::check(&b, &node_address(3)).unwrap();
        match Abstract::process(c).unwrap() {
            Processed::Forward { next, delay, .. } => {
                assert_eq!(node_index(&next), Some(7));
                assert_eq!(delay, Duration::from_millis(5));
            }
            Processed::Final { .. } => panic!("not final"),
        }
    }

    /// A replay tag is the same for every copy of a packet at a hop,
    /// differs between hops and packets, and its bits are evenly spread
    /// (the replay filter takes them as they are: its first 64 bits pick
    /// a block, the rest the positions in it).
    #[test]
    fn replay_tags_are_per_packet_and_hop_and_evenly_spread() {
        let tag = |id: u64, hop: u8| {
            let p = AbstractPacket {
                id,
                hop,
                route: vec![1, 2, 3],
                delays: vec![Duration::ZERO; 3],
                destination: 4,
                surb_id: [0; 16],
            };
            Abstract::replay_tag(&CheckedAbstract::parse(&p.encode()).unwrap())
        };
        assert_eq!(tag(7, 1), tag(7, 1));
        assert_ne!(tag(7, 1), tag(7, 2));
        assert_ne!(tag(7, 1), tag(8, 1));
        let n = 20_000u64;
        let mut ones = [0u32; 256];
        let mut blocks = [0u32; 16];
        for id in 0..n {
            let t = tag(id, (id % 3) as u8);
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += u32::from(t[bit / 8] >> (bit % 8) & 1);
            }
            let first = u64::from_le_bytes(t[..8].try_into().unwrap());
            blocks[(first % 16) as usize] += 1;
        }
        // Each bit is set in half the tags: within 5 standard deviations
        // (sd = sqrt(n)/2 ≈ 71).
        for (bit, count) in ones.iter().enumerate() {
            assert!(count.abs_diff(10_000) < 355, "bit {bit}: {count}");
        }
        // Blocks are picked evenly (sd = sqrt(n·(1/16)(15/16)) ≈ 34).
        for count in blocks {
            assert!(count.abs_diff(1_250) < 170, "{blocks:?}");
        }
    }
}
