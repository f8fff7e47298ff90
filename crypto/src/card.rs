//! Identity cards (`specs/feeds.md` §6): what `mtos id publish` stores so
//! that others can find a *public* identity through the network, from its
//! `mtos:id:` URI or from its fingerprint alone.
//!
//! A card is the identity's public record (label and keys, self-signed),
//! its feed's follow URI and a time, signed by the identity. It is written
//! into feed slots (`slot.rs`) in two places:
//!
//! * **by key**: the slots of the feed whose key is the identity's own
//!   verify key `A` (a namespace nothing else uses: the identity's feed has
//!   its own key). Only the identity can sign them; whoever holds the URI
//!   (and so `A`) can find them.
//! * **by fingerprint**: the slots of a feed whose seed is derived from the
//!   30 fingerprint digits, so the fingerprint is enough to find them. That
//!   seed is public, so anyone can write these slots: a reader accepts only
//!   a card that verifies under its own identity key and whose identity has
//!   this fingerprint (a 100-bit preimage to forge), so a squatter can hide
//!   a card (by filling the slots first) but never replace it; the by-key
//!   card cannot be squatted.

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::feed::FollowRef;
use crate::fingerprint::Fingerprint;
use crate::identity::{Identity, PublicIdentity};
use crate::item::Locator;
use crate::slot::{SlotError, SlotRecord, slot_key, slot_locator};

/// Version byte of a card.
pub const CARD_VERSION: u8 = 1;
/// Card slots looked at in each namespace (one probe carries them all).
pub const CARD_SLOTS: u64 = 8;
const SIGN_CONTEXT: &[u8] = b"mtos-card-v1";
const FINGERPRINT_SEED_CONTEXT: &str = "mtos card v1 fingerprint seed";

/// A public identity's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The identity (label, keys), self-signed.
    pub identity: PublicIdentity,
    /// Its feed.
    pub follow: FollowRef,
    /// When it was made (Unix milliseconds).
    pub time_ms: u64,
}

fn unsigned(identity: &PublicIdentity, follow: &FollowRef, time_ms: u64) -> Vec<u8> {
    let id = identity.encode();
    let mut w = Writer::with_capacity(1 + 8 + 2 + id.len() + 97);
    w.u8(CARD_VERSION);
    w.u64(time_ms);
    w.u16(u16::try_from(id.len()).unwrap_or(u16::MAX));
    w.bytes(&id);
    w.bytes(&follow.encode());
    w.into_vec()
}

impl Card {
    /// Encodes and signs with `identity` (whose card this must be).
    pub fn sign(&self, identity: &Identity) -> Vec<u8> {
        let mut bytes = unsigned(&self.identity, &self.follow, self.time_ms);
        let mut message = SIGN_CONTEXT.to_vec();
        message.extend_from_slice(&bytes);
        bytes.extend_from_slice(&identity.sign(&message));
        bytes
    }

    /// Parses a signed card and checks it: the identity record's own
    /// signature, the card's signature by that identity, and that the
    /// feed is the identity's.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("card version")?;
        if version != CARD_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "card",
                version,
            });
        }
        let time_ms = r.u64("card time")?;
        let len = usize::from(r.u16("identity length")?);
        let identity = PublicIdentity::decode(r.take(len, "identity")?)?;
        let follow = FollowRef::decode(r.take(97, "follow URI")?)?;
        let signature = r.array::<64>("card signature")?;
        r.finish("card")?;
        if follow.owner != *identity.verify_key().as_bytes() {
            return Err(DecodeError::Invalid {
                what: "card",
                reason: "the feed is not the identity's",
            });
        }
        let mut message = SIGN_CONTEXT.to_vec();
        message.extend_from_slice(&unsigned(&identity, &follow, time_ms));
        if !identity.verify_key().verify(&message, &signature) {
            return Err(DecodeError::BadSignature { what: "card" });
        }
        Ok(Self {
            identity,
            follow,
            time_ms,
        })
    }
}

/// The public seed of the by-fingerprint card slots.
fn fingerprint_seed(fingerprint: &Fingerprint) -> [u8; 32] {
    blake3::derive_key(FINGERPRINT_SEED_CONTEXT, fingerprint.digits().as_bytes())
}

fn feed_key_of_seed(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// The by-key and by-fingerprint slot records of card slot `n`.
pub fn card_slots(
    identity: &Identity,
    card: &[u8],
    n: u64,
) -> Result<(SlotRecord, SlotRecord), SlotError> {
    let by_key = SlotRecord::sign(&identity.ed25519_seed(), n, card)?;
    let by_fingerprint = SlotRecord::sign(&fingerprint_seed(&identity.fingerprint()), n, card)?;
    Ok((by_key, by_fingerprint))
}

/// Where card slot `n` of the identity with verify key `key` is (by key).
pub fn locator_by_key(key: &[u8; 32], n: u64) -> Result<Locator, SlotError> {
    Ok(slot_locator(&slot_key(key, n)?))
}

/// Where card slot `n` of the identity with this fingerprint is.
pub fn locator_by_fingerprint(fingerprint: &Fingerprint, n: u64) -> Result<Locator, SlotError> {
    let feed = feed_key_of_seed(&fingerprint_seed(fingerprint));
    Ok(slot_locator(&slot_key(&feed, n)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::FeedKeys;
    use crate::identity::{Label, Visibility};

    fn identity(seed: u8) -> Identity {
        Identity::from_secrets(
            Label::new("card owner").unwrap(),
            Visibility::Public,
            0,
            &[seed; 32],
            &[seed.wrapping_add(1); 32],
        )
    }

    fn card_of(id: &Identity) -> Card {
        Card {
            identity: id.public(),
            follow: FeedKeys::of(id).follow(),
            time_ms: 1_234,
        }
    }

    #[test]
    fn a_card_is_found_by_key_and_by_fingerprint_and_verifies() {
        let id = identity(3);
        let bytes = card_of(&id).sign(&id);
        assert_eq!(Card::decode(&bytes).unwrap(), card_of(&id));
        let (by_key, by_fp) = card_slots(&id, &bytes, 0).unwrap();
        by_key
            .verify(&locator_by_key(id.verify_key().as_bytes(), 0).unwrap())
            .unwrap();
        by_fp
            .verify(&locator_by_fingerprint(&id.fingerprint(), 0).unwrap())
            .unwrap();
        assert_ne!(
            locator_by_key(id.verify_key().as_bytes(), 0).unwrap(),
            locator_by_key(id.verify_key().as_bytes(), 1).unwrap()
        );
        // Not the identity's feed slots.
        assert_ne!(
            locator_by_key(id.verify_key().as_bytes(), 0).unwrap(),
            FeedKeys::of(&id).follow().slot_locator(0).unwrap()
        );
    }

    #[test]
    fn forged_and_mixed_cards_are_refused() {
        let (a, b) = (identity(3), identity(5));
        // B signs A's card: refused.
        assert!(Card::decode(&card_of(&a).sign(&b)).is_err());
        // A's identity with B's feed: refused.
        let mut mixed = card_of(&a);
        mixed.follow = FeedKeys::of(&b).follow();
        assert!(Card::decode(&mixed.sign(&a)).is_err());
        // Any flipped byte: refused.
        let good = card_of(&a).sign(&a);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            assert!(Card::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Card::decode(&good[..good.len() - 1]).is_err());
    }
}
