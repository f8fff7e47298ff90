use std::collections::HashMap;
use std::time::Duration;

use mtos_crypto::envelope::ClientAddress;
use mtos_crypto::sphinx::{self, Hop, NodeAddress, SURB_ID_LEN, SphinxSecret, SurbRecovery};
use mtos_mixnode::directory::EpochSchedule;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use mtos_crypto::geometry::SURB_SIZE;

use super::*;

fn address(n: u8) -> ClientAddress {
    ClientAddress {
        gateway: [n; 32],
        mailbox: [n.wrapping_add(1); 32],
        key: [n.wrapping_add(2); 32],
    }
}

fn block(expires: u64, fill: u8) -> ReplyBlock {
    ReplyBlock {
        epoch: 7,
        expires,
        surb: vec![fill; SURB_SIZE],
    }
}

/// A real SURB's recovery keys, for the sender's table.
fn recovery(rng: &mut StdRng, id: [u8; SURB_ID_LEN]) -> SurbRecovery {
    let hops: Vec<Hop> = (0..3u8)
        .map(|i| Hop {
            address: NodeAddress([i; 32]),
            sphinx_key: SphinxSecret::generate(rng).public(),
        })
        .collect();
    let (_, recovery) = sphinx::build_surb(rng, &hops, &[9; 32], id, &[Duration::ZERO; 3])
        .expect("a three-hop SURB builds");
    recovery
}

#[test]
fn every_kind_round_trips_and_the_sizes_add_up() {
    let tag = SenderTag([5; TAG_LEN]);
    let max = max_answerable(MAX_BLOCKS_PER_MESSAGE);
    for plain in [
        Plain::Message(b"hello".to_vec()),
        Plain::Message(vec![1; MAX_CLIENT_MESSAGE - 1]),
        Plain::Loop,
        Plain::Answerable {
            tag,
            blocks: vec![block(100, 1)],
            body: b"answer me".to_vec(),
        },
        Plain::Answerable {
            tag,
            blocks: (0..MAX_BLOCKS_PER_MESSAGE as u8)
                .map(|i| block(100 + u64::from(i), i))
                .collect(),
            body: vec![3; max],
        },
        Plain::MoreBlocks {
            tag,
            blocks: vec![block(1, 1), block(2, 2)],
        },
    ] {
        let bytes = plain.encode().unwrap();
        assert!(bytes.len() <= MAX_CLIENT_MESSAGE, "{plain:?}");
        assert_eq!(Plain::decode(&bytes).unwrap(), plain);
    }
    // Eight blocks still leave room for a short message.
    assert_eq!(BLOCK_SIZE, 408);
    assert_eq!(max, MAX_CLIENT_MESSAGE - 18 - 8 * 408);
    assert!(max > 700);
}

#[test]
fn oversized_and_malformed_messages_are_refused() {
    let tag = SenderTag([5; TAG_LEN]);
    assert!(matches!(
        Plain::Answerable {
            tag,
            blocks: vec![block(1, 1)],
            body: vec![0; max_answerable(1) + 1],
        }
        .encode(),
        Err(ReplyError::TooLong { blocks: 1, .. })
    ));
    assert!(
        Plain::MoreBlocks {
            tag,
            blocks: vec![]
        }
        .encode()
        .is_err()
    );
    assert!(
        Plain::MoreBlocks {
            tag,
            blocks: vec![block(1, 1); MAX_BLOCKS_PER_MESSAGE + 1]
        }
        .encode()
        .is_err()
    );
    assert!(encode_reply(&vec![0; MAX_REPLY + 1]).is_err());

    let good = Plain::Answerable {
        tag,
        blocks: vec![block(1, 1), block(2, 2)],
        body: b"x".to_vec(),
    }
    .encode()
    .unwrap();
    // Every truncation is refused or parses to something shorter, never
    // panics; counts that do not match the bytes are refused.
    for cut in 0..good.len() {
        let _ = Plain::decode(&good[..cut]);
    }
    for n in [0u8, 3, 9, 255] {
        let mut bad = good.clone();
        bad[1 + TAG_LEN] = n;
        assert!(Plain::decode(&bad).is_err(), "count {n}");
    }
    assert!(Plain::decode(&[]).is_err());
    assert!(Plain::decode(&[0x7f, 1, 2]).is_err());
    assert!(Plain::decode(&[KIND_LOOP, 1]).is_err());
    let mut more = Plain::MoreBlocks {
        tag,
        blocks: vec![block(1, 1)],
    }
    .encode()
    .unwrap();
    more.push(0);
    assert!(Plain::decode(&more).is_err(), "bytes after the blocks");
    assert_eq!(decode_reply(&encode_reply(b"ok").unwrap()).unwrap(), b"ok");
    assert!(decode_reply(&[KIND_LOOP]).is_err());
}

#[test]
fn a_block_is_used_once_soonest_expiry_first_and_expired_ones_are_refused() {
    let tag = SenderTag([1; TAG_LEN]);
    let mut pool = ReplyPool::default();
    assert_eq!(pool.take(&tag, 0, 7), Err(ReplyError::NoBlock));
    assert_eq!(
        pool.add(tag, vec![block(300, 3), block(100, 1), block(200, 2)]),
        0
    );
    assert_eq!(pool.available(&tag, 150, 7), 2);
    assert_eq!(pool.take(&tag, 50, 7).unwrap().expires, 100);
    // At 250 the block expiring at 200 is dropped on the way.
    assert_eq!(pool.take(&tag, 250, 7).unwrap().expires, 300);
    assert_eq!(pool.take(&tag, 250, 7), Err(ReplyError::NoBlock));
    assert!(pool.is_empty());

    pool.add(tag, vec![block(100, 1)]);
    assert_eq!(pool.take(&tag, 100, 7), Err(ReplyError::Expired));
    assert_eq!(pool.take(&tag, 100, 7), Err(ReplyError::NoBlock));
}

#[test]
fn the_pool_stays_bounded_per_sender_in_senders_and_in_total() {
    let mut pool = ReplyPool::default();
    let one = SenderTag([1; TAG_LEN]);
    let dropped = pool.add(one, vec![block(10, 0); MAX_POOL_PER_TAG + 5]);
    assert_eq!(dropped, 5);
    assert_eq!(pool.len(), MAX_POOL_PER_TAG);

    let mut pool = ReplyPool::default();
    for i in 0..(MAX_POOL_TAGS as u32 + 10) {
        let mut t = [0u8; TAG_LEN];
        t[..4].copy_from_slice(&i.to_be_bytes());
        pool.add(SenderTag(t), vec![block(10, 0); 4]);
        assert!(pool.len() <= MAX_POOL_BLOCKS);
        assert!(pool.tags.len() <= MAX_POOL_TAGS);
    }
    // The least recently used senders went; the last one is whole.
    let mut last = [0u8; TAG_LEN];
    last[..4].copy_from_slice(&(MAX_POOL_TAGS as u32 + 9).to_be_bytes());
    assert_eq!(pool.available(&SenderTag(last), 0, 7), 4);
    assert_eq!(pool.available(&SenderTag([0; TAG_LEN]), 0, 7), 0);
}

/// Epochs of 1,000 s from time 0.
const SCHEDULE: EpochSchedule = EpochSchedule {
    genesis: 0,
    epoch_secs: 1_000,
    heartbeat_secs: 20,
    round_secs: 2,
};

#[test]
fn the_sender_reads_each_reply_once_and_replenishes_what_was_used() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut out = Outstanding::default();
    let bob = address(1);
    let mut fresh = 0u8;
    let tag = out.tag_for(&bob, 3, 1_000, || {
        fresh += 1;
        [fresh; TAG_LEN]
    });
    // The same recipient keeps its tag; another gets its own.
    assert_eq!(out.tag_for(&bob, 1, 1_000, || [99; TAG_LEN]), tag);
    assert_ne!(out.tag_for(&address(2), 0, 0, || [98; TAG_LEN]), tag);
    assert_eq!(
        out.wanted(&SCHEDULE, 0, 0, 0),
        vec![Wanted {
            tag,
            to: bob,
            blocks: 3,
            epoch: 0,
        }]
    );
    // Planned blocks count as held until they are built (or given up).
    out.plan(&tag, 0, 3);
    assert!(out.wanted(&SCHEDULE, 0, 0, 0).is_empty());
    out.unplan(&tag, 0, 1);
    assert_eq!(out.wanted(&SCHEDULE, 0, 0, 0)[0].blocks, 1);
    let expires = conversation_expires(&SCHEDULE, 0);
    assert_eq!(
        expires,
        1_000 + BOUNDARY_GRACE_SECS,
        "a block lives to its epoch's end, and a minute for late documents"
    );
    for i in 1..=3u8 {
        assert!(out.record(
            tag,
            [i; SURB_ID_LEN],
            recovery(&mut rng, [i; 16]),
            expires,
            0
        ));
    }
    assert!(
        !out.record(
            tag,
            [1; SURB_ID_LEN],
            recovery(&mut rng, [1; 16]),
            expires,
            0
        ),
        "an id in use"
    );
    assert!(
        out.wanted(&SCHEDULE, 0, 0, 0).is_empty(),
        "three held, three wanted"
    );

    // A reply on block 2: read once; a second one on it is unknown.
    let (got, _) = out.take(&[2; SURB_ID_LEN]).unwrap();
    assert_eq!(got, tag);
    assert!(out.take(&[2; SURB_ID_LEN]).is_none());
    assert!(out.take(&[7; SURB_ID_LEN]).is_none());
    assert_eq!(out.wanted(&SCHEDULE, 0, 0, 0)[0].blocks, 1);
    // Within the horizon of the epoch's end, the next epoch's blocks are
    // asked for beside the replacement.
    assert_eq!(
        out.wanted(&SCHEDULE, 0, 600, 500)
            .iter()
            .map(|w| (w.epoch, w.blocks))
            .collect::<Vec<_>>(),
        vec![(0, 1), (1, 3)]
    );
    // An inactive conversation is not replenished.
    assert!(out.wanted(&SCHEDULE, 1, 1_000, 0).is_empty());
    out.touch(&tag, 2_000);
    assert_eq!(
        out.wanted(&SCHEDULE, 1, 1_000, 0),
        vec![Wanted {
            tag,
            to: bob,
            blocks: 3,
            epoch: 1,
        }],
        "all three ended with epoch 0"
    );

    // A recipient holding more than asked for (blocks from an earlier,
    // larger request) is sent nothing.
    let carol = address(3);
    let small = out.tag_for(&carol, 1, 5_000, || [42; TAG_LEN]);
    for i in 10..13u8 {
        let r = recovery(&mut rng, [i; 16]);
        assert!(out.record(small, [i; SURB_ID_LEN], r, 2_000, 1));
    }
    assert!(
        out.wanted(&SCHEDULE, 1, 1_000, 0)
            .iter()
            .all(|w| w.tag != small)
    );

    // Recovery keys outlive expiry by the grace period, then go.
    out.purge(expires + RECOVERY_GRACE_SECS - 1);
    assert_eq!(out.len(), 5);
    out.purge(expires + RECOVERY_GRACE_SECS);
    assert_eq!(out.len(), 3, "carol's blocks live on");
}

#[test]
fn blocks_are_asked_for_the_epochs_they_will_be_used_in() {
    // The document's epoch, and, half an epoch before it ends (at least a
    // minute), the next one's.
    assert_eq!(block_epochs(&SCHEDULE, 0, 0, 500), vec![0]);
    assert_eq!(block_epochs(&SCHEDULE, 0, 499, 500), vec![0]);
    assert_eq!(block_epochs(&SCHEDULE, 0, 500, 500), vec![0, 1]);
    assert_eq!(block_epochs(&SCHEDULE, 0, 999, 500), vec![0, 1]);
    assert_eq!(block_epochs(&SCHEDULE, 1, 1_000, 500), vec![1]);
    assert_eq!(block_epochs(&SCHEDULE, 0, 100, 0), vec![0]);
    assert_eq!(block_epochs(&SCHEDULE, 0, 950, 0), vec![0, 1]);
    // A document not refreshed yet after the boundary: both.
    assert_eq!(block_epochs(&SCHEDULE, 0, 1_003, 0), vec![0, 1]);
}

#[test]
fn a_block_for_the_next_epoch_waits_for_it() {
    let tag = SenderTag([5; TAG_LEN]);
    let mut pool = ReplyPool::default();
    let next = ReplyBlock {
        epoch: 1,
        expires: 2_000,
        surb: vec![1; SURB_SIZE],
    };
    pool.add(tag, vec![next.clone()]);
    assert_eq!(pool.available(&tag, 900, 0), 0);
    assert_eq!(pool.take(&tag, 900, 0), Err(ReplyError::NoBlock));
    assert_eq!(pool.len(), 1, "kept for its epoch");
    let now = ReplyBlock {
        epoch: 0,
        expires: 1_000,
        surb: vec![0; SURB_SIZE],
    };
    pool.add(tag, vec![now.clone()]);
    assert_eq!(pool.take(&tag, 900, 0).unwrap(), now);
    assert_eq!(pool.take(&tag, 1_000, 1).unwrap(), next);
}

/// A conversation across three epoch boundaries, the sender keeping the
/// recipient supplied as a session does (a check every 10 s with half an
/// epoch's horizon, and one after each reply), blocks and replies taking
/// 2 s to arrive, and the recipient's document reaching each new epoch
/// `lag` seconds after it begins (its packets carry the document's key
/// tag). Returns, for every reply, the key epoch of its block and the tag
/// the recipient's other packets carried then; and how many times the
/// recipient had no block. With `old`, blocks are built as before: under
/// the current epoch, usable until two epochs later, soonest expiry
/// first.
fn converse(old: bool, lag: u64, seed: u64) -> (Vec<(u32, u32)>, usize) {
    let schedule = EpochSchedule {
        genesis: 0,
        epoch_secs: 600,
        heartbeat_secs: 20,
        round_secs: 2,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Outstanding::default();
    let mut pool = ReplyPool::default();
    let bob = address(1);
    let end = 4 * schedule.epoch_secs;
    let tag = out.tag_for(&bob, 4, end, || [1; TAG_LEN]);
    // Messages on their way: (arrival, blocks) to bob, (arrival, id) back.
    let mut to_bob: Vec<(u64, Vec<ReplyBlock>)> = Vec::new();
    let mut to_alice: Vec<(u64, [u8; SURB_ID_LEN])> = Vec::new();
    // The key epoch each block was built under, by id.
    let mut built: HashMap<[u8; SURB_ID_LEN], u32> = HashMap::new();
    let mut next_id = 0u32;
    let (mut sent, mut stalls) = (Vec::new(), 0usize);
    let mut build = |out: &mut Outstanding,
                     built: &mut HashMap<[u8; SURB_ID_LEN], u32>,
                     now: u64,
                     rng: &mut StdRng| {
        let wanted = if old {
            // The former rule: one pool of blocks, replaced when they
            // would expire within the horizon.
            let e = schedule.epoch_at(now);
            out.wanted(&schedule, e, now, 0)
                .into_iter()
                .map(|w| Wanted { epoch: e, ..w })
                .collect::<Vec<_>>()
        } else {
            out.wanted(
                &schedule,
                schedule.epoch_at(now),
                now,
                schedule.epoch_secs / 2,
            )
        };
        let mut blocks = Vec::new();
        for w in wanted {
            for _ in 0..w.blocks {
                next_id += 1;
                let mut id = [0u8; SURB_ID_LEN];
                id[..4].copy_from_slice(&next_id.to_be_bytes());
                let expires = if old {
                    schedule.start(w.epoch + 2) - 30
                } else {
                    conversation_expires(&schedule, w.epoch)
                };
                assert!(out.record(tag, id, recovery(rng, id), expires, w.epoch));
                built.insert(id, w.epoch);
                blocks.push(ReplyBlock {
                    // The former pool ignored epochs: one for all.
                    epoch: if old { 0 } else { w.epoch },
                    expires,
                    surb: id.repeat(SURB_SIZE / SURB_ID_LEN + 1)[..SURB_SIZE].to_vec(),
                });
            }
        }
        blocks
    };
    for now in 0..end - schedule.epoch_secs {
        if now % 10 == 0 {
            let b = build(&mut out, &mut built, now, &mut rng);
            to_bob.push((now + 2, b));
        }
        for (_, blocks) in to_bob.iter_mut().filter(|(t, _)| *t == now) {
            pool.add(tag, std::mem::take(blocks));
        }
        // Bob answers now and then, under his document's epoch.
        let document = schedule.epoch_at(now.saturating_sub(lag));
        if rng.random_bool(0.1) {
            match pool.take(&tag, now, if old { 0 } else { document }) {
                Ok(block) => {
                    let mut id = [0u8; SURB_ID_LEN];
                    id.copy_from_slice(&block.surb[..SURB_ID_LEN]);
                    sent.push((built[&id], document));
                    to_alice.push((now + 2, id));
                }
                // Bob holds blocks from the first message on (2 s).
                Err(_) if now >= 2 => stalls += 1,
                Err(_) => {}
            }
        }
        let arrived: Vec<[u8; SURB_ID_LEN]> = to_alice
            .iter()
            .filter(|(t, _)| *t == now)
            .map(|(_, id)| *id)
            .collect();
        for id in arrived {
            assert!(out.take(&id).is_some());
            let b = build(&mut out, &mut built, now, &mut rng);
            to_bob.push((now + 2, b));
        }
    }
    (sent, stalls)
}

#[test]
fn a_reply_never_travels_under_another_key_tag_than_its_senders_packets() {
    // The attack: a hop sets apart every reply whose key tag is not the
    // one its sender's other packets carry at that time (the epoch of its
    // document: in the first seconds of an epoch, the last one for a
    // sender that has not refreshed yet). Under the former rule it finds
    // replies sent long after each boundary; now none, whether the
    // recipient's document is on time or as late as a session fetches
    // it (`BOUNDARY_JITTER_MS`, and a second for the fetch), and the
    // recipient is never left without a block.
    for lag in [0, 6] {
        let (sent, stalls) = converse(false, lag, 3);
        let marked = sent.iter().filter(|(tag, at)| tag != at).count();
        eprintln!(
            "per-epoch blocks, document {lag} s late: {marked} of {} replies marked, {stalls} stalls",
            sent.len()
        );
        assert!(sent.len() > 150, "{} replies", sent.len());
        assert_eq!(marked, 0, "{marked} of {} replies marked", sent.len());
        assert_eq!(stalls, 0, "the recipient ran out {stalls} times");
    }
    let (sent, stalls) = converse(true, 0, 3);
    let marked = sent.iter().filter(|(tag, at)| tag != at).count();
    eprintln!(
        "former blocks: {marked} of {} replies marked, {stalls} stalls",
        sent.len()
    );
    assert!(
        marked > sent.len() / 10,
        "the control marked only {marked} of {}",
        sent.len()
    );
}

#[test]
fn the_sender_table_is_bounded() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut out = Outstanding::default();
    let tag = out.tag_for(&address(1), 1, 10, || [1; TAG_LEN]);
    let r = recovery(&mut rng, [1; 16]);
    let bytes = r.to_bytes();
    for i in 0..MAX_OUTSTANDING as u32 {
        let mut id = [0u8; SURB_ID_LEN];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let r = SurbRecovery::from_bytes(&bytes).unwrap();
        assert!(out.record(tag, id, r, 100, 0));
    }
    assert!(!out.has_room(1, 0));
    assert!(!out.record(tag, [0xff; SURB_ID_LEN], r, 100, 0));
    // Once they are dead, there is room again.
    assert!(out.has_room(1, 100 + RECOVERY_GRACE_SECS));

    // Conversations are bounded too: the least recently used goes.
    let mut out = Outstanding::default();
    for i in 0..(MAX_CREDITS as u32 + 3) {
        let mut a = address(0);
        a.mailbox[..4].copy_from_slice(&i.to_be_bytes());
        let mut t = [0u8; TAG_LEN];
        t[..4].copy_from_slice(&i.to_be_bytes());
        out.tag_for(&a, 1, 10, || t);
    }
    assert_eq!(out.credits.len(), MAX_CREDITS);
    assert_eq!(out.tags.len(), MAX_CREDITS);
}

/// `specs/vectors/replies.json`: the plaintexts of `client.md` §5 from
/// fixed inputs. `MTOS_WRITE_VECTORS=1` rewrites the file.
#[test]
fn reply_vectors_match_the_spec() {
    use serde_json::json;
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let tag = SenderTag([0x54; TAG_LEN]);
    let one = ReplyBlock {
        epoch: 0x0102_0304,
        expires: 1_800_000_000,
        surb: vec![0x53; SURB_SIZE],
    };
    let mut block = Vec::new();
    one.encode(&mut block);
    let computed = json!({
        "comment": "specs/client.md section 5. The SURB is a placeholder of 396 bytes 0x53: the encoding does not look inside it.",
        "tag": hex(&tag.0),
        "block": hex(&block),
        "answerable": hex(&Plain::Answerable { tag, blocks: vec![one.clone()], body: b"hi".to_vec() }.encode().unwrap()),
        "more_blocks": hex(&Plain::MoreBlocks { tag, blocks: vec![one.clone(), one] }.encode().unwrap()),
        "reply": hex(&encode_reply(b"hello back").unwrap()),
    });
    mtos_crypto::vectors::check(
        "replies.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
}
