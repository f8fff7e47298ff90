//! A gateway bounds client sessions per source address: a third session
//! from an address that holds two is refused (counted), the two work, and
//! the share comes back when one closes (`specs/client.md` §3).

use std::time::Duration;

use mtos_client::mixnet::{NetworkConfig, Received, Session};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::NodeEntry;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opens_only_with_work_for_this_gateway_epoch_and_mailbox() {
    use mtos_crypto::work::{SESSION_WORK_BITS, session_work_ok, solve_session_work};
    let net = tokio::task::block_in_place(|| Testnet::start(&CHAIN, 600, 5));
    let mut client = mtos_tests::TestClient::connect(&net).await;
    let gateway = client.at(Position::Gateway)[0].clone();
    let epoch = client.document.epoch;
    let open = |secret: [u8; 32], epoch: u32, nonce: u64| {
        let mut o = secret.to_vec();
        o.extend_from_slice(&epoch.to_be_bytes());
        o.extend_from_slice(&nonce.to_be_bytes());
        o
    };
    let work = |secret: &[u8; 32], key: &[u8; 32], epoch: u32| {
        let mailbox = mtos_crypto::envelope::mailbox_id(secret);
        solve_session_work(key, epoch, &mailbox, SESSION_WORK_BITS, 0)
    };
    let refused = |net: &Testnet| {
        net.node(Position::Gateway)
            .metric("mtos_client_sessions_refused_total", "reason=\"work\"")
            .unwrap_or(0.0)
    };
    // With work for this gateway, its epoch and this mailbox: frames come.
    let secret = [0x61; 32];
    let nonce = work(&secret, &gateway.key, epoch);
    let frame = client
        .session_frame(&gateway, &open(secret, epoch, nonce))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    assert_eq!(frame.len(), mtos_mixnode::mailbox::DELIVERY_FRAME_SIZE);
    // Without: a nonce that is not work, work for another mailbox, for
    // another gateway, for an epoch too far: each closed and counted.
    let other = [0x62; 32];
    let bad = (0u64..)
        .find(|n| {
            let m = mtos_crypto::envelope::mailbox_id(&other);
            !session_work_ok(&gateway.key, epoch, &m, *n, SESSION_WORK_BITS)
        })
        .unwrap();
    let attempts = [
        open(other, epoch, bad),
        open(other, epoch, work(&secret, &gateway.key, epoch)),
        open(other, epoch, work(&other, &[0x47; 32], epoch)),
        open(other, epoch + 5, work(&other, &gateway.key, epoch + 5)),
    ];
    for (i, o) in attempts.iter().enumerate() {
        let got = client.session_frame(&gateway, o).await;
        assert!(got.is_err(), "attempt {i} was served");
    }
    tokio::task::block_in_place(|| {
        wait_for("the refusals counted", Duration::from_secs(10), || {
            refused(&net) >= attempts.len() as f64
        });
    });

    // Mix frames from a client without a verified session are dropped
    // before any crypto; with one, they are taken.
    let route: Vec<NodeEntry> = [
        Position::Gateway,
        Position::Layer(1),
        Position::Layer(2),
        Position::Layer(3),
        Position::Service,
    ]
    .iter()
    .map(|p| client.at(*p)[0].clone())
    .collect();
    let hops: Vec<&NodeEntry> = route.iter().collect();
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|_| client.frame(&hops, Duration::from_millis(5), b"x"))
        .collect();
    let mut stranger = mtos_tests::TestClient::connect(&net).await;
    stranger.send_without_session(&gateway, &frames).await;
    let dropped = |net: &Testnet| {
        net.node(Position::Gateway)
            .metric("mtos_frames_dropped_total", "reason=\"no_session\"")
            .unwrap_or(0.0)
    };
    let forwarded = |net: &Testnet| {
        net.node(Position::Gateway)
            .metric("mtos_frames_forwarded_total", "")
            .unwrap_or(0.0)
    };
    tokio::task::block_in_place(|| {
        wait_for(
            "frames without a session dropped",
            Duration::from_secs(10),
            || dropped(&net) >= 5.0,
        );
    });
    let before = forwarded(&net);
    stranger.send(&gateway, &frames[..0]).await;
    let fresh: Vec<Vec<u8>> = (0..5)
        .map(|_| client.frame(&hops, Duration::from_millis(5), b"y"))
        .collect();
    stranger.send(&gateway, &fresh).await;
    tokio::task::block_in_place(|| {
        wait_for(
            "frames with a session forwarded",
            Duration::from_secs(10),
            || forwarded(&net) >= before + 5.0,
        );
    });
    assert_eq!(dropped(&net), 5.0);
}
