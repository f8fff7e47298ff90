//! Three directory authorities as processes (`specs/directory.md` §6):
//! every document carries their three signatures and recomputes from the
//! votes it names; with one killed the other two go on; with two killed
//! no document is agreed, the last one serves until it expires, and then
//! nodes and clients say why they stop. Admission: a node nobody approved
//! is never listed, an approval lists it within rounds, and mixes asking
//! for one layer are placed where the authorities decide.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mtos_client::netcheck::{self, Audit, Served, Source};
use mtos_client::testnet::{AuthoritySettings, NodeSettings};
use mtos_mixnode::admission::Position::{self, Gateway, Layer, Service};
use mtos_mixnode::directory::{NetworkDocument, document_signers};
use mtos_net::DIR_GET_DOCUMENT;
use mtos_tests::{CHAIN, TestClient, Testnet, node_binary, wait_for};

/// Asks authority `i` for its document.
async fn served(client: &mut TestClient, net: &Testnet, i: usize) -> Option<Vec<u8>> {
    let peer = mtos_net::peer_id_of(&net.authorities[i].key).unwrap();
    mtos_net::directory_request(
        &mut client.control,
        peer,
        DIR_GET_DOCUMENT,
        &[],
        Duration::from_secs(5),
    )
    .await
    .ok()
}

/// Sends five packets along the client's chain (gateway, three layers,
/// service node) and waits until the gateway and the mixes have forwarded
/// all of them: twenty forwards.
async fn five_packets_cross(net: &Testnet, client: &mut TestClient, what: &str) {
    let route = client.chain_route();
    assert_eq!(route.len(), 5, "a node at every position");
    let forwarded = |net: &Testnet| -> f64 {
        net.nodes
            .iter()
            .filter(|n| n.position != Service)
            .map(|n| n.metric("mtos_frames_forwarded_total", "").unwrap_or(0.0))
            .sum()
    };
    let before = tokio::task::block_in_place(|| forwarded(net));
    let hops: Vec<&_> = route.iter().collect();
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|_| client.frame(&hops, Duration::from_millis(5), what.as_bytes()))
        .collect();
    client.send(&route[0], &frames).await;
    tokio::task::block_in_place(|| {
        wait_for(what, Duration::from_secs(30), || {
            forwarded(net) - before >= 20.0
        })
    });
}

fn keys(net: &Testnet) -> Vec<[u8; 32]> {
    net.authorities.iter().map(|a| a.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_sign_one_network_and_it_outlives_one_but_not_two() {
    // Epochs of 12 s (rounds of 2 s): the last document expires within
    // 18 s of the last agreement.
    let settings = AuthoritySettings {
        node_loops: Some(0.0),
        ..AuthoritySettings::default()
    };
    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(&CHAIN, 12, 5, |_| NodeSettings::default(), &settings)
    });
    let mut client = TestClient::connect(&net).await;
    let first = served(&mut client, &net, 0).await.unwrap();
    let (digest, signers) = document_signers(&first, &keys(&net)).unwrap();
    assert_eq!(signers.len(), 3, "every authority signed");
    // The three serve the same bytes' body, and each recomputes from its
    // votes.
    for i in 1..3 {
        let other = served(&mut client, &net, i).await.unwrap();
        let (d, _) = document_signers(&other, &keys(&net)).unwrap();
        let a = NetworkDocument::verify(&first, &net.trust(), mtos_net::unix_now()).unwrap();
        let b = NetworkDocument::verify(&other, &net.trust(), mtos_net::unix_now()).unwrap();
        if (a.epoch, a.serial) == (b.epoch, b.serial) {
            assert_eq!(
                d, digest,
                "authority {i} serves another document for the round"
            );
        }
    }
    let report = netcheck::check(&net.network_config(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(report.sound(), "{}", report.text());
    // The gateway serves the document it uses, valid (it may have
    // fetched it before the third signature was gathered).
    let gateways: Vec<_> = report
        .views
        .iter()
        .filter(|v| v.source == Source::Gateway)
        .collect();
    assert_eq!(gateways.len(), 1, "{}", report.text());
    assert!(
        matches!(gateways[0].served, Served::Document { signers: 2.., .. }),
        "{}",
        report.text()
    );
    for v in report
        .views
        .iter()
        .filter(|v| v.source == Source::Authority)
    {
        assert!(
            matches!(
                v.served,
                Served::Document {
                    signers: 3,
                    audit: Audit::Matches,
                    ..
                }
            ),
            "{}",
            report.text()
        );
    }

    // One authority killed: rounds go on with two signatures.
    net.authorities[0].proc.kill();
    let before = NetworkDocument::verify(&first, &net.trust(), mtos_net::unix_now()).unwrap();
    let mut two_signed = None;
    for _ in 0..60 {
        if let Some(bytes) = served(&mut client, &net, 1).await {
            let doc = NetworkDocument::verify(&bytes, &net.trust(), mtos_net::unix_now()).unwrap();
            let (_, signers) = document_signers(&bytes, &keys(&net)).unwrap();
            // A round wholly after the kill: two votes, two signatures.
            if (doc.epoch, doc.serial) > (before.epoch, before.serial)
                && signers.len() == 2
                && doc.consensus.votes.len() == 2
            {
                two_signed = Some(doc);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let two_signed = two_signed.expect("no document agreed by the two left");
    assert_eq!(two_signed.nodes.len(), CHAIN.len());
    assert_eq!(two_signed.consensus.votes.len(), 2);
    // Packets still cross the network on it.
    let mut client = TestClient::connect(&net).await;
    five_packets_cross(&net, &mut client, "five packets across four hops").await;

    // Two killed: the last one agrees on nothing alone. It serves the last
    // document until it expires, and nodes keep it; then every node
    // reports why, and a new client is refused with the reason.
    net.authorities[1].proc.kill();
    let last = loop {
        let bytes = served(&mut client, &net, 2).await.unwrap();
        let doc = NetworkDocument::verify(&bytes, &net.trust(), mtos_net::unix_now()).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Two rounds later the same document: no more agreement.
        let again = served(&mut client, &net, 2).await;
        if again.as_deref() == Some(bytes.as_slice()) {
            break doc;
        }
    };
    let now = mtos_net::unix_now();
    assert!(last.valid_until > now, "the last document is still valid");
    tokio::time::sleep(Duration::from_secs(last.valid_until - now + 3)).await;
    let authority_log = net.authorities[2].log();
    assert!(
        authority_log.contains("a round made no document"),
        "{authority_log}"
    );
    assert!(
        served(&mut client, &net, 2).await.is_none(),
        "an expired document is not served"
    );
    tokio::task::block_in_place(|| {
        wait_for(
            "every node to report the network document unavailable",
            Duration::from_secs(30),
            || {
                net.nodes.iter().all(|n| {
                    let log = n.log();
                    log.contains("no agreed network document")
                })
            },
        )
    });
    let Err(refused) = mtos_client::mixnet::Session::connect(&net.network_config()).await else {
        panic!("a session without a valid document");
    };
    assert!(
        refused.to_string().contains("no agreed network document"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_approved_nodes_are_listed_in_the_layers_the_authorities_choose() {
    // Three mixes all ask for layer 3; one more mix is never approved.
    let positions: [Position; 6] = [Gateway, Layer(3), Layer(3), Layer(3), Service, Layer(1)];
    let settings = AuthoritySettings {
        node_loops: Some(0.0),
        admission: Some("approved".into()),
        ..AuthoritySettings::default()
    };
    let mut net = tokio::task::block_in_place(|| {
        Testnet::launch(
            &positions,
            600,
            5,
            |_| NodeSettings::default(),
            &settings,
            3,
        )
    });
    let node_keys: Vec<String> = net
        .nodes
        .iter()
        .map(|n| {
            let id = mtos_node::load_identity(&n.dir.join("keys/identity.key")).unwrap();
            data_encoding::HEXLOWER.encode(id.verify_key().as_bytes())
        })
        .collect();
    let key = |i: usize| node_keys[i].clone();
    let approve = |net: &Testnet, node: &str| {
        for a in &net.authorities {
            let out = std::process::Command::new(node_binary())
                .args(["authority", "approve", "--config"])
                .arg(a.dir.join("authority.toml"))
                .arg(node)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    // Node 5 is approved by one authority only: not a majority.
    for i in 0..5 {
        approve(&net, &key(i));
    }
    let out = std::process::Command::new(node_binary())
        .args(["authority", "approve", "--config"])
        .arg(net.authorities[0].dir.join("authority.toml"))
        .arg(key(5))
        .output()
        .unwrap();
    assert!(out.status.success());
    // The unapproved node's descriptor is refused: it is not listed.
    tokio::task::block_in_place(|| net.wait_until_listed(5, Duration::from_secs(60)));
    let mut client = TestClient::connect(&net).await;
    let doc = client.document.clone();
    assert_eq!(doc.nodes.len(), 5);
    let mixes: Vec<Option<u8>> = doc
        .nodes
        .iter()
        .filter(|n| n.role == mtos_mixnode::directory::Role::Mix)
        .map(|n| n.layer)
        .collect();
    // All asked for layer 3; the authorities fill the emptiest layers
    // first, so they get one layer each.
    let mut layers = mixes.clone();
    layers.sort();
    assert_eq!(layers, vec![Some(1), Some(2), Some(3)], "{mixes:?}");
    // Each mix takes traffic for the layer it was given, not the one its
    // config asked for: packets cross all of them.
    five_packets_cross(&net, &mut client, "five packets across the placed layers").await;
    let refused: f64 = tokio::task::block_in_place(|| {
        net.nodes
            .iter()
            .map(|n| {
                n.metric("mtos_frames_dropped_total", "reason=\"wrong_layer\"")
                    .unwrap_or(0.0)
            })
            .sum()
    });
    assert_eq!(refused, 0.0, "a placed mix refused its traffic");
    let listed = |k: &str| {
        doc.nodes
            .iter()
            .any(|n| data_encoding::HEXLOWER.encode(&n.key) == k)
    };
    assert!(!listed(&key(5)));
    let log = net.authorities[1].log();
    assert!(log.contains("not on the authority's allowlist"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_requests_does_not_keep_the_authorities_from_agreeing() {
    use futures::{AsyncReadExt, StreamExt};
    let settings = AuthoritySettings {
        node_loops: Some(0.0),
        ..AuthoritySettings::default()
    };
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(&CHAIN, 60, 5, |_| NodeSettings::default(), &settings)
    });
    let target = mtos_net::peer_id_of(&net.authorities[0].key).unwrap();
    let target_addr = net.authorities[0].addr.clone();
    // 80 peers each hold 4 streams to authority 0 that send nothing, and
    // open another as soon as one is dropped: more than the 256 requests
    // it serves at once for everyone but the other authorities. The
    // attacker runs on a thread and runtime of its own, as it would on a
    // machine of its own: it must not starve this test's client.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let attacker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            for _ in 0..80 {
                let mut swarm =
                    mtos_net::build_swarm(libp2p::identity::Keypair::generate_ed25519(), 8)
                        .unwrap();
                swarm.add_peer_address(target, target_addr.clone());
                let control = swarm.behaviour().stream.new_control();
                tokio::spawn(async move {
                    loop {
                        swarm.select_next_some().await;
                    }
                });
                for _ in 0..4 {
                    let mut control = control.clone();
                    tokio::spawn(async move {
                        loop {
                            match control.open_stream(target, mtos_net::DIR_PROTOCOL).await {
                                Ok(mut stream) => {
                                    let mut byte = [0u8; 1];
                                    let _ = stream.read(&mut byte).await;
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                        }
                    });
                }
            }
            let _ = stopped.await;
        });
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The authorities' requests to one another have a pool of their own:
    // rounds agreed during the flood count authority 0's vote and carry
    // its signature.
    let mut client = TestClient::connect(&net).await;
    let start = NetworkDocument::verify(
        &served(&mut client, &net, 1).await.unwrap(),
        &net.trust(),
        mtos_net::unix_now(),
    )
    .unwrap();
    let mut whole = 0;
    let mut seen = Vec::new();
    // Up to 90 s (nine rounds): on a loaded machine some rounds gather
    // only two signatures in their half-round, flood or not.
    let (mut asked, mut unanswered) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        asked += 1;
        let answer = served(&mut client, &net, 1).await;
        if answer.is_none() {
            unanswered += 1;
        }
        if let Some(bytes) = answer {
            let doc = NetworkDocument::verify(&bytes, &net.trust(), mtos_net::unix_now()).unwrap();
            let (_, signers) = document_signers(&bytes, &keys(&net)).unwrap();
            if doc.serial > start.serial + 1 {
                assert_eq!(
                    doc.consensus.votes.len(),
                    3,
                    "round {} lost the flooded authority's vote",
                    doc.serial
                );
                if seen.last().map(|(serial, _)| *serial) != Some(doc.serial) {
                    seen.push((doc.serial, signers.len()));
                }
                if signers.len() == 3 {
                    whole += 1;
                }
                if whole >= 3 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop.send(());
    let _ = tokio::task::block_in_place(|| attacker.join());
    assert!(
        whole >= 3,
        "three rounds during the flood signed by all three: (round, signers) {seen:?}, \
         {unanswered} of {asked} requests to authority 1 unanswered"
    );
}
