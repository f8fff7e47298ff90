#![doc = include_str!("../README.md")]

pub mod compose;
pub mod contacts;
pub mod error;
pub mod feeds;
pub mod home;
pub mod mixnet;
pub mod netcheck;
pub mod openpgp;
pub mod pageimport;
pub mod passphrase;
pub mod pending;
pub mod qr;
pub mod replies;
pub mod screen;
pub mod shortcode;
pub mod store;
pub mod testnet;
pub mod thread;
#[cfg(feature = "tor")]
pub mod tor;
pub mod transfer;
pub mod work;

pub use error::ClientError;
pub use home::Home;
