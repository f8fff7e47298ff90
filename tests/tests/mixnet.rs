//! A real mixnet on loopback: an authority and eight `mtos-node`
//! processes (gateway, three layers of two, service). Packets go through
//! all of it; replays, garbage and wrong-layer frames are dropped and
//! counted; a replay is still caught after the node that saw it is
//! `kill -9`ed and restarted.

use std::time::Duration;

use mtos_mixnode::admission::Position;
use mtos_tests::{NodeSettings, TestClient, Testnet, wait_for};

const LAYOUT: [Position; 8] = [
    Position::Gateway,
    Position::Layer(1),
    Position::Layer(1),
    Position::Layer(2),
    Position::Layer(2),
    Position::Layer(3),
    Position::Layer(3),
    Position::Service,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_a_real_mixnet_and_replays_stay_caught_after_kill_9() {
    // Two-minute epochs: documents refresh every 2 s, and a key stays
    // usable for two epochs, longer than the replay checks take.
    // The test client sends its 1,000 packets at once: far above the
    // gateway's per-client bucket, which this test does not measure.
    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_with(&LAYOUT, 120, 5, |_| NodeSettings {
            client_burst: Some(100_000),
            ..NodeSettings::default()
        })
    });
    let mut client = TestClient::connect(&net).await;
    assert_eq!(client.document.nodes.len(), 8);

    // 1,000 packets, each through a random node of every layer.
    let gateway = client.at(Position::Gateway)[0].clone();
    let service = client.at(Position::Service)[0].clone();
    let layers: Vec<Vec<_>> = (1..=3)
        .map(|l| client.at(Position::Layer(l)).into_iter().cloned().collect())
        .collect();
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let pick = |l: usize| &layers[l][(i as usize >> l) % 2];
            let route = [&gateway, pick(0), pick(1), pick(2), &service];
            client.frame(&route, Duration::from_millis(1), &i.to_be_bytes())
        })
        .collect();
    client.send(&gateway, &frames).await;
    tokio::task::block_in_place(|| {
        net.wait(
            "1,000 deliveries at the service node",
            Duration::from_secs(90),
            |net| {
                net.node(Position::Service)
                    .metric("mtos_frames_delivered_total", "")
                    == Some(1000.0)
            },
        );
        // Every layer forwarded every packet once, split over its nodes.
        for position in [
            Position::Gateway,
            Position::Layer(1),
            Position::Layer(2),
            Position::Layer(3),
        ] {
            assert_eq!(
                net.sum(position, "mtos_frames_forwarded_total", ""),
                1000.0,
                "{position:?}"
            );
        }
        for n in &net.nodes {
            assert_eq!(n.metric("mtos_replays_total", ""), Some(0.0));
        }
    });

    // A replay of a frame the gateway already forwarded: dropped, counted.
    let captured = frames[7].clone();
    client.send(&gateway, std::slice::from_ref(&captured)).await;
    tokio::task::block_in_place(|| {
        wait_for("the replay to be counted", Duration::from_secs(20), || {
            net.node(Position::Gateway).metric("mtos_replays_total", "") == Some(1.0)
        });
    });

    // kill -9 the gateway, restart it: the tags come back from disk.
    tokio::task::block_in_place(|| {
        let g = net.node_mut(Position::Gateway);
        g.kill_and_restart();
        wait_for("the gateway to come back", Duration::from_secs(60), || {
            g.metric("mtos_directory_nodes", "") == Some(8.0)
        });
        let restored = g.metric("mtos_replay_tags_restored_total", "").unwrap();
        assert!(restored >= 1000.0, "only {restored} tags restored");
    });
    client.send(&gateway, std::slice::from_ref(&captured)).await;
    tokio::task::block_in_place(|| {
        let g = net.node(Position::Gateway);
        wait_for(
            "the replay after restart to be counted",
            Duration::from_secs(30),
            || g.metric("mtos_replays_total", "") == Some(1.0),
        );
        assert_eq!(g.metric("mtos_frames_forwarded_total", ""), Some(0.0));
    });

    // Garbage of the right size, a truncated frame, and frames sent to a
    // layer-2 node by a client: all dropped and counted, nodes stay up.
    let garbage: Vec<Vec<u8>> = (0..100u8)
        .map(|i| {
            let mut f = vec![i; mtos_crypto::sphinx::FRAME_SIZE];
            f[0] = client.document.epoch as u8;
            f
        })
        .collect();
    client.send(&gateway, &garbage).await;
    client.send(&gateway, &[vec![1u8; 100]]).await;
    // A frame for an epoch whose key the gateway does not hold.
    let mut wrong_epoch = frames[8].clone();
    wrong_epoch[0] = wrong_epoch[0].wrapping_add(100);
    client.send(&gateway, &[wrong_epoch]).await;
    let l2 = client.at(Position::Layer(2))[0].clone();
    let honest = client.frame(
        &[&l2, &layers[2][0], &service],
        Duration::from_millis(1),
        b"skips layers",
    );
    client.send(&l2, &[honest]).await;
    tokio::task::block_in_place(|| {
        let g = net.node(Position::Gateway);
        wait_for("garbage to be counted", Duration::from_secs(20), || {
            let mac = g.metric("mtos_frames_dropped_total", "reason=\"header_mac\"");
            let malformed = g.metric("mtos_frames_dropped_total", "reason=\"malformed\"");
            mac.zip(malformed).map(|(a, b)| a + b) == Some(100.0)
                && g.metric("mtos_frames_dropped_total", "reason=\"wrong_size\"") == Some(1.0)
                && g.metric("mtos_frames_dropped_total", "reason=\"unknown_key\"") == Some(1.0)
        });
        wait_for(
            "the wrong-layer frame to be counted",
            Duration::from_secs(20),
            || {
                net.sum(
                    Position::Layer(2),
                    "mtos_frames_dropped_total",
                    "reason=\"wrong_layer\"",
                ) == 1.0
            },
        );
        for n in &mut net.nodes {
            assert!(n.proc.alive(), "{} died:\n{}", n.proc.name, n.log());
        }
        // Logs never show a client's identity by default.
        let client_peer = client.peer.to_string();
        for n in &net.nodes {
            assert!(!n.log().contains(&client_peer), "{}", n.proc.name);
        }
    });

    // SIGTERM: a clean exit.
    tokio::task::block_in_place(|| {
        for n in &mut net.nodes {
            let status = n.proc.terminate(Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "{} did not exit cleanly: {status:?}",
                n.proc.name
            );
        }
    });
}

/// Epochs of four seconds: every node rotates its Sphinx key, erases the
/// old ones from disk, publishes the next one ahead, and packets built
/// from a later document still cross the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_every_epoch_and_old_keys_are_erased() {
    let chain = [
        Position::Gateway,
        Position::Layer(1),
        Position::Layer(2),
        Position::Layer(3),
        Position::Service,
    ];
    let (net, first_epochs) = tokio::task::block_in_place(|| {
        let net = Testnet::start(&chain, 4, 1);
        // Epoch and rotation count read together, so a slow start that
        // already rotated does not shorten the wait.
        let first: Vec<(u32, f64)> = net
            .nodes
            .iter()
            .map(|n| {
                let rotations = n.metric("mtos_key_rotations_total", "").unwrap();
                (n.metric("mtos_epoch", "").unwrap() as u32, rotations)
            })
            .collect();
        net.wait(
            "two more rotations on every node",
            Duration::from_secs(60),
            |net| {
                net.nodes.iter().zip(&first).all(|(n, (_, r0))| {
                    n.metric("mtos_key_rotations_total", "")
                        .is_some_and(|r| r >= r0 + 2.0)
                })
            },
        );
        (net, first)
    });
    let mut client = TestClient::connect(&net).await;
    let epoch = client.document.epoch;
    for (n, (first, _)) in net.nodes.iter().zip(first_epochs) {
        // Only the previous, current and next keys exist on disk.
        let mut on_disk: Vec<u32> = std::fs::read_dir(n.dir.join("keys/sphinx"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("epoch-")?
                    .strip_suffix(".key")?
                    .parse()
                    .ok()
            })
            .collect();
        on_disk.sort_unstable();
        assert!(
            on_disk.len() <= 3 && on_disk.iter().all(|e| e + 2 >= epoch && *e <= epoch + 2),
            "{}: keys {on_disk:?} at epoch {epoch}",
            n.proc.name
        );
        // The key the node started with is gone two rotations later.
        assert!(
            !on_disk.contains(&first),
            "{}: key of epoch {first} kept",
            n.proc.name
        );
    }
    let entry = |p| client.at(p)[0].clone();
    let route = [
        entry(Position::Gateway),
        entry(Position::Layer(1)),
        entry(Position::Layer(2)),
        entry(Position::Layer(3)),
        entry(Position::Service),
    ];
    let refs: Vec<_> = route.iter().collect();
    let frames: Vec<Vec<u8>> = (0..50u8)
        .map(|i| client.frame(&refs, Duration::from_millis(1), &[i]))
        .collect();
    client.send(&route[0], &frames).await;
    tokio::task::block_in_place(|| {
        net.wait(
            "50 deliveries after rotations",
            Duration::from_secs(30),
            |net| {
                net.node(Position::Service)
                    .metric("mtos_frames_delivered_total", "")
                    == Some(50.0)
            },
        );
    });
}
