//! A reply block's user and the block's last hop cannot match a reply to
//! the block's creator (`specs/client.md` §5). The attack, written out:
//! one service node answers 200 requests from 10 clients through their
//! reply blocks; the clients' shared gateway, the blocks' last hop, sees
//! every reply arrive and whose mailbox it goes to. Together they try to
//! pair each answer with the client that asked, from everything both see
//! except timing (the replies reach the gateway shuffled). Against blocks
//! that carry the last hop's payload key seed (sphinx-packet's version 260
//! as built), they pair all 200; against mtos's blocks, whose seed is the
//! creator's own, no better than chance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mtos_crypto::sphinx::{
    Hop, NodeAddress, Processed, SEED_LEN, SphinxSecret, build_surb, check_header, use_surb,
};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sphinx_packet::SphinxPacket;
use sphinx_packet::payload::Payload;
use sphinx_packet::payload::key::derive_payload_key;

const CLIENTS: usize = 10;
const PER_CLIENT: usize = 20;

/// What the service node keeps of one answer: the seed the block
/// carried, the payload it sent, and which request it answered.
struct Answer {
    carried_seed: [u8; SEED_LEN],
    request: usize,
}

/// What the gateway keeps of one delivery: the payload key seed it
/// derived processing the reply, the delivered payload, and the client.
struct Delivery {
    gateway_seed: [u8; SEED_LEN],
    payload: Vec<u8>,
    client: usize,
}

/// Runs the exchange: `build` makes each client's block over
/// `L1 -> L2 -> L3 -> gateway`. Returns what each colluder saw, and the
/// true requester of each request.
fn exchange(
    build: impl Fn(&mut ChaCha20Rng, &[Hop], [u8; 32], [u8; 16]) -> Vec<u8>,
) -> (Vec<Answer>, Vec<Delivery>, Vec<usize>) {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let secrets: Vec<SphinxSecret> = (0..4).map(|_| SphinxSecret::generate(&mut rng)).collect();
    let hops: Vec<Hop> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Hop {
            address: NodeAddress([i as u8 + 1; 32]),
            sphinx_key: s.public(),
        })
        .collect();
    let gateway_key = x25519_dalek::StaticSecret::from(*secrets[3].to_bytes());
    let mut answers = Vec::new();
    let mut packets = Vec::new();
    let mut requester = Vec::new();
    for client in 0..CLIENTS {
        for _ in 0..PER_CLIENT {
            let mut id = [0u8; 16];
            rng.fill(&mut id[..]);
            id[0] |= 1;
            let mailbox = [client as u8 + 100; 32];
            let block = build(&mut rng, &hops, mailbox, id);
            // The service node answers through the block.
            let request = requester.len();
            requester.push(client);
            let carried_seed: [u8; SEED_LEN] = block[block.len() - SEED_LEN..].try_into().unwrap();
            let (packet, _) = use_surb(&block, format!("answer {request}").as_bytes()).unwrap();
            answers.push(Answer {
                carried_seed,
                request,
            });
            packets.push(packet);
        }
    }
    // Timing is the simulator's to measure: the gateway sees the replies
    // in an order unrelated to the service node's.
    packets.shuffle(&mut rng);
    let mut deliveries = Vec::new();
    for mut packet in packets {
        for (i, secret) in secrets.iter().enumerate() {
            if i == 3 {
                // The gateway's view of its own hop.
                let parsed = SphinxPacket::from_bytes(&packet).unwrap();
                let expanded = parsed.header.compute_expanded_shared_secret(&gateway_key);
                let gateway_seed = *expanded.payload_key_seed();
                match check_header(&packet, secret).unwrap().process().unwrap() {
                    Processed::Final {
                        destination,
                        payload,
                    } => deliveries.push(Delivery {
                        gateway_seed,
                        payload,
                        client: usize::from(destination.address[0] - 100),
                    }),
                    Processed::Forward { .. } => panic!("the gateway is the last hop"),
                }
                break;
            }
            match check_header(&packet, secret).unwrap().process().unwrap() {
                Processed::Forward { packet: p, .. } => packet = p,
                Processed::Final { .. } => panic!("too early"),
            }
        }
    }
    (answers, deliveries, requester)
}

/// The colluders' best pairing: a delivery and an answer are linked when
/// the gateway's seed is the seed the block carried, or when removing one
/// layer under the carried seed opens the delivered payload (its 16 zero
/// bytes appear). An answer linked to no delivery is attributed to a
/// random client. Returns how many requests were attributed correctly.
fn attack(answers: &[Answer], deliveries: &[Delivery], requester: &[usize]) -> usize {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut correct = 0;
    for a in answers {
        let linked = deliveries.iter().find(|d| {
            d.gateway_seed == a.carried_seed || {
                let key = derive_payload_key(&a.carried_seed);
                Payload::from_bytes(&d.payload)
                    .and_then(|p| p.unwrap(key))
                    .is_ok_and(|p| p.as_bytes()[..16] == [0u8; 16])
            }
        });
        let guess = match linked {
            Some(d) => d.client,
            None => rng.random_range(0..CLIENTS),
        };
        if guess == requester[a.request] {
            correct += 1;
        }
    }
    correct
}

#[test]
fn a_colluding_block_user_and_last_hop_cannot_match_replies_to_requesters() {
    let (answers, deliveries, requester) = exchange(|rng, hops, mailbox, id| {
        build_surb(rng, hops, &mailbox, id, &[Duration::ZERO; 4])
            .unwrap()
            .0
    });
    let n = answers.len() as f64;
    let p = 1.0 / CLIENTS as f64;
    let bound = n * p + 3.0 * (n * p * (1.0 - p)).sqrt();
    let correct = attack(&answers, &deliveries, &requester);
    assert!(
        (correct as f64) <= bound,
        "{correct} of {n} replies matched (chance: {})",
        n * p
    );
    // No block carries a seed any hop derives.
    for d in &deliveries {
        assert!(answers.iter().all(|a| a.carried_seed != d.gateway_seed));
    }
}

#[test]
fn the_same_attack_matches_every_reply_on_blocks_carrying_the_last_hops_seed() {
    // The block exactly as sphinx-packet builds it (version 260), which is
    // what mtos sent before: the attack is real.
    let (answers, deliveries, requester) = exchange(|rng, hops, mailbox, id| {
        use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
        use sphinx_packet::version::SINGLE_SEED_SURB_VERSION;
        use sphinx_packet::{SURB, SURBMaterial};
        let nodes = hops
            .iter()
            .map(|h| {
                Node::new(
                    NodeAddressBytes::from_bytes(h.address.0),
                    x25519_dalek::PublicKey::from(h.sphinx_key),
                )
            })
            .collect();
        let delays = vec![sphinx_packet::header::delays::Delay::new_from_nanos(0); 4];
        let material = SURBMaterial::new(
            nodes,
            delays,
            Destination::new(DestinationAddressBytes::from_bytes(mailbox), id),
            SINGLE_SEED_SURB_VERSION,
        );
        let secret = x25519_dalek::StaticSecret::from(*SphinxSecret::generate(rng).to_bytes());
        SURB::new_recoverable(secret, material)
            .unwrap()
            .0
            .to_bytes()
    });
    assert_eq!(attack(&answers, &deliveries, &requester), answers.len());
}
