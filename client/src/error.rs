//! Errors of the client and how the `mtos` command reports them: one line
//! on stderr and an exit code per kind, so scripts can react.

use std::path::PathBuf;

use mtos_crypto::{ExportError, KeychainError, LabelError, UriError};

/// Everything a client command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The keychain could not be opened, saved or edited.
    #[error(transparent)]
    Keychain(#[from] KeychainError),
    /// A label was refused.
    #[error("invalid label: {0}")]
    Label(#[from] LabelError),
    /// A `mtos:` URI was refused.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A secret identity file was refused.
    #[error("{path}: {source}")]
    Import {
        /// The file.
        path: String,
        /// Why.
        source: ExportError,
    },
    /// No usable passphrase.
    #[error("{0}")]
    Passphrase(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command would destroy data without being told to.
    #[error("{0}")]
    Refused(String),
    /// The chunk store could not be opened or written.
    #[error("item store {path}: {reason}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// RocksDB's message.
        reason: String,
    },
    /// An item could not be built.
    #[error(transparent)]
    Item(#[from] mtos_crypto::ItemError),
    /// An item could not be sealed.
    #[error(transparent)]
    Seal(#[from] mtos_crypto::SealError),
    /// An item could not be opened or verified.
    #[error(transparent)]
    Open(#[from] mtos_crypto::OpenError),
    /// A recipient was not understood.
    #[error(
        "recipient \"{0}\": not an mtos:id: URI, an age1... key, one of your contacts or one of your identities"
    )]
    BadRecipient(String),
    /// A contact's keys changed since they were added: nothing is sealed
    /// to it until the person accepts or rejects the change.
    #[error(
        "contact \"{0}\" has new keys that nobody has checked: compare the safety number (`mtos contact show {0}`), then `mtos contact verify {0} --accept-change`, or remove the contact"
    )]
    ContactChanged(String),
    /// An OpenPGP key or signature step failed.
    #[error(transparent)]
    OpenPgp(#[from] crate::openpgp::OpenPgpError),
    /// An image that does not decode (`mtos contact add --qr-image`).
    #[error("not a readable image: {0}")]
    BadImage(String),
    /// A short-code transfer step failed (`specs/transfer.md`).
    #[error(transparent)]
    ShortCode(#[from] mtos_crypto::transfer::TransferError),
    /// The network could not be reached or used: its kind says whether
    /// asking again can help (`mtos_net::NetError`).
    #[error(transparent)]
    Network(#[from] mtos_net::NetError),
    /// A local testnet could not be started, used or stopped.
    #[error("{0}")]
    Testnet(String),
    /// A put's storage stamp could not be made (its solver thread
    /// stopped).
    #[error("the storage stamp could not be made: {0}")]
    Stamp(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A request out of range (a message too long, a block count), or one
    /// that cannot be built from these keys.
    #[error("{0}")]
    Invalid(String),
    /// A local file that does not parse as what it should be.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Something exists that this would replace.
    #[error("{0}")]
    Conflict(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A reply could not be sent, or a message with reply blocks built.
    #[error(transparent)]
    Reply(#[from] crate::replies::ReplyError),
    /// The screen answered a request with an error.
    #[error("the screen: {0}")]
    Remote(crate::screen::api::ApiError),
    /// No screen runs for this home, or it could not be reached.
    #[error("{0}")]
    NoScreen(String),
    /// The person interrupted the command (Ctrl-C); says what became of
    /// its work.
    #[error("{0}")]
    Interrupted(String),
    /// A web page or oEmbed response could not be imported.
    #[error("{path}: {source}")]
    PageImport {
        /// The file (`-` for standard input).
        path: String,
        /// Why.
        source: mtos_import::ImportError,
    },
    /// The input is too large to be what it claims.
    #[error("{path}: larger than {limit} bytes, not an mtos file")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        limit: u64,
    },
}

/// Exit codes of the `mtos` command (2 is clap's usage error).
pub mod exit {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// Wrong passphrase.
    pub const WRONG_PASSPHRASE: u8 = 3;
    /// A damaged or malformed file, URI or record.
    pub const BAD_INPUT: u8 = 4;
    /// An identity or file that does not exist.
    pub const NOT_FOUND: u8 = 5;
    /// Would duplicate or overwrite something that exists.
    pub const CONFLICT: u8 = 6;
    /// A private item not addressed to any of your identities.
    pub const NOT_RECIPIENT: u8 = 7;
    /// Interrupted (Ctrl-C), as shells report SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Keychain(k) => match k {
                KeychainError::WrongPassphrase => exit::WRONG_PASSPHRASE,
                KeychainError::Damaged(_)
                | KeychainError::Decode(_)
                | KeychainError::NotPassphraseProtected
                | KeychainError::ExcessiveWork { .. } => exit::BAD_INPUT,
                KeychainError::NotFound(_)
                | KeychainError::ContactNotFound(_)
                | KeychainError::Ambiguous { .. }
                | KeychainError::Missing(_) => exit::NOT_FOUND,
                KeychainError::Duplicate(_)
                | KeychainError::DuplicateLabel(_)
                | KeychainError::DuplicateContact(_)
                | KeychainError::OwnIdentity(_) => exit::CONFLICT,
                _ => exit::FAILURE,
            },
            ClientError::Open(mtos_crypto::OpenError::ChunkMissing(_)) => exit::NOT_FOUND,
            ClientError::Open(mtos_crypto::OpenError::NotARecipient) => exit::NOT_RECIPIENT,
            ClientError::Open(_) | ClientError::Item(_) | ClientError::BadRecipient(_) => {
                exit::BAD_INPUT
            }
            ClientError::Seal(mtos_crypto::SealError::Item(_))
            | ClientError::Seal(mtos_crypto::SealError::TooManyRecipients { .. })
            | ClientError::Seal(mtos_crypto::SealError::TooLarge { .. }) => exit::BAD_INPUT,
            ClientError::Label(_)
            | ClientError::Uri(_)
            | ClientError::Import { .. }
            | ClientError::TooLarge { .. }
            | ClientError::PageImport { .. }
            | ClientError::BadImage(_) => exit::BAD_INPUT,
            ClientError::Refused(_) | ClientError::Conflict(_) | ClientError::ContactChanged(_) => {
                exit::CONFLICT
            }
            ClientError::ShortCode(mtos_crypto::transfer::TransferError::BadCode(_)) => {
                exit::BAD_INPUT
            }
            ClientError::ShortCode(_) => exit::CONFLICT,
            ClientError::OpenPgp(crate::openpgp::OpenPgpError::WrongPassphrase) => {
                exit::WRONG_PASSPHRASE
            }
            ClientError::OpenPgp(
                crate::openpgp::OpenPgpError::NotOpenPgp(_)
                | crate::openpgp::OpenPgpError::Unsupported(_)
                | crate::openpgp::OpenPgpError::BadSignature(_),
            ) => exit::BAD_INPUT,
            ClientError::Remote(r) => r.kind.exit_code(),
            ClientError::Interrupted(_) => exit::INTERRUPTED,
            ClientError::NotFound(_)
            | ClientError::Reply(
                crate::replies::ReplyError::NoBlock | crate::replies::ReplyError::Expired,
            ) => exit::NOT_FOUND,
            ClientError::Reply(_) => exit::BAD_INPUT,
            ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                exit::NOT_FOUND
            }
            _ => exit::FAILURE,
        }
    }
}
