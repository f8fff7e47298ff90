//! Wall time to publish and to fetch a 1 MiB item through a loopback
//! testnet at the network's default rates (authority template: λP 2,
//! λL 1, λD 1 per second, 50 ms mean delay per hop), next to the lower
//! bounds computed from the same configuration.
//!
//! Every chunk is one request: it leaves in a payload slot (λP a second)
//! and its answer arrives in a delivery slot, a stream of rate λP that
//! the client's own loops (λL) share. So n chunks need at least n / λP
//! seconds of payload slots (the lower bound, plus the 9 mixing delays of
//! the last request). The answers come back in delivery slots that the
//! client's returning loops share, which suggests n / (λP − λL) as a
//! second figure (an M/M/1-style expectation, not a bound: a fetch beat it
//! by 18% in one run, since answers and loops are not a steady queue); a
//! fetch also adds a round trip per tree level above the data (2 for
//! 1 MiB).
//!
//! `cargo bench -p mtos-benches --bench transfer` (release build;
//! `-- --kib N` for another size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use mtos_client::mixnet::Session;
use mtos_client::store::ChunkStore;
use mtos_client::transfer::{TransferOptions, fetch, item_chunks, publish};
use mtos_crypto::item::seal::{self, Access, MAX_SEALED_LEN};
use mtos_crypto::item::{ContentType, ItemDraft, Part};
use mtos_mixnode::admission::Position;
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
        let writer = Session::connect(&config).await.unwrap();
        let reader = Session::connect(&config).await.unwrap();
        let doc = writer.document();
        let (lp, ll, mu) = (
            doc.rates.payload,
            doc.rates.loops,
            doc.mixing.mean_delay_ms as f64 / 1000.0,
        );
        println!(
            "{kib} KiB item, {chunks} chunks; λP {lp}, λL {ll}, λD {} per second, mean delay {} ms per hop",
            doc.rates.drops, doc.mixing.mean_delay_ms
        );
        let slots = chunks / lp + 9.0 * mu;
        let delivery = if lp > ll {
            chunks / (lp - ll) + 9.0 * mu
        } else {
            f64::INFINITY
        };
        println!(
            "lower bound chunks/λP + 9μ = {slots:.1} s; with the loops sharing the delivery stream, chunks/(λP − λL) + 9μ = {delivery:.1} s"
        );
        let options = TransferOptions::default();
        let t = Instant::now();
        let p = publish(&writer, &writer_store, &reference, options, &|_, _| {})
            .await
            .unwrap();
        let published = t.elapsed().as_secs_f64();
        println!(
            "publish: {published:.1} s ({} requests) = {:.2} × the lower bound, {:.2} × chunks/(λP − λL)",
            p.requests,
            published / slots,
            published / delivery
        );
        let t = Instant::now();
        let f = fetch(&reader, &reader_store, &reference, options, &|_, _| {})
            .await
            .unwrap();
        let fetched = t.elapsed().as_secs_f64();
        println!(
            "fetch:   {fetched:.1} s ({} requests) = {:.2} × the lower bound, {:.2} × chunks/(λP − λL)",
            f.requests,
            fetched / slots,
            fetched / delivery
        );
        let back = seal::open(&mut &reader_store, &reference, &[], MAX_SEALED_LEN).unwrap();
        assert_eq!(back, item);
    });
}
