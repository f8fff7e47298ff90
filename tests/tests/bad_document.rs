//! A node whose trusted authorities start serving a document it must
//! refuse (a payload rate of zero, signed with the authorities' own keys)
//! keeps running on the document it has: the new one is refused naming
//! the field, counted, and packets still cross the node
//! (`specs/directory.md` §2).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use mtos_mixnode::admission::Position;
use mtos_net::{DIR_GET_DOCUMENT, DIR_OK, DIR_PROTOCOL, MAX_DIR_REQUEST};
use mtos_tests::{CHAIN, TestClient, Testnet, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_its_document_when_its_authority_serves_one_it_must_refuse() {
    let mut net = tokio::task::block_in_place(|| Testnet::start(&CHAIN, 600, 5));
    let mut client = TestClient::connect(&net).await;
    let good = client.document.clone();

    // The authorities stop; in their places, at their addresses and with
    // their keys, impostors that serve the same document with λP = 0,
    // signed by every authority.
    let identities: Vec<_> = net
        .authorities
        .iter_mut()
        .map(|a| {
            a.proc.kill();
            mtos_node::load_identity(&a.dir.join("keys/authority.key")).unwrap()
        })
        .collect();
    let mut bad = good.clone();
    bad.rates.payload = 0.0;
    bad.serial += 1;
    let mut signed = bad.sign(&identities[0]);
    for id in &identities[1..] {
        signed = mtos_mixnode::directory::add_signature(&signed, id).unwrap();
    }
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (identity, authority) in identities.iter().zip(&net.authorities) {
        let mut swarm = mtos_net::build_swarm(mtos_net::libp2p_keypair(identity), 64).unwrap();
        let mut listening = false;
        for _ in 0..50 {
            if swarm.listen_on(authority.addr.clone()).is_ok() {
                listening = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(listening, "the authority's address stayed taken");
        let mut incoming = swarm
            .behaviour()
            .stream
            .new_control()
            .accept(DIR_PROTOCOL)
            .unwrap();
        tasks.push(tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        }));
        let served = served.clone();
        let signed = signed.clone();
        tasks.push(tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                let signed = signed.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    use futures::AsyncWriteExt;
                    let Ok((kind, _)) = mtos_net::read_message(&mut stream, MAX_DIR_REQUEST).await
                    else {
                        return;
                    };
                    // Descriptors are taken; documents are the bad one.
                    let body = if kind == DIR_GET_DOCUMENT {
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        signed
                    } else {
                        Vec::new()
                    };
                    let _ = mtos_net::write_message(&mut stream, DIR_OK, &body).await;
                    let _ = stream.close().await;
                });
            }
        }));
    }

    // Every node fetches it, refuses it naming the field, counts it.
    tokio::task::block_in_place(|| {
        let failures = |net: &Testnet| -> Vec<f64> {
            net.nodes
                .iter()
                .map(|n| n.metric("mtos_directory_failures_total", "").unwrap_or(0.0))
                .collect()
        };
        let before = failures(&net);
        wait_for(
            "every node to refuse the bad document twice",
            Duration::from_secs(60),
            || {
                failures(&net)
                    .iter()
                    .zip(&before)
                    .all(|(now, then)| now - then >= 2.0)
            },
        );
        for node in &net.nodes {
            let log = node.log();
            assert!(
                log.contains("rates.payload"),
                "{:?} did not name the field:\n{log}",
                node.position
            );
        }
    });
    assert!(served.load(std::sync::atomic::Ordering::Relaxed) >= net.nodes.len() as u64);

    // Packets still cross every node on the document they have.
    let route = client.chain_route();
    let forwarded = |net: &Testnet| -> f64 {
        net.nodes
            .iter()
            .filter(|n| n.position != Position::Service)
            .map(|n| n.metric("mtos_frames_forwarded_total", "").unwrap_or(0.0))
            .sum()
    };
    let before = tokio::task::block_in_place(|| forwarded(&net));
    let hops: Vec<&_> = route.iter().collect();
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|_| client.frame(&hops, Duration::from_millis(5), b"still here"))
        .collect();
    client.send(&route[0], &frames).await;
    tokio::task::block_in_place(|| {
        wait_for(
            "ten packets across four hops",
            Duration::from_secs(30),
            || forwarded(&net) - before >= 40.0,
        );
        for node in &mut net.nodes {
            assert!(node.proc.alive(), "{:?} stopped", node.position);
        }
    });
    for t in tasks {
        t.abort();
    }
}
