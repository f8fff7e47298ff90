//! One client with a fixed budget of work tries to fill the replicas so
//! that every later put is refused for the whole retention time
//! (`specs/storage.md` §2). Each put carries a stamp; the replicas ask
//! twice the effort for each 5% their young records fill above half, so
//! the budget runs out well before the store is full, and an honest
//! client's puts, paying what is asked, are still stored on K replicas.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mtos_client::mixnet::{PutOutcome, Session};
use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;
use mtos_mixnode::admission::Position;
use mtos_mixnode::receipts::decode_list;
use mtos_mixnode::records::{Kind, make_stamp};
use mtos_mixnode::service::{Op, Status};
use mtos_tests::{AuthoritySettings, CHAIN, NodeSettings, Testnet};
use rand::RngExt;

/// Full chunks a replica holds.
const ROOM: u64 = 60;
/// The attacker's budget: stamps of this much effort in all, about as
/// many Equi-X solutions (~2 s of one core here). Without stamps, 600
/// puts would fill the store ten times over.
const BUDGET: u64 = 600;

fn random_chunk() -> Vec<u8> {
    let mut c = vec![0u8; CHUNK_SIZE];
    rand::rng().fill(&mut c[..]);
    c
}

/// Whether a put's response says a replica (or the service node) asked
/// for more effort.
fn asks_more(status: Status, body: &[u8]) -> bool {
    status == Status::Refused
        && (body == b"low_effort"
            || decode_list(body)
                .is_ok_and(|l| l.iter().any(|a| a.detail.starts_with(b"low_effort "))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_fixed_budget_cannot_fill_the_replicas_against_honest_puts() {
    // The three layers store (so every chunk lands on all three, K = 3),
    // each with room for 60 chunks and records kept an hour; the floor is
    // one solution a put; the per-service quota is out of the way.
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |p| NodeSettings {
                storage: Some(matches!(p, Position::Layer(_))),
                max_bytes: Some(ROOM * CHUNK_SIZE as u64),
                retention_secs: Some(3_600),
                puts_per_service: Some(1_000),
                put_burst: Some(1_000),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(20.0),
                loops: Some(2.0),
                drops: Some(2.0),
                stamp_floor: Some(1),
                // Clients at these rates all the time: no bulk windows.
                no_bulk: true,
                ..AuthoritySettings::default()
            },
        )
    });
    let wait = Duration::from_secs(60);

    // The attacker: puts at the effort asked, four at a time, doubling
    // it whenever the replicas ask more, until the budget is spent.
    let attacker = Session::connect(&net.network_config()).await.unwrap();
    let epoch = attacker.document().epoch;
    let (mut spent, mut effort, mut stored, mut refused, mut unanswered) =
        (0u64, 1u32, 0u64, 0u64, 0u64);
    while spent + u64::from(effort) <= BUDGET {
        let batch = ((BUDGET - spent) / u64::from(effort)).min(4) as usize;
        let mut puts = Vec::new();
        for _ in 0..batch {
            let chunk = random_chunk();
            let at = Locator::of(&chunk);
            let stamp = make_stamp(Kind::Chunk, &at, &chunk, epoch, effort, rand::random());
            spent += u64::from(effort);
            puts.push(attacker.request(Op::Put(Kind::Chunk, chunk, stamp), at, wait));
        }
        let mut more = false;
        for r in futures::future::join_all(puts).await {
            // An answer lost on a loaded machine: the work is spent all
            // the same (what the replicas hold is checked below).
            let Ok(r) = r else {
                unanswered += 1;
                continue;
            };
            match r.status {
                Status::Ok => stored += 1,
                // No replica's answer reached the service node in time
                // (the same loss one hop further in): spent all the same.
                Status::Unavailable => unanswered += 1,
                s if asks_more(s, &r.body) => {
                    refused += 1;
                    more = true;
                }
                other => panic!("attacker's put: {other:?}\n{}", net.report()),
            }
        }
        if more {
            effort *= 2;
        }
    }
    println!(
        "attacker: effort {spent} of {BUDGET} spent, {stored} chunks stored, {refused} refused for low effort, {unanswered} unanswered, last effort asked {effort}"
    );
    // The budget bought well under the room: without stamps it would have
    // bought ten times the room.
    assert!(stored < ROOM * 9 / 10, "{stored} of {ROOM} chunks");
    assert!(refused > 0);
    let held_bytes = |net: &Testnet| -> Vec<f64> {
        net.nodes
            .iter()
            .filter(|n| matches!(n.position, Position::Layer(_)))
            .map(|n| n.metric("mtos_record_bytes", "").unwrap_or(0.0))
            .collect()
    };
    let after_attack = tokio::task::block_in_place(|| held_bytes(&net));
    assert!(
        after_attack
            .iter()
            .all(|b| *b < (ROOM * CHUNK_SIZE as u64) as f64),
        "{after_attack:?}"
    );

    // An honest client: each put stored with K receipts, paying the
    // effort the replicas ask (it learns it once and keeps it).
    let honest = Session::connect(&net.network_config()).await.unwrap();
    for i in 0..4 {
        let chunk = random_chunk();
        // Asked again while unproven (an answer lost), as `mtos publish`
        // does.
        let mut r = Err(String::new());
        for _ in 0..3 {
            r = honest
                .put(Kind::Chunk, Locator::of(&chunk), chunk.clone(), wait)
                .await
                .map_err(|e| e.to_string());
            if !matches!(r, Err(_) | Ok(PutOutcome::Unproven(_))) {
                break;
            }
        }
        let r = r.unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
        assert!(
            matches!(r, PutOutcome::Stored { receipts: 3, .. }),
            "honest put {i}: {r:?}\n{}",
            net.report()
        );
    }
    tokio::task::block_in_place(|| {
        let low_effort: f64 = net
            .nodes
            .iter()
            .map(|n| {
                n.metric("mtos_record_requests_total", "result=\"low_effort\"")
                    .unwrap_or(0.0)
            })
            .sum();
        assert!(low_effort >= 3.0, "replicas counted {low_effort}");
        let after = held_bytes(&net);
        println!(
            "replica bytes after the attack {after_attack:?}, after the honest puts {after:?}"
        );
    });
}
