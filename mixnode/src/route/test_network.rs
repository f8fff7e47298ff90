//! A small network document for tests, whose nodes' Sphinx secrets are
//! kept so that packets can be carried through it hop by hop.

#![allow(clippy::unwrap_used)]

use mtos_crypto::sphinx::{NodeAddress, SphinxSecret};
use mtos_crypto::{Identity, Label, Visibility};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::directory::{
    DOCUMENT_VERSION, EpochSchedule, Geometry, Mixing, MixingKind, NetworkDocument, NodeEntry,
    Rates, Role, SphinxKeyEntry, peer_id_text,
};

/// Node `seed`'s entry, listing a key for epoch 7, and that key's secret.
fn node(seed: u64, role: Role, layer: Option<u8>) -> (NodeEntry, SphinxSecret) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let id = Identity::generate(&mut rng, Label::new("t").unwrap(), Visibility::Public, 0);
    let key = *id.verify_key().as_bytes();
    let secret = SphinxSecret::generate(&mut rng);
    let entry = NodeEntry {
        since: None,
        salt: None,
        family: None,
        key,
        peer_id: peer_id_text(&key),
        addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
        role,
        layer,
        storage: false,
        sphinx_keys: vec![SphinxKeyEntry {
            epoch: 7,
            public: secret.public(),
        }],
    };
    (entry, secret)
}

/// Two gateways, two mixes per layer, two service nodes, in epoch 7
/// (100 s epochs from 0), and each node's Sphinx secret by address.
pub(crate) fn keyed_document() -> (NetworkDocument, Vec<(NodeAddress, SphinxSecret)>) {
    let mut made = vec![
        node(1, Role::Gateway, None),
        node(2, Role::Gateway, None),
        node(3, Role::Service, None),
        node(4, Role::Service, None),
    ];
    for l in 1..=3u8 {
        for i in 0..2u64 {
            made.push(node(10 * u64::from(l) + i, Role::Mix, Some(l)));
        }
    }
    let secrets = made.iter().map(|(n, s)| (n.address(), s.clone())).collect();
    let doc = NetworkDocument {
        consensus: Default::default(),
        version: DOCUMENT_VERSION,
        network: "t".into(),
        epoch: 7,
        serial: 1,
        schedule: EpochSchedule {
            genesis: 0,
            epoch_secs: 100,
            heartbeat_secs: 100,
            round_secs: 2,
        },
        valid_after: 700,
        valid_until: 850,
        geometry: Geometry::compiled(),
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
        storage: crate::directory::StorageRules::default(),
        nodes: made.into_iter().map(|(n, _)| n).collect(),
    };
    (doc, secrets)
}

/// [`keyed_document`]'s document.
pub(crate) fn document() -> NetworkDocument {
    keyed_document().0
}
