#![allow(clippy::unwrap_used)]

use mtos_crypto::{Identity, Label, Visibility};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::{
    DOCUMENT_VERSION, EpochSchedule, Geometry, Mixing, MixingKind, NetworkDocument, NodeEntry,
    Rates, Role, SphinxKeyEntry, peer_id_text,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;

fn identity(seed: u64) -> Identity {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Identity::generate(&mut rng, Label::new("t").unwrap(), Visibility::Public, 0)
}

#[test]
fn the_peer_id_is_the_node_key_and_the_core_writes_it_as_libp2p_does() {
    for seed in 0..32 {
        let id = identity(seed);
        let key = &id.verify_key().as_bytes().to_owned();
        let libp2p_peer = libp2p_keypair(&id).public().to_peer_id();
        assert_eq!(libp2p_peer, peer_id_of(key).unwrap());
        assert_eq!(libp2p_peer.to_string(), peer_id_text(key));
    }
}

#[test]
fn addresses_are_checked_as_multiaddrs() {
    assert!(check_multiaddr("/ip4/127.0.0.1/tcp/4000").is_ok());
    assert!(check_multiaddr("/dns4/relay.example/tcp/4000").is_ok());
    for bad in [
        "127.0.0.1:4000",
        "/ip4/300.0.0.1/tcp/1",
        "/tcp/notaport",
        "ip4/1.2.3.4",
    ] {
        assert!(check_multiaddr(bad).is_err(), "{bad}");
    }
}

fn entry(id: &Identity, role: Role, layer: Option<u8>) -> NodeEntry {
    let key = *id.verify_key().as_bytes();
    NodeEntry {
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
            epoch: 0,
            public: [1; 32],
        }],
    }
}

#[test]
fn the_topology_finds_nodes_by_peer_and_address_and_takes_strangers_for_clients() {
    let (gw, mix) = (identity(1), identity(2));
    let document = NetworkDocument {
        consensus: Default::default(),
        version: DOCUMENT_VERSION,
        network: "t".into(),
        epoch: 0,
        serial: 1,
        schedule: EpochSchedule {
            genesis: 0,
            epoch_secs: 100,
            heartbeat_secs: 100,
            round_secs: 2,
        },
        valid_after: 0,
        valid_until: 150,
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
        storage: mtos_mixnode::directory::StorageRules::default(),
        nodes: vec![
            entry(&gw, Role::Gateway, None),
            entry(&mix, Role::Mix, Some(2)),
        ],
    };
    let topo = Topology::new(document);
    let mix_peer = peer_id_of(mix.verify_key().as_bytes()).unwrap();
    assert_eq!(topo.position_of(&mix_peer), Position::Layer(2));
    assert_eq!(
        topo.position_of(&libp2p::PeerId::random()),
        Position::Client
    );
    let gw_entry = topo.node_by_peer(&libp2p_keypair(&gw).public().to_peer_id());
    assert_eq!(gw_entry.map(NodeEntry::position), Some(Position::Gateway));
    let by_address = topo.node(&mtos_crypto::sphinx::NodeAddress(
        *mix.verify_key().as_bytes(),
    ));
    assert_eq!(by_address.map(|n| n.layer), Some(Some(2)));
    assert_eq!(topo.at(Position::Gateway).count(), 1);
}
