//! A storage node's records in RocksDB (`specs/storage.md` §2): chunks and
//! feed slots, checked by [`mtos_mixnode::records::validate`] before anything is
//! written, kept at least the retention time, and evicted oldest first
//! only above the size bound.
//!
//! Rows (no compression, so the byte counts are the disk's):
//!
//! ```text
//! m || name                       -> the node's own state (repair)
//! r || kind || locator            -> stored_at (8, big-endian) || record
//! t || stored_at || kind || locator -> (empty)       the eviction order
//! ```
//!
//! Both rows of a record are written and deleted in one synced batch, so
//! a put that returned is on disk and a crash never leaves half a record.

use std::path::{Path, PathBuf};

use mtos_crypto::item::Locator;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::NodeError;
use mtos_mixnode::records::{Kind, Refused, Retention, validate};

const META: u8 = b'm';
const RECORD: u8 = b'r';
const BY_TIME: u8 = b't';

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored, after evicting this many older records.
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

impl RecordDb {
    /// Opens (creating) the store at `path`, counting what it holds.
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
        };
        let (mut bytes, mut records) = (0u64, 0u64);
        store.for_each(|_, _, record| {
            bytes += record.len() as u64;
            records += 1;
        })?;
        store.bytes = bytes;
        store.records = records;
        Ok(store)
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

    /// The record stored at `locator`, if any.
    pub fn get(&self, kind: Kind, locator: &Locator) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self
            .db
            .get(record_key(kind, locator))
            .map_err(|e| self.error(e))?
            .and_then(|v| v.get(8..).map(<[u8]>::to_vec)))
    }

    /// Stores `bytes` as a `kind` record at `locator` at time `now` (Unix
    /// seconds): validated first; a chunk already held is a duplicate; a
    /// slot already holding a different record is refused; above the size
    /// bound the oldest records past the retention time are evicted, and
    /// if they are not enough the put is refused. A refused put changes
    /// nothing.
    pub fn put(
        &mut self,
        kind: Kind,
        locator: &Locator,
        bytes: &[u8],
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
        let size = bytes.len() as u64;
        let mut batch = WriteBatch::default();
        let (mut freed, mut evicted) = (0u64, 0u64);
        if self.bytes + size > self.retention.max_bytes {
            for item in self
                .db
                .iterator(IteratorMode::From(&[BY_TIME], Direction::Forward))
            {
                if self.bytes - freed + size <= self.retention.max_bytes {
                    break;
                }
                let (k, _) = item.map_err(|e| self.error(e))?;
                if k.first() != Some(&BY_TIME) || k.len() != 42 {
                    break;
                }
                let stored_at = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0xff; 8]));
                if !self.retention.evictable(stored_at, now) {
                    break;
                }
                let (Some(old_kind), Ok(old)) = (
                    Kind::from_byte(k[9]),
                    <[u8; 32]>::try_from(&k[10..]).map(Locator::from_bytes),
                ) else {
                    break;
                };
                let key = record_key(old_kind, &old);
                let len = self
                    .db
                    .get(key)
                    .map_err(|e| self.error(e))?
                    .map_or(0, |v| v.len().saturating_sub(8) as u64);
                batch.delete(key);
                batch.delete(&k);
                freed += len;
                evicted += 1;
            }
            if self.bytes - freed + size > self.retention.max_bytes {
                return Err(Refused::Full.into());
            }
        }
        let mut value = Vec::with_capacity(8 + bytes.len());
        value.extend_from_slice(&now.to_be_bytes());
        value.extend_from_slice(bytes);
        batch.put(record_key(kind, locator), value);
        batch.put(time_key(now, kind, locator), []);
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.error(e))?;
        self.bytes = self.bytes - freed + size;
        self.records = self.records + 1 - evicted;
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
                v.get(8..),
            ) {
                f(kind, Locator::from_bytes(l), bytes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
