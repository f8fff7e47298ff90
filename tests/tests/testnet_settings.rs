//! The testnet launcher's typed settings (`mtos_client::testnet`) land in
//! the configs `mtos-node` reads: every setting, applied to the files
//! `mtos-node init` and `authority init` write, is the value the node and
//! the authority parse. A setting the templates lose or rename fails here
//! instead of being silently ignored by every test network.

use std::path::Path;

use mtos_client::testnet::{AuthoritySettings, NodeSettings, Wiring, node_config};
use mtos_node::authority::AuthorityConfig;
use mtos_node::config::{NodeConfig, Role};

/// An ed25519 public key (RFC 8032's first test key).
const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn wiring() -> Wiring {
    Wiring {
        network: "mtos-settings".into(),
        authorities: vec![(KEY.into(), "/ip4/127.0.0.1/tcp/4000".into())],
        p2p: "/ip4/127.0.0.1/tcp/4001".into(),
        metrics: "127.0.0.1:4002".into(),
    }
}

const ROLES: [(Role, Option<u8>); 5] = [
    (Role::Gateway, None),
    (Role::Mix, Some(1)),
    (Role::Mix, Some(2)),
    (Role::Mix, Some(3)),
    (Role::Service, None),
];

#[test]
fn every_node_setting_is_what_the_node_reads() {
    let settings = NodeSettings {
        storage: Some(true),
        peer_rate_pps: Some(7),
        client_burst: Some(8),
        puts_per_service: Some(9),
        put_burst: Some(10),
        cache_chunks: Some(11),
        client_addresses: Some(true),
        sessions_per_address: Some(12),
        replay_capacity: Some(15_000),
        sphinx_workers: Some(3),
        max_bytes: Some(13_000),
        retention_secs: Some(14),
    };
    for (role, layer) in ROLES {
        let template = NodeConfig::template(role, layer);
        let text = node_config(&template, &wiring(), &settings).unwrap();
        let c = NodeConfig::parse(&text, Path::new("mtos-node.toml")).unwrap();
        assert_eq!((c.node.role, c.node.layer), (role, layer));
        assert_eq!(c.network.id, "mtos-settings");
        let authorities = c.network.authority_addrs().unwrap();
        assert_eq!(authorities.len(), 1);
        assert_eq!(data_encoding::HEXLOWER.encode(&authorities[0].key), KEY);
        assert_eq!(authorities[0].addr.to_string(), "/ip4/127.0.0.1/tcp/4000");
        assert_eq!(c.network.signatures_needed(), 1);
        assert_eq!(c.listen.p2p, "/ip4/127.0.0.1/tcp/4001");
        assert_eq!(c.listen.metrics, "127.0.0.1:4002");
        assert!(c.node.storage);
        assert_eq!(c.limits.peer_rate_pps, 7);
        assert_eq!(c.limits.client_burst, 8);
        assert_eq!(c.storage.puts_per_service, 9);
        assert_eq!(c.storage.put_burst, 10);
        assert_eq!(c.storage.cache_chunks, 11);
        assert!(c.log.client_addresses);
        assert_eq!(c.limits.sessions_per_address, 12);
        assert_eq!(c.storage.max_bytes, 13_000);
        assert_eq!(c.limits.replay_capacity, 15_000);
        assert_eq!(c.limits.sphinx_workers, 3);
        assert_eq!(c.storage.retention_secs, 14);
        // The file keeps the template's explanations.
        assert!(text.contains("# Frames per second one peer may send."));
    }
}

#[test]
fn no_node_setting_changes_nothing_but_the_wiring() {
    for (role, layer) in ROLES {
        let template = NodeConfig::template(role, layer);
        let text = node_config(&template, &wiring(), &NodeSettings::default()).unwrap();
        let edited = NodeConfig::parse(&text, Path::new("a")).unwrap();
        let mut original = NodeConfig::parse(&template, Path::new("b")).unwrap();
        original.network.id = "mtos-settings".into();
        original.network.authorities = vec![mtos_node::config::AuthorityEntry {
            key: KEY.into(),
            addr: "/ip4/127.0.0.1/tcp/4000".into(),
        }];
        original.listen.p2p = "/ip4/127.0.0.1/tcp/4001".into();
        original.listen.metrics = "127.0.0.1:4002".into();
        assert_eq!(edited, original);
    }
}

#[test]
fn every_authority_setting_is_what_the_authority_reads() {
    let template = AuthorityConfig::template("n", "/ip4/127.0.0.1/tcp/4000", 600, 1_000, 20, true);
    let settings = AuthoritySettings {
        layers: Some(2),
        payload: Some(20.5),
        loops: Some(3.0),
        drops: Some(4.0),
        node_loops: Some(0.0),
        max_delay_ms: Some(2_000),
        heartbeat_secs: Some(3),
        stamp_floor: Some(5),
        round_secs: Some(4),
        admission: Some("approved".into()),
        bulk_payload: Some(60.5),
        bulk_loops: Some(3.5),
        bulk_drops: Some(4.5),
        bulk_window_secs: Some(45),
        bulk_cohorts: Some(12),
        no_bulk: false,
    };
    let text = settings.apply(&template).unwrap();
    let c = AuthorityConfig::parse(&text, Path::new("authority.toml")).unwrap();
    assert_eq!(c.layers, 2);
    assert_eq!(c.rates.payload, 20.5);
    assert_eq!(c.rates.loops, 3.0);
    assert_eq!(c.rates.drops, 4.0);
    assert_eq!(c.rates.node_loops, 0.0);
    assert_eq!(c.mixing.max_delay_ms, 2_000);
    assert_eq!(c.epochs.heartbeat_secs, 3);
    assert_eq!(c.storage.stamp_floor, 5);
    assert_eq!(c.epochs.round_secs, 4);
    assert_eq!(c.admission, mtos_node::authority::AdmissionMode::Approved);
    let bulk = c.rates.bulk.unwrap();
    assert_eq!(
        (
            bulk.payload,
            bulk.loops,
            bulk.drops,
            bulk.window_secs,
            bulk.cohorts
        ),
        (60.5, 3.5, 4.5, 45, 12)
    );
    // Without windows: the table goes, and the authority reads none.
    let off = AuthoritySettings {
        no_bulk: true,
        ..AuthoritySettings::default()
    };
    let c_off = AuthorityConfig::parse(&off.apply(&template).unwrap(), Path::new("a")).unwrap();
    assert_eq!(c_off.rates.bulk, None);
    // What it was not told stays as `authority init` wrote it.
    let original = AuthorityConfig::parse(&template, Path::new("a")).unwrap();
    assert_eq!(c.mixing.mean_delay_ms, original.mixing.mean_delay_ms);
    assert_eq!(c.epochs.epoch_secs, original.epochs.epoch_secs);
    assert_eq!(
        AuthoritySettings::default().apply(&template).unwrap(),
        template
    );
}
