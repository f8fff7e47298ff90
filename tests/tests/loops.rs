//! Node loop cover: every node's loops come back on a healthy network;
//! when a middle node drops everything (the test fault switch), the loss
//! shows on `/metrics` and in the logs of the other nodes.

use std::time::Duration;

use mtos_mixnode::admission::Position;
use mtos_tests::{AuthoritySettings, CHAIN, FaultsSection, NodeSettings, Testnet};

#[test]
fn a_node_dropping_everything_is_noticed_by_loop_cover() {
    let mut net = Testnet::start_custom(
        &CHAIN,
        600,
        5,
        |_| NodeSettings::default(),
        &AuthoritySettings {
            node_loops: Some(20.0),
            max_delay_ms: Some(2000),
            ..AuthoritySettings::default()
        },
    );
    // Healthy: once every node knows every other (loops sent while the
    // document was still spreading may be lost), loops return and none
    // is lost.
    let returned = |net: &Testnet, i: usize| {
        net.nodes[i]
            .metric("mtos_node_loops_total", "result=\"returned\"")
            .unwrap_or(0.0)
    };
    net.wait(
        "loops returning on every node",
        Duration::from_secs(60),
        |net| (0..net.nodes.len()).all(|i| returned(net, i) >= 20.0),
    );
    // Loops sent before that expire as lost up to 20 s later (the loss
    // timeout at this max delay, with the 10 s a mix's loop may wait for
    // its service node's answer): let them.
    std::thread::sleep(Duration::from_secs(22));
    let lost_before: Vec<f64> = net
        .nodes
        .iter()
        .map(|n| {
            n.metric("mtos_node_loops_total", "result=\"lost\"")
                .unwrap()
        })
        .collect();
    let returned_before: Vec<f64> = (0..net.nodes.len()).map(|i| returned(&net, i)).collect();
    net.wait(
        "forty more loops on every node",
        Duration::from_secs(60),
        |net| (0..net.nodes.len()).all(|i| returned(net, i) >= returned_before[i] + 40.0),
    );
    std::thread::sleep(Duration::from_secs(3));
    for (n, before) in net.nodes.iter().zip(&lost_before) {
        assert_eq!(
            n.metric("mtos_node_loops_total", "result=\"lost\""),
            Some(*before),
            "{} lost loops on a healthy network\n{}",
            n.proc.name,
            net.report()
        );
    }
    // The mixes' loops went as probes to the service node, which
    // answered them (at least the 60 each mix saw return; this chain
    // has no storage node, so each answer is `unavailable`).
    let probes = net
        .node(Position::Service)
        .metric("mtos_service_requests_total", "op=\"probe\"")
        .unwrap_or(0.0);
    assert!(
        probes >= 180.0,
        "{probes} probes answered\n{}",
        net.report()
    );
    // Layer 2 starts dropping every frame: every loop crosses it.
    net.node_mut(Position::Layer(2))
        .restart_with_faults(FaultsSection {
            drop_all: true,
            ..FaultsSection::default()
        });
    net.wait(
        "the loss to show on the gateway",
        Duration::from_secs(90),
        |net| {
            net.node(Position::Gateway)
                .metric("mtos_node_loop_loss_ratio", "")
                .is_some_and(|r| r > 0.5)
        },
    );
    let gateway = net.node(Position::Gateway);
    assert!(
        gateway
            .metric("mtos_node_loops_total", "result=\"lost\"")
            .unwrap()
            >= 10.0
    );
    assert!(
        gateway.log().contains("node loops are not coming back"),
        "{}",
        gateway.log()
    );
    let l2 = net.node(Position::Layer(2));
    assert!(
        l2.metric("mtos_frames_dropped_total", "reason=\"fault_injected\"")
            .unwrap()
            > 0.0
    );
}
