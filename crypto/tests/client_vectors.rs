//! `specs/vectors/client.json`: a mailbox id, a client address and an
//! envelope from fixed inputs. `MTOS_WRITE_VECTORS=1` rewrites the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::envelope::{self, ClientAddress, ENVELOPE_SIZE};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn compute() -> Value {
    let mailbox_secret = [0x4d; 32];
    let recipient_secret = [0x52; 32];
    let recipient =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(recipient_secret))
            .to_bytes();
    let address = ClientAddress {
        gateway: [0x47; 32],
        mailbox: envelope::mailbox_id(&mailbox_secret),
        key: recipient,
    };
    // The envelope's ephemeral key is drawn from this RNG by
    // `elligator2::generate` (a secret, a low-order component, a tweak,
    // until one has a representative).
    let mut rng = ChaCha20Rng::from_seed([0x45; 32]);
    let sealed = envelope::seal(&mut rng, &recipient, b"\x00hello, mtos").unwrap();
    // The Elligator2 map on its own: representatives with their high bits
    // set (which decoding masks), zero, all ones, and pseudo-random ones
    // (both of the map's branches among them), each with its point.
    let mut reps: Vec<[u8; 32]> = vec![[0; 32], [0xff; 32], [0xc0; 32]];
    let mut more = ChaCha20Rng::from_seed([0x4c; 32]);
    for i in 0..8u8 {
        let mut r = [0u8; 32];
        rand::RngExt::fill(&mut more, &mut r[..]);
        r[31] = (r[31] & 0x3f) | (i << 6);
        reps.push(r);
    }
    let map: Vec<Value> = reps
        .iter()
        .map(|r| json!({"representative": hex(r), "point": hex(&elligator2::from_representative(r))}))
        .collect();
    json!({
        "comment": "specs/client.md. The envelope's ephemeral key is elligator2::generate over ChaCha20Rng::from_seed([0x45; 32]); check_client.py opens it.",
        "mailbox_secret": hex(&mailbox_secret),
        "mailbox_id": hex(&address.mailbox),
        "recipient_secret": hex(&recipient_secret),
        "address": hex(&address.to_bytes()),
        "message": hex(b"\x00hello, mtos"),
        "envelope": hex(&sealed),
        "elligator2": map,
    })
}

#[test]
fn client_vectors_match_the_spec() {
    let computed = compute();
    mtos_crypto::vectors::check(
        "client.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
    let expected = computed;
    let bytes = |k: &str| {
        data_encoding::HEXLOWER
            .decode(expected[k].as_str().unwrap().as_bytes())
            .unwrap()
    };
    let sealed = bytes("envelope");
    assert_eq!(sealed.len(), ENVELOPE_SIZE);
    let secret: [u8; 32] = bytes("recipient_secret").try_into().unwrap();
    assert_eq!(envelope::open(&secret, &sealed).unwrap(), bytes("message"));
    let address = ClientAddress::from_bytes(&bytes("address")).unwrap();
    assert_eq!(address.mailbox.to_vec(), bytes("mailbox_id"));
}
