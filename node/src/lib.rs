#![doc = include_str!("../README.md")]

use std::path::PathBuf;

pub mod authority;
pub mod capacity;
pub mod cli;
pub mod config;
mod gate;
pub mod keystore;
pub mod loops;
pub mod metrics;
pub mod nofile;
pub mod record_db;
pub mod repair;
pub mod replay_db;
pub mod replica;
pub mod run;
pub mod service_node;

/// Why the node (or the authority) could not start or went down. Every
/// variant names what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file is unusable.
    #[error("{}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration cannot be used as it is.
    #[error("{0}")]
    Config(String),
    /// A database could not be opened or written.
    #[error("database {}: {reason}", path.display())]
    Database {
        /// Its directory.
        path: PathBuf,
        /// RocksDB's message.
        reason: String,
    },
    /// A listening address could not be bound.
    #[error("{field} = {addr:?}: cannot listen: {reason}")]
    Listen {
        /// The config field.
        field: &'static str,
        /// The address.
        addr: String,
        /// Why (e.g. address in use).
        reason: String,
    },
    /// The libp2p transport could not be built.
    #[error(transparent)]
    Transport(#[from] mtos_net::TransportError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Reads an identity key file, refusing one readable by others.
pub fn load_identity(path: &std::path::Path) -> Result<mtos_crypto::Identity, NodeError> {
    let text =
        zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| NodeError::Io {
                path: path.to_owned(),
                source,
            })?,
        );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| NodeError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(NodeError::Key {
                path: path.to_owned(),
                reason: format!("readable by others (mode {:o}); chmod 600 it", mode & 0o777),
            });
        }
    }
    mtos_crypto::Identity::import_secret(&text).map_err(|e| NodeError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes a new owner-only file, refusing to replace an existing one.
pub fn create_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), NodeError> {
    mtos_crypto::create_owner_only(path, bytes).map_err(|source| NodeError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `bytes` as one step: written owner-only to a
/// temporary file beside it, synced, then renamed over it (a crash leaves
/// the old file or the new, never half of one).
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), NodeError> {
    let io = |source| NodeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    mtos_crypto::create_owner_only(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Why a listener could not be opened, in an operator's words.
pub(crate) fn listen_reason<E: std::fmt::Debug + std::fmt::Display>(
    e: &libp2p::TransportError<E>,
) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!("unsupported address {a}"),
        libp2p::TransportError::Other(inner) => {
            let text = inner.to_string();
            let debug = format!("{inner:?}");
            if debug.contains("AddrInUse") || text.contains("in use") {
                "address already in use".to_owned()
            } else {
                text
            }
        }
    }
}
