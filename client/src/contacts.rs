//! Contacts exchanged by short code (`specs/transfer.md` §3): the card one
//! side hands over, and what the other side's card does to the keychain.

use mtos_crypto::card::Card;
use mtos_crypto::feed::FeedKeys;
use mtos_crypto::keychain::{Contact, Observed, Source};
use mtos_crypto::{Identity, Keychain, Label, PublicIdentity};

use crate::error::ClientError;

/// What a card's signature over an exchange's transcript starts with.
const BINDING_CONTEXT: &[u8] = b"mtos-transfer-v1 card";

/// What `identity` hands over in an exchange (`specs/transfer.md` §3):
/// its signed card (public record and feed), and its signature over the
/// exchange's transcript, which proves the card's owner took part in
/// this exchange (a card alone may be anyone's, copied off the network).
pub fn own_payload(identity: &Identity, time_ms: u64, transcript: &[u8]) -> Vec<u8> {
    let card = Card {
        identity: identity.public(),
        follow: FeedKeys::of(identity).follow(),
        time_ms,
    }
    .sign(identity);
    let mut message = BINDING_CONTEXT.to_vec();
    message.extend_from_slice(transcript);
    let mut out = Vec::with_capacity(2 + card.len() + 64);
    // A card is a few hundred bytes.
    out.extend_from_slice(&u16::try_from(card.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&card);
    out.extend_from_slice(&identity.sign(&message));
    out
}

/// The card in an exchange's payload, checked: the card's own signatures
/// and its owner's signature over `transcript`.
fn open_payload(payload: &[u8], transcript: &[u8]) -> Result<Card, ClientError> {
    let bad = |why: &str| ClientError::Invalid(format!("the other side's card: {why}"));
    let (len, rest) = payload
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() != len + 64 {
        return Err(bad("not a card and a signature"));
    }
    let (card, signature) = rest.split_at(len);
    let card = Card::decode(card).map_err(|e| bad(&e.to_string()))?;
    let mut message = BINDING_CONTEXT.to_vec();
    message.extend_from_slice(transcript);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(signature);
    if !card.identity.verify_key().verify(&message, &sig) {
        return Err(bad("not signed for this exchange by its owner"));
    }
    Ok(card)
}

/// What an exchange did with the other side's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new contact, verified.
    Added,
    /// Already a contact with these keys: now verified.
    Verified,
    /// A contact with this verify key and other keys: flagged, its keys
    /// kept (`specs/identity.md` §9).
    Changed,
}

/// The contact an exchange produced.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// Its label in the keychain.
    pub label: String,
    /// The card received.
    pub card: Card,
    /// What happened.
    pub outcome: Outcome,
}

/// Records the other side's payload in `keychain` at `now` (Unix
/// seconds): a new contact under `label` (or the label its owner chose;
/// either numbered when taken), verified, since only the code's holder
/// could have sealed it and only the card's owner signed it for this
/// exchange.
pub fn record(
    keychain: &mut Keychain,
    payload: &[u8],
    transcript: &[u8],
    label: Option<Label>,
    now: u64,
) -> Result<Exchanged, ClientError> {
    let card = open_payload(payload, transcript)?;
    let identity = &card.identity;
    if keychain.by_key(identity.verify_key()).is_some() {
        return Err(ClientError::Refused(
            "the other side sent one of your own identities".into(),
        ));
    }
    let (label, outcome) = match keychain.observe(identity) {
        Observed::Unknown => {
            let label = free_label(keychain, label.as_ref().unwrap_or(identity.label()))?;
            let mut contact = Contact::new(identity.clone(), label.clone(), Source::ShortCode, now);
            contact.mark_verified(now);
            keychain.add_contact(contact)?;
            (label, Outcome::Added)
        }
        Observed::Same(label) => {
            if let Some(c) = keychain.contact_by_key_mut(identity.verify_key()) {
                c.mark_verified(now);
            }
            (label, Outcome::Verified)
        }
        Observed::Changed(label) => (label, Outcome::Changed),
    };
    Ok(Exchanged {
        label: label.to_string(),
        card,
        outcome,
    })
}

/// Adds `record` as an unverified contact under `label` (or the label its
/// owner chose), or checks it against the contact with its verify key:
/// the same keys change nothing ([`Outcome::Verified`] is not claimed:
/// the contact stays as verified as it was), other keys flag the contact
/// ([`Outcome::Changed`]; the caller saves the keychain all the same, so
/// the flag is kept). Returns the contact's label and what happened.
pub fn add(
    keychain: &mut Keychain,
    record: &PublicIdentity,
    source: Source,
    label: Option<Label>,
    now: u64,
) -> Result<(Label, Added), ClientError> {
    Ok(match keychain.observe(record) {
        Observed::Unknown => {
            let label = label.unwrap_or_else(|| record.label().clone());
            keychain.add_contact(Contact::new(record.clone(), label.clone(), source, now))?;
            (label, Added::New)
        }
        Observed::Same(label) => (label, Added::Known),
        Observed::Changed(label) => (label, Added::Changed),
    })
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new contact.
    New,
    /// Already a contact with these keys.
    Known,
    /// A contact with this verify key and other keys: now flagged.
    Changed,
}

/// The keys verifying `contact` vouches for: those in use, or with
/// `accept_change` the changed ones. A flagged contact cannot be verified
/// without taking (or refusing) the change; one not flagged has no change
/// to take.
pub fn keys_to_verify(
    contact: &Contact,
    accept_change: bool,
) -> Result<&PublicIdentity, ClientError> {
    match (contact.changed(), accept_change) {
        (Some(new), true) => Ok(new),
        (Some(_), false) => Err(ClientError::ContactChanged(contact.label().to_string())),
        (None, true) => Err(ClientError::Refused(format!(
            "contact \"{}\" has no changed keys to accept",
            contact.label()
        ))),
        (None, false) => Ok(contact.identity()),
    }
}

/// Marks the keys [`keys_to_verify`] named verified at `now`.
pub fn mark_verified(contact: &mut Contact, accept_change: bool, now: u64) {
    if accept_change {
        contact.accept_change(Some(now));
    } else {
        contact.mark_verified(now);
    }
}

/// `wanted`, or `wanted (2)`, `(3)`, … : the first no identity or
/// contact uses.
fn free_label(keychain: &Keychain, wanted: &Label) -> Result<Label, ClientError> {
    let used = |l: &Label| keychain.label_in_use(l);
    if !used(wanted) {
        return Ok(wanted.clone());
    }
    // Room for " (999)" within the label's bytes, cut at a character.
    let w = wanted.as_str();
    let cut = w
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= Label::MAX_LEN - 6)
        .last()
        .unwrap_or(0);
    let base = &w[..cut];
    for n in 2..1000 {
        let l = Label::new(format!("{} ({n})", base.trim_end()))?;
        if !used(&l) {
            return Ok(l);
        }
    }
    Err(ClientError::Refused(
        "no free label: give one with --label".into(),
    ))
}
