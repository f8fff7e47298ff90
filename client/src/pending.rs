//! Work that has not finished yet, kept in the home so that the same
//! command run again resumes it instead of starting over: for now, a
//! publish (the reference of the item it sealed, and its author's id),
//! filed under a digest of the command that asked for it. Each record is
//! an owner-only file in the home's `pending/` directory, written before
//! the network is touched and removed once the work is done.

use std::path::PathBuf;

use mtos_crypto::item::ItemRef;

use crate::store::ChunkStore;
use crate::{ClientError, Home, transfer};

/// Unfinished work of any kind: what a screen takes up at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingWork {
    /// A publish.
    Publish(PendingPublish),
    /// A publish that finished while nobody was there to be told (its
    /// command interrupted): kept until the same command collects it.
    Published(PendingPublish),
    /// A fetch of this item.
    Fetch(ItemRef),
}

/// Records of fetches are named with this prefix.
const FETCH_PREFIX: &str = "fetch-";

/// The directory, inside the home, of unfinished work.
pub const PENDING_DIR: &str = "pending";

/// A publish that has not finished: the item sealed for it, and who
/// signed it (`None`: an anonymous or unsigned item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPublish {
    /// The sealed item.
    pub reference: ItemRef,
    /// The author's identity id, for the feed entry.
    pub author: Option<String>,
}

/// The home's unfinished publishes, each under the digest of the command
/// that started it.
#[derive(Debug, Clone)]
pub struct PendingPublishes {
    dir: PathBuf,
}

impl PendingPublishes {
    /// The unfinished publishes of `home`.
    pub fn of(home: &Home) -> Self {
        Self {
            dir: home.dir().join(PENDING_DIR),
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// The publish started under `digest`, if it can be resumed: its
    /// record parses and `store` still holds the item's chunks (a store
    /// that was removed means the item must be sealed anew).
    pub fn resumable(&self, digest: &str, store: &ChunkStore) -> Option<PendingPublish> {
        let (publish, done) = self.read(digest)?;
        if done {
            return None;
        }
        transfer::item_chunks(store, &publish.reference).ok()?;
        Some(publish)
    }

    /// The publish under `digest` that finished uncollected, if any.
    pub fn published(&self, digest: &str) -> Option<PendingPublish> {
        match self.read(digest)? {
            (publish, true) => Some(publish),
            _ => None,
        }
    }

    /// A publish record: the item, its author, whether it is done.
    fn read(&self, digest: &str) -> Option<(PendingPublish, bool)> {
        let text = std::fs::read_to_string(self.path(digest)).ok()?;
        let mut lines = text.lines();
        let reference = ItemRef::from_uri(lines.next()?.trim()).ok()?;
        let author = lines
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|id| !id.is_empty());
        let done = lines.next().is_some_and(|l| l.trim() == "done");
        Some((PendingPublish { reference, author }, done))
    }

    /// Marks the publish under `digest` done but not yet collected by
    /// the command that asked for it.
    pub fn mark_published(
        &self,
        digest: &str,
        publish: &PendingPublish,
    ) -> Result<(), ClientError> {
        let text = format!(
            "{}\n{}\ndone\n",
            publish.reference.to_uri(),
            publish.author.as_deref().unwrap_or_default()
        );
        self.write(digest, &text)
    }

    /// Records `publish` under `digest` before any of it is sent,
    /// replacing an older record that could not be resumed.
    pub fn record(&self, digest: &str, publish: &PendingPublish) -> Result<(), ClientError> {
        let text = format!(
            "{}\n{}\n",
            publish.reference.to_uri(),
            publish.author.as_deref().unwrap_or_default()
        );
        self.write(digest, &text)
    }

    /// Writes record `name` (owner-only), replacing an older one at
    /// once: a new file renamed over it, so a crash leaves one or the
    /// other, never a part.
    fn write(&self, name: &str, text: &str) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| ClientError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        mtos_crypto::create_owner_only(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ClientError::Io { path, source })
    }

    /// The name a fetch of `reference` is recorded under.
    pub fn fetch_key(reference: &ItemRef) -> String {
        let digest = blake3::derive_key("mtos pending fetch v1", reference.to_uri().as_bytes());
        format!(
            "{FETCH_PREFIX}{}",
            data_encoding::HEXLOWER.encode(&digest[..16])
        )
    }

    /// Records a fetch of `reference` before any of it is asked.
    pub fn record_fetch(&self, reference: &ItemRef) -> Result<String, ClientError> {
        let key = Self::fetch_key(reference);
        self.write(&key, &format!("{}\n", reference.to_uri()))?;
        Ok(key)
    }

    /// Every record of unfinished work that can be taken up (a publish
    /// whose item `store` still holds, a fetch), by name.
    pub fn all(&self, store: &ChunkStore) -> Vec<(String, PendingWork)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PendingWork)> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| {
                if name.starts_with(FETCH_PREFIX) {
                    let text = std::fs::read_to_string(self.path(&name)).ok()?;
                    let reference = ItemRef::from_uri(text.lines().next()?.trim()).ok()?;
                    Some((name, PendingWork::Fetch(reference)))
                } else if let Some(done) = self.published(&name) {
                    Some((name, PendingWork::Published(done)))
                } else {
                    let publish = self.resumable(&name, store)?;
                    Some((name, PendingWork::Publish(publish)))
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets the publish under `digest`: it is done.
    pub fn done(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mtos_crypto::item::seal::{self, Access};
    use mtos_crypto::item::{ContentType, ItemDraft, Part};
    use mtos_crypto::{Identity, Label, Visibility};

    use super::*;

    fn sealed(store: &ChunkStore) -> ItemRef {
        let author = Identity::generate(
            &mut rand::rng(),
            Label::new("a").unwrap(),
            Visibility::Public,
            0,
        );
        let item = ItemDraft::new(ContentType::Note, 0, vec![Part::text("pending")])
            .sign(&author)
            .unwrap();
        let mut writer = store.writer();
        let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
        writer.finish().unwrap();
        sealed.reference
    }

    #[test]
    fn a_recorded_publish_resumes_until_done_and_only_with_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().join("home"))).unwrap();
        let store = ChunkStore::open(&dir.path().join("store")).unwrap();
        let pending = PendingPublishes::of(&home);
        let publish = PendingPublish {
            reference: sealed(&store),
            author: Some("abc".into()),
        };
        assert_eq!(pending.resumable("d1", &store), None);
        pending.record("d1", &publish).unwrap();
        assert_eq!(pending.resumable("d1", &store), Some(publish.clone()));
        // Another command's digest finds nothing.
        assert_eq!(pending.resumable("d2", &store), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(pending.path("d1"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A store without the item's chunks cannot resume it.
        let empty = ChunkStore::open(&dir.path().join("empty")).unwrap();
        assert_eq!(pending.resumable("d1", &empty), None);
        // Recording again replaces the record; an anonymous item has no author.
        let anonymous = PendingPublish {
            author: None,
            ..publish
        };
        pending.record("d1", &anonymous).unwrap();
        assert_eq!(pending.resumable("d1", &store), Some(anonymous));
        pending.done("d1");
        assert_eq!(pending.resumable("d1", &store), None);
        // A damaged record is not resumed.
        std::fs::write(pending.path("d3"), "not a reference\n").unwrap();
        assert_eq!(pending.resumable("d3", &store), None);
    }
}
