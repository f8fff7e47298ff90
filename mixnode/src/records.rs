//! What a storage node accepts and keeps (`specs/storage.md` §2). Sans-IO:
//! the checks a record must pass before it is stored, and the retention
//! rule that decides which records may be evicted; the driver's RocksDB
//! store (`mtos_node::record_db`) applies them.

use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;
use mtos_crypto::slot::{SLOT_HEADER, SlotError, SlotRecord};
use mtos_crypto::stamp::{Stamp, StampError, StampFor};

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
    /// The store is at its size bound and nothing is old enough, and
    /// of less effort per byte, to evict.
    #[error(
        "the store is full: every record is younger than the retention time or of more effort per byte"
    )]
    Full,
    /// The stamp does not hold for this record.
    #[error("bad storage stamp: {0}")]
    Stamp(#[from] StampError),
    /// The stamp claims less effort than is asked now.
    #[error("the stamp's effort {effort} is below the {need} asked")]
    LowEffort {
        /// What the stamp claims.
        effort: u32,
        /// What is asked.
        need: u32,
    },
    /// The stamp was made for an epoch too far from this node's.
    #[error("the stamp is for epoch {stamp}, this node is at {epoch}")]
    StaleStamp {
        /// The stamp's epoch.
        stamp: u32,
        /// This node's document epoch.
        epoch: u32,
    },
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
            Refused::Stamp(_) => "bad_stamp",
            Refused::LowEffort { .. } => "low_effort",
            Refused::StaleStamp { .. } => "stale_stamp",
        }
    }
}

/// A stamp of `effort` for a `kind` record at `locator`, made for the
/// document epoch `epoch`, trying nonces from `start` (random, for a
/// client) on: about `effort` × 3 ms of one core.
pub fn make_stamp(
    kind: Kind,
    locator: &Locator,
    record: &[u8],
    epoch: u32,
    effort: u32,
    start: u64,
) -> Stamp {
    let what = StampFor {
        kind: kind.byte(),
        locator: locator.as_bytes(),
        record,
    };
    Stamp::solve(what, epoch, effort, start)
}

/// What a put's stamp must meet (`storage.md` §2): made for the
/// document epoch `epoch` or one either side (with `any_past`, for any
/// epoch up to `epoch + 1`: a replica takes records moved by repair,
/// whose stamps are as old as the records), and of effort at least
/// `need`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampRule {
    /// This node's document epoch.
    pub epoch: u32,
    /// The least effort taken; 0 asks no stamp at all (never a
    /// document's: its floor is at least 1; the simulator's, which
    /// models placement and repair, not the puzzle's cost).
    pub need: u32,
    /// Whether stamps of any earlier epoch are taken.
    pub any_past: bool,
}

impl Default for StampRule {
    /// Epoch 0, effort 1: what a machine holds before its first document.
    fn default() -> Self {
        Self {
            epoch: 0,
            need: 1,
            any_past: false,
        }
    }
}

impl StampRule {
    /// Checks `stamp` for a `kind` record at `locator`: effort, then
    /// epoch (both free), then the puzzle (microseconds).
    pub fn check(
        &self,
        kind: Kind,
        locator: &Locator,
        record: &[u8],
        stamp: &Stamp,
    ) -> Result<(), Refused> {
        if self.need == 0 {
            return Ok(());
        }
        if stamp.effort < self.need {
            return Err(Refused::LowEffort {
                effort: stamp.effort,
                need: self.need,
            });
        }
        let future = stamp.epoch > self.epoch.saturating_add(1);
        let past = !self.any_past && stamp.epoch.saturating_add(1) < self.epoch;
        if future || past {
            return Err(Refused::StaleStamp {
                stamp: stamp.epoch,
                epoch: self.epoch,
            });
        }
        Ok(stamp.check(StampFor {
            kind: kind.byte(),
            locator: locator.as_bytes(),
            record,
        })?)
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

/// The locator a record of `kind` names: a chunk's hash, a slot record's
/// blinded key's locator (`None` for a slot record too short to hold a
/// key). A put's locator is this, so a put need not carry it.
pub fn locator_of(kind: Kind, bytes: &[u8]) -> Option<Locator> {
    match kind {
        Kind::Chunk => Some(Locator::of(bytes)),
        Kind::Slot => SlotRecord::decode(bytes)
            .ok()
            .map(|r| mtos_crypto::slot::slot_locator(&r.key)),
    }
}

/// How long records live and how much a node stores (`storage.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Every record lives at least this long (seconds), whatever arrives.
    pub min_age_secs: u64,
    /// Above this many bytes of records, records that have lived
    /// `min_age_secs` are evicted to make room, least effort per byte
    /// first, and only for a record of at least their effort per byte;
    /// when that does not make room, a put is refused ([`Refused::Full`]).
    pub max_bytes: u64,
}

/// Bytes a record is charged besides its own for its effort per byte
/// (its keys and index rows on disk), so that tiny records do not buy
/// their place for nothing.
pub const RECORD_OVERHEAD: u64 = 128;

/// Fill (records younger than the retention time, in percent of the
/// bound) from which replicas ask more than the document's floor.
pub const STAMP_RISE_FROM: u64 = 50;
/// Each further this many percent of fill doubles the effort asked.
pub const STAMP_RISE_STEP: u64 = 5;
/// The most doublings: at a full store a put costs 1,024 × the floor.
pub const STAMP_RISE_MAX: u32 = 10;

impl Retention {
    /// May a record stored at `stored_at` be evicted at `now`?
    pub fn evictable(&self, stored_at: u64, now: u64) -> bool {
        stored_at.saturating_add(self.min_age_secs) <= now
    }

    /// The effort a replica asks of a put when `young_bytes` of its
    /// records are younger than the retention time (those nothing can
    /// evict): the document's `floor` below [`STAMP_RISE_FROM`] of the
    /// bound, doubling every [`STAMP_RISE_STEP`] above it, at most
    /// [`STAMP_RISE_MAX`] times.
    pub fn stamp_need(&self, floor: u32, young_bytes: u64) -> u32 {
        let percent = u128::from(young_bytes) * 100 / u128::from(self.max_bytes.max(1));
        let percent = u64::try_from(percent).unwrap_or(u64::MAX);
        let steps = match percent.checked_sub(STAMP_RISE_FROM) {
            None => 0,
            Some(above) => (above / STAMP_RISE_STEP + 1).min(u64::from(STAMP_RISE_MAX)) as u32,
        };
        floor.saturating_mul(1 << steps)
    }
}

/// A record's effort per byte, as eviction orders records: `effort ×
/// 2^32 / (len + RECORD_OVERHEAD)`.
pub fn density(effort: u32, len: usize) -> u64 {
    (u64::from(effort) << 32) / (len as u64 + RECORD_OVERHEAD)
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
