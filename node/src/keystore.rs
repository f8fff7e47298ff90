//! Sphinx keys on disk: one owner-only file per epoch in `keys/sphinx/`,
//! written before the key is published and erased (overwritten, synced,
//! unlinked) when its epoch's overlap ends.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mtos_crypto::sphinx::SphinxSecret;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::NodeError;

/// The directory of a node's Sphinx keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_owned(),
        source,
    }
}

impl KeyStore {
    /// Opens (creating, owner-only) the key directory.
    pub fn open(dir: PathBuf) -> Result<Self, NodeError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(io(&dir))?;
        // A crash between writing a key and renaming it leaves a
        // temporary file holding a secret: erase it.
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".epoch-") && n.ends_with(".tmp"))
            {
                erase_file(&path)?;
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("epoch-{epoch}.key"))
    }

    /// The epochs with a key on disk, ascending.
    pub fn epochs(&self) -> Result<Vec<u32>, NodeError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let Some(epoch) = name
                .to_str()
                .and_then(|n| n.strip_prefix("epoch-"))
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            out.push(epoch);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The key of `epoch`, if stored.
    pub fn load(&self, epoch: u32) -> Result<Option<SphinxSecret>, NodeError> {
        let path = self.path(epoch);
        let text = match fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER
                .decode(text.trim().as_bytes())
                .map_err(|_| NodeError::Key {
                    path: path.clone(),
                    reason: "not 64 lowercase hex digits".into(),
                })?,
        );
        let array: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.as_slice().try_into().map_err(|_| NodeError::Key {
                path: path.clone(),
                reason: "not a 32-byte key".into(),
            })?);
        Ok(Some(SphinxSecret::from_bytes(*array)))
    }

    /// The key of `epoch`: the stored one, or a fresh one written first
    /// (owner-only, synced) so a published key is never lost by a crash.
    pub fn load_or_generate<R: CryptoRng + ?Sized>(
        &self,
        epoch: u32,
        rng: &mut R,
    ) -> Result<SphinxSecret, NodeError> {
        if let Some(k) = self.load(epoch)? {
            return Ok(k);
        }
        let key = SphinxSecret::generate(rng);
        let path = self.path(epoch);
        let text = Zeroizing::new(format!(
            "{}\n",
            data_encoding::HEXLOWER.encode(key.to_bytes().as_slice())
        ));
        let tmp = self.dir.join(format!(".epoch-{epoch}.key.tmp"));
        let _ = fs::remove_file(&tmp);
        mtos_crypto::create_owner_only(&tmp, text.as_bytes()).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(key)
    }

    /// Erases every key of an epoch before `epoch`: overwritten with
    /// zeros, synced, unlinked. Returns the epochs erased.
    pub fn erase_before(&self, epoch: u32) -> Result<Vec<u32>, NodeError> {
        let mut erased = Vec::new();
        for e in self.epochs()?.into_iter().filter(|e| *e < epoch) {
            erase_file(&self.path(e))?;
            erased.push(e);
        }
        Ok(erased)
    }
}

/// Overwrites a key file with zeros, syncs it and unlinks it. (On
/// copy-on-write or flash storage the old blocks may survive; the key is
/// gone from the file system and from memory.)
fn erase_file(path: &Path) -> Result<(), NodeError> {
    if let Ok(mut f) = fs::OpenOptions::new().write(true).open(path) {
        let len = f.metadata().map_or(65, |m| m.len() as usize);
        let _ = f.write_all(&vec![0u8; len]).and_then(|()| f.sync_all());
    }
    fs::remove_file(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopening_and_old_ones_are_erased() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path().join("sphinx")).unwrap();
        let mut rng = rand::rng();
        let k5 = store.load_or_generate(5, &mut rng).unwrap();
        let k6 = store.load_or_generate(6, &mut rng).unwrap();
        let again = KeyStore::open(dir.path().join("sphinx")).unwrap();
        assert_eq!(
            again.load_or_generate(5, &mut rng).unwrap().public(),
            k5.public()
        );
        assert_eq!(again.epochs().unwrap(), vec![5, 6]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path(5)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(again.erase_before(6).unwrap(), vec![5]);
        assert!(again.load(5).unwrap().is_none());
        // A leftover temporary key file is erased when the store opens.
        let tmp = store.dir.join(".epoch-9.key.tmp");
        fs::write(&tmp, "secret\n").unwrap();
        KeyStore::open(dir.path().join("sphinx")).unwrap();
        assert!(!tmp.exists());
        assert_eq!(again.load(6).unwrap().unwrap().public(), k6.public());
        fs::write(store.path(7), "zz\n").unwrap();
        let e = store.load(7).unwrap_err().to_string();
        assert!(e.contains("epoch-7.key"), "{e}");
    }
}
