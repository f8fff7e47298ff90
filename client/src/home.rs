//! The client's home directory: where the keychain (and later the item
//! store and feeds) live. `--home DIR` or `MTOS_HOME` override the XDG
//! data directory (`~/.local/share/mtos` on Linux).

use std::fs;
use std::path::{Path, PathBuf};

use mtos_crypto::KeychainFile;

use crate::error::ClientError;

/// File name of the keychain inside the home.
pub const KEYCHAIN_FILE: &str = "keychain.age";

/// A client home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The given directory, or the platform data directory.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, ClientError> {
        let dir = match explicit {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("", "", "mtos")
                .map(|d| d.data_dir().to_path_buf())
                .ok_or_else(|| {
                    ClientError::Refused(
                        "cannot find a home directory: pass --home DIR or set MTOS_HOME".into(),
                    )
                })?,
        };
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only) if it does not exist.
    pub fn ensure(&self) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            path: self.dir.clone(),
            source,
        };
        if !self.dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(&self.dir).map_err(io)?;
        }
        Ok(())
    }

    /// The keychain file.
    pub fn keychain(&self) -> KeychainFile {
        KeychainFile::new(self.dir.join(KEYCHAIN_FILE))
    }
}
