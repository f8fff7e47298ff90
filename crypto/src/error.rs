//! Error types of the crypto crate. Each names what went wrong in terms a
//! user can act on; none carries secret material.

use std::path::PathBuf;

/// A canonical binary encoding could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the field was complete.
    #[error("truncated {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes were left after the last field.
    #[error("{count} unexpected trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that was complete.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A text field was not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
    },
    /// The encoding carries a version this build does not know.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// The structure.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A field holds a value outside its allowed set.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A signature did not verify.
    #[error("bad signature on {what}")]
    BadSignature {
        /// The signed structure.
        what: &'static str,
    },
}

/// A label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// Empty or only whitespace.
    #[error("a label must not be empty")]
    Empty,
    /// Longer than [`crate::Label::MAX_LEN`] bytes.
    #[error("a label is at most {max} bytes of UTF-8 (got {len})")]
    TooLong {
        /// The limit.
        max: usize,
        /// The length given.
        len: usize,
    },
    /// Contains control characters or leading/trailing whitespace.
    #[error("a label must not contain control characters or leading/trailing spaces")]
    BadCharacters,
}

/// A `mtos:` URI could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Does not start with `mtos:`.
    #[error("not an mtos URI (expected it to start with \"mtos:\")")]
    NotMtos,
    /// An mtos URI of another kind than the one expected.
    #[error("expected an mtos {expected} URI, got kind \"{found}\"")]
    WrongKind {
        /// The kind the caller wanted.
        expected: &'static str,
        /// The kind found.
        found: String,
    },
    /// The payload is not base32.
    #[error("malformed mtos URI: the payload is not base32")]
    BadBase32,
    /// The payload decoded but its contents are invalid.
    #[error("malformed mtos URI: {0}")]
    Payload(#[from] DecodeError),
}

/// A keychain could not be loaded, saved or edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeychainError {
    /// The passphrase does not open the keychain (or the key stanza that
    /// the passphrase unlocks was damaged: age cannot tell the two apart).
    #[error("wrong passphrase (or the keychain's key stanza is damaged)")]
    WrongPassphrase,
    /// The file is not a complete, authentic keychain.
    #[error("keychain file is damaged or truncated: {0}")]
    Damaged(String),
    /// The file is an age file, but not one sealed with a passphrase.
    #[error("this file is not a passphrase-protected mtos keychain")]
    NotPassphraseProtected,
    /// The file asks for more scrypt work than this device accepts.
    #[error("keychain needs scrypt work factor 2^{required}, above this device's limit 2^{max}")]
    ExcessiveWork {
        /// The work factor in the file.
        required: u8,
        /// The largest accepted here.
        max: u8,
    },
    /// The keychain's plaintext did not decode.
    #[error("keychain contents are invalid: {0}")]
    Decode(#[from] DecodeError),
    /// The identity is already in the keychain.
    #[error("identity {0} is already in the keychain")]
    Duplicate(String),
    /// An identity or a contact already has this label.
    #[error("an identity or a contact is already labelled \"{0}\"")]
    DuplicateLabel(String),
    /// No identity matches.
    #[error("no identity matches \"{0}\" (see `mtos id list`)")]
    NotFound(String),
    /// Several identities match.
    #[error("\"{query}\" matches several identities: {candidates}")]
    Ambiguous {
        /// What the user typed.
        query: String,
        /// The matching identity ids.
        candidates: String,
    },
    /// More identities (or contacts) than the format holds.
    #[error("a keychain holds at most {0} identities and {0} contacts")]
    Full(usize),
    /// The identity is already a contact, under this label.
    #[error("this identity is already your contact \"{0}\" (see `mtos contact show`)")]
    DuplicateContact(String),
    /// A contact would be one of the keychain's own identities.
    #[error("identity {0} is one of your own identities, not a contact")]
    OwnIdentity(String),
    /// No contact matches.
    #[error("no contact matches \"{0}\" (see `mtos contact list`)")]
    ContactNotFound(String),
    /// No keychain at this path yet.
    #[error("no keychain at {0} (create one with `mtos id new`)")]
    Missing(PathBuf),
    /// Reading or writing the file failed.
    #[error("keychain file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// age refused to encrypt.
    #[error("could not encrypt the keychain: {0}")]
    Encrypt(String),
}

/// A secret identity export file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// No `mtos-secret-identity-v1:` line.
    #[error("not an mtos secret identity file (no \"mtos-secret-identity-v1:\" line)")]
    NotAnExport,
    /// The payload is not base32.
    #[error("malformed secret identity file: the payload is not base32")]
    BadBase32,
    /// The checksum does not match: the file was damaged or mistyped.
    #[error("secret identity file is damaged: checksum mismatch")]
    Checksum,
    /// The payload decoded but is invalid.
    #[error("malformed secret identity file: {0}")]
    Decode(#[from] DecodeError),
}

/// An item could not be built, decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// A field breaks a rule of `specs/item.md` (too many tags, bad MIME...).
    #[error("invalid item: {0}")]
    Invalid(String),
    /// The canonical encoding did not decode.
    #[error("malformed item: {0}")]
    Decode(#[from] DecodeError),
    /// The author's signature does not verify: the item was modified.
    #[error("item signature does not verify: the item was modified or forged")]
    BadSignature,
    /// A body part does not match the digest the author signed.
    #[error("body part {index} does not match its signed digest: the item was modified")]
    PartDigest {
        /// Which part.
        index: usize,
    },
}

/// An item could not be sealed into chunks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The item itself is invalid.
    #[error(transparent)]
    Item(#[from] ItemError),
    /// More recipients than the largest padding bucket.
    #[error("at most {max} recipients per item (got {got})")]
    TooManyRecipients {
        /// The limit.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A recipient key was refused by age.
    #[error("invalid recipient key")]
    BadRecipient,
    /// The sealed item would exceed the size limit.
    #[error("item too large: {size} bytes sealed, the limit is {max}")]
    TooLarge {
        /// The size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Encryption or the chunk store failed.
    #[error("could not store the sealed item: {0}")]
    Store(#[from] std::io::Error),
}

/// An item could not be fetched, reassembled, decrypted or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A chunk the tree names is not available.
    #[error("chunk {0} is missing")]
    ChunkMissing(String),
    /// A chunk's bytes do not hash to its locator.
    #[error("chunk {0} is corrupt: its contents do not match its locator")]
    ChunkCorrupt(String),
    /// A manifest node is not what the tree shape requires, or does not
    /// decrypt under the reference's key.
    #[error("manifest node {locator} is invalid: {reason}")]
    Manifest {
        /// The node.
        locator: String,
        /// What is wrong.
        reason: String,
    },
    /// The reference announces more data than this client accepts.
    #[error("item too large: {size} bytes sealed, the limit is {max}")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A private item none of the given identities can decrypt.
    #[error("this private item is not addressed to any of your identities")]
    NotARecipient,
    /// The reassembled sealed item does not decrypt.
    #[error("sealed item is damaged: {0}")]
    Sealed(String),
    /// The decrypted item does not verify.
    #[error(transparent)]
    Item(#[from] ItemError),
    /// The chunk store failed.
    #[error("chunk store: {0}")]
    Store(std::io::Error),
}
