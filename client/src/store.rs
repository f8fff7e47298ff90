//! The client's chunk store: RocksDB under the home directory, holding the
//! chunks of items this client sealed or fetched (later its cache).
//!
//! Durability: chunks are written through the write-ahead log in batches;
//! the last batch of an item is written with `sync`, which makes every
//! earlier WAL write durable too, so an item whose reference was printed
//! survives a crash or power loss. Chunks are content-addressed, so a
//! repeated or failed write can only ever write the same bytes under a key.

use std::io;
use std::path::{Path, PathBuf};

use mtos_crypto::item::tree::{ChunkSink, ChunkSource};
use mtos_crypto::item::{ItemRef, Locator};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use crate::error::ClientError;

/// Directory of the store inside the home.
pub const STORE_DIR: &str = "items.db";
const CHUNKS_CF: &str = "chunks";
/// Chunks the network's replicas acknowledged: locator -> Unix seconds.
const PUBLISHED_CF: &str = "published";
/// Items this client sealed or fetched whole: root locator -> reference
/// (`specs/item.md` §5), the items a thread looks among.
const KNOWN_CF: &str = "known";
/// Most known items read back.
pub const MAX_KNOWN: usize = 100_000;
/// Batches are written once they reach this size.
const BATCH_BYTES: usize = 4 << 20;

/// The chunk store.
#[derive(Debug)]
pub struct ChunkStore {
    db: DB,
    path: PathBuf,
}

impl ChunkStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Chunks are ciphertext: compression would only cost CPU.
        options.set_compression_type(rocksdb::DBCompressionType::None);
        // Bound memory: a client store is small and mostly cold.
        options.set_write_buffer_size(16 << 20);
        options.set_max_open_files(256);
        let mut cf_options = Options::default();
        cf_options.set_compression_type(rocksdb::DBCompressionType::None);
        let db = DB::open_cf_descriptors(
            &options,
            path,
            [
                ColumnFamilyDescriptor::new(CHUNKS_CF, cf_options),
                ColumnFamilyDescriptor::new(PUBLISHED_CF, Options::default()),
                ColumnFamilyDescriptor::new(KNOWN_CF, Options::default()),
            ],
        )
        .map_err(|e| store_error(path, e))?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    /// Opens the store at `path` to read only, beside the process that
    /// holds it (the running screen): what it had written when this
    /// opens, write-ahead log included, and nothing written later.
    pub fn open_read_only(path: &Path) -> Result<Self, ClientError> {
        let options = Options::default();
        // A store made before a column family was added lacks it until
        // it is next opened to write.
        let present = DB::list_cf(&options, path).map_err(|e| store_error(path, e))?;
        let families = [CHUNKS_CF, PUBLISHED_CF, KNOWN_CF]
            .into_iter()
            .filter(|f| present.iter().any(|p| p == f));
        let db = DB::open_cf_for_read_only(&options, path, families, false)
            .map_err(|e| store_error(path, e))?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    /// Opens the store to write, or, while the running screen holds it,
    /// to read only ([`ChunkStore::open_read_only`]).
    pub fn open_for_reading(path: &Path) -> Result<Self, ClientError> {
        match Self::open(path) {
            Err(ClientError::Store { reason, .. }) if reason.starts_with(IN_USE) => {
                Self::open_read_only(path)
            }
            other => other,
        }
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self) -> io::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(CHUNKS_CF)
            .ok_or_else(|| io::Error::other("chunk store has no chunks column family"))
    }

    /// A writer for one item's chunks.
    pub fn writer(&self) -> StoreWriter<'_> {
        StoreWriter {
            store: self,
            batch: WriteBatch::default(),
            written: 0,
        }
    }

    /// Number of chunks (an estimate from RocksDB, for display).
    pub fn approximate_chunks(&self) -> u64 {
        self.cf()
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Reads one chunk.
    pub fn get(&self, locator: &Locator) -> io::Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf()?, locator.as_bytes())
            .map_err(io::Error::other)
    }

    /// Stores one chunk the caller checked against its locator (a fetched
    /// one), through the write-ahead log; [`ChunkStore::sync`] makes it
    /// durable.
    pub fn put(&self, locator: &Locator, chunk: &[u8]) -> io::Result<()> {
        self.db
            .put_cf(self.cf()?, locator.as_bytes(), chunk)
            .map_err(io::Error::other)
    }

    fn published_cf(&self) -> io::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(PUBLISHED_CF)
            .ok_or_else(|| io::Error::other("chunk store has no published column family"))
    }

    /// When the network's replicas acknowledged this chunk (Unix
    /// seconds), if they did.
    pub fn published_at(&self, locator: &Locator) -> io::Result<Option<u64>> {
        Ok(self
            .db
            .get_cf(self.published_cf()?, locator.as_bytes())
            .map_err(io::Error::other)?
            .and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))))
    }

    /// Records that the replicas acknowledged this chunk at `at`.
    pub fn mark_published(&self, locator: &Locator, at: u64) -> io::Result<()> {
        self.db
            .put_cf(self.published_cf()?, locator.as_bytes(), at.to_be_bytes())
            .map_err(io::Error::other)
    }

    /// Records that this client holds the whole of the item `reference`
    /// names (it sealed or fetched it).
    pub fn remember(&self, reference: &ItemRef) -> io::Result<()> {
        let cf = self
            .db
            .cf_handle(KNOWN_CF)
            .ok_or_else(|| io::Error::other("chunk store has no known column family"))?;
        self.db
            .put_cf(cf, reference.root().as_bytes(), reference.encode())
            .map_err(io::Error::other)
    }

    /// The items recorded by [`ChunkStore::remember`] (at most
    /// [`MAX_KNOWN`]; a record that does not decode is skipped).
    pub fn known(&self) -> io::Result<Vec<ItemRef>> {
        let Some(cf) = self.db.cf_handle(KNOWN_CF) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (_, value) = entry.map_err(io::Error::other)?;
            if let Ok(r) = ItemRef::decode(&value) {
                out.push(r);
            }
            if out.len() >= MAX_KNOWN {
                break;
            }
        }
        Ok(out)
    }

    /// Makes every write so far durable (syncs the write-ahead log).
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(io::Error::other)
    }
}

/// Collects an item's chunks and writes them in batches.
pub struct StoreWriter<'a> {
    store: &'a ChunkStore,
    batch: WriteBatch,
    written: u64,
}

impl std::fmt::Debug for StoreWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("store", &self.store.path)
            .field("pending_bytes", &self.batch.size_in_bytes())
            .field("written", &self.written)
            .finish()
    }
}

impl StoreWriter<'_> {
    fn write(&mut self, sync: bool) -> io::Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.store
            .db
            .write_opt(batch, &options)
            .map_err(io::Error::other)
    }

    /// Writes what is left and syncs the log: after this returns, the
    /// item survives a crash.
    pub fn finish(mut self) -> io::Result<u64> {
        self.write(true)?;
        Ok(self.written)
    }
}

impl ChunkSink for StoreWriter<'_> {
    fn put(&mut self, locator: &Locator, chunk: &[u8]) -> io::Result<()> {
        let cf = self.store.cf()?;
        self.batch.put_cf(cf, locator.as_bytes(), chunk);
        self.written += 1;
        if self.batch.size_in_bytes() >= BATCH_BYTES {
            self.write(false)?;
        }
        Ok(())
    }
}

impl ChunkSource for &ChunkStore {
    fn get(&mut self, locator: &Locator) -> io::Result<Option<Vec<u8>>> {
        ChunkStore::get(self, locator)
    }
}

/// How a store held by another process is reported.
const IN_USE: &str = "in use by another process";

fn store_error(path: &Path, e: rocksdb::Error) -> ClientError {
    let reason = e.into_string();
    let reason = if reason.contains("While lock file") {
        format!(
            "{IN_USE}, usually the running screen (`mtos publish` and `mtos fetch` go through it; `mtos screen stop` frees the store): {reason}"
        )
    } else {
        reason
    };
    ClientError::Store {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtos_crypto::item::seal::{self, Access};
    use mtos_crypto::item::{ContentType, ItemDraft, Part};
    use mtos_crypto::{Identity, Label, Visibility};

    /// Runs in a child process: seals an item, prints its reference, and
    /// dies without closing the database (no destructors, no flush).
    #[test]
    fn crash_child_seals_then_aborts() {
        let Some(dir) = std::env::var_os("MTOS_CRASH_CHILD_DIR") else {
            return; // only meaningful as the child of the test below
        };
        let store = ChunkStore::open(Path::new(&dir)).unwrap();
        let author = Identity::generate(
            &mut rand::rng(),
            Label::new("a").unwrap(),
            Visibility::Public,
            0,
        );
        let item = ItemDraft::new(
            ContentType::Note,
            0,
            vec![Part::binary(vec![9u8; 50_000], "application/octet-stream")],
        )
        .sign(&author)
        .unwrap();
        let mut writer = store.writer();
        let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
        writer.finish().unwrap();
        println!("REF {}", sealed.reference.to_uri());
        std::process::abort();
    }

    #[test]
    fn acknowledged_item_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_DIR);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::crash_child_seals_then_aborts",
                "--nocapture",
            ])
            .env("MTOS_CRASH_CHILD_DIR", &path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child must die by abort");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let uri = stdout
            .lines()
            .find_map(|l| l.strip_prefix("REF "))
            .unwrap_or_else(|| panic!("child printed no reference: {stdout}"));
        let reference = mtos_crypto::item::ItemRef::from_uri(uri).unwrap();
        let store = ChunkStore::open(&path).unwrap();
        let item = seal::open(&mut &store, &reference, &[], u64::MAX).unwrap();
        assert_eq!(item.parts()[0].data(), &vec![9u8; 50_000][..]);
    }

    #[test]
    fn sealed_item_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_DIR);
        let author = Identity::generate(
            &mut rand::rng(),
            Label::new("a").unwrap(),
            Visibility::Public,
            0,
        );
        let item = ItemDraft::new(
            ContentType::MediaObject,
            0,
            vec![Part::binary(vec![7u8; 100_000], "application/octet-stream")],
        )
        .sign(&author)
        .unwrap();
        let reference = {
            let store = ChunkStore::open(&path).unwrap();
            let mut writer = store.writer();
            let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
            let n = writer.finish().unwrap();
            assert_eq!(n, sealed.shape.total_chunks());
            sealed.reference
        };
        let store = ChunkStore::open(&path).unwrap();
        let back = seal::open(&mut &store, &reference, &[], u64::MAX).unwrap();
        assert_eq!(back, item);
    }
}
