//! A storage node's records in RocksDB (`specs/storage.md` §2): chunks and
//! feed slots, checked by [`mtos_mixnode::records::validate`] before anything is
//! written, each with the storage stamp it came with, kept at least the
//! retention time, and above the size bound evicted least effort per byte
//! first, only for a record of at least their effort per byte.
//!
//! Rows (no compression, so the byte counts are the disk's):
//!
//! ```text
//! m || name                         -> the node's own state (repair; "format";
//!                                      "matured": the age watermark)
//! r || kind || locator              -> stored_at (8, BE) || stamp (32) || record
//! t || stored_at || kind || locator -> record length (4, BE) || effort (4, BE)
//! d || density || stored_at || kind || locator -> (empty)      eviction order
//! ```
//!
//! A record's `d` row is written when it comes of age (has lived the
//! retention time), with the watermark below which every record has
//! one: the eviction order holds only records that may be evicted, so
//! young records, however many and however cheap, cannot stand in its
//! way. Every row of a put is written and deleted in one synced batch, so
//! a put that returned is on disk and a crash never leaves half a record.

use std::path::{Path, PathBuf};

use mtos_crypto::item::Locator;
use mtos_crypto::stamp::{STAMP_LEN, Stamp};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::NodeError;
use mtos_mixnode::records::{Kind, Refused, Retention, density, validate};

const META: u8 = b'm';
const RECORD: u8 = b'r';
const BY_TIME: u8 = b't';
const BY_DENSITY: u8 = b'd';
/// Bytes before the record in an `r` row's value.
const VALUE_HEAD: usize = 8 + STAMP_LEN;
/// The store's format: 2 since records carry stamps.
const FORMAT: &[u8] = b"2";
/// Eviction order rows a put looks through at most (every one is a record
/// old enough to evict, least effort per byte first): a put that finds no
/// room within this many is refused as full.
pub const EVICTION_SCAN: usize = 4_096;
/// Time rows a store brings of age at once; more wait for the next put.
const MATURE_BATCH: usize = 10_000;

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored, after evicting this many records.
    Stored {
        /// Records evicted to make room.
        evicted: u64,
    },
    /// The identical record was there already (nothing written).
    Duplicate,
}

/// Why a put did not store: the record was refused, or the disk failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Refused by the rules (counted by reason).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// RocksDB failed.
    #[error(transparent)]
    Database(#[from] NodeError),
}

/// The record store.
pub struct RecordDb {
    db: DB,
    path: PathBuf,
    retention: Retention,
    bytes: u64,
    records: u64,
    /// Bytes of records stored at or after `young_from`.
    young_bytes: u64,
    /// The age watermark: records stored before this Unix second are of
    /// age (in the eviction order); from it on, young. Never decreases.
    young_from: u64,
}

impl std::fmt::Debug for RecordDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDb")
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

fn record_key(kind: Kind, locator: &Locator) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[0] = RECORD;
    k[1] = kind.byte();
    k[2..].copy_from_slice(locator.as_bytes());
    k
}

fn time_key(stored_at: u64, kind: Kind, locator: &Locator) -> [u8; 42] {
    let mut k = [0u8; 42];
    k[0] = BY_TIME;
    k[1..9].copy_from_slice(&stored_at.to_be_bytes());
    k[9] = kind.byte();
    k[10..].copy_from_slice(locator.as_bytes());
    k
}

fn density_key(density: u64, stored_at: u64, kind: Kind, locator: &Locator) -> [u8; 50] {
    let mut k = [0u8; 50];
    k[0] = BY_DENSITY;
    k[1..9].copy_from_slice(&density.to_be_bytes());
    k[9..17].copy_from_slice(&stored_at.to_be_bytes());
    k[17] = kind.byte();
    k[18..].copy_from_slice(locator.as_bytes());
    k
}

/// An `r` row's value: when stored, the stamp, the record.
fn split_value(v: &[u8]) -> Option<(u64, Stamp, &[u8])> {
    let (at, rest) = v.split_first_chunk::<8>()?;
    let (stamp, record) = rest.split_first_chunk::<STAMP_LEN>()?;
    Some((u64::from_be_bytes(*at), Stamp::decode(stamp), record))
}

impl RecordDb {
    /// Opens (creating) the store at `path`, counting what it holds. A
    /// store of an earlier format (records without stamps) is refused
    /// with an error saying so.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, NodeError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let db = DB::open(&options, path).map_err(|e| NodeError::Database {
            path: path.to_owned(),
            reason: e.into_string(),
        })?;
        let mut store = Self {
            db,
            path: path.to_owned(),
            retention,
            bytes: 0,
            records: 0,
            young_bytes: 0,
            young_from: 0,
        };
        match store.meta("format")? {
            Some(f) if f == FORMAT => {}
            Some(_) => return Err(store.format_error()),
            None if store.keys_after(None, 1)?.is_empty() => store.set_meta("format", FORMAT)?,
            None => return Err(store.format_error()),
        }
        let (mut bytes, mut records) = (0u64, 0u64);
        store.for_each(|_, _, record| {
            bytes += record.len() as u64;
            records += 1;
        })?;
        store.bytes = bytes;
        store.records = records;
        // The watermark as last written, and the records from it on.
        store.young_from = store
            .meta("matured")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut young = 0u64;
        store.time_rows_from(store.young_from, |_, _, _, len, _| {
            young += u64::from(len);
            true
        })?;
        store.young_bytes = young;
        Ok(store)
    }

    /// Calls `f(stored_at, kind, locator, length, effort)` for the time
    /// rows from `from` on, in order, while it returns `true`.
    fn time_rows_from(
        &self,
        from: u64,
        mut f: impl FnMut(u64, Kind, Locator, u32, u32) -> bool,
    ) -> Result<(), NodeError> {
        let mut start = [0u8; 9];
        start[0] = BY_TIME;
        start[1..].copy_from_slice(&from.to_be_bytes());
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.error(e))?;
            if k.first() != Some(&BY_TIME) || k.len() != 42 {
                break;
            }
            let at = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0xff; 8]));
            let (Some(kind), Ok(l)) = (
                Kind::from_byte(k[9]),
                <[u8; 32]>::try_from(&k[10..]).map(Locator::from_bytes),
            ) else {
                continue;
            };
            let word = |i: usize| {
                v.get(i..i + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes)
            };
            if !f(at, kind, l, word(0), word(4)) {
                break;
            }
        }
        Ok(())
    }

    fn format_error(&self) -> NodeError {
        NodeError::Database {
            path: self.path.clone(),
            reason: "a record store of an earlier format (records without storage stamps); \
                     move it away to start an empty one"
                .into(),
        }
    }

    fn error(&self, e: rocksdb::Error) -> NodeError {
        NodeError::Database {
            path: self.path.clone(),
            reason: e.into_string(),
        }
    }

    /// Records held.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of records held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of records younger than the retention time at `now`: those
    /// nothing may evict yet.
    pub fn young_bytes(&mut self, now: u64) -> Result<u64, NodeError> {
        // Young: stored after `now - retention` (`Retention::evictable`).
        let from = now
            .saturating_add(1)
            .saturating_sub(self.retention.min_age_secs);
        if from > self.young_from {
            // Records stored in [young_from, from) come of age: each gets
            // its eviction row, and the watermark moves, in one batch (at
            // most MATURE_BATCH rows; the rest at the next call).
            let (mut aged, mut rows, mut watermark) = (0u64, 0usize, from);
            let mut last = None;
            let mut batch = WriteBatch::default();
            self.time_rows_from(self.young_from, |at, kind, l, len, effort| {
                if at >= from {
                    return false;
                }
                // Cut only between seconds, so the watermark never splits
                // one second's records.
                if rows >= MATURE_BATCH && last != Some(at) {
                    watermark = at;
                    return false;
                }
                last = Some(at);
                batch.put(density_key(density(effort, len as usize), at, kind, &l), []);
                aged += u64::from(len);
                rows += 1;
                true
            })?;
            batch.put([&[META][..], b"matured"].concat(), watermark.to_be_bytes());
            self.db.write(batch).map_err(|e| self.error(e))?;
            self.young_bytes = self.young_bytes.saturating_sub(aged);
            self.young_from = watermark;
        }
        Ok(self.young_bytes)
    }

    /// The effort this store asks of a put at `now` under the document's
    /// `floor` ([`Retention::stamp_need`] of its young bytes).
    pub fn stamp_need(&mut self, floor: u32, now: u64) -> Result<u32, NodeError> {
        let young = self.young_bytes(now)?;
        Ok(self.retention.stamp_need(floor, young))
    }

    /// The record stored at `locator`, if any.
    pub fn get(&self, kind: Kind, locator: &Locator) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.get_stamped(kind, locator)?.map(|(_, r)| r))
    }

    /// The record stored at `locator` with its stamp, if any (repair
    /// moves both).
    pub fn get_stamped(
        &self,
        kind: Kind,
        locator: &Locator,
    ) -> Result<Option<(Stamp, Vec<u8>)>, NodeError> {
        Ok(self
            .db
            .get(record_key(kind, locator))
            .map_err(|e| self.error(e))?
            .and_then(|v| split_value(&v).map(|(_, s, r)| (s, r.to_vec()))))
    }

    /// Stores `bytes` as a `kind` record at `locator` with `stamp` (which
    /// the caller has checked) at time `now` (Unix seconds): validated
    /// first; a chunk already held is a duplicate; a slot already holding
    /// a different record is refused; above the size bound records past
    /// the retention time of at most this one's effort per byte are
    /// evicted, least first, and if they are not enough the put is
    /// refused. A refused put changes nothing.
    pub fn put(
        &mut self,
        kind: Kind,
        locator: &Locator,
        bytes: &[u8],
        stamp: &Stamp,
        now: u64,
    ) -> Result<Put, PutError> {
        validate(kind, locator, bytes)?;
        if let Some(held) = self.get(kind, locator)? {
            return match kind {
                // Same locator, same bytes: the hash says so.
                Kind::Chunk => Ok(Put::Duplicate),
                Kind::Slot if held == bytes => Ok(Put::Duplicate),
                Kind::Slot => Err(Refused::SlotTaken.into()),
            };
        }
        self.young_bytes(now)?;
        // Never stored before the watermark, even if the clock went back:
        // a record below it would never come of age.
        let now = now.max(self.young_from);
        let size = bytes.len() as u64;
        let mine = density(stamp.effort, bytes.len());
        let mut batch = WriteBatch::default();
        let (mut freed, mut evicted) = (0u64, 0u64);
        if self.bytes + size > self.retention.max_bytes {
            for item in self
                .db
                .iterator(IteratorMode::From(&[BY_DENSITY], Direction::Forward))
                .take(EVICTION_SCAN)
            {
                if self.bytes - freed + size <= self.retention.max_bytes {
                    break;
                }
                let (k, _) = item.map_err(|e| self.error(e))?;
                if k.first() != Some(&BY_DENSITY) || k.len() != 50 {
                    break;
                }
                let theirs = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0xff; 8]));
                if theirs > mine {
                    break;
                }
                let stored_at = u64::from_be_bytes(k[9..17].try_into().unwrap_or([0xff; 8]));
                if !self.retention.evictable(stored_at, now) {
                    continue;
                }
                let (Some(old_kind), Ok(old)) = (
                    Kind::from_byte(k[17]),
                    <[u8; 32]>::try_from(&k[18..]).map(Locator::from_bytes),
                ) else {
                    continue;
                };
                let key = record_key(old_kind, &old);
                let len = self
                    .db
                    .get(key)
                    .map_err(|e| self.error(e))?
                    .map_or(0, |v| v.len().saturating_sub(VALUE_HEAD) as u64);
                batch.delete(key);
                batch.delete(&k);
                batch.delete(time_key(stored_at, old_kind, &old));
                freed += len;
                evicted += 1;
            }
            if self.bytes - freed + size > self.retention.max_bytes {
                return Err(Refused::Full.into());
            }
        }
        let mut value = Vec::with_capacity(VALUE_HEAD + bytes.len());
        value.extend_from_slice(&now.to_be_bytes());
        value.extend_from_slice(&stamp.encode());
        value.extend_from_slice(bytes);
        batch.put(record_key(kind, locator), value);
        let mut time_value = [0u8; 8];
        time_value[..4].copy_from_slice(&(bytes.len() as u32).to_be_bytes());
        time_value[4..].copy_from_slice(&stamp.effort.to_be_bytes());
        batch.put(time_key(now, kind, locator), time_value);
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.error(e))?;
        self.bytes = self.bytes - freed + size;
        self.records = self.records + 1 - evicted;
        self.young_bytes += size;
        Ok(Put::Stored { evicted })
    }

    /// Up to `limit` records' kinds and locators in key order, starting
    /// after `after` (from the first when `None`): a scan in pages, so a
    /// long walk (repair) holds the store only a page at a time.
    pub fn keys_after(
        &self,
        after: Option<(Kind, Locator)>,
        limit: usize,
    ) -> Result<Vec<(Kind, Locator)>, NodeError> {
        let start = match after {
            Some((kind, locator)) => record_key(kind, &locator).to_vec(),
            None => vec![RECORD],
        };
        let mut keys = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, _) = item.map_err(|e| self.error(e))?;
            if k.first() != Some(&RECORD) || keys.len() >= limit {
                break;
            }
            if *k == *start {
                continue;
            }
            if let (Some(kind), Ok(l)) = (
                k.get(1).copied().and_then(Kind::from_byte),
                <[u8; 32]>::try_from(k.get(2..).unwrap_or_default()),
            ) {
                keys.push((kind, Locator::from_bytes(l)));
            }
        }
        Ok(keys)
    }

    /// The node's own state stored under `name`, if any.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, NodeError> {
        let mut key = vec![META];
        key.extend_from_slice(name.as_bytes());
        self.db.get(key).map_err(|e| self.error(e))
    }

    /// Stores the node's own state under `name` (synced).
    pub fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), NodeError> {
        let mut key = vec![META];
        key.extend_from_slice(name.as_bytes());
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_opt(key, value, &options)
            .map_err(|e| self.error(e))
    }

    /// Every record held, as `(kind, locator, bytes)`: for repair and for
    /// checks that read the store through RocksDB.
    pub fn for_each(&self, mut f: impl FnMut(Kind, Locator, &[u8])) -> Result<(), NodeError> {
        for item in self
            .db
            .iterator(IteratorMode::From(&[RECORD], Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.error(e))?;
            if k.first() != Some(&RECORD) {
                break;
            }
            if let (Some(kind), Ok(l), Some(bytes)) = (
                k.get(1).copied().and_then(Kind::from_byte),
                <[u8; 32]>::try_from(k.get(2..).unwrap_or_default()),
                v.get(VALUE_HEAD..),
            ) {
                f(kind, Locator::from_bytes(l), bytes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
