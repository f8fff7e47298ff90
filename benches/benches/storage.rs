//! Put and get latency of one full chunk through a loopback testnet at the
//! network's default rates (authority template: λP 2, λL 1, λD 1 per
//! second, 50 ms mean delay per hop), next to the bound the cover
//! schedule and the mixing delays set on the same configuration.
//!
//! A request waits for the client's next payload slot (mean 1/λP), is
//! held by 5 hops on the way (gateway, three layers, service node: each
//! an exponential delay of mean μ) and by 4 on the way back (three layers
//! and the gateway, through the reply block), then waits for the next
//! delivery slot at the gateway (mean 1/λP). So no request can take less
//! on average than `2/λP + 9μ`; everything above it is the replicas'
//! work, the links, and queueing: the delivery stream also carries the
//! client's returning loops, so a reply waits 1/(λP − λL) there on
//! average, and the bench prints that expectation too.
//!
//! `cargo bench -p mtos-benches --bench storage` (release build;
//! `-- --requests N`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mtos_client::mixnet::Session;
use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;
use mtos_crypto::stamp::Stamp;
use mtos_mixnode::records::{Kind, make_stamp};
use mtos_mixnode::service::{Op, Status};
use mtos_tests::{NodeSettings, Testnet, arg};
use rand::RngExt;

/// Mean, median, 90th percentile and maximum, in seconds.
fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    format!(
        "mean {mean:.3} s, median {:.3} s, p90 {:.3} s, max {:.3} s",
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests = arg("--requests", 40) as usize;
    let chain = mtos_tests::CHAIN;
    // Every node stores, as in the storage tests; the rates are the
    // authority template's defaults.
    let net = Testnet::start_with(&chain, 3600, 50, |_| NodeSettings {
        storage: Some(true),
        ..NodeSettings::default()
    });
    let config = net.network_config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Session::connect(&config).await.unwrap();
        let doc = client.document();
        let (lp, mu) = (
            doc.rates.payload,
            doc.mixing.mean_delay_ms as f64 / 1000.0,
        );
        let bound = 2.0 / lp + 9.0 * mu;
        println!(
            "rates: λP {} λL {} λD {} per second, mean delay {} ms per hop; {requests} requests of each kind, one at a time",
            lp, doc.rates.loops, doc.rates.drops, doc.mixing.mean_delay_ms
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut rng = rand::rng();
        let chunks: Vec<Vec<u8>> = (0..requests)
            .map(|_| {
                let mut c = vec![0u8; CHUNK_SIZE];
                rng.fill(&mut c[..]);
                c
            })
            .collect();
        // Stamps made before the clock starts: the latency measured is
        // the network's, not the puzzle's (about floor x 3 ms a put).
        let stamps: Vec<Stamp> = chunks
            .iter()
            .map(|c| {
                let (l, floor) = (Locator::of(c), doc.storage.stamp_floor);
                make_stamp(Kind::Chunk, &l, c, doc.epoch, floor, rng.random())
            })
            .collect();
        let wait = Duration::from_secs(60);
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for (c, stamp) in chunks.iter().zip(&stamps) {
            let t = Instant::now();
            let r = client
                .request(Op::Put(Kind::Chunk, c.clone(), *stamp), Locator::of(c), wait)
                .await
                .unwrap();
            puts.push(t.elapsed().as_secs_f64());
            assert_eq!(r.status, Status::Ok, "{r:?}");
        }
        // Each chunk read once: the service node's cache does not hold
        // it yet (puts do not fill it), so every get asks a replica.
        for c in &chunks {
            let t = Instant::now();
            let r = client
                .request(Op::Get(Kind::Chunk), Locator::of(c), wait)
                .await
                .unwrap();
            gets.push(t.elapsed().as_secs_f64());
            assert_eq!((r.status, &r.body), (Status::Ok, c));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (put_mean, get_mean) = (mean(&puts), mean(&gets));
        println!(
            "bound: 2/λP + 9μ = {:.3} s (slots {:.3} s, mixing {:.3} s)",
            bound,
            2.0 / lp,
            9.0 * mu
        );
        println!("put of one {CHUNK_SIZE}-byte chunk: {}", summary(&mut puts));
        println!("get of one {CHUNK_SIZE}-byte chunk: {}", summary(&mut gets));
        // The delivery stream is a queue served at λP that the client's
        // own loops (λL) also use: a reply's mean wait in it is
        // 1/(λP − λL) (M/M/1), not 1/λP.
        let model = if lp > doc.rates.loops {
            1.0 / lp + 1.0 / (lp - doc.rates.loops) + 9.0 * mu
        } else {
            f64::INFINITY
        };
        println!(
            "mean over bound: put {:.2}, get {:.2}; expected with the loops queueing for delivery 1/λP + 1/(λP − λL) + 9μ = {model:.3} s: put {:.2}, get {:.2} of it",
            put_mean / bound,
            get_mean / bound,
            put_mean / model,
            get_mean / model
        );
    });
}
