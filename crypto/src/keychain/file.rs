//! The keychain on disk: owner-only (0600), replaced atomically (write a
//! sibling temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash at any point leaves either the old or the new
//! keychain, never a mix; a failed open never writes anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;

use super::{KdfCost, Keychain};
use crate::error::KeychainError;

/// A sealed keychain is refused above this size (65535 identities take
/// about 11 MB): a bound on what a planted file can make us allocate.
pub const MAX_KEYCHAIN_FILE: u64 = 32 << 20;

/// A keychain file at a path.
#[derive(Debug, Clone)]
pub struct KeychainFile {
    path: PathBuf,
}

/// An exclusive advisory lock on a keychain, held across a
/// load-modify-save so two commands cannot lose each other's changes.
#[derive(Debug)]
pub struct KeychainLock {
    _file: File,
}

/// A new keychain written next to the old one but not yet in its place.
/// [`StagedKeychain::commit`] renames it over the old file; dropping it
/// without committing removes it.
#[derive(Debug)]
pub struct StagedKeychain {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl KeychainFile {
    /// The keychain at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a keychain file exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "keychain".into());
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// Takes the exclusive lock (blocking while another command holds it).
    pub fn lock(&self) -> Result<KeychainLock, KeychainError> {
        let lock_path = self.sibling(".lock");
        let file = owner_only(OpenOptions::new().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        file.lock().map_err(|e| io_error(&lock_path, e))?;
        Ok(KeychainLock { _file: file })
    }

    /// Reads and opens the keychain.
    pub fn load(&self, passphrase: &SecretString) -> Result<Keychain, KeychainError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeychainError::Missing(self.path.clone()));
            }
            Err(e) => return Err(io_error(&self.path, e)),
        };
        let mut sealed = Vec::new();
        file.take(MAX_KEYCHAIN_FILE + 1)
            .read_to_end(&mut sealed)
            .map_err(|e| io_error(&self.path, e))?;
        if sealed.len() as u64 > MAX_KEYCHAIN_FILE {
            return Err(KeychainError::Damaged(format!(
                "larger than {MAX_KEYCHAIN_FILE} bytes"
            )));
        }
        Keychain::open(&sealed, passphrase)
    }

    /// Seals and writes the keychain next to the old one, without
    /// replacing it yet.
    pub fn stage(
        &self,
        keychain: &Keychain,
        passphrase: &SecretString,
        cost: KdfCost,
    ) -> Result<StagedKeychain, KeychainError> {
        let sealed = keychain.seal(passphrase, cost)?;
        let tmp = self.sibling(".tmp");
        let staged = StagedKeychain {
            tmp: tmp.clone(),
            target: self.path.clone(),
            committed: false,
        };
        let mut file = owner_only(OpenOptions::new().create(true).truncate(true).write(true))
            .open(&tmp)
            .map_err(|e| io_error(&tmp, e))?;
        restrict_permissions(&file).map_err(|e| io_error(&tmp, e))?;
        file.write_all(&sealed)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&tmp, e))?;
        Ok(staged)
    }

    /// Seals, writes and atomically replaces the keychain.
    pub fn save(
        &self,
        keychain: &Keychain,
        passphrase: &SecretString,
        cost: KdfCost,
    ) -> Result<(), KeychainError> {
        self.stage(keychain, passphrase, cost)?.commit()
    }
}

impl StagedKeychain {
    /// Renames the staged file over the keychain and makes the rename
    /// durable.
    pub fn commit(mut self) -> Result<(), KeychainError> {
        fs::rename(&self.tmp, &self.target).map_err(|e| io_error(&self.target, e))?;
        self.committed = true;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Persist the directory entry; without it a power loss could
            // bring back the old file after we reported success.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))?;
        }
        Ok(())
    }
}

impl Drop for StagedKeychain {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> KeychainError {
    KeychainError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to a new owner-only file (mode 0600 on Unix) and syncs
/// it, refusing to replace an existing file (`AlreadyExists`): the one
/// writer of secret files (identity keys, exported identities) that
/// `mtos` and `mtos-node` share.
pub fn create_owner_only(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = owner_only(OpenOptions::new().write(true).create_new(true)).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

#[cfg(not(unix))]
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// `mode` only applies to new files: a leftover temporary file from a
/// crash keeps its old mode unless we set it.
#[cfg(unix)]
fn restrict_permissions(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_permissions(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Label, Visibility};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const COST: KdfCost = KdfCost::LogN(2);

    fn keychain(labels: &[&str]) -> Keychain {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let mut kc = Keychain::new();
        for label in labels {
            kc.add(Identity::generate(
                &mut rng,
                Label::new(*label).unwrap(),
                Visibility::Public,
                0,
            ))
            .unwrap();
        }
        kc
    }

    fn pass(p: &str) -> SecretString {
        SecretString::from(p.to_owned())
    }

    #[test]
    fn save_load_round_trip_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeychainFile::new(dir.path().join("keychain.age"));
        assert!(matches!(
            file.load(&pass("pw")),
            Err(KeychainError::Missing(_))
        ));
        let kc = keychain(&["a", "b", "c"]);
        file.save(&kc, &pass("pw"), COST).unwrap();
        let back = file.load(&pass("pw")).unwrap();
        assert_eq!(&back.encode()[..], &kc.encode()[..]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join("keychain.age.tmp").exists());
    }

    #[test]
    fn wrong_passphrase_and_damage_leave_the_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeychainFile::new(dir.path().join("keychain.age"));
        file.save(&keychain(&["a", "b"]), &pass("pw"), COST)
            .unwrap();
        let original = fs::read(file.path()).unwrap();

        assert!(matches!(
            file.load(&pass("nope")),
            Err(KeychainError::WrongPassphrase)
        ));
        assert_eq!(fs::read(file.path()).unwrap(), original);

        for i in 0..original.len() {
            let mut bad = original.clone();
            bad[i] ^= 0xff;
            fs::write(file.path(), &bad).unwrap();
            assert!(file.load(&pass("pw")).is_err(), "byte {i} accepted");
            assert_eq!(fs::read(file.path()).unwrap(), bad, "byte {i} rewritten");
        }
    }

    #[test]
    fn crash_between_write_and_rename_keeps_the_old_keychain() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeychainFile::new(dir.path().join("keychain.age"));
        file.save(&keychain(&["old"]), &pass("pw"), COST).unwrap();

        // The new keychain is fully written and synced, then the process
        // dies before the rename (forget skips the cleanup a live process
        // would do).
        let staged = file
            .stage(&keychain(&["new", "newer"]), &pass("pw"), COST)
            .unwrap();
        std::mem::forget(staged);
        assert!(dir.path().join("keychain.age.tmp").exists());
        let after_crash = file.load(&pass("pw")).unwrap();
        assert_eq!(after_crash.identities()[0].label().as_str(), "old");

        // A half-written leftover from a crash mid-write does not matter
        // either, and the next save replaces it.
        fs::write(
            dir.path().join("keychain.age.tmp"),
            b"age-encryption.org/v1\n-> scr",
        )
        .unwrap();
        assert_eq!(file.load(&pass("pw")).unwrap().len(), 1);
        file.save(&keychain(&["new", "newer"]), &pass("pw"), COST)
            .unwrap();
        assert_eq!(file.load(&pass("pw")).unwrap().len(), 2);
        assert!(!dir.path().join("keychain.age.tmp").exists());
    }

    #[test]
    fn dropped_stage_cleans_up_and_keeps_old() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeychainFile::new(dir.path().join("keychain.age"));
        file.save(&keychain(&["old"]), &pass("pw"), COST).unwrap();
        drop(file.stage(&keychain(&["x"]), &pass("pw"), COST).unwrap());
        assert!(!dir.path().join("keychain.age.tmp").exists());
        assert_eq!(
            file.load(&pass("pw")).unwrap().identities()[0]
                .label()
                .as_str(),
            "old"
        );
    }

    #[test]
    fn oversized_file_is_refused_before_decrypting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keychain.age");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_KEYCHAIN_FILE + 1).unwrap();
        let file = KeychainFile::new(&path);
        assert!(matches!(
            file.load(&pass("pw")),
            Err(KeychainError::Damaged(_))
        ));
    }

    #[test]
    fn lock_can_be_taken_again_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeychainFile::new(dir.path().join("keychain.age"));
        let lock = file.lock().unwrap();
        drop(lock);
        let _again = file.lock().unwrap();
    }
}
