//! Items through the network: one client seals an item and publishes its
//! chunks through the mixnet, another fetches it; a replica returning
//! tampered records is skipped; a publish run again sends nothing, and
//! so does a second fetch.

use std::time::Instant;

use mtos_client::mixnet::Session;
use mtos_client::store::ChunkStore;
use mtos_client::transfer::{TransferOptions, fetch, item_chunks, publish};
use mtos_crypto::item::seal::{self, Access, MAX_SEALED_LEN};
use mtos_crypto::item::{ContentType, ItemDraft, Part};
use mtos_mixnode::admission::Position;
use mtos_tests::{AuthoritySettings, CHAIN, FaultsSection, NodeSettings, Testnet};
use rand::RngExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_mebibyte_is_fetched_byte_identical_past_a_tampering_replica() {
    // Every node stores; a fast payload stream so 300 chunks take
    // seconds, not minutes.
    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |_| NodeSettings {
                storage: Some(true),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(50.0),
                node_loops: Some(0.0),
                ..AuthoritySettings::default()
            },
        )
    });
    let config = net.network_config();
    let dir = tempfile::tempdir().unwrap();
    let alice_store = ChunkStore::open(&dir.path().join("alice")).unwrap();
    let bob_store = ChunkStore::open(&dir.path().join("bob")).unwrap();

    // A 1 MiB file and a text, sealed into alice's store.
    let mut file = vec![0u8; 1 << 20];
    rand::rng().fill(&mut file[..]);
    let author = mtos_crypto::Identity::throwaway(&mut rand::rng(), 0);
    let item = ItemDraft::new(
        ContentType::MediaObject,
        0,
        vec![
            Part::text("a mebibyte of noise"),
            Part::binary(file.clone(), "application/octet-stream"),
        ],
    )
    .sign(&author)
    .unwrap();
    let reference = {
        let mut writer = alice_store.writer();
        let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
        writer.finish().unwrap();
        sealed.reference
    };
    let chunks = item_chunks(&alice_store, &reference).unwrap().len() as u64;
    assert!(chunks > 290, "{chunks} chunks");

    let alice = Session::connect(&config).await.unwrap();
    let options = TransferOptions::default();
    let started = Instant::now();
    let published = publish(&alice, &alice_store, &reference, options, &|_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    eprintln!("published {chunks} chunks in {:?}", started.elapsed());
    assert_eq!((published.chunks, published.transferred), (chunks, chunks));
    assert!(published.requests >= chunks);
    // Run again (an interrupted publish resumed): nothing is sent.
    let again = publish(&alice, &alice_store, &reference, options, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((again.transferred, again.requests), (0, 0));

    // One replica now returns every record with a flipped byte.
    tokio::task::block_in_place(|| {
        net.node_mut(Position::Layer(2))
            .restart_with_faults(FaultsSection {
                tamper_records: true,
                ..FaultsSection::default()
            });
        net.wait_until_listed(CHAIN.len(), std::time::Duration::from_secs(60));
    });
    let bob = Session::connect(&config).await.unwrap();
    let seen = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    let fetched = fetch(&bob, &bob_store, &reference, options, &|done, _| {
        seen.store(done, std::sync::atomic::Ordering::Relaxed);
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    eprintln!("fetched {chunks} chunks in {:?}", started.elapsed());
    assert_eq!((fetched.chunks, fetched.transferred), (chunks, chunks));
    assert_eq!(seen.into_inner(), chunks, "progress reached the end");
    let opened = seal::open(&mut &bob_store, &reference, &[], MAX_SEALED_LEN).unwrap();
    assert_eq!(opened, item);
    assert_eq!(opened.parts()[1].data(), &file[..]);
    let skipped = tokio::task::block_in_place(|| {
        net.node(Position::Service).metric(
            "mtos_service_requests_total",
            "op=\"replica_get\",result=\"bad_record\"",
        )
    });
    assert!(
        skipped.is_some_and(|n| n > 0.0),
        "the tampering replica was never asked first: {skipped:?}"
    );

    // A second fetch finds everything local and sends no request.
    let second = fetch(&bob, &bob_store, &reference, options, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((second.transferred, second.requests), (0, 0));
}
