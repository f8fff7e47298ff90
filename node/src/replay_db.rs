//! Replay tags on disk. Every tag the engine accepts is written to RocksDB
//! by a group-commit thread (one synced write per batch) before the packet
//! it belongs to may leave the node, so a replay is caught after a crash
//! or `kill -9`; at start the Bloom filters are rebuilt from these rows.
//! Rows are `epoch (4 bytes, big-endian) ‖ tag (32 bytes)` with an empty
//! value; an epoch's rows are deleted when its key is erased.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, watch};

use super::NodeError;

/// A batch of accepted tags and the sequence number of its last tag.
#[derive(Debug)]
pub struct TagBatch {
    /// `(epoch, tag)` rows.
    pub tags: Vec<(u32, [u8; 32])>,
    /// Sequence number of the last tag accepted in this batch.
    pub seq: u64,
}

/// The group-commit thread's handles.
#[derive(Debug)]
pub struct Writer {
    /// Where batches go.
    pub batches: mpsc::Sender<TagBatch>,
    /// The highest committed sequence number.
    pub committed: watch::Receiver<u64>,
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// The replay database.
#[derive(Clone)]
pub struct ReplayDb {
    db: Arc<DB>,
}

impl std::fmt::Debug for ReplayDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayDb").finish_non_exhaustive()
    }
}

fn key(epoch: u32, tag: &[u8; 32]) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..4].copy_from_slice(&epoch.to_be_bytes());
    k[4..].copy_from_slice(tag);
    k
}

fn db_error(path: &Path) -> impl FnOnce(rocksdb::Error) -> NodeError + '_ {
    move |e| NodeError::Database {
        path: path.to_owned(),
        reason: e.into_string(),
    }
}

impl ReplayDb {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, NodeError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let db = DB::open(&options, path).map_err(db_error(path))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The tags stored for `epoch`.
    pub fn tags(&self, epoch: u32) -> Result<Vec<[u8; 32]>, NodeError> {
        let mut out = Vec::new();
        self.for_each_tag(epoch, |t| out.push(t))?;
        Ok(out)
    }

    /// Calls `f` with every tag stored for `epoch`, without collecting
    /// them (an epoch can hold millions).
    pub fn for_each_tag(&self, epoch: u32, mut f: impl FnMut([u8; 32])) -> Result<(), NodeError> {
        let prefix = epoch.to_be_bytes();
        let iter = self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward));
        for item in iter {
            let (k, _) = item.map_err(|e| NodeError::Database {
                path: self.db.path().to_owned(),
                reason: e.into_string(),
            })?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Ok(tag) = <[u8; 32]>::try_from(&k[4..]) {
                f(tag);
            }
        }
        Ok(())
    }

    /// Deletes the tags of every epoch before `epoch`.
    pub fn erase_before(&self, epoch: u32) -> Result<(), NodeError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(key(0, &[0; 32]), key(epoch, &[0; 32]));
        self.db.write(batch).map_err(|e| NodeError::Database {
            path: self.db.path().to_owned(),
            reason: e.into_string(),
        })
    }

    /// Writes one batch, synced.
    pub fn commit(&self, tags: &[(u32, [u8; 32])]) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        for (epoch, tag) in tags {
            batch.put(key(*epoch, tag), []);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)
    }

    /// Starts the group-commit thread. Batches sent on the returned
    /// channel are written together when they queue up (one synced write
    /// for all of them); the watch carries the highest committed sequence
    /// number. A failed write is retried, never skipped: packets stay held
    /// until their tags are on disk. The thread ends when the sender is
    /// dropped; join it before the process exits, so RocksDB is closed
    /// while no thread uses it.
    pub fn spawn_writer(self, queue: usize) -> Result<Writer, NodeError> {
        let (tx, mut rx) = mpsc::channel::<TagBatch>(queue.max(1));
        let (done_tx, done_rx) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("replay-commit".into())
            .spawn(move || {
                let mut rows = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    let mut seq = first.seq;
                    rows.clear();
                    rows.extend(first.tags);
                    while let Ok(more) = rx.try_recv() {
                        seq = seq.max(more.seq);
                        rows.extend(more.tags);
                    }
                    let mut backoff = std::time::Duration::from_millis(10);
                    while let Err(e) = self.commit(&rows) {
                        tracing::error!(error = %e, "replay tags could not be written; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    }
                    if done_tx.send(seq).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| NodeError::Io {
                path: "replay-commit thread".into(),
                source,
            })?;
        Ok(Writer {
            batches: tx,
            committed: done_rx,
            thread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_persist_per_epoch_and_old_epochs_are_erased() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = ReplayDb::open(dir.path()).unwrap();
            db.commit(&[(4, [1; 32]), (5, [2; 32]), (5, [3; 32]), (6, [4; 32])])
                .unwrap();
        }
        let db = ReplayDb::open(dir.path()).unwrap();
        assert_eq!(db.tags(5).unwrap(), vec![[2; 32], [3; 32]]);
        db.erase_before(5).unwrap();
        assert!(db.tags(4).unwrap().is_empty());
        assert_eq!(db.tags(6).unwrap(), vec![[4; 32]]);
        // A second process cannot open the same database.
        let e = ReplayDb::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("lock") || e.contains("LOCK"), "{e}");
    }

    #[tokio::test]
    async fn the_writer_reports_committed_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let db = ReplayDb::open(dir.path()).unwrap();
        let Writer {
            batches: tx,
            committed: mut done,
            thread,
        } = db.clone().spawn_writer(8).unwrap();
        for seq in 1..=20u64 {
            tx.send(TagBatch {
                tags: vec![(1, [seq as u8; 32])],
                seq,
            })
            .await
            .unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while *done.borrow_and_update() < 20 {
                done.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(db.tags(1).unwrap().len(), 20);
        drop(tx);
        thread.join().unwrap();
    }
}
