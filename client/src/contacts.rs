//! Contacts exchanged by short code (`specs/transfer.md` §3): the card one
//! side hands over, and what the other side's card does to the keychain.

use mtos_crypto::card::Card;
use mtos_crypto::feed::FeedKeys;
use mtos_crypto::keychain::{Contact, Observed, Source};
use mtos_crypto::{Identity, Keychain, Label};

use crate::error::ClientError;

/// The signed card `identity` hands over: its public record and feed.
pub fn own_card(identity: &Identity, time_ms: u64) -> Vec<u8> {
    Card {
        identity: identity.public(),
        follow: FeedKeys::of(identity).follow(),
        time_ms,
    }
    .sign(identity)
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

/// Records the other side's `card` bytes in `keychain` at `now` (Unix
/// seconds): a new contact under `label` (or the label its owner chose,
/// numbered when taken), verified, since only the code's holder could
/// have sealed it.
pub fn record(
    keychain: &mut Keychain,
    card: &[u8],
    label: Option<Label>,
    now: u64,
) -> Result<Exchanged, ClientError> {
    let card = Card::decode(card)
        .map_err(|e| ClientError::Invalid(format!("the other side's card: {e}")))?;
    let identity = &card.identity;
    if keychain.by_key(identity.verify_key()).is_some() {
        return Err(ClientError::Refused(
            "the other side sent one of your own identities".into(),
        ));
    }
    let (label, outcome) = match keychain.observe(identity) {
        Observed::Unknown => {
            let label = match label {
                Some(l) => l,
                None => free_label(keychain, identity.label())?,
            };
            let mut contact = Contact::new(identity.clone(), label.clone(), Source::ShortCode, now);
            contact.mark_verified(now);
            keychain.add_contact(contact)?;
            (label, Outcome::Added)
        }
        Observed::Same(label) => {
            keychain
                .find_contact_mut(&identity.id().to_string())?
                .mark_verified(now);
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

/// `wanted`, or `wanted (2)`, `(3)`, … : the first no identity or
/// contact uses.
fn free_label(keychain: &Keychain, wanted: &Label) -> Result<Label, ClientError> {
    let used = |l: &Label| {
        keychain.identities().iter().any(|i| i.label() == l)
            || keychain.contacts().iter().any(|c| c.label() == l)
    };
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
