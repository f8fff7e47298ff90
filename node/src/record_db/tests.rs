use mtos_crypto::slot::{SlotRecord, slot_locator};

use super::*;

fn chunk(i: u32, len: usize) -> (Locator, Vec<u8>) {
    let mut bytes = vec![0u8; len];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    (Locator::of(&bytes), bytes)
}

/// A stamp claiming `e`: the store takes stamps as checked (the replica
/// checks them before it puts), so any bytes do here.
fn effort(e: u32) -> Stamp {
    Stamp {
        effort: e,
        epoch: 1,
        nonce: [0; 8],
        solution: [0; 16],
    }
}

fn store(dir: &Path, max_bytes: u64) -> RecordDb {
    RecordDb::open(
        &dir.join("records"),
        Retention {
            min_age_secs: 100,
            max_bytes,
        },
    )
    .unwrap()
}

#[test]
fn invalid_records_are_refused_and_leave_what_is_stored_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = store(dir.path(), 1 << 20);
    let (at, bytes) = chunk(1, 3000);
    assert_eq!(
        db.put(Kind::Chunk, &at, &bytes, &effort(1), 0).unwrap(),
        Put::Stored { evicted: 0 }
    );
    let mut tampered = bytes.clone();
    tampered[10] ^= 1;
    assert!(matches!(
        db.put(Kind::Chunk, &at, &tampered, &effort(1), 1),
        Err(PutError::Refused(Refused::WrongLocator))
    ));
    assert_eq!(
        db.put(Kind::Chunk, &at, &bytes, &effort(1), 2).unwrap(),
        Put::Duplicate
    );
    assert_eq!(db.get(Kind::Chunk, &at).unwrap(), Some(bytes));

    // A slot is written once: the owner's first record stays.
    let first = SlotRecord::sign(&[5; 32], 0, b"first").unwrap();
    let slot = slot_locator(&first.key);
    db.put(Kind::Slot, &slot, &first.encode(), &effort(1), 3)
        .unwrap();
    let second = SlotRecord::sign(&[5; 32], 0, b"second").unwrap();
    assert!(matches!(
        db.put(Kind::Slot, &slot, &second.encode(), &effort(1), 4),
        Err(PutError::Refused(Refused::SlotTaken))
    ));
    assert_eq!(
        db.put(Kind::Slot, &slot, &first.encode(), &effort(1), 5)
            .unwrap(),
        Put::Duplicate
    );
    // A forger's record for the slot does not even verify there.
    let forged = SlotRecord::sign(&[6; 32], 0, b"forged").unwrap();
    assert!(matches!(
        db.put(Kind::Slot, &slot, &forged.encode(), &effort(1), 6),
        Err(PutError::Refused(Refused::Slot(_)))
    ));
    assert_eq!(db.get(Kind::Slot, &slot).unwrap(), Some(first.encode()));
    // A chunk is not found as a slot, nor the reverse.
    assert_eq!(db.get(Kind::Slot, &at).unwrap(), None);
    assert_eq!(db.records(), 2);
}

#[test]
fn above_the_bound_the_least_effort_per_byte_past_the_retention_time_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    // Room for three 1,000-byte chunks; stored at 0, 10 and 20 with
    // efforts 4, 1 and 2.
    let mut db = store(dir.path(), 3_000);
    let chunks: Vec<_> = (0..6).map(|i| chunk(i, 1_000)).collect();
    for (t, e) in [(0usize, 4u32), (1, 1), (2, 2)] {
        let (at, bytes) = &chunks[t];
        db.put(Kind::Chunk, at, bytes, &effort(e), t as u64 * 10)
            .unwrap();
    }
    // At 50 every record is younger than 100 s: the put is refused and
    // nothing is evicted, whatever its effort.
    assert!(matches!(
        db.put(Kind::Chunk, &chunks[3].0, &chunks[3].1, &effort(64), 50),
        Err(PutError::Refused(Refused::Full))
    ));
    assert_eq!(db.records(), 3);
    // At 125 all three are old enough. A put of effort 1 may evict only
    // the effort-1 record (stored at 10), not the older effort-4 one.
    assert_eq!(
        db.put(Kind::Chunk, &chunks[3].0, &chunks[3].1, &effort(1), 125)
            .unwrap(),
        Put::Stored { evicted: 1 }
    );
    assert_eq!(db.get(Kind::Chunk, &chunks[1].0).unwrap(), None);
    assert!(db.get(Kind::Chunk, &chunks[0].0).unwrap().is_some());
    // Another effort-1 put finds nothing of at most its effort per byte
    // old enough (the effort-1 record it would displace was stored at
    // 125): full, nothing evicted.
    assert!(matches!(
        db.put(Kind::Chunk, &chunks[4].0, &chunks[4].1, &effort(1), 130),
        Err(PutError::Refused(Refused::Full))
    ));
    assert_eq!(db.records(), 3);
    // A 2,000-byte record of effort 16 at 130 (8 per 1,000 bytes, more
    // than 4) evicts the two least dense old ones: effort 2, then 4.
    let (big_at, big) = chunk(9, 2_000);
    assert_eq!(
        db.put(Kind::Chunk, &big_at, &big, &effort(16), 130)
            .unwrap(),
        Put::Stored { evicted: 2 }
    );
    assert_eq!(db.get(Kind::Chunk, &chunks[0].0).unwrap(), None);
    assert_eq!(db.get(Kind::Chunk, &chunks[2].0).unwrap(), None);
    assert!(db.get(Kind::Chunk, &chunks[3].0).unwrap().is_some());
    assert_eq!(db.bytes(), 3_000);
    assert_eq!(db.records(), 2);
    // The stamp is kept with its record (repair moves both).
    assert_eq!(
        db.get_stamped(Kind::Chunk, &big_at).unwrap(),
        Some((effort(16), big))
    );
}

#[test]
fn the_effort_asked_rises_with_the_records_nothing_may_evict_yet() {
    let dir = tempfile::tempdir().unwrap();
    // 20 chunks of 1,000 bytes fill the store; retention 100 s.
    let mut db = store(dir.path(), 20_000);
    assert_eq!(db.stamp_need(16, 0).unwrap(), 16);
    for i in 0..9 {
        let (at, bytes) = chunk(i, 1_000);
        db.put(Kind::Chunk, &at, &bytes, &effort(16), 10).unwrap();
    }
    // 45% young: the floor.
    assert_eq!(db.stamp_need(16, 10).unwrap(), 16);
    let (at, bytes) = chunk(9, 1_000);
    db.put(Kind::Chunk, &at, &bytes, &effort(16), 20).unwrap();
    // 50%: twice the floor; each further 5% doubles it.
    assert_eq!(db.stamp_need(16, 20).unwrap(), 32);
    for i in 10..19 {
        let (at, bytes) = chunk(i, 1_000);
        db.put(Kind::Chunk, &at, &bytes, &effort(16), 30).unwrap();
    }
    // 95%: 2^10 times the floor, the most.
    assert_eq!(db.stamp_need(16, 30).unwrap(), 16 << 10);
    // Once the first ten (stored at 10 and 20) have lived 100 s they can
    // be evicted and no longer count: 45% young again.
    assert_eq!(db.stamp_need(16, 119).unwrap(), 16 << 1);
    assert_eq!(db.stamp_need(16, 120).unwrap(), 16);
    assert_eq!(db.young_bytes(120).unwrap(), 9_000);
    // Counted the same after a reopen.
    drop(db);
    let mut db = store(dir.path(), 20_000);
    assert_eq!(db.young_bytes(120).unwrap(), 9_000);
    assert_eq!(db.young_bytes(131).unwrap(), 0);
}

#[test]
fn a_store_of_the_format_before_stamps_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records");
    {
        // A record row as the earlier format wrote it, and no format row.
        let db = rocksdb::DB::open_default(&path).unwrap();
        let (at, bytes) = chunk(1, 100);
        let mut value = 5u64.to_be_bytes().to_vec();
        value.extend_from_slice(&bytes);
        db.put(record_key(Kind::Chunk, &at), value).unwrap();
    }
    let e = RecordDb::open(
        &path,
        Retention {
            min_age_secs: 100,
            max_bytes: 1 << 20,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("earlier format"), "{e}");
}

#[test]
fn records_survive_a_reopen_and_read_back_through_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let stored: Vec<_> = (0..20).map(|i| chunk(i, 500 + i as usize)).collect();
    {
        let mut db = store(dir.path(), 1 << 20);
        for (at, bytes) in &stored {
            db.put(Kind::Chunk, at, bytes, &effort(1), 7).unwrap();
        }
    }
    let db = store(dir.path(), 1 << 20);
    assert_eq!(db.records(), 20);
    assert_eq!(
        db.bytes(),
        stored.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    let mut seen = Vec::new();
    db.for_each(|kind, at, bytes| {
        assert_eq!(kind, Kind::Chunk);
        assert!(at.matches(bytes));
        seen.push(at);
    })
    .unwrap();
    seen.sort();
    let mut want: Vec<_> = stored.iter().map(|(at, _)| *at).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn a_scan_in_pages_visits_every_record_once_and_meta_rows_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = store(dir.path(), 1 << 20);
    let mut expected: Vec<(Kind, Locator)> = (0..25)
        .map(|i| {
            let (at, bytes) = chunk(i, 100);
            db.put(Kind::Chunk, &at, &bytes, &effort(1), 0).unwrap();
            (Kind::Chunk, at)
        })
        .collect();
    let slot = SlotRecord::sign(&[5; 32], 3, b"entry").unwrap();
    let at = slot_locator(&slot.key);
    db.put(Kind::Slot, &at, &slot.encode(), &effort(1), 0)
        .unwrap();
    expected.push((Kind::Slot, at));
    db.set_meta("repair", b"state").unwrap();
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = db.keys_after(after, 7).unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last().copied() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    expected.sort_by_key(|(k, l)| (k.byte(), *l.as_bytes()));
    assert_eq!(seen, expected);
    assert_eq!(db.meta("repair").unwrap(), Some(b"state".to_vec()));
    assert_eq!(db.meta("other").unwrap(), None);
    // The meta row is neither a record nor counted as one.
    drop(db);
    let db = store(dir.path(), 1 << 20);
    assert_eq!(db.records(), 26);
    assert_eq!(db.meta("repair").unwrap(), Some(b"state".to_vec()));
}

/// Rows in the eviction order.
fn eviction_rows(db: &RecordDb) -> usize {
    db.db
        .iterator(IteratorMode::From(&[BY_DENSITY], Direction::Forward))
        .map_while(Result::ok)
        .take_while(|(k, _)| k.first() == Some(&BY_DENSITY))
        .count()
}

#[test]
fn young_records_stay_out_of_the_eviction_order_so_none_can_stand_in_its_way() {
    // Room for ten 1,000-byte chunks; retention 100 s. Two stored at 0
    // with effort 8, then eight at 150 with effort 1: the young ones are
    // the least dense, so in one order of all records they would come
    // first and a bounded scan could be spent on them (enough of them,
    // and every put would be refused as full).
    let dir = tempfile::tempdir().unwrap();
    let mut db = store(dir.path(), 10_000);
    let chunks: Vec<_> = (0..11).map(|i| chunk(i, 1_000)).collect();
    for (at, bytes) in &chunks[..2] {
        db.put(Kind::Chunk, at, bytes, &effort(8), 0).unwrap();
    }
    for (at, bytes) in &chunks[2..10] {
        db.put(Kind::Chunk, at, bytes, &effort(1), 150).unwrap();
    }
    // Only the two that have lived 100 s are in the eviction order.
    assert_eq!(eviction_rows(&db), 2);
    assert_eq!(db.young_bytes(150).unwrap(), 8_000);
    // A put of the same effort per byte takes the oldest's place.
    assert_eq!(
        db.put(Kind::Chunk, &chunks[10].0, &chunks[10].1, &effort(8), 160)
            .unwrap(),
        Put::Stored { evicted: 1 }
    );
    assert_eq!(db.get(Kind::Chunk, &chunks[0].0).unwrap(), None);
    assert_eq!(eviction_rows(&db), 1);
    // Kept across a reopen: the watermark, the young bytes, the order.
    drop(db);
    let mut db = store(dir.path(), 10_000);
    assert_eq!(db.young_bytes(160).unwrap(), 9_000);
    assert_eq!(eviction_rows(&db), 1);
    // At 250 the young ones come of age and join the order; a clock that
    // goes back stores no record below the watermark.
    assert_eq!(db.young_bytes(250).unwrap(), 1_000);
    assert_eq!(eviction_rows(&db), 9);
    let (late_at, late) = chunk(99, 100);
    drop(db);
    let mut db = store(dir.path(), 20_000);
    db.put(Kind::Chunk, &late_at, &late, &effort(1), 10)
        .unwrap();
    assert_eq!(db.young_bytes(250).unwrap(), 1_100);
}
