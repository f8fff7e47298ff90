//! A gateway bounds client sessions per source address: a third session
//! from an address that holds two is refused (counted), the two work, and
//! the share comes back when one closes; a session opens only with work
//! for this gateway, epoch, mailbox and identity; and one connection
//! opening sessions as fast as it can holds its share (4) while others'
//! messages cross and new clients are served (`specs/client.md` §3); a
//! session asking for a bulk window now sends at the bulk rate at once,
//! and its gateway lets it (§4.1).

use std::time::Duration;

use mtos_client::mixnet::{Received, Session, SessionOptions};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::{NodeEntry, Ticket};
use mtos_tests::{AuthoritySettings, CHAIN, NodeSettings, Testnet, wait_for};

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
                // Sessions at these rates all the time: no bulk windows.
                no_bulk: true,
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
    let alice = Session::connect(&net.network_config()).await.unwrap();
    let mut bob = Session::connect(&net.network_config()).await.unwrap();
    // A third: refused at the gateway (its connect fails on the closed
    // session, or its delivery stream is never served).
    let carol = Session::connect(&net.network_config()).await;
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
            if let Ok(s) = Session::connect(&net.network_config()).await {
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
async fn a_session_opens_only_with_work_for_this_gateway_epoch_mailbox_and_identity() {
    use mtos_crypto::work::{SESSION_WORK_BITS, WorkFor, session_work_ok, solve_session_work};
    let net = tokio::task::block_in_place(|| Testnet::start(&CHAIN, 600, 5));
    let mut client = mtos_tests::TestClient::connect(&net).await;
    let gateway = client.at(Position::Gateway)[0].clone();
    let epoch = client.document.epoch;
    let me = client.peer.to_bytes();
    let open = |secret: [u8; 32], epoch: u32, nonce: u64| {
        let mut o = secret.to_vec();
        o.extend_from_slice(&epoch.to_be_bytes());
        o.extend_from_slice(&nonce.to_be_bytes());
        // No bulk windows asked for.
        o.extend_from_slice(&u16::MAX.to_be_bytes());
        o
    };
    let work = |secret: &[u8; 32], key: &[u8; 32], epoch: u32, client: &[u8]| {
        let mailbox = mtos_crypto::envelope::mailbox_id(secret);
        let w = WorkFor {
            gateway: key,
            epoch,
            mailbox: &mailbox,
            client,
        };
        solve_session_work(w, SESSION_WORK_BITS, 0)
    };
    let refused = |net: &Testnet| {
        net.node(Position::Gateway)
            .metric("mtos_client_sessions_refused_total", "reason=\"work\"")
            .unwrap_or(0.0)
    };
    // With work for this gateway, this client, its epoch or one next to
    // it (a document lagging or leading a boundary), and this mailbox:
    // frames come.
    for (i, e) in [epoch, epoch + 1, epoch.saturating_sub(1)]
        .into_iter()
        .enumerate()
    {
        let secret = [0x61 + i as u8; 32];
        let nonce = work(&secret, &gateway.key, e, &me);
        let frame = client
            .session_frame(&gateway, &open(secret, e, nonce))
            .await
            .unwrap_or_else(|err| panic!("epoch {e}: {err}\n{}", net.report()));
        assert_eq!(frame.len(), mtos_mixnode::mailbox::DELIVERY_FRAME_SIZE);
    }
    // Without: a nonce that is not work, work for another mailbox, for
    // another gateway, for an epoch too far, or another identity's work
    // (replayed by this one): each closed and counted.
    let (secret, other) = ([0x61; 32], [0x62; 32]);
    let mailbox = mtos_crypto::envelope::mailbox_id(&other);
    let for_other = WorkFor {
        gateway: &gateway.key,
        epoch,
        mailbox: &mailbox,
        client: &me,
    };
    let bad = (0u64..)
        .find(|n| !session_work_ok(for_other, *n, SESSION_WORK_BITS))
        .unwrap();
    let someone_else = mtos_tests::TestClient::connect(&net).await.peer.to_bytes();
    let attempts = [
        open(other, epoch, bad),
        open(other, epoch, work(&secret, &gateway.key, epoch, &me)),
        open(other, epoch, work(&other, &[0x47; 32], epoch, &me)),
        open(other, epoch + 5, work(&other, &gateway.key, epoch + 5, &me)),
        open(
            other,
            epoch,
            work(&other, &gateway.key, epoch, &someone_else),
        ),
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
    // before any crypto; with one, they are taken; once it ends, they are
    // dropped again.
    let route = client.chain_route();
    let hops: Vec<&NodeEntry> = route.iter().collect();
    let batch = |client: &mtos_tests::TestClient| -> Vec<Vec<u8>> {
        (0..5)
            .map(|_| client.frame(&hops, Duration::from_millis(5), b"x"))
            .collect()
    };
    let mut stranger = mtos_tests::TestClient::connect(&net).await;
    stranger
        .send_without_session(&gateway, &batch(&client))
        .await;
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
    stranger.send(&gateway, &batch(&client)).await;
    tokio::task::block_in_place(|| {
        wait_for(
            "frames with a session forwarded",
            Duration::from_secs(10),
            || forwarded(&net) >= before + 5.0,
        );
    });
    assert_eq!(dropped(&net), 5.0);
    // The session ends (its stream closed); the gateway notices at its
    // next frame, and the same identity's frames are dropped again.
    stranger.close_session(&gateway);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dropped(&net) <= 5.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "frames still taken after the session ended\n{}",
            net.report()
        );
        stranger
            .send_without_session(&gateway, &batch(&client))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_opening_sessions_as_fast_as_it_can_leaves_others_served() {
    // The address bound off (every client here is 127.0.0.1): only the
    // bound per connection and the gateway's capacity stand.
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |p| NodeSettings {
                sessions_per_address: (p == Position::Gateway).then_some(0),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(20.0),
                loops: Some(2.0),
                drops: Some(2.0),
                // Sessions at these rates all the time: no bulk windows.
                no_bulk: true,
                ..AuthoritySettings::default()
            },
        )
    });
    let refused = |net: &Testnet, reason: &str| {
        net.node(Position::Gateway)
            .metric(
                "mtos_client_sessions_refused_total",
                &format!("reason=\"{reason}\""),
            )
            .unwrap_or(0.0)
    };
    let alice = Session::connect(&net.network_config()).await.unwrap();
    let mut bob = Session::connect(&net.network_config()).await.unwrap();
    // One connection opens sessions, each with its work and a fresh
    // mailbox, as fast as it can for 20 s, keeping every one it gets.
    let mut attacker = mtos_tests::TestClient::connect(&net).await;
    let gateway = attacker.at(Position::Gateway)[0].clone();
    let attack = tokio::spawn(async move {
        let (mut served, mut tried) = (0u32, 0u32);
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < end {
            tried += 1;
            if attacker.try_open_session(&gateway).await.is_ok() {
                served += 1;
            }
        }
        (attacker, served, tried)
    });
    // Meanwhile alice's messages reach bob, every one.
    let to = bob.address();
    for n in 0..20 {
        alice.send(&to, format!("during {n}").as_bytes()).unwrap();
    }
    let mut got = 0;
    while got < 20 {
        match tokio::time::timeout(Duration::from_secs(60), bob.recv()).await {
            Ok(Some(Received::Message(m))) if m.starts_with(b"during ") => got += 1,
            Ok(Some(_)) => {}
            _ => panic!("{got} of 20 messages\n{}", net.report()),
        }
    }
    let (_attacker, served, tried) = attack.await.unwrap();
    println!("one connection: {served} of {tried} sessions served");
    // It held at most its connection's share, and was refused the rest.
    assert!(served <= 4, "{served} sessions for one connection");
    assert!(tried > served);
    assert!(refused(&net, "connection") >= f64::from(tried - served) * 0.9);
    // A new client is still served while the attacker holds its share.
    let carol = Session::connect(&net.network_config()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!carol.stats().deliveries.is_empty(), "{}", net.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_now_sends_at_the_bulk_rate_at_once_and_its_gateway_lets_it() {
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |_| NodeSettings::default(),
            &AuthoritySettings {
                payload: Some(2.0),
                loops: Some(1.0),
                drops: Some(1.0),
                bulk_payload: Some(20.0),
                bulk_window_secs: Some(20),
                bulk_cohorts: Some(20),
                ..AuthoritySettings::default()
            },
        )
    });
    // A session that asked for no windows: idle rates (4 a second).
    let session = Session::connect_with(
        &net.network_config(),
        &SessionOptions {
            ticket: Some(Ticket::NONE),
            ..SessionOptions::default()
        },
    )
    .await
    .unwrap();
    let doc = session.document();
    let bulk = doc.rates.bulk.unwrap();
    let idle = sent_rate(&session, 8).await;
    // Just after a window begins, so the whole of it is left.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let window = bulk.window_secs * 1000;
    let genesis = doc.schedule.genesis * 1000;
    let next = genesis + ((now - genesis) / window + 1) * window;
    tokio::time::sleep(Duration::from_millis(next - now + 300)).await;
    let ticket = session.window_now().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while session.windows() != (ticket, true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the window now was not granted: {:?}\n{}",
            session.windows(),
            net.report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fast = sent_rate(&session, 8).await;
    eprintln!("idle {idle:.1} frames/s, in the window now {fast:.1} frames/s");
    // Idle λP + λL + λD = 4, bulk 22: far apart over 8 s.
    assert!(idle < 8.0, "idle at {idle:.1} a second");
    assert!(fast > 14.0, "a window now sent {fast:.1} a second");
    // The gateway let every frame through: none throttled.
    let throttled = net
        .node(Position::Gateway)
        .metric("mtos_frames_dropped_total", "reason=\"client_throttled\"")
        .unwrap_or(0.0);
    assert_eq!(throttled, 0.0, "{}", net.report());
    assert_eq!(session.stats().link_breaks, 0);
}

/// Frames `s` sends a second over the next `secs` seconds.
async fn sent_rate(s: &Session, secs: u64) -> f64 {
    let before = s.stats().sent.len();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (s.stats().sent.len() - before) as f64 / secs as f64
}
