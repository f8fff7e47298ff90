//! `specs/vectors/session_work.json`: the work a client shows to open a
//! session, from fixed inputs. `MTOS_WRITE_VECTORS=1` rewrites the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::work::{WorkFor, leading_zero_bits, session_work, solve_session_work};
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn compute() -> Value {
    // A client's PeerId in binary form: an identity multihash of a
    // protobuf-encoded ed25519 key (38 bytes), and an empty one.
    let mut peer = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    peer.extend_from_slice(&[0x50; 32]);
    let cases: Vec<Value> = [
        ([0x47u8; 32], 7u32, [0x4du8; 32], peer.clone(), 8u32, 0u64),
        ([0x47; 32], 8, [0x4d; 32], peer.clone(), 16, 0),
        (
            [0x11; 32],
            0xdead_beef,
            [0x22; 32],
            Vec::new(),
            12,
            u64::MAX - 5,
        ),
    ]
    .iter()
    .map(|(gateway, epoch, mailbox, client, bits, start)| {
        let (bits, start) = (*bits, *start);
        let w = WorkFor {
            gateway,
            epoch: *epoch,
            mailbox,
            client,
        };
        let first = solve_session_work(w, bits, 0);
        // Checked from a start just before the solution (the Python
        // re-derivation walks from `start` to it), or from the given one.
        let start = if bits == 16 {
            first.saturating_sub(500)
        } else {
            start
        };
        let nonce = solve_session_work(w, bits, start);
        let hash = session_work(w, nonce);
        let before = session_work(w, nonce.wrapping_sub(1));
        json!({
            "gateway": hex(gateway),
            "epoch": epoch,
            "mailbox": hex(mailbox),
            "client": hex(client),
            "bits": bits,
            "start": start.to_string(),
            "nonce": nonce.to_string(),
            "hash": hex(&hash),
            "leading_zero_bits": leading_zero_bits(&hash),
            "previous_nonce_hash": hex(&before),
        })
    })
    .collect();
    json!({
        "comment": "specs/client.md section 3: work = BLAKE3 derive_key(\"mtos-session-work-v1\", gateway || epoch (4, BE) || mailbox || len(client) (1) || client || nonce (8, BE)), client being the client's PeerId in binary form; valid with at least `bits` leading zero bits. `nonce` is the first valid one from `start` (wrapping); check_client.py re-derives every hash.",
        "cases": cases,
    })
}

#[test]
fn session_work_vectors_match_the_spec() {
    let computed = compute();
    mtos_crypto::vectors::check(
        "session_work.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
    for c in computed["cases"].as_array().unwrap() {
        assert!(c["leading_zero_bits"].as_u64().unwrap() >= c["bits"].as_u64().unwrap());
    }
}
