//! A keychain bundle (`specs/transfer.md` §6): identities with their
//! feeds' next free slots, and contacts, as one screen sends them to
//! another through a short-code exchange.

use zeroize::Zeroizing;

use super::contacts::Contact;
use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::identity::Identity;

const BUNDLE_VERSION: u8 = 1;

/// What one screen hands another.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// Identities, each with its feed's next free slot.
    pub identities: Vec<(Identity, u64)>,
    /// Contacts.
    pub contacts: Vec<Contact>,
}

impl Bundle {
    /// The canonical encoding (secret: wiped when dropped).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w =
            Writer::with_capacity(8 + self.identities.len() * 170 + self.contacts.len() * 440);
        w.u8(BUNDLE_VERSION);
        w.u16(u16::try_from(self.identities.len()).unwrap_or(u16::MAX));
        for (identity, next) in self.identities.iter().take(usize::from(u16::MAX)) {
            identity.encode_secret_record(&mut w);
            w.u64(*next);
        }
        w.u16(u16::try_from(self.contacts.len()).unwrap_or(u16::MAX));
        for contact in self.contacts.iter().take(usize::from(u16::MAX)) {
            contact.encode(&mut w);
        }
        Zeroizing::new(w.into_vec())
    }

    /// Decodes a bundle, refusing anything non-canonical (duplicates are
    /// the importer's to sort out: it keeps what it has).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("bundle version")?;
        if version != BUNDLE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "keychain bundle",
                version,
            });
        }
        let mut bundle = Bundle::default();
        for _ in 0..r.u16("identity count")? {
            let identity = Identity::decode_secret_record(&mut r)?;
            let next = r.u64("next slot")?;
            bundle.identities.push((identity, next));
        }
        for _ in 0..r.u16("contact count")? {
            bundle.contacts.push(Contact::decode(&mut r)?);
        }
        r.finish("keychain bundle")?;
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Label, Visibility};
    use crate::keychain::Source;

    #[test]
    fn a_bundle_round_trips_and_refuses_damage() {
        let id = |n: u8| {
            Identity::from_secrets(
                Label::new(format!("id {n}")).unwrap(),
                Visibility::Public,
                7,
                &[n; 32],
                &[n + 1; 32],
            )
        };
        let bundle = Bundle {
            identities: vec![(id(1), 0), (id(2), 41)],
            contacts: vec![Contact::new(
                id(3).public(),
                Label::new("carol").unwrap(),
                Source::ShortCode,
                9,
            )],
        };
        let bytes = bundle.encode();
        let back = Bundle::decode(&bytes).unwrap();
        assert_eq!(back.identities.len(), 2);
        assert_eq!(back.identities[1].1, 41);
        assert_eq!(back.identities[1].0.verify_key(), id(2).verify_key());
        assert_eq!(back.contacts, bundle.contacts);
        assert_eq!(&back.encode()[..], &bytes[..]);
        for cut in 0..bytes.len() {
            assert!(Bundle::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Bundle::decode(&longer).is_err());
        assert!(
            Bundle::decode(&Bundle::default().encode())
                .unwrap()
                .identities
                .is_empty()
        );
    }
}
