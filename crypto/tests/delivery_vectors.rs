//! Delivery payload vectors (`specs/vectors/deliveries.json`,
//! `client.md` §2, `sphinx.md` §1): a delivery is an envelope and random
//! padding, sent raw under one layer per hop, so its final hop receives
//! exactly those bytes. Re-derived independently by
//! `specs/vectors/check_replies.py`. `MTOS_WRITE_VECTORS=1` rewrites
//! the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::envelope;
use mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE;
use mtos_crypto::sphinx::layer_payload;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sphinx_packet::payload::Payload;
use sphinx_packet::payload::key::derive_payload_key;

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

const HOPS: [[u8; 16]; 5] = [[0x61; 16], [0x62; 16], [0x63; 16], [0x64; 16], [0x65; 16]];
const RECIPIENT_SECRET: [u8; 32] = [0x2a; 32];
const MESSAGE: &[u8] = b"\x00a delivery its gateway cannot tell from a reply";

fn compute() -> Value {
    let mut rng = ChaCha20Rng::seed_from_u64(260);
    let recipient =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(RECIPIENT_SECRET))
            .to_bytes();
    let delivery = envelope::seal_delivery(&mut rng, &recipient, MESSAGE).unwrap();
    assert_eq!(delivery.len(), SPHINX_PAYLOAD_SIZE);
    assert_eq!(
        envelope::open_delivery(&RECIPIENT_SECRET, &delivery).unwrap(),
        MESSAGE
    );
    let sent = layer_payload(&delivery, HOPS.iter()).unwrap();
    let mut payload = Payload::from_bytes(&sent).unwrap();
    let mut after = Vec::new();
    for seed in &HOPS {
        payload = payload.unwrap(derive_payload_key(seed)).unwrap();
        after.push(sha(payload.as_bytes()));
    }
    assert_eq!(payload.as_bytes(), &delivery[..]);
    json!({
        "comment": "specs/client.md section 2, specs/sphinx.md section 1: a delivery payload (envelope || 17 random bytes) layered for five hops (hop_seeds, route order); each hop removes its layer and the last leaves the delivery itself",
        "payload_size": SPHINX_PAYLOAD_SIZE,
        "hop_seeds": HOPS.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "recipient_secret": hex(&RECIPIENT_SECRET),
        "message": hex(MESSAGE),
        "delivery": hex(&delivery),
        "sent_payload_sha256": sha(&sent),
        "after_hop_sha256": after,
    })
}

#[test]
fn delivery_payloads_match_the_vectors() {
    let computed = serde_json::to_string_pretty(&compute()).unwrap();
    mtos_crypto::vectors::check("deliveries.json", &computed).unwrap();
}
