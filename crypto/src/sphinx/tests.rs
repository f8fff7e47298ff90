//! Packets, frames and reply blocks through the adapter.

use super::*;
use crate::geometry::SPHINX_HEADER_SIZE;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

struct Net {
    secrets: Vec<SphinxSecret>,
    hops: Vec<Hop>,
}

fn net(n: usize, seed: u8) -> Net {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let secrets: Vec<SphinxSecret> = (0..n).map(|_| SphinxSecret::generate(&mut rng)).collect();
    let hops = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Hop {
            address: NodeAddress([i as u8 + 1; 32]),
            sphinx_key: s.public(),
        })
        .collect();
    Net { secrets, hops }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A packet carried through `net`'s nodes in route order: what each hop
/// forwarded (next hop, delay, packet), and what the one that was the
/// final hop delivered.
struct Carried {
    forwards: Vec<(NodeAddress, Duration, Vec<u8>)>,
    destination: Destination,
    payload: Vec<u8>,
}

fn carry(net: &Net, mut packet: Vec<u8>) -> Carried {
    let mut forwards = Vec::new();
    for secret in &net.secrets {
        match check_header(&packet, secret).unwrap().process().unwrap() {
            Processed::Forward {
                next,
                delay,
                packet: p,
            } => {
                forwards.push((next, delay, p.clone()));
                packet = p;
            }
            Processed::Final {
                destination,
                payload,
            } => {
                return Carried {
                    forwards,
                    destination,
                    payload,
                };
            }
        }
    }
    panic!("never reached the final hop");
}

#[test]
fn forward_packet_through_five_hops() {
    let net = net(5, 1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let dest = Destination {
        address: [9; 32],
        surb_id: [0; 16],
    };
    let delays = [ms(1), ms(2), ms(3), ms(4), ms(5)];
    let packet = build_forward(&mut rng, &net.hops, &dest, &delays, b"hello").unwrap();
    assert_eq!(packet.len(), SPHINX_PACKET_SIZE);
    let carried = carry(&net, packet);
    assert_eq!(carried.forwards.len(), 4);
    for (i, (next, delay, _)) in carried.forwards.iter().enumerate() {
        assert_eq!(*next, net.hops[i + 1].address);
        assert_eq!(*delay, delays[i]);
    }
    assert_eq!(carried.destination, dest);
    assert_eq!(open_forward_payload(&carried.payload).unwrap(), b"hello");
}

#[test]
fn wrong_key_and_wrong_size_are_refused() {
    let net = net(3, 3);
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let dest = Destination {
        address: [9; 32],
        surb_id: [0; 16],
    };
    let packet = build_forward(&mut rng, &net.hops, &dest, &[ms(0); 3], b"x").unwrap();
    assert!(matches!(
        check_header(&packet, &net.secrets[1]),
        Err(SphinxError::HeaderMac)
    ));
    assert!(matches!(
        check_header(&packet[1..], &net.secrets[0]),
        Err(SphinxError::WrongSize { .. })
    ));
    assert!(Frame::parse(&packet).is_err());
    let frame = Frame::encode(7, &packet).unwrap();
    let parsed = Frame::parse(&frame).unwrap();
    assert_eq!(parsed.key_tag, 7);
    assert_eq!(parsed.packet, &packet[..]);
}

#[test]
fn surb_reply_reaches_its_creator() {
    let net = net(4, 5);
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let id = [0x42; 16];
    let (surb, recovery) = build_surb(&mut rng, &net.hops, &[7; 32], id, &[ms(1); 4]).unwrap();
    assert_eq!(surb.len(), SURB_SIZE);
    let (packet, first) = use_surb(&surb, b"the reply").unwrap();
    assert_eq!(first, net.hops[0].address);
    let carried = carry(&net, packet);
    assert_eq!(carried.destination.surb_id, id);
    assert_eq!(recovery.recover(&carried.payload).unwrap(), b"the reply");
    let again = SurbRecovery::from_bytes(&recovery.to_bytes()).unwrap();
    assert_eq!(again.recover(&carried.payload).unwrap(), b"the reply");
}

#[test]
fn a_raw_payload_reaches_the_final_hop_byte_for_byte() {
    let net = net(5, 11);
    let mut rng = ChaCha20Rng::from_seed([12; 32]);
    let dest = Destination {
        address: [9; 32],
        surb_id: [0x5a; 16],
    };
    let mut raw = vec![0u8; SPHINX_PAYLOAD_SIZE];
    rng.fill_bytes(&mut raw);
    let packet = build_forward_raw(&mut rng, &net.hops, &dest, &[ms(1); 5], &raw).unwrap();
    assert_eq!(packet.len(), SPHINX_PACKET_SIZE);
    let carried = carry(&net, packet);
    assert_eq!(carried.forwards.len(), 4);
    // No hop sees the payload it will deliver.
    for (_, _, p) in &carried.forwards {
        assert_ne!(&p[SPHINX_PACKET_SIZE - SPHINX_PAYLOAD_SIZE..], &raw[..]);
    }
    assert_eq!(carried.destination, dest);
    assert_eq!(carried.payload, raw);
}

#[test]
fn raw_layering_is_the_librarys_own() {
    // Built from the same seed, a raw payload holding sphinx-packet's
    // own encoding (16 zero bytes, the message, 0x01, zeros) gives the
    // payload the library builds: the hop keys are its keys.
    let net = net(3, 13);
    let dest = Destination {
        address: [3; 32],
        surb_id: [0; 16],
    };
    let mut encoded = vec![0u8; SPHINX_PAYLOAD_SIZE];
    encoded[16..21].copy_from_slice(b"hello");
    encoded[21] = 1;
    let ours = build_forward_raw(
        &mut ChaCha20Rng::from_seed([14; 32]),
        &net.hops,
        &dest,
        &[ms(2); 3],
        &encoded,
    )
    .unwrap();
    let theirs = build_forward(
        &mut ChaCha20Rng::from_seed([14; 32]),
        &net.hops,
        &dest,
        &[ms(2); 3],
        b"hello",
    )
    .unwrap();
    // The same initial secret (the header's first 32 bytes), and the
    // same payload bytes; the rest of the header differs, since the
    // library pads routing information from its own RNG.
    assert_eq!(ours[..32], theirs[..32]);
    assert_eq!(ours[SPHINX_HEADER_SIZE..], theirs[SPHINX_HEADER_SIZE..]);
    let short = build_forward_raw(
        &mut ChaCha20Rng::from_seed([1; 32]),
        &net.hops,
        &dest,
        &[ms(2); 3],
        &encoded[1..],
    );
    assert!(matches!(short, Err(SphinxError::WrongSize { .. })));
}

#[test]
fn packets_use_seeded_payload_keys() {
    assert!(!PACKET_VERSION.expects_legacy_full_payload_keys());
}

#[test]
fn same_seed_same_replay_tags_and_delays() {
    let net = net(3, 7);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let tag = |seed: u8| {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let delays: Vec<Duration> = (0..3)
            .map(|_| sample_exponential(&mut rng, ms(50)))
            .collect();
        let p = build_forward(&mut rng, &net.hops, &dest, &delays, b"m").unwrap();
        (
            check_header(&p, &net.secrets[0]).unwrap().replay_tag(),
            delays,
        )
    };
    assert_eq!(tag(1), tag(1));
    assert_ne!(tag(1).0, tag(2).0);
}
