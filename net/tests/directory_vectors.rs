//! `specs/vectors/directory.json`: a signed descriptor and a signed
//! network document made from fixed keys (ed25519 signatures are
//! deterministic), checked byte for byte and verified as a node would.
//! `MTOS_WRITE_VECTORS=1` rewrites the file after a deliberate change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mtos_crypto::{Identity, Label, Visibility};
use mtos_mixnode::directory::{
    Authority, Descriptor, EpochSchedule, Mixing, MixingKind, NetworkDocument, NetworkParams,
    NodeEntry, Rates, Role, SphinxKeyEntry, Trust, VERSION,
};
use mtos_net::{check_multiaddr, peer_id_of};
use serde_json::{Value, json};

fn identity(seed: u8, x: u8) -> Identity {
    Identity::from_secrets(
        Label::new("vector").unwrap(),
        Visibility::Public,
        0,
        &[seed; 32],
        &[x; 32],
    )
}

const NOW: u64 = 1_800_000_100;

fn compute() -> Value {
    let authority = identity(0xa1, 0xa2);
    let node = identity(0xb1, 0xb2);
    let key = *node.verify_key().as_bytes();
    let descriptor = Descriptor {
        version: VERSION,
        network: "mtos-vectors".into(),
        published: NOW,
        node: NodeEntry {
            since: None,
            salt: None,
            family: None,
            key,
            peer_id: peer_id_of(&key).unwrap().to_string(),
            addrs: vec!["/ip4/192.0.2.7/tcp/9401".into()],
            role: Role::Mix,
            layer: Some(2),
            storage: false,
            sphinx_keys: vec![
                SphinxKeyEntry {
                    epoch: 500_000,
                    public: [0x11; 32],
                },
                SphinxKeyEntry {
                    epoch: 500_001,
                    public: [0x22; 32],
                },
            ],
        },
    };
    let signed_descriptor = descriptor.sign(&node);
    let mut a = Authority::new(NetworkParams {
        network: "mtos-vectors".into(),
        schedule: EpochSchedule {
            genesis: 0,
            epoch_secs: 3600,
            heartbeat_secs: 20,
            round_secs: 2,
        },
        mixing: Mixing {
            mode: MixingKind::Poisson,
            mean_delay_ms: 50,
            max_delay_ms: 10_000,
            pool_interval_ms: 0,
            pool_min: 0,
            pool_fraction: 0.0,
        },
        rates: Rates {
            payload: 2.0,
            loops: 1.0,
            drops: 1.0,
            node_loops: 1.0,
            bulk: None,
        },
        layers: 3,
        storage: mtos_mixnode::directory::StorageRules::default(),
        family_cap_percent: 100,
        addresses: check_multiaddr,
    });
    a.accept_descriptor(&signed_descriptor, NOW).unwrap();
    let document = a.document(NOW, &authority);
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    json!({
        "comment": "specs/directory.md. Identities are Identity::from_secrets(seed, x25519): authority [0xa1; 32]/[0xa2; 32], node [0xb1; 32]/[0xb2; 32]. The document is the authority's for `now`.",
        "now": NOW,
        "authority_key": hex(authority.verify_key().as_bytes()),
        "node_key": hex(&key),
        "node_peer_id": peer_id_of(&key).unwrap().to_string(),
        "descriptor": hex(&signed_descriptor),
        "document": hex(&document),
    })
}

#[test]
fn directory_vectors_match_the_spec() {
    let computed = compute();
    mtos_crypto::vectors::check(
        "directory.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
    let expected = computed;

    let bytes = |k: &str| {
        data_encoding::HEXLOWER
            .decode(expected[k].as_str().unwrap().as_bytes())
            .unwrap()
    };
    let authority =
        mtos_crypto::VerifyKey::from_bytes(bytes("authority_key").try_into().unwrap()).unwrap();
    let trust = Trust {
        network: "mtos-vectors".into(),
        authorities: vec![authority],
        threshold: 1,
        addresses: check_multiaddr,
    };
    let doc = NetworkDocument::verify(&bytes("document"), &trust, NOW).unwrap();
    assert_eq!(doc.epoch, 500_000);
    assert_eq!(doc.nodes.len(), 1);
    assert_eq!(doc.nodes[0].peer_id, expected["node_peer_id"]);
    let d = Descriptor::verify(&bytes("descriptor"), "mtos-vectors", 3, check_multiaddr).unwrap();
    // The document adds what the authorities set: the epoch it was
    // first listed in (no salt: not the network's first epoch).
    assert_eq!(doc.nodes[0].since, Some(500_000));
    assert_eq!(doc.nodes[0].salt, None);
    assert_eq!(
        NodeEntry {
            since: Some(500_000),
            ..d.node
        },
        doc.nodes[0]
    );
}

#[test]
fn a_descriptor_with_an_address_no_peer_could_dial_is_refused() {
    let node = identity(0xc1, 0xc2);
    let key = *node.verify_key().as_bytes();
    for bad in ["/ip4/300.0.0.1/tcp/9401", "192.0.2.7:9401", "/tcp/x"] {
        let descriptor = Descriptor {
            version: VERSION,
            network: "mtos-vectors".into(),
            published: NOW,
            node: NodeEntry {
                since: None,
                salt: None,
                family: None,
                key,
                peer_id: peer_id_of(&key).unwrap().to_string(),
                addrs: vec![bad.into()],
                role: Role::Gateway,
                layer: None,
                storage: false,
                sphinx_keys: vec![SphinxKeyEntry {
                    epoch: 500_000,
                    public: [0x11; 32],
                }],
            },
        };
        let e = Descriptor::verify(&descriptor.sign(&node), "mtos-vectors", 3, check_multiaddr)
            .unwrap_err();
        assert!(e.to_string().contains(bad), "{bad}: {e}");
    }
}
