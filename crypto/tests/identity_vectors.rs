//! Checks the identity encodings against `specs/vectors/identity.json` and
//! opens the fixed age-sealed keychain `specs/vectors/keychain-v1.age`.
//!
//! Run with `MTOS_WRITE_VECTORS=1` to regenerate the JSON after a
//! deliberate, specified format change (the age file is only created when
//! missing, since age draws its salt and nonce from the OS RNG).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use mtos_crypto::keychain::{Contact, Source};
use mtos_crypto::{
    Fingerprint, Identity, KdfCost, Keychain, Label, PublicIdentity, SafetyNumber, SecretString,
    Visibility,
};
use serde_json::{Value, json};

const PASSPHRASE: &str = "mtos test vector passphrase";

fn vectors_dir() -> PathBuf {
    mtos_crypto::vectors::path("")
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// Secrets are fixed byte patterns, not RNG output, so another
/// implementation can reproduce the vectors without our RNG.
fn inputs() -> Vec<Identity> {
    let spec = [
        ("alice", Visibility::Public, 1_700_000_000u64, 0x01u8),
        ("bob", Visibility::Private, 1_700_000_100, 0x02),
        (
            "Zoë's reading screen",
            Visibility::Public,
            1_764_000_000,
            0x7f,
        ),
    ];
    spec.iter()
        .map(|(label, vis, created, fill)| {
            let seed: [u8; 32] = std::array::from_fn(|i| fill.wrapping_mul(i as u8 + 1));
            let x: [u8; 32] = std::array::from_fn(|i| fill ^ (i as u8).wrapping_mul(7));
            Identity::from_secrets(Label::new(*label).unwrap(), *vis, *created, &seed, &x)
        })
        .collect()
}

/// Two contacts: Zoë (identity 2), exchanged by short code and verified,
/// then seen with another encryption key (flagged); dave, from a URI.
fn contacts(zoe: &Identity) -> Vec<Contact> {
    let other = |fill: u8, label: &str| {
        let seed: [u8; 32] = std::array::from_fn(|i| fill.wrapping_mul(i as u8 + 1));
        let x: [u8; 32] = std::array::from_fn(|i| fill ^ (i as u8).wrapping_mul(7));
        (seed, x, Label::new(label).unwrap())
    };
    let mut zoe_contact = Contact::new(
        zoe.public(),
        Label::new("Zoë (phone)").unwrap(),
        Source::ShortCode,
        1_764_000_050,
    );
    zoe_contact.mark_verified(1_764_000_060);
    let (_, new_x, _) = other(0x55, "unused");
    let moved = Identity::from_secrets(
        zoe.label().clone(),
        zoe.visibility(),
        zoe.created(),
        &zoe.ed25519_seed(),
        &new_x,
    );
    let mut keychain = Keychain::new();
    keychain.add_contact(zoe_contact).unwrap();
    keychain.observe(&moved.public());
    let (seed, x, label) = other(0x33, "dave");
    let dave = Identity::from_secrets(label, Visibility::Public, 1_764_000_000, &seed, &x);
    keychain
        .add_contact(Contact::new(
            dave.public(),
            Label::new("dave").unwrap(),
            Source::Uri,
            1_764_000_070,
        ))
        .unwrap();
    keychain.contacts().to_vec()
}

fn compute() -> Value {
    let ids = inputs();
    let identities: Vec<Value> = ids
        .iter()
        .map(|id| {
            let export = id.export_secret();
            let secret_line = export
                .lines()
                .find(|l| l.starts_with("mtos-secret-identity-v1:"))
                .unwrap()
                .to_owned();
            let mut keychain = Keychain::new();
            keychain.add(id.clone()).unwrap();
            // Magic, version and count before; the contact count after.
            let plain = keychain.encode();
            let record = plain[15..plain.len() - 2].to_vec();
            json!({
                "label": id.label().as_str(),
                "visibility": id.visibility().to_string(),
                "created": id.created(),
                "ed25519_seed": hex(&record[record.len() - 64..record.len() - 32]),
                "x25519_secret": hex(&record[record.len() - 32..]),
                "verify_key": hex(id.verify_key().as_bytes()),
                "encryption_key": hex(&id.encryption_key()),
                "id": id.id().to_string(),
                "public_identity": hex(&id.public().encode()),
                "uri": id.public().to_uri(),
                "fingerprint": id.fingerprint().digits(),
                "age_secret_key": id.age_secret_key().as_str(),
                "age_recipient": id.age_recipient(),
                "secret_record": hex(&record),
                "secret_export": secret_line,
            })
        })
        .collect();
    let fps: Vec<Fingerprint> = ids.iter().map(Identity::fingerprint).collect();
    // Version 1 (identities only) is still read; built here by hand.
    let mut v1 = b"MTOSKEYCHAIN\x01\x00\x03".to_vec();
    for id in &identities {
        v1.extend(
            data_encoding::HEXLOWER
                .decode(id["secret_record"].as_str().unwrap().as_bytes())
                .unwrap(),
        );
    }
    // Version 2: alice and bob, with Zoë and dave as contacts.
    let mut keychain = Keychain::new();
    for id in &ids[..2] {
        keychain.add(id.clone()).unwrap();
    }
    let contacts = contacts(&ids[2]);
    for c in &contacts {
        keychain.add_contact(c.clone()).unwrap();
    }
    let contact_fields: Vec<Value> = contacts
        .iter()
        .map(|c| {
            json!({
                "label": c.label().as_str(),
                "source": c.source().to_byte(),
                "added": c.added(),
                "verified": c.verified().unwrap_or(0),
                "public_identity": hex(&c.identity().encode()),
                "changed": c.changed().map(|p| hex(&p.encode())),
            })
        })
        .collect();
    json!({
        "contacts": contact_fields,
        "keychain_v1_plaintext": hex(&v1),
        "identities": identities,
        "safety_numbers": [
            {"a": 0, "b": 1, "digits": SafetyNumber::between(&fps[0], &fps[1]).digits()},
            {"a": 1, "b": 2, "digits": SafetyNumber::between(&fps[1], &fps[2]).digits()},
        ],
        "keychain_v2_plaintext": hex(&keychain.encode()),
        "keychain_file": "keychain-v1.age",
        "keychain_passphrase": PASSPHRASE,
    })
}

#[test]
fn identity_vectors_match_the_spec() {
    let path = vectors_dir().join("identity.json");
    let computed = compute();
    if std::env::var_os("MTOS_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        let age_path = vectors_dir().join("keychain-v1.age");
        if !age_path.exists() {
            let mut keychain = Keychain::new();
            for id in inputs() {
                keychain.add(id).unwrap();
            }
            let sealed = keychain
                .seal(
                    &SecretString::from(PASSPHRASE.to_owned()),
                    KdfCost::LogN(10),
                )
                .unwrap();
            std::fs::write(age_path, sealed).unwrap();
        }
    }
    let text = std::fs::read_to_string(&path).expect("specs/vectors/identity.json");
    let expected: Value = serde_json::from_str(&text).unwrap();
    let (exp_ids, got_ids) = (&expected["identities"], &computed["identities"]);
    assert_eq!(exp_ids.as_array().unwrap().len(), 3);
    for (n, (exp, got)) in exp_ids
        .as_array()
        .unwrap()
        .iter()
        .zip(got_ids.as_array().unwrap())
        .enumerate()
    {
        for (field, value) in exp.as_object().unwrap() {
            assert_eq!(&got[field], value, "identity {n}, field {field}");
        }
    }
    assert_eq!(computed, expected);
}

#[test]
fn vectors_decode_in_the_other_direction() {
    let text = std::fs::read_to_string(vectors_dir().join("identity.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for entry in v["identities"].as_array().unwrap() {
        let uri = entry["uri"].as_str().unwrap();
        let public = PublicIdentity::from_uri(uri).unwrap();
        assert_eq!(hex(public.verify_key().as_bytes()), entry["verify_key"]);
        assert_eq!(public.fingerprint().digits(), entry["fingerprint"]);
        let imported = Identity::import_secret(entry["secret_export"].as_str().unwrap()).unwrap();
        assert_eq!(imported.id().to_string(), entry["id"]);
        let age_id: age_identity::Parsed =
            entry["age_secret_key"].as_str().unwrap().parse().unwrap();
        assert_eq!(age_id.0, entry["age_recipient"].as_str().unwrap());
    }
    let plain = data_encoding::HEXLOWER
        .decode(v["keychain_v1_plaintext"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(Keychain::decode(&plain).unwrap().len(), 3);
    let plain = data_encoding::HEXLOWER
        .decode(v["keychain_v2_plaintext"].as_str().unwrap().as_bytes())
        .unwrap();
    let keychain = Keychain::decode(&plain).unwrap();
    assert_eq!(keychain.len(), 2);
    let zoe = keychain.find_contact("Zoë (phone)").unwrap();
    assert_eq!(zoe.source(), Source::ShortCode);
    assert!(zoe.verified().is_some() && zoe.changed().is_some());
    assert!(keychain.find_contact("dave").unwrap().verified().is_none());
}

#[test]
fn fixed_age_keychain_opens() {
    let sealed = std::fs::read(vectors_dir().join("keychain-v1.age")).unwrap();
    let keychain = Keychain::open(&sealed, &SecretString::from(PASSPHRASE.to_owned())).unwrap();
    let expected: Vec<String> = inputs().iter().map(|i| i.id().to_string()).collect();
    let got: Vec<String> = keychain
        .identities()
        .iter()
        .map(|i| i.id().to_string())
        .collect();
    assert_eq!(got, expected);
    assert!(matches!(
        Keychain::open(&sealed, &SecretString::from("not it".to_owned())),
        Err(mtos_crypto::KeychainError::WrongPassphrase)
    ));
}

/// The age secret key parses with the age crate itself and yields the
/// recipient we print.
mod age_identity {
    pub struct Parsed(pub String);
    impl std::str::FromStr for Parsed {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let id: age::x25519::Identity = s.parse().map_err(|e: &str| e.to_owned())?;
            Ok(Parsed(id.to_public().to_string()))
        }
    }
}
