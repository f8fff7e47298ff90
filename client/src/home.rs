//! The client's home directory: where the keychain (and later the item
//! store and feeds) live. `--home DIR` or `MTOS_HOME` override the XDG
//! data directory (`~/.local/share/mtos` on Linux).

use std::fs;
use std::path::{Path, PathBuf};

use mtos_crypto::KeychainFile;

use crate::error::ClientError;
use crate::mixnet::NetworkConfig;

/// File name of the keychain inside the home.
pub const KEYCHAIN_FILE: &str = "keychain.age";
/// File naming the network this home uses (`mtos net`).
pub const NETWORK_FILE: &str = "network.json";

/// `network.json`: how to reach and trust the network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    network: String,
    /// The authorities.
    #[serde(default)]
    authorities: Vec<AuthorityEntry>,
    /// Signatures a document needs (0: more than half).
    #[serde(default)]
    threshold: usize,
    /// A file written before networks had several authorities: its one
    /// authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityEntry {
    key: String,
    addr: String,
}

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

    /// The network this home uses, from `network.json`.
    pub fn network(&self) -> Result<NetworkConfig, ClientError> {
        let path = self.dir.join(NETWORK_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotFound(format!(
                    "no network configured in {}: run `mtos net use --testnet DIR` or `mtos net set NETWORK KEY ADDR [KEY ADDR...]`",
                    self.dir.display()
                )));
            }
            Err(source) => return Err(ClientError::Io { path, source }),
        };
        let what = path.display().to_string();
        let file: NetworkFile = serde_json::from_str(&text).map_err(|e| ClientError::BadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut pairs: Vec<(String, String)> = file
            .authorities
            .into_iter()
            .map(|a| (a.key, a.addr))
            .collect();
        if let (Some(key), Some(addr)) = (file.authority_key, file.authority_addr) {
            pairs.push((key, addr));
        }
        NetworkConfig::parse(&file.network, &pairs, file.threshold, &what)
    }

    /// Makes `config` the network this home uses (replacing any).
    pub fn set_network(&self, config: &NetworkConfig) -> Result<(), ClientError> {
        self.ensure()?;
        let file = NetworkFile {
            network: config.network.clone(),
            authorities: config
                .authority_pairs()
                .into_iter()
                .map(|(key, addr)| AuthorityEntry { key, addr })
                .collect(),
            threshold: config.threshold,
            authority_key: None,
            authority_addr: None,
        };
        let path = self.dir.join(NETWORK_FILE);
        let text = serde_json::to_string_pretty(&file).map_err(|e| ClientError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        fs::write(&path, text + "\n").map_err(|source| ClientError::Io { path, source })
    }

    /// The keychain file.
    pub fn keychain(&self) -> KeychainFile {
        KeychainFile::new(self.dir.join(KEYCHAIN_FILE))
    }
}
