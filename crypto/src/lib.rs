#![doc = include_str!("../README.md")]

pub mod agekeys;
pub mod card;
mod codec;
pub mod envelope;
pub mod error;
pub mod feed;
pub mod fingerprint;
pub mod geometry;
pub mod identity;
pub mod item;
pub mod keychain;
pub mod slot;
pub mod sphinx;
pub mod stamp;
pub mod transfer;
pub mod uri;
pub mod vectors;
pub mod work;

pub use age::secrecy::{ExposeSecret, SecretString};
pub use error::{
    DecodeError, ExportError, ItemError, KeychainError, LabelError, OpenError, SealError, UriError,
};
pub use fingerprint::{Fingerprint, SafetyNumber};
pub use identity::{Identity, IdentityId, Label, PublicIdentity, VerifyKey, Visibility};
pub use keychain::file::{KeychainFile, KeychainLock, StagedKeychain, create_owner_only};
pub use keychain::{KdfCost, Keychain};
/// The RNG trait our functions take: the CLI passes the OS-seeded thread
/// RNG, simulations and test vectors a seeded ChaCha20.
pub use rand::CryptoRng;
