use mtos_crypto::slot::{SlotRecord, slot_locator};

use super::*;

fn chunk(i: u32, len: usize) -> (Locator, Vec<u8>) {
    let mut bytes = vec![0u8; len];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    (Locator::of(&bytes), bytes)
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
        db.put(Kind::Chunk, &at, &bytes, 0).unwrap(),
        Put::Stored { evicted: 0 }
    );
    let mut tampered = bytes.clone();
    tampered[10] ^= 1;
    assert!(matches!(
        db.put(Kind::Chunk, &at, &tampered, 1),
        Err(PutError::Refused(Refused::WrongLocator))
    ));
    assert_eq!(db.put(Kind::Chunk, &at, &bytes, 2).unwrap(), Put::Duplicate);
    assert_eq!(db.get(Kind::Chunk, &at).unwrap(), Some(bytes));

    // A slot is written once: the owner's first record stays.
    let first = SlotRecord::sign(&[5; 32], 0, b"first").unwrap();
    let slot = slot_locator(&first.key);
    db.put(Kind::Slot, &slot, &first.encode(), 3).unwrap();
    let second = SlotRecord::sign(&[5; 32], 0, b"second").unwrap();
    assert!(matches!(
        db.put(Kind::Slot, &slot, &second.encode(), 4),
        Err(PutError::Refused(Refused::SlotTaken))
    ));
    assert_eq!(
        db.put(Kind::Slot, &slot, &first.encode(), 5).unwrap(),
        Put::Duplicate
    );
    // A forger's record for the slot does not even verify there.
    let forged = SlotRecord::sign(&[6; 32], 0, b"forged").unwrap();
    assert!(matches!(
        db.put(Kind::Slot, &slot, &forged.encode(), 6),
        Err(PutError::Refused(Refused::Slot(_)))
    ));
    assert_eq!(db.get(Kind::Slot, &slot).unwrap(), Some(first.encode()));
    // A chunk is not found as a slot, nor the reverse.
    assert_eq!(db.get(Kind::Slot, &at).unwrap(), None);
    assert_eq!(db.records(), 2);
}

#[test]
fn above_the_bound_the_oldest_records_past_the_retention_time_go_first() {
    let dir = tempfile::tempdir().unwrap();
    // Room for three 1,000-byte chunks.
    let mut db = store(dir.path(), 3_000);
    let chunks: Vec<_> = (0..5).map(|i| chunk(i, 1_000)).collect();
    for (t, (at, bytes)) in chunks.iter().take(3).enumerate() {
        db.put(Kind::Chunk, at, bytes, t as u64 * 10).unwrap();
    }
    // At 50 every record is younger than 100 s: the put is refused and
    // nothing is evicted.
    assert!(matches!(
        db.put(Kind::Chunk, &chunks[3].0, &chunks[3].1, 50),
        Err(PutError::Refused(Refused::Full))
    ));
    assert_eq!(db.records(), 3);
    // At 105 only the first (stored at 0) is old enough: it goes.
    assert_eq!(
        db.put(Kind::Chunk, &chunks[3].0, &chunks[3].1, 105)
            .unwrap(),
        Put::Stored { evicted: 1 }
    );
    assert_eq!(db.get(Kind::Chunk, &chunks[0].0).unwrap(), None);
    for (at, bytes) in &chunks[1..4] {
        assert_eq!(db.get(Kind::Chunk, at).unwrap().as_ref(), Some(bytes));
    }
    // A 2,000-byte record at 125 needs the two oldest gone (stored at 10
    // and 20), both old enough by then.
    let (big_at, big) = chunk(9, 2_000);
    assert_eq!(
        db.put(Kind::Chunk, &big_at, &big, 125).unwrap(),
        Put::Stored { evicted: 2 }
    );
    assert_eq!(db.get(Kind::Chunk, &chunks[1].0).unwrap(), None);
    assert_eq!(db.get(Kind::Chunk, &chunks[2].0).unwrap(), None);
    assert_eq!(db.bytes(), 3_000);
    assert_eq!(db.records(), 2);
}

#[test]
fn records_survive_a_reopen_and_read_back_through_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let stored: Vec<_> = (0..20).map(|i| chunk(i, 500 + i as usize)).collect();
    {
        let mut db = store(dir.path(), 1 << 20);
        for (at, bytes) in &stored {
            db.put(Kind::Chunk, at, bytes, 7).unwrap();
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
            db.put(Kind::Chunk, &at, &bytes, 0).unwrap();
            (Kind::Chunk, at)
        })
        .collect();
    let slot = SlotRecord::sign(&[5; 32], 3, b"entry").unwrap();
    let at = slot_locator(&slot.key);
    db.put(Kind::Slot, &at, &slot.encode(), 0).unwrap();
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
