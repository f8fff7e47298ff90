//! What an offline machine can check of the Tor entry: which addresses
//! go through Tor, the configuration, and that failures are clear errors
//! in bounded time, never hangs.

use std::time::{Duration, Instant};

use mtos_crypto::Identity;

use super::*;
use crate::mixnet::{NetworkConfig, Session};

fn addr(s: &str) -> Multiaddr {
    s.parse().expect("a multiaddr")
}

#[test]
fn public_tcp_addresses_go_through_tor_and_local_ones_are_refused() {
    assert_eq!(
        tor_target(&addr("/ip4/203.0.114.7/tcp/9401")),
        Ok(("203.0.114.7".into(), 9401))
    );
    assert_eq!(
        tor_target(&addr("/dns4/gw.example.org/tcp/443")),
        Ok(("gw.example.org".into(), 443))
    );
    assert_eq!(
        tor_target(&addr("/ip6/2a01:4f8::1/tcp/9401")),
        Ok(("2a01:4f8::1".into(), 9401))
    );
    assert!(
        tor_target(&addr(
            "/ip4/203.0.114.7/tcp/9401/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        ))
        .is_ok()
    );
    for local in [
        "/ip4/127.0.0.1/tcp/9401",
        "/ip4/10.1.2.3/tcp/9401",
        "/ip4/192.168.1.5/tcp/9401",
        "/ip4/172.16.0.1/tcp/9401",
        "/ip4/100.64.0.1/tcp/9401",
        "/ip4/169.254.1.1/tcp/9401",
        "/ip4/0.0.0.0/tcp/9401",
        "/ip4/192.0.2.1/tcp/9401",
        "/ip6/::1/tcp/9401",
        "/ip6/fd00::1/tcp/9401",
        "/ip6/fe80::1/tcp/9401",
        "/ip6/2001:db8::1/tcp/9401",
        "/ip6/::ffff:10.0.0.1/tcp/9401",
    ] {
        let err = tor_target(&addr(local)).expect_err(local);
        assert!(err.contains("local or private"), "{local}: {err}");
    }
    for odd in [
        "/ip4/203.0.114.7/udp/9401",
        "/ip4/203.0.114.7/tcp/0",
        "/ip4/203.0.114.7",
        "/ip4/203.0.114.7/tcp/443/ws",
        "/unix/tmp%2Fsocket",
    ] {
        assert!(tor_target(&addr(odd)).is_err(), "{odd}");
        assert!(!reachable(&addr(odd)));
    }
}

#[test]
fn the_configuration_is_checked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let entry = TorEntry::in_dir(dir.path());
    assert_eq!(entry.state_dir, dir.path().join("state"));
    assert_eq!(entry.bootstrap_timeout, BOOTSTRAP_TIMEOUT);
    assert!(entry.client_config().is_ok());
    let zero = TorEntry {
        bootstrap_timeout: Duration::ZERO,
        ..entry
    };
    let err = zero.client_config().expect_err("a zero timeout");
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[tokio::test]
async fn bootstrapping_without_a_network_fails_clearly_in_bounded_time() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let entry = TorEntry {
        bootstrap_timeout: Duration::from_secs(3),
        ..TorEntry::in_dir(dir.path())
    };
    let started = Instant::now();
    let err = entry.bootstrap().await.expect_err("no Tor network here");
    assert!(err.to_string().starts_with("tor"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_local_authority_or_gateway_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tor = TorEntry::in_dir(dir.path())
        .on_demand()
        .expect("an unbootstrapped client needs no network");
    let authority = Identity::throwaway(&mut rand::rng(), 0);
    let config = NetworkConfig::single(
        "mtos-test",
        *authority.verify_key().as_bytes(),
        addr("/ip4/127.0.0.1/tcp/9400"),
    )
    .unwrap();
    let started = Instant::now();
    let err = Session::connect_through_tor(&config, &tor)
        .await
        .expect_err("a loopback authority");
    assert!(err.to_string().contains("local or private"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // The transport itself refuses such an address without dialling.
    let mut transport = tor.clone();
    let opts = DialOpts {
        role: libp2p::core::Endpoint::Dialer,
        port_use: libp2p::core::transport::PortUse::New,
    };
    assert!(matches!(
        transport.dial(addr("/ip4/127.0.0.1/tcp/9401"), opts),
        Err(TransportError::MultiaddrNotSupported(_))
    ));
}
