//! A node whose trusted authority starts serving a document it must
//! refuse (a payload rate of zero, signed with the authority's own key)
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

    // The authority stops; in its place, at its address and with its key,
    // one that serves the same document with λP = 0.
    net.authority.kill();
    let identity =
        mtos_node::load_identity(&net.root.path().join("authority/keys/authority.key")).unwrap();
    let mut bad = good.clone();
    bad.rates.payload = 0.0;
    bad.serial += 1;
    let signed = bad.sign(&identity);
    let mut swarm = mtos_net::build_swarm(mtos_net::libp2p_keypair(&identity), 64).unwrap();
    let mut listening = false;
    for _ in 0..50 {
        if swarm.listen_on(net.authority_addr.clone()).is_ok() {
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
    let swarm_task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let server = {
        let served = served.clone();
        tokio::spawn(async move {
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
        })
    };

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
    server.abort();
    swarm_task.abort();
}
