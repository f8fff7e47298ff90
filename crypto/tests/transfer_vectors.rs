//! Checks short-code transfer (`specs/transfer.md`) against
//! `specs/vectors/transfer.json`: codes, rendezvous seeds and locators,
//! the SPAKE2 elements from fixed entropy, and each side's sealed frames.
//! `vectors/check_transfer.py` re-derives the same file with python-spake2.
//!
//! Run with `MTOS_WRITE_VECTORS=1` to regenerate it after a deliberate,
//! specified change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::transfer::{
    BODY_LEN, Code, ELEMENT_LEN, Pake, Purpose, Reassembly, Rendezvous, Role, element_of,
    invite_body,
};
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex(v: &Value) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(v.as_str().unwrap().as_bytes())
        .unwrap()
}

fn pattern(fill: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_mul(i as u8).wrapping_add(fill))
        .collect()
}

fn case(
    purpose: Purpose,
    code_text: &str,
    epoch: u64,
    a_payload: &[u8],
    b_payload: &[u8],
) -> Value {
    let code = Code::parse(purpose, code_text).unwrap();
    let at = Rendezvous {
        purpose,
        epoch,
        channel: code.channel(),
    };
    let ea: [u8; 64] = pattern(0x11, 64).try_into().unwrap();
    let eb: [u8; 64] = pattern(0x23, 64).try_into().unwrap();
    let a = Pake::start(&code, at, Role::Inviter, &ea);
    let b = Pake::start(&code, at, Role::Accepter, &eb);
    let (el_a, el_b) = (a.element(), b.element());
    let fill: [u8; BODY_LEN - ELEMENT_LEN] =
        pattern(0x5b, BODY_LEN - ELEMENT_LEN).try_into().unwrap();
    let (ka, kb) = (a.finish(&el_b).unwrap(), b.finish(&el_a).unwrap());
    let bodies = |k: &mtos_crypto::transfer::Keys, p: &[u8]| -> Vec<Value> {
        k.seal(p)
            .unwrap()
            .into_iter()
            .map(|(slot, body)| json!({"slot": slot, "body": hex(&body)}))
            .collect()
    };
    let role_json = |role: Role| {
        json!({
            "seed": hex(&at.seed(role)),
            "locators": (0..2).map(|n| hex(at.locator(role, n).unwrap().as_bytes())).collect::<Vec<_>>(),
        })
    };
    json!({
        "purpose": purpose.to_byte(),
        "code": code.to_string(),
        "typed": code_text,
        "epoch": epoch,
        "channel": code.channel(),
        "inviter": role_json(Role::Inviter),
        "accepter": role_json(Role::Accepter),
        "entropy_inviter": hex(&ea),
        "entropy_accepter": hex(&eb),
        "element_inviter": hex(&el_a),
        "element_accepter": hex(&el_b),
        "invite_fill": hex(&fill),
        "invite_body": hex(&invite_body(&el_a, &fill)),
        "payload_inviter": hex(a_payload),
        "payload_accepter": hex(b_payload),
        "frames_inviter": bodies(&ka, a_payload),
        "frames_accepter": bodies(&kb, b_payload),
    })
}

fn compute() -> Value {
    json!({
        "cases": [
            case(Purpose::Contact, "7-guitar-orbit", 20_000, b"inviter's card", b"accepter's card"),
            case(Purpose::Contact, "904113 Zoo ABAN", 1, b"", &pattern(0x37, 2500)),
            case(Purpose::Keys, "31-abandon-ability-able-zoo", 20_001, b"", &pattern(0x41, 1200)),
        ]
    })
}

fn path() -> std::path::PathBuf {
    mtos_crypto::vectors::path("transfer.json")
}

#[test]
fn transfer_vectors_match_the_spec() {
    let computed = compute();
    if std::env::var_os("MTOS_WRITE_VECTORS").is_some() {
        std::fs::write(
            path(),
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    assert_eq!(computed, expected);
}

/// Each side reads the other's frames from the vector file alone.
#[test]
fn the_vector_frames_open_for_the_other_side() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    for c in v["cases"].as_array().unwrap() {
        let purpose = if c["purpose"] == 1 {
            Purpose::Contact
        } else {
            Purpose::Keys
        };
        let code = Code::parse(purpose, c["typed"].as_str().unwrap()).unwrap();
        assert_eq!(code.to_string(), c["code"]);
        let at = Rendezvous {
            purpose,
            epoch: c["epoch"].as_u64().unwrap(),
            channel: code.channel(),
        };
        let ea: [u8; 64] = unhex(&c["entropy_inviter"]).try_into().unwrap();
        let a = Pake::start(&code, at, Role::Inviter, &ea);
        let frames = c["frames_accepter"].as_array().unwrap();
        let first = unhex(&frames[0]["body"]);
        let keys = a.finish(&element_of(&first).unwrap()).unwrap();
        let mut re = Reassembly::new(Role::Accepter);
        let mut got = None;
        for (i, f) in (0u32..).zip(frames) {
            got = re.push(&keys.open(i, &unhex(&f["body"])).unwrap()).unwrap();
        }
        assert_eq!(got.unwrap().to_vec(), unhex(&c["payload_accepter"]));
    }
}
