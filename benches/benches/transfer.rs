//! Wall time to publish and to fetch a 1 MiB item through a loopback
//! testnet inside a bulk window (`specs/client.md` §4.1) at the network's
//! default classes (authority template: idle λP 2, λL 1, λD 1; bulk λP 50,
//! λL 1, λD 1 in windows of 30 s taken by 20 cohorts; 50 ms mean delay per
//! hop), next to the lower bound computed from the same configuration.
//!
//! Every chunk is one request: it leaves in a payload slot (λP a second)
//! and its answer arrives in a delivery slot, at the class's delivery
//! rate `max(λP + λL + λD, 1.25 (λP + λL))`, above what comes back
//! (`λP + λL`), so answers do not queue behind loops. So n chunks need at
//! least n / λP seconds of payload slots, plus the 9 mixing delays of the
//! last request: the bound. A fetch also waits for the round trips of the
//! tree levels above the data (2 for 1 MiB: the root, then one level-1
//! node, whose chunks are asked for while its siblings are on their
//! way), reported against the bound with them too.
//!
//! The writer's session asks for the cohort whose window comes second
//! from now, the reader's for the one after it; the writer makes its
//! storage stamps before its window (reported apart: a core's work, not
//! the network's), and each transfer starts as its window does.
//!
//! `cargo bench -p mtos-benches --bench transfer` (release build;
//! `-- --kib N` for another size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use mtos_client::mixnet::{Session, SessionOptions};
use mtos_client::store::ChunkStore;
use mtos_client::transfer::{TransferOptions, fetch, item_chunks, prepare, publish};
use mtos_crypto::item::seal::{self, Access, MAX_SEALED_LEN};
use mtos_crypto::item::{ContentType, ItemDraft, Part};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::Ticket;
use mtos_tests::{NodeSettings, Testnet, arg};
use rand::RngExt;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let kib = arg("--kib", 1024) as usize;
    let chain = mtos_tests::CHAIN;
    let net = Testnet::start_with(&chain, 3600, 50, |position| NodeSettings {
        storage: Some(position != Position::Gateway),
        ..NodeSettings::default()
    });
    let config = net.network_config();
    let dir = tempfile::tempdir().unwrap();
    let writer_store = ChunkStore::open(&dir.path().join("writer")).unwrap();
    let reader_store = ChunkStore::open(&dir.path().join("reader")).unwrap();
    let mut file = vec![0u8; kib << 10];
    rand::rng().fill(&mut file[..]);
    let author = mtos_crypto::Identity::throwaway(&mut rand::rng(), 0);
    let item = ItemDraft::new(
        ContentType::MediaObject,
        0,
        vec![Part::binary(file, "application/octet-stream")],
    )
    .sign(&author)
    .unwrap();
    let reference = {
        let mut w = writer_store.writer();
        let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut w).unwrap();
        w.finish().unwrap();
        sealed.reference
    };
    let chunks = item_chunks(&writer_store, &reference).unwrap().len() as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The document's windows, from a first session.
        let doc = Session::connect(&config).await.unwrap().document();
        let bulk = doc.rates.bulk.expect("the template has bulk windows");
        let window_ms = bulk.window_secs * 1000;
        let genesis_ms = doc.schedule.genesis * 1000;
        let k = (unix_ms() - genesis_ms) / window_ms;
        let cohort_of = |w: u64| Ticket((w % u64::from(bulk.cohorts)) as u16);
        let start_of = |w: u64| genesis_ms + w * window_ms;
        let (wk, rk) = (k + 2, k + 3);
        let writer = Session::connect_with(
            &config,
            &SessionOptions {
                ticket: Some(cohort_of(wk)),
                ..SessionOptions::default()
            },
        )
        .await
        .unwrap();
        let reader = Session::connect_with(
            &config,
            &SessionOptions {
                ticket: Some(cohort_of(rk)),
                ..SessionOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(writer.windows().1 && reader.windows().1, "windows not granted");
        let (lp, ll, mu) = (
            bulk.payload,
            bulk.loops,
            doc.mixing.mean_delay_ms as f64 / 1000.0,
        );
        println!(
            "{kib} KiB item, {chunks} chunks; bulk λP {lp}, λL {ll}, λD {} per second in windows of {} s (idle λP {}), mean delay {} ms per hop",
            bulk.drops, bulk.window_secs, doc.rates.payload, doc.mixing.mean_delay_ms
        );
        let bound = chunks / lp + 9.0 * mu;
        println!("lower bound chunks/λP + 9μ = {bound:.2} s");
        let t = Instant::now();
        let stamped = prepare(&writer, &writer_store, &reference).await.unwrap();
        println!(
            "stamps: {stamped} made ahead in {:.1} s (before the window)",
            t.elapsed().as_secs_f64()
        );
        let options = TransferOptions::default();
        wait_until(start_of(wk)).await;
        let t = Instant::now();
        let sent_before = writer.stats();
        let acked = std::sync::Mutex::new(Vec::new());
        let p = publish(&writer, &writer_store, &reference, options, &|done, _| {
            acked.lock().unwrap().push((t.elapsed().as_secs_f64(), done));
        })
        .await
        .unwrap();
        let published = t.elapsed().as_secs_f64();
        let sent = writer.stats();
        println!(
            "publish: {published:.2} s ({} requests) = {:.2} × the bound",
            p.requests,
            published / bound,
        );
        // How the window was used: packets a second the writer sent (its
        // class's λP + λL + λD in a window), and chunks acknowledged in
        // each second.
        let out = (sent.sent_real + sent.sent_cover)
            .saturating_sub(sent_before.sent_real + sent_before.sent_cover);
        let mut per_second = vec![0u32; published.ceil() as usize];
        for (at, _) in acked.lock().unwrap().iter().skip(1) {
            if let Some(n) = per_second.get_mut(*at as usize) {
                *n += 1;
            }
        }
        println!(
            "publish: the writer sent {:.1} packets/s; chunks acknowledged in each second: {per_second:?}",
            out as f64 / published
        );
        wait_until(start_of(rk)).await;
        let t = Instant::now();
        // When the tree revealed more chunks: the root's arrival, then
        // each manifest node's.
        let revealed = std::sync::Mutex::new(Vec::new());
        let fetched_at = std::sync::Mutex::new(Vec::new());
        let f = fetch(&reader, &reader_store, &reference, options, &|done, known| {
            let at = t.elapsed().as_secs_f64();
            let mut r = revealed.lock().unwrap();
            if r.last().is_none_or(|(_, k)| *k < known) {
                r.push((at, known));
            }
            fetched_at.lock().unwrap().push((at, done));
        })
        .await
        .unwrap();
        let fetched = t.elapsed().as_secs_f64();
        let levels = revealed.lock().unwrap().len().saturating_sub(1).min(2) as f64;
        // The dependent round trips: the root's, then a level-1 node's
        // (a tree of height 2), each at least 9 mixing delays.
        let tree_bound = bound + levels * 9.0 * mu;
        println!(
            "fetch:   {fetched:.2} s ({} requests) = {:.2} × the bound, {:.2} × chunks/λP + 9μ·(1 + {levels} dependent round trips of the tree) = {tree_bound:.2} s",
            f.requests,
            fetched / bound,
            fetched / tree_bound,
        );
        let r = revealed.lock().unwrap();
        if let (Some((root, _)), Some((first, _))) = (r.get(1), r.get(2)) {
            println!("fetch: root in after {root:.2} s, the first level-1 node after {first:.2} s");
        }
        drop(r);
        // Chunks fetched in each second.
        let mut per_second = vec![0u64; fetched.ceil() as usize];
        let mut before = 0;
        for (at, done) in fetched_at.lock().unwrap().iter() {
            if let Some(n) = per_second.get_mut(*at as usize) {
                *n += done.saturating_sub(before);
            }
            before = before.max(*done);
        }
        println!("fetch: chunks in each second: {per_second:?}");
        let back = seal::open(&mut &reader_store, &reference, &[], MAX_SEALED_LEN).unwrap();
        assert_eq!(back, item);
        // Where the time went, by the service node's own clock.
        for node in net.nodes.iter().filter(|n| n.position == Position::Service) {
            let mean = |name: &str, labels: &str| {
                let sum = node.metric(&format!("{name}_sum"), labels).unwrap_or(0.0);
                let n = node.metric(&format!("{name}_count"), labels).unwrap_or(0.0);
                (1000.0 * sum / n.max(1.0), n)
            };
            let (put, puts) = mean("mtos_service_seconds", "op=\"put_chunk\"");
            let (get, gets) = mean("mtos_service_seconds", "op=\"get_chunk\"");
            let (ask, asks) = mean("mtos_replica_ask_seconds", "op=\"put\"");
            println!(
                "service node: {puts} puts settled in {put:.1} ms on average ({asks} replica asks, {ask:.1} ms), {gets} gets in {get:.1} ms"
            );
            let not_ok: Vec<String> = ["refused", "unavailable", "bad_request", "not_found"]
                .iter()
                .filter_map(|r| {
                    let n = node
                        .metric(
                            "mtos_service_requests_total",
                            &format!("op=\"put_chunk\",result=\"{r}\""),
                        )
                        .unwrap_or(0.0);
                    (n > 0.0).then(|| format!("{n} {r}"))
                })
                .chain(
                    node.metric("mtos_service_requests_total", "result=\"timeout\"")
                        .filter(|n| *n > 0.0)
                        .map(|n| format!("{n} replica asks timed out")),
                )
                .collect();
            if !not_ok.is_empty() {
                println!("service node, puts not stored: {}", not_ok.join(", "));
            }
        }
        for (name, s) in [("writer", &writer), ("reader", &reader)] {
            let st = s.stats();
            println!(
                "{name}: {} sent ({} real), {} cover built in its slot, {} loops back",
                st.sent_real + st.sent_cover,
                st.sent_real,
                st.cover_built_in_slot,
                st.loops_returned
            );
        }
    });
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sleeps until Unix ms `at`.
async fn wait_until(at: u64) {
    let now = unix_ms();
    if at > now {
        tokio::time::sleep(std::time::Duration::from_millis(at - now)).await;
    }
}
