//! Reply payload vectors (`specs/vectors/reply_keys.json`, `client.md`
//! §5): the block's user adds one layer under the creator's seed, each hop
//! removes one under its own, and the creator's recovery material opens
//! the result. Re-derived independently by
//! `specs/vectors/check_replies.py`. `MTOS_WRITE_VECTORS=1` rewrites
//! the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE;
use mtos_crypto::sphinx::SurbRecovery;
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

const HOPS: [[u8; 16]; 4] = [[0x11; 16], [0x22; 16], [0x33; 16], [0x44; 16]];
const CREATOR: [u8; 16] = [0x5c; 16];
const ID: [u8; 16] = [0x01; 16];
const MESSAGE: &[u8] = b"\x00the answer, through a block no relay can match";

/// The vector computed with sphinx-packet and mtos's recovery.
fn compute() -> Value {
    let sent =
        Payload::encapsulate_message(MESSAGE, &[CREATOR], SPHINX_PAYLOAD_SIZE).expect("fits");
    let sent_sha = sha(sent.as_bytes());
    let mut payload = sent;
    let mut after = Vec::new();
    for seed in &HOPS {
        payload = payload.unwrap(derive_payload_key(seed)).unwrap();
        after.push(sha(payload.as_bytes()));
    }
    let mut material = vec![2u8];
    material.extend_from_slice(&ID);
    material.extend_from_slice(&CREATOR);
    for seed in &HOPS {
        material.extend_from_slice(seed);
    }
    let recovery = SurbRecovery::from_bytes(&material).unwrap();
    assert_eq!(recovery.to_bytes().as_slice(), &material[..]);
    assert_eq!(recovery.recover(payload.as_bytes()).unwrap(), MESSAGE);
    json!({
        "comment": "specs/client.md section 5: a reply's payload under a block whose carried seed is the creator's own (creator_seed), through four hops (hop_seeds, route order); recovery material = 02 || id || creator_seed || hop_seeds",
        "payload_size": SPHINX_PAYLOAD_SIZE,
        "id": hex(&ID),
        "hop_seeds": HOPS.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "creator_seed": hex(&CREATOR),
        "message": hex(MESSAGE),
        "recovery": hex(&material),
        "sent_payload_sha256": sent_sha,
        "after_hop_sha256": after,
    })
}

#[test]
fn reply_payloads_match_the_vectors() {
    let computed = serde_json::to_string_pretty(&compute()).unwrap();
    mtos_crypto::vectors::check("reply_keys.json", &computed).unwrap();
}

#[test]
fn recovery_material_of_another_form_is_refused() {
    let mut good = vec![2u8];
    good.extend_from_slice(&ID);
    good.extend_from_slice(&CREATOR);
    good.extend_from_slice(&HOPS.concat());
    assert!(SurbRecovery::from_bytes(&good).is_ok());
    // The library's own form (no version, no creator seed).
    let mut old = ID.to_vec();
    old.extend_from_slice(&HOPS.concat());
    assert!(SurbRecovery::from_bytes(&old).is_err());
    // No hop, a partial seed, more hops than a route has.
    assert!(SurbRecovery::from_bytes(&good[..1 + 16 + 16]).is_err());
    assert!(SurbRecovery::from_bytes(&good[..good.len() - 1]).is_err());
    let mut long = good.clone();
    long.extend_from_slice(&[0x66; 16 * 2]);
    assert!(SurbRecovery::from_bytes(&long).is_err());
    assert!(SurbRecovery::from_bytes(&[]).is_err());
}
