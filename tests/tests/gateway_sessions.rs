//! A gateway bounds client sessions per source address: a third session
//! from an address that holds two is refused (counted), the two work, and
//! the share comes back when one closes (`specs/client.md` §3).

use std::time::Duration;

use mtos_client::mixnet::{NetworkConfig, Received, Session};
use mtos_mixnode::admission::Position;
use mtos_tests::{AuthoritySettings, CHAIN, NodeSettings, Testnet, wait_for};

fn config(net: &Testnet) -> NetworkConfig {
    NetworkConfig {
        network: net.network.clone(),
        authority_key: net.authority_key,
        authority_addr: net.authority_addr.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_address_holds_its_share_of_sessions_and_gets_it_back() {
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |p| NodeSettings {
                sessions_per_address: (p == Position::Gateway).then_some(2),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(20.0),
                loops: Some(2.0),
                drops: Some(2.0),
                ..AuthoritySettings::default()
            },
        )
    });
    let refused = |net: &Testnet| {
        net.node(Position::Gateway)
            .metric("mtos_client_sessions_refused_total", "reason=\"address\"")
            .unwrap_or(0.0)
    };
    // Every client here comes from 127.0.0.1.
    let alice = Session::connect(&config(&net)).await.unwrap();
    let mut bob = Session::connect(&config(&net)).await.unwrap();
    // A third: refused at the gateway (its connect fails on the closed
    // session, or its delivery stream is never served).
    let carol = Session::connect(&config(&net)).await;
    tokio::task::block_in_place(|| {
        wait_for("the third session refused", Duration::from_secs(30), || {
            refused(&net) >= 1.0
        });
    });
    if let Ok(carol) = &carol {
        assert!(carol.stats().deliveries.is_empty(), "carol was served");
    }
    drop(carol);
    // The two within the share work: a message crosses.
    alice.send(&bob.address(), b"within the share").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), bob.recv())
        .await
        .unwrap_or_else(|_| panic!("no message\n{}", net.report()));
    assert!(matches!(got, Some(Received::Message(m)) if m == b"within the share"));
    // Alice leaves: the address's share comes back, and a new session,
    // asked again as a client would, is served.
    drop(alice);
    let dave = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(s) = Session::connect(&config(&net)).await {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !s.stats().deliveries.is_empty() {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no session after one closed\n{}", net.report()));
    assert!(!dave.stats().deliveries.is_empty());
}
