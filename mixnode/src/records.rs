//! What a storage node accepts and keeps (`specs/storage.md` §2). Sans-IO:
//! the checks a record must pass before it is stored, and the retention
//! rule that decides which records may be evicted; the driver's RocksDB
//! store (`mtos_node::record_db`) applies them.

use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;
use mtos_crypto::slot::{SLOT_HEADER, SlotError, SlotRecord};

/// The longest feed-slot body: a slot record (key, signature, body) is at
/// most one chunk, so a put-slot request fits one packet as a put-chunk
/// request does (`storage.md` §2).
pub const MAX_SLOT_BODY: usize = CHUNK_SIZE - SLOT_HEADER;

/// The two kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A chunk (data or manifest node): stored at the hash of its bytes.
    Chunk,
    /// A feed slot: stored at the locator its blinded key names.
    Slot,
}

impl Kind {
    /// Its byte in keys and on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Chunk => 1,
            Kind::Slot => 2,
        }
    }

    /// From [`Kind::byte`].
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Chunk),
            2 => Some(Kind::Slot),
            _ => None,
        }
    }

    /// Its metric label.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chunk => "chunk",
            Kind::Slot => "slot",
        }
    }

    /// The largest record of this kind.
    pub fn max_len(self) -> usize {
        match self {
            Kind::Chunk => CHUNK_SIZE,
            Kind::Slot => CHUNK_SIZE,
        }
    }
}

/// Why a record was not stored. Nothing already stored is changed by a
/// refused record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// A chunk whose bytes do not hash to its locator.
    #[error("the chunk does not hash to its locator")]
    WrongLocator,
    /// A slot record that does not verify at its locator.
    #[error("slot record refused: {0}")]
    Slot(#[from] SlotError),
    /// Larger than a record of its kind can be.
    #[error("a {kind} of {got} bytes exceeds {max}", kind = .kind.name())]
    TooLarge {
        /// The record's kind.
        kind: Kind,
        /// Its length.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The slot holds a different record already (slots are written once).
    #[error("the slot is taken by another record")]
    SlotTaken,
    /// The store is at its size bound and nothing is old enough to evict.
    #[error("the store is full and every record is younger than the retention time")]
    Full,
}

impl Refused {
    /// Its metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Refused::WrongLocator => "wrong_locator",
            Refused::Slot(_) => "bad_slot",
            Refused::TooLarge { .. } => "too_large",
            Refused::SlotTaken => "slot_taken",
            Refused::Full => "full",
        }
    }
}

/// Checks that `bytes` may be stored as a `kind` record at `locator`:
/// its size, then (chunks) that it hashes to the locator or (slots) that
/// its blinded key names the locator and its signature verifies.
pub fn validate(kind: Kind, locator: &Locator, bytes: &[u8]) -> Result<(), Refused> {
    if bytes.len() > kind.max_len() {
        return Err(Refused::TooLarge {
            kind,
            got: bytes.len(),
            max: kind.max_len(),
        });
    }
    match kind {
        Kind::Chunk if locator.matches(bytes) => Ok(()),
        Kind::Chunk => Err(Refused::WrongLocator),
        Kind::Slot => Ok(SlotRecord::decode(bytes)?.verify(locator)?),
    }
}

/// How long records live and how much a node stores (`storage.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Every record lives at least this long (seconds), whatever arrives.
    pub min_age_secs: u64,
    /// Above this many bytes of records, the oldest records that have
    /// lived `min_age_secs` are evicted to make room; when none has, a put
    /// is refused ([`Refused::Full`]).
    pub max_bytes: u64,
}

impl Retention {
    /// May a record stored at `stored_at` be evicted at `now`?
    pub fn evictable(&self, stored_at: u64, now: u64) -> bool {
        stored_at.saturating_add(self.min_age_secs) <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_must_hash_to_their_locator_and_slots_must_verify() {
        let chunk = vec![7u8; 1000];
        let locator = Locator::of(&chunk);
        validate(Kind::Chunk, &locator, &chunk).unwrap();
        let mut tampered = chunk.clone();
        tampered[0] ^= 1;
        assert_eq!(
            validate(Kind::Chunk, &locator, &tampered),
            Err(Refused::WrongLocator)
        );
        let big = vec![0u8; CHUNK_SIZE + 1];
        assert!(matches!(
            validate(Kind::Chunk, &Locator::of(&big), &big),
            Err(Refused::TooLarge { .. })
        ));

        let slot = SlotRecord::sign(&[3; 32], 0, b"entry").unwrap();
        let at = mtos_crypto::slot::slot_locator(&slot.key);
        validate(Kind::Slot, &at, &slot.encode()).unwrap();
        assert!(matches!(
            validate(Kind::Slot, &locator, &slot.encode()),
            Err(Refused::Slot(SlotError::WrongLocator))
        ));
        assert!(matches!(
            validate(Kind::Slot, &at, &slot.encode()[..50]),
            Err(Refused::Slot(SlotError::Truncated(50)))
        ));
        // A slot record is at most one chunk.
        let full = SlotRecord::sign(&[3; 32], 1, &vec![0; MAX_SLOT_BODY]).unwrap();
        assert_eq!(full.encode().len(), CHUNK_SIZE);
        validate(
            Kind::Slot,
            &mtos_crypto::slot::slot_locator(&full.key),
            &full.encode(),
        )
        .unwrap();
        let over = SlotRecord::sign(&[3; 32], 2, &vec![0; MAX_SLOT_BODY + 1]).unwrap();
        assert!(matches!(
            validate(
                Kind::Slot,
                &mtos_crypto::slot::slot_locator(&over.key),
                &over.encode()
            ),
            Err(Refused::TooLarge {
                kind: Kind::Slot,
                ..
            })
        ));
        let mut forged = slot.encode();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(matches!(
            validate(Kind::Slot, &at, &forged),
            Err(Refused::Slot(SlotError::BadSignature))
        ));
    }

    #[test]
    fn records_younger_than_the_retention_time_are_never_evictable() {
        let r = Retention {
            min_age_secs: 100,
            max_bytes: 1,
        };
        assert!(!r.evictable(1_000, 1_099));
        assert!(r.evictable(1_000, 1_100));
        assert!(!r.evictable(u64::MAX - 5, u64::MAX - 1));
        for kind in [Kind::Chunk, Kind::Slot] {
            assert_eq!(Kind::from_byte(kind.byte()), Some(kind));
        }
        assert_eq!(Kind::from_byte(0), None);
    }
}
