//! Feed slots (`specs/storage.md` §3), after Freenet's SSKs and Tor v3's
//! blinded onion-service keys: slot `n` of a feed is signed by a key
//! blinded from the feed's ed25519 key and `n`, and stored at a locator
//! derived from that blinded key. A storer checks the signature and that
//! the key matches the locator, so nobody but the feed's owner can write
//! the slot, yet it cannot tell which feed a slot belongs to: without the
//! feed key, the blinded keys of one feed look unrelated.
//!
//! Key blinding is written here (on curve25519-dalek and ed25519-dalek's
//! `hazmat` signing) because no maintained crate offers it for ed25519;
//! it follows Tor's rend-spec-v3 appendix A.2 with our own hash domains:
//!
//! ```text
//! h   = BLAKE3-XOF(derive_key "mtos-slot-blind-v1", A || n_be64)[..64] mod l
//! A'  = h * A                                  (public: anyone knowing A)
//! a'  = h * a mod l                            (a: A's secret scalar)
//! p'  = BLAKE3-derive_key("mtos-slot-prefix-v1", prefix || n_be64)
//! loc = BLAKE3-derive_key("mtos-slot-locator-v1", A')
//! sig = Ed25519 over "mtos-slot-sig-v1" || A' || body, with (a', p')
//! ```

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::item::Locator;

const BLIND_CONTEXT: &str = "mtos-slot-blind-v1";
const PREFIX_CONTEXT: &str = "mtos-slot-prefix-v1";
const LOCATOR_CONTEXT: &str = "mtos-slot-locator-v1";
const SIGN_CONTEXT: &[u8] = b"mtos-slot-sig-v1";

/// Bytes before the body in an encoded [`SlotRecord`]: key and signature.
pub const SLOT_HEADER: usize = 32 + 64;

/// Why a slot key, record or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The feed key is not a usable ed25519 key.
    #[error("the feed key is not an ed25519 key of full order")]
    BadFeedKey,
    /// Shorter than a key and a signature.
    #[error("a slot record of {0} bytes is shorter than its {SLOT_HEADER}-byte header")]
    Truncated(usize),
    /// The record's key does not name the slot's locator.
    #[error("the slot key does not belong to this locator")]
    WrongLocator,
    /// The signature does not verify under the record's key.
    #[error("the slot signature does not verify")]
    BadSignature,
}

fn blinding(feed: &[u8; 32], slot: u64) -> Scalar {
    let mut h = blake3::Hasher::new_derive_key(BLIND_CONTEXT);
    h.update(feed);
    h.update(&slot.to_be_bytes());
    let mut wide = [0u8; 64];
    h.finalize_xof().fill(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// The blinded key of slot `slot` of the feed whose ed25519 verify key is
/// `feed`: what a reader who follows the feed computes to find the slot.
pub fn slot_key(feed: &[u8; 32], slot: u64) -> Result<[u8; 32], SlotError> {
    let point = CompressedEdwardsY(*feed)
        .decompress()
        .filter(|p| !p.is_small_order())
        .ok_or(SlotError::BadFeedKey)?;
    Ok((blinding(feed, slot) * point).compress().to_bytes())
}

/// Where a slot whose blinded key is `key` is stored.
pub fn slot_locator(key: &[u8; 32]) -> Locator {
    Locator::from_bytes(blake3::derive_key(LOCATOR_CONTEXT, key))
}

/// A signed slot as a storer holds it: the blinded key, the signature and
/// the body (the feed entry, encrypted under the feed's read key by the
/// layer above; the storer never reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// The slot's blinded verify key.
    pub key: [u8; 32],
    /// Ed25519 over `mtos-slot-sig-v1 || key || body`.
    pub signature: [u8; 64],
    /// The body.
    pub body: Vec<u8>,
}

fn signed_message(key: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_CONTEXT.len() + 32 + body.len());
    m.extend_from_slice(SIGN_CONTEXT);
    m.extend_from_slice(key);
    m.extend_from_slice(body);
    m
}

impl SlotRecord {
    /// Signs `body` as slot `slot` of the feed whose ed25519 secret seed
    /// is `seed`.
    pub fn sign(seed: &[u8; 32], slot: u64, body: &[u8]) -> Result<Self, SlotError> {
        let expanded = Zeroizing::new(<[u8; 64]>::from(Sha512::digest(seed)));
        let esk = ExpandedSecretKey::from_bytes(&expanded);
        let feed = VerifyingKey::from(&esk).to_bytes();
        let h = blinding(&feed, slot);
        let mut prefix_input = Zeroizing::new([0u8; 40]);
        prefix_input[..32].copy_from_slice(&esk.hash_prefix);
        prefix_input[32..].copy_from_slice(&slot.to_be_bytes());
        let blinded = ExpandedSecretKey {
            scalar: h * esk.scalar,
            hash_prefix: blake3::derive_key(PREFIX_CONTEXT, prefix_input.as_slice()),
        };
        let key = VerifyingKey::from(&blinded);
        // The public derivation and the secret one agree (h·(a·B) = (h·a)·B).
        if key.to_bytes() != slot_key(&feed, slot)? {
            return Err(SlotError::BadFeedKey);
        }
        let signature = raw_sign::<Sha512>(&blinded, &signed_message(&key.to_bytes(), body), &key);
        Ok(Self {
            key: key.to_bytes(),
            signature: signature.to_bytes(),
            body: body.to_vec(),
        })
    }

    /// Checks that the record may be stored at `locator`: its key names
    /// the locator and its signature verifies (strictly: no small-order
    /// keys, no malleable signatures).
    pub fn verify(&self, locator: &Locator) -> Result<(), SlotError> {
        if slot_locator(&self.key) != *locator {
            return Err(SlotError::WrongLocator);
        }
        let key = VerifyingKey::from_bytes(&self.key).map_err(|_| SlotError::BadSignature)?;
        key.verify_strict(
            &signed_message(&self.key, &self.body),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| SlotError::BadSignature)
    }

    /// `key || signature || body`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLOT_HEADER + self.body.len());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses [`SlotRecord::encode`]'s output (it does not verify).
    pub fn decode(bytes: &[u8]) -> Result<Self, SlotError> {
        if bytes.len() < SLOT_HEADER {
            return Err(SlotError::Truncated(bytes.len()));
        }
        let (key, rest) = bytes.split_at(32);
        let (signature, body) = rest.split_at(64);
        Ok(Self {
            key: key
                .try_into()
                .map_err(|_| SlotError::Truncated(bytes.len()))?,
            signature: signature
                .try_into()
                .map_err(|_| SlotError::Truncated(bytes.len()))?,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests;
