//! Feeds (`specs/feeds.md`): an identity's numbered list of published
//! items, written into feed slots (`slot.rs`) that only the identity can
//! sign and only its followers can read.
//!
//! An identity's feed keys derive from its ed25519 seed, so the feed comes
//! with the identity wherever it is imported:
//!
//! ```text
//! feed seed  = BLAKE3-derive_key("mtos feed v1 signing seed", ed25519 seed)
//! feed key A = the ed25519 verify key of the feed seed
//! read key   = BLAKE3-derive_key("mtos feed v1 read key", ed25519 seed)
//! ```
//!
//! A **follow URI** (`mtos:feed:`) carries what a follower needs: the
//! identity's verify key (to check that the items are its own), the feed
//! key (to find and check the slots) and the read key (to read them).
//! Entry `n` is slot `n` of the feed; its body is the entry sealed under
//! the read key (ChaCha20-Poly1305 with a synthetic nonce, associated
//! data = the slot's blinded key), so a storer sees neither the item nor
//! the feed.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, UriError};
use crate::identity::{Identity, VerifyKey};
use crate::item::ItemRef;
use crate::item::reference::ITEM_REF_LEN;
use crate::slot::{SlotError, SlotRecord, slot_key, slot_locator};
use crate::{item::Locator, uri};

/// URI kind of a follow URI: `mtos:feed:...`.
pub const FEED_URI_KIND: &str = "feed";
/// Version byte of follow URIs and entries.
pub const FEED_VERSION: u8 = 1;
const SEED_CONTEXT: &str = "mtos feed v1 signing seed";
const READ_CONTEXT: &str = "mtos feed v1 read key";
const ENTRY_AD: &[u8] = b"mtos-feed-entry-v1";
/// Bytes of an entry before sealing: version, time, item reference.
pub const ENTRY_LEN: usize = 1 + 8 + ITEM_REF_LEN;
/// Bytes of a sealed entry (a slot body): nonce, entry and tag.
pub const SEALED_ENTRY_LEN: usize = NONCE_LEN + ENTRY_LEN + 16;
const NONCE_LEN: usize = 12;
const NONCE_CONTEXT: &[u8] = b"mtos-feed-nonce-v1";

/// Why an entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The slot record is not this feed's slot `n`.
    #[error("slot {slot} is not signed by this feed's key")]
    NotThisFeed {
        /// The slot.
        slot: u64,
    },
    /// The slot record itself is bad.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The body does not decrypt under the read key.
    #[error("slot {slot}: the entry does not decrypt under this feed's read key")]
    Undecryptable {
        /// The slot.
        slot: u64,
    },
    /// The decrypted entry does not parse.
    #[error("slot {slot}: {source}")]
    Malformed {
        /// The slot.
        slot: u64,
        /// Why.
        source: DecodeError,
    },
}

/// An identity's feed: the secrets that write it.
pub struct FeedKeys {
    seed: Zeroizing<[u8; 32]>,
    read: Zeroizing<[u8; 32]>,
    feed: [u8; 32],
    owner: [u8; 32],
}

impl std::fmt::Debug for FeedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedKeys")
            .field("feed", &data_encoding::HEXLOWER.encode(&self.feed))
            .finish_non_exhaustive()
    }
}

impl FeedKeys {
    /// The feed of `identity`.
    pub fn of(identity: &Identity) -> Self {
        let id_seed = identity.ed25519_seed();
        let seed = Zeroizing::new(blake3::derive_key(SEED_CONTEXT, id_seed.as_slice()));
        let read = Zeroizing::new(blake3::derive_key(READ_CONTEXT, id_seed.as_slice()));
        let feed = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Self {
            seed,
            read,
            feed,
            owner: *identity.verify_key().as_bytes(),
        }
    }

    /// What followers need: the follow URI's contents.
    pub fn follow(&self) -> FollowRef {
        FollowRef {
            owner: self.owner,
            feed: self.feed,
            read: self.read.clone(),
        }
    }

    /// The signed slot record of entry `n` publishing `item` at `time_ms`
    /// (Unix milliseconds).
    pub fn entry(&self, n: u64, item: &ItemRef, time_ms: u64) -> Result<SlotRecord, SlotError> {
        let key = slot_key(&self.feed, n)?;
        let mut plain = Writer::with_capacity(ENTRY_LEN);
        plain.u8(FEED_VERSION);
        plain.u64(time_ms);
        plain.bytes(&item.encode());
        let plain = plain.into_vec();
        let nonce = synthetic_nonce(&self.read, &key, &plain);
        let sealed = cipher(&self.read)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &ad(&key),
                },
            )
            .map_err(|_| SlotError::BadFeedKey)?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        SlotRecord::sign(&self.seed, n, &body)
    }
}

fn cipher(read: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(read))
}

/// The nonce of an entry: a keyed hash of the slot's key and the entry
/// (SIV-style). A slot is meant to be written once, but an interrupted
/// write can leave two different entries at one slot on different
/// replicas; with a nonce derived from the entry they never share a
/// nonce under the read key, which a counter could not promise.
fn synthetic_nonce(read: &[u8; 32], slot_key: &[u8; 32], entry: &[u8]) -> [u8; NONCE_LEN] {
    let mut h = blake3::Hasher::new_keyed(read);
    h.update(NONCE_CONTEXT);
    h.update(slot_key);
    h.update(entry);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
    nonce
}

fn ad(slot_key: &[u8; 32]) -> Vec<u8> {
    let mut ad = ENTRY_AD.to_vec();
    ad.extend_from_slice(slot_key);
    ad
}

/// What a follow URI carries: whose feed, its key, and its read key.
#[derive(Clone, PartialEq, Eq)]
pub struct FollowRef {
    /// The identity's verify key (the author of the feed's items).
    pub owner: [u8; 32],
    /// The feed key A (finds and checks the slots).
    pub feed: [u8; 32],
    /// The read key (decrypts the entries).
    pub read: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for FollowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowRef")
            .field("owner", &data_encoding::HEXLOWER.encode(&self.owner))
            .field("feed", &data_encoding::HEXLOWER.encode(&self.feed))
            .finish_non_exhaustive()
    }
}

/// One entry of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its slot number.
    pub n: u64,
    /// When it was published (Unix milliseconds, the author's clock).
    pub time_ms: u64,
    /// The item.
    pub item: ItemRef,
}

/// A feed key nobody holds the secret of, drawn as every feed key is (an
/// Ed25519 public key of a random seed): its slots are never written. A
/// follower polls the windows of a few such feeds as decoys, which a
/// service node cannot tell from feeds with no new entries
/// (`specs/feeds.md` §5).
pub fn decoy_feed_key<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> [u8; 32] {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes()
}

/// Where entry `n` of the feed whose key is `feed` is stored.
pub fn feed_slot_locator(feed: &[u8; 32], n: u64) -> Result<Locator, SlotError> {
    Ok(slot_locator(&slot_key(feed, n)?))
}

impl FollowRef {
    /// `version || owner || feed || read`, 97 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(97);
        w.u8(FEED_VERSION);
        w.bytes(&self.owner);
        w.bytes(&self.feed);
        w.bytes(self.read.as_slice());
        w.into_vec()
    }

    /// Parses [`FollowRef::encode`]; the keys must be ed25519 keys.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("follow URI version")?;
        if version != FEED_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "follow URI",
                version,
            });
        }
        let owner = r.array::<32>("owner key")?;
        let feed = r.array::<32>("feed key")?;
        let read = Zeroizing::new(r.array::<32>("read key")?);
        r.finish("follow URI")?;
        VerifyKey::from_bytes(owner)?;
        slot_key(&feed, 0).map_err(|_| DecodeError::Invalid {
            what: "feed key",
            reason: "not an ed25519 key of full order",
        })?;
        Ok(Self { owner, feed, read })
    }

    /// `mtos:feed:` and the base32 of [`FollowRef::encode`]. It holds the
    /// read key: share it with the people who may follow.
    pub fn to_uri(&self) -> String {
        uri::format(FEED_URI_KIND, &self.encode())
    }

    /// Parses a follow URI.
    pub fn from_uri(text: &str) -> Result<Self, UriError> {
        Ok(Self::decode(&uri::parse(FEED_URI_KIND, text)?)?)
    }

    /// Where entry `n` is stored: what a follower probes and gets.
    pub fn slot_locator(&self, n: u64) -> Result<Locator, SlotError> {
        feed_slot_locator(&self.feed, n)
    }

    /// Reads entry `n` from its slot record: the record must be this
    /// feed's slot `n`, verify, and decrypt under the read key.
    pub fn open(&self, n: u64, record: &SlotRecord) -> Result<FeedEntry, FeedError> {
        let key = slot_key(&self.feed, n)?;
        if record.key != key {
            return Err(FeedError::NotThisFeed { slot: n });
        }
        record.verify(&slot_locator(&key))?;
        let undecryptable = FeedError::Undecryptable { slot: n };
        let (nonce, sealed) = record
            .body
            .split_at_checked(NONCE_LEN)
            .ok_or(undecryptable.clone())?;
        let plain = cipher(&self.read)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &ad(&key),
                },
            )
            .map_err(|_| undecryptable.clone())?;
        // Canonical: the nonce is the one the entry determines.
        if synthetic_nonce(&self.read, &key, &plain)[..] != *nonce {
            return Err(undecryptable);
        }
        let malformed = |source| FeedError::Malformed { slot: n, source };
        let mut r = Reader::new(&plain);
        let version = r.u8("feed entry version").map_err(malformed)?;
        if version != FEED_VERSION {
            return Err(malformed(DecodeError::UnsupportedVersion {
                what: "feed entry",
                version,
            }));
        }
        let time_ms = r.u64("entry time").map_err(malformed)?;
        let item = ItemRef::decode(r.take(ITEM_REF_LEN, "item reference").map_err(malformed)?)
            .map_err(malformed)?;
        r.finish("feed entry").map_err(malformed)?;
        Ok(FeedEntry { n, time_ms, item })
    }
}

#[cfg(test)]
mod tests;
