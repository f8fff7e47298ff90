//! Contacts (`specs/identity.md` §9): other people's public identities,
//! kept in the keychain under a local label with how each was obtained
//! and whether its safety number was compared. A record that shows a
//! contact's verify key with other keys is kept beside the contact and
//! flags it, never replacing the keys in use until the person accepts it.

use std::fmt;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, KeychainError};
use crate::identity::{Label, PublicIdentity};

/// The most contacts one keychain holds (the count is a u16).
pub const MAX_CONTACTS: usize = u16::MAX as usize;

/// How a contact's identity reached this keychain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A short-code exchange through the mixnet (`specs/transfer.md`).
    ShortCode,
    /// A QR code, read from an image.
    QrCode,
    /// A card found on the network by its fingerprint.
    FingerprintLookup,
    /// An `mtos:id:` URI read from a file.
    File,
    /// An OpenPGP certificate.
    OpenPgp,
    /// An `mtos:id:` URI typed or pasted.
    Uri,
}

impl Source {
    /// The byte that encodes it.
    pub fn to_byte(self) -> u8 {
        match self {
            Source::ShortCode => 1,
            Source::QrCode => 2,
            Source::FingerprintLookup => 3,
            Source::File => 4,
            Source::OpenPgp => 5,
            Source::Uri => 6,
        }
    }

    /// Decodes the byte.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            1 => Source::ShortCode,
            2 => Source::QrCode,
            3 => Source::FingerprintLookup,
            4 => Source::File,
            5 => Source::OpenPgp,
            6 => Source::Uri,
            _ => {
                return Err(DecodeError::Invalid {
                    what: "contact source",
                    reason: "unknown",
                });
            }
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::ShortCode => "short code",
            Source::QrCode => "QR code",
            Source::FingerprintLookup => "fingerprint lookup",
            Source::File => "file",
            Source::OpenPgp => "OpenPGP",
            Source::Uri => "URI",
        })
    }
}

/// Another person's public identity, as this keychain knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    identity: PublicIdentity,
    label: Label,
    source: Source,
    added: u64,
    verified: Option<u64>,
    changed: Option<PublicIdentity>,
}

/// What [`super::Keychain::observe`] made of a public identity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No contact has this verify key.
    Unknown,
    /// A contact's record, with the keys in use (its label may be newer).
    Same(Label),
    /// A contact's verify key with another encryption key: the contact is
    /// now flagged and keeps its old keys.
    Changed(Label),
}

impl Contact {
    /// A new, unverified contact.
    pub fn new(identity: PublicIdentity, label: Label, source: Source, added: u64) -> Self {
        Self {
            identity,
            label,
            source,
            added,
            verified: None,
            changed: None,
        }
    }

    /// The keys in use.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The local label.
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// How it was obtained.
    pub fn source(&self) -> Source {
        self.source
    }

    /// When it was added (Unix seconds).
    pub fn added(&self) -> u64 {
        self.added
    }

    /// When its safety number was compared (or a short-code exchange
    /// proved its keys), if ever.
    pub fn verified(&self) -> Option<u64> {
        self.verified
    }

    /// A record with this contact's verify key and other keys, seen
    /// since: while it is set, the contact is flagged.
    pub fn changed(&self) -> Option<&PublicIdentity> {
        self.changed.as_ref()
    }

    /// Marks the keys in use verified at `when`.
    pub fn mark_verified(&mut self, when: u64) {
        self.verified = Some(when);
    }

    /// Takes the changed keys as the keys in use: unverified until their
    /// safety number is compared, unless `verified_at` says it was.
    /// Returns whether there were changed keys.
    pub fn accept_change(&mut self, verified_at: Option<u64>) -> bool {
        match self.changed.take() {
            Some(new) => {
                self.identity = new;
                self.verified = verified_at;
                true
            }
            None => false,
        }
    }

    pub(super) fn set_label(&mut self, label: Label) {
        self.label = label;
    }

    /// Records `record` against this contact (same verify key assumed).
    pub(super) fn observe(&mut self, record: &PublicIdentity) -> Observed {
        if record.encryption_key() == self.identity.encryption_key() {
            // Same keys: a newer self-chosen label is taken as is.
            self.identity = record.clone();
            return Observed::Same(self.label.clone());
        }
        self.changed = Some(record.clone());
        Observed::Changed(self.label.clone())
    }

    pub(super) fn encode(&self, w: &mut Writer) {
        w.short_str(self.label.as_str())
            .u8(self.source.to_byte())
            .u64(self.added)
            .u64(self.verified.unwrap_or(0));
        for record in [Some(&self.identity), self.changed.as_ref()] {
            let bytes = record.map(PublicIdentity::encode).unwrap_or_default();
            // A public identity record is at most 194 bytes.
            w.u16(u16::try_from(bytes.len()).unwrap_or(0)).bytes(&bytes);
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let label = Label::decode(r)?;
        let source = Source::from_byte(r.u8("contact source")?)?;
        let added = r.u64("contact added")?;
        let verified = Some(r.u64("contact verified")?).filter(|&t| t != 0);
        let len = usize::from(r.u16("contact identity length")?);
        let identity = PublicIdentity::decode(r.take(len, "contact identity")?)?;
        let len = usize::from(r.u16("contact changed length")?);
        let changed = match len {
            0 => None,
            _ => Some(PublicIdentity::decode(
                r.take(len, "contact changed keys")?,
            )?),
        };
        if let Some(c) = &changed
            && (c.verify_key() != identity.verify_key()
                || c.encryption_key() == identity.encryption_key())
        {
            return Err(DecodeError::Invalid {
                what: "contact",
                reason: "changed keys that are not a change of this contact's keys",
            });
        }
        Ok(Self {
            identity,
            label,
            source,
            added,
            verified,
            changed,
        })
    }
}

/// Refuses a label an identity or another contact already uses.
pub(super) fn check_label_free(
    keychain: &super::Keychain,
    label: &Label,
) -> Result<(), KeychainError> {
    if keychain.label_in_use(label) {
        return Err(KeychainError::DuplicateLabel(label.to_string()));
    }
    Ok(())
}

impl super::Keychain {
    /// Whether an identity or a contact has this label (one namespace).
    pub fn label_in_use(&self, label: &Label) -> bool {
        self.identities().iter().any(|i| i.label() == label)
            || self.contacts.iter().any(|c| c.label() == label)
    }

    /// The contacts, oldest first.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    /// Adds a contact; refuses one whose verify key is already a contact
    /// or one of the keychain's identities, and a label in use.
    pub fn add_contact(&mut self, contact: Contact) -> Result<(), KeychainError> {
        if self.contacts.len() >= MAX_CONTACTS {
            return Err(KeychainError::Full(MAX_CONTACTS));
        }
        let key = contact.identity.verify_key();
        if self.by_key(key).is_some() {
            return Err(KeychainError::OwnIdentity(
                contact.identity.id().to_string(),
            ));
        }
        if let Some(old) = self
            .contacts
            .iter()
            .find(|c| c.identity.verify_key() == key)
        {
            return Err(KeychainError::DuplicateContact(old.label.to_string()));
        }
        check_label_free(self, &contact.label)?;
        self.contacts.push(contact);
        Ok(())
    }

    /// The contact with this verify key.
    pub fn contact_by_key(&self, key: &crate::VerifyKey) -> Option<&Contact> {
        self.contacts
            .iter()
            .find(|c| c.identity.verify_key() == key)
    }

    /// The contact with this verify key, to change it.
    pub fn contact_by_key_mut(&mut self, key: &crate::VerifyKey) -> Option<&mut Contact> {
        self.contacts
            .iter_mut()
            .find(|c| c.identity.verify_key() == key)
    }

    /// Finds a contact by exact label or by a prefix (at least
    /// [`super::MIN_ID_PREFIX`] hex digits) of its id.
    pub fn find_contact(&self, query: &str) -> Result<&Contact, KeychainError> {
        let index = self.find_contact_index(query)?;
        Ok(&self.contacts[index])
    }

    /// Finds a contact to change it.
    pub fn find_contact_mut(&mut self, query: &str) -> Result<&mut Contact, KeychainError> {
        let index = self.find_contact_index(query)?;
        Ok(&mut self.contacts[index])
    }

    /// Renames a contact; refuses a label in use.
    pub fn relabel_contact(&mut self, query: &str, label: Label) -> Result<(), KeychainError> {
        let index = self.find_contact_index(query)?;
        if self.contacts[index].label != label {
            check_label_free(self, &label)?;
        }
        self.contacts[index].set_label(label);
        Ok(())
    }

    /// Removes the contact [`super::Keychain::find_contact`] would return.
    pub fn remove_contact(&mut self, query: &str) -> Result<Contact, KeychainError> {
        let index = self.find_contact_index(query)?;
        Ok(self.contacts.remove(index))
    }

    /// Checks a record seen on the network or handed over against the
    /// contacts: one with its verify key and other keys is flagged
    /// ([`Contact::changed`]) and keeps the keys it had.
    pub fn observe(&mut self, record: &PublicIdentity) -> Observed {
        match self
            .contacts
            .iter_mut()
            .find(|c| c.identity.verify_key() == record.verify_key())
        {
            Some(contact) => contact.observe(record),
            None => Observed::Unknown,
        }
    }

    fn find_contact_index(&self, query: &str) -> Result<usize, KeychainError> {
        super::find_in(
            &self.contacts,
            |c| c.label.as_str(),
            |c| c.identity.id().to_string(),
            query,
        )
        .map_err(|e| match e {
            KeychainError::NotFound(q) => KeychainError::ContactNotFound(q),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests;
