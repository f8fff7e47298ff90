//! Sphinx processing vectors (`specs/vectors/sphinx.json`): a fixed packet
//! and fixed node keys give fixed outputs at every hop. The packet itself
//! is stored, not rebuilt: `sphinx-packet` draws the final hop's padding
//! from its own RNG. `MTOS_WRITE_VECTORS=1` writes the file when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use mtos_crypto::sphinx::{
    self, Destination, Frame, Hop, NodeAddress, Processed, SphinxSecret, build_forward,
};
use serde_json::{Value, json};

fn path() -> PathBuf {
    mtos_crypto::vectors::path("sphinx.json")
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex(v: &Value) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(v.as_str().unwrap().as_bytes())
        .unwrap()
}

fn keys() -> Vec<SphinxSecret> {
    (1..=3u8)
        .map(|i| SphinxSecret::from_bytes([i * 0x11; 32]))
        .collect()
}

fn write() {
    let keys = keys();
    let route: Vec<Hop> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Hop {
            address: NodeAddress([0xa0 + i as u8; 32]),
            sphinx_key: k.public(),
        })
        .collect();
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed([0x5f; 32]);
    let dest = Destination {
        address: [0xd5; 32],
        surb_id: [0; 16],
    };
    let delays = [
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(30),
    ];
    let packet = build_forward(&mut rng, &route, &dest, &delays, b"mtos sphinx vector").unwrap();
    let frame = Frame::encode(7, &packet).unwrap();
    std::fs::write(
        path(),
        serde_json::to_string_pretty(&json!({
            "node_secrets": keys.iter().map(|k| hex(k.to_bytes().as_ref())).collect::<Vec<_>>(),
            "node_publics": keys.iter().map(|k| hex(&k.public())).collect::<Vec<_>>(),
            "node_addresses": route.iter().map(|h| hex(&h.address.0)).collect::<Vec<_>>(),
            "frame": hex(&frame),
            "expected": expected(&frame, &keys),
        }))
        .unwrap()
            + "\n",
    )
    .unwrap();
}

/// What each hop does with the packet.
fn expected(frame: &[u8], keys: &[SphinxSecret]) -> Value {
    let parsed = Frame::parse(frame).unwrap();
    let mut packet = parsed.packet.to_vec();
    let mut hops = Vec::new();
    for key in keys {
        let checked = sphinx::check_header(&packet, key).unwrap();
        let tag = checked.replay_tag();
        match checked.process().unwrap() {
            Processed::Forward {
                next,
                delay,
                packet: p,
            } => {
                hops.push(json!({
                    "replay_tag": hex(&tag),
                    "next": hex(&next.0),
                    "delay_ns": delay.as_nanos() as u64,
                    "next_packet_blake3": hex(blake3_of(&p).as_slice()),
                }));
                packet = p;
            }
            Processed::Final {
                destination,
                payload,
            } => {
                hops.push(json!({
                    "replay_tag": hex(&tag),
                    "destination": hex(&destination.address),
                    "surb_id": hex(&destination.surb_id),
                    "message": String::from_utf8(sphinx::open_forward_payload(&payload).unwrap()).unwrap(),
                }));
            }
        }
    }
    json!({ "key_tag": parsed.key_tag, "hops": hops })
}

fn blake3_of(b: &[u8]) -> Vec<u8> {
    // The crypto crate's locator is BLAKE3: reuse it rather than add a
    // dependency here.
    mtos_crypto::item::Locator::of(b).as_bytes().to_vec()
}

#[test]
fn sphinx_processing_vectors() {
    if std::env::var_os("MTOS_WRITE_VECTORS").is_some() && !path().exists() {
        write();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let keys: Vec<SphinxSecret> = v["node_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SphinxSecret::from_bytes(unhex(s).try_into().unwrap()))
        .collect();
    for (k, p) in keys.iter().zip(v["node_publics"].as_array().unwrap()) {
        assert_eq!(&hex(&k.public()), p);
    }
    let frame = unhex(&v["frame"]);
    assert_eq!(frame.len(), sphinx::FRAME_SIZE);
    assert_eq!(expected(&frame, &keys), v["expected"]);
}
