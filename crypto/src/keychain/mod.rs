//! A keychain: many identities, sealed at rest with an age passphrase
//! (scrypt) stanza. The plaintext encoding is normative in
//! `specs/identity.md`; the file handling (0600, atomic replace) is in
//! [`file`].

pub mod bundle;
pub mod contacts;
pub mod file;

use std::io::{Read, Write};
use std::iter;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::error::LabelError;
use crate::error::{DecodeError, KeychainError};
use crate::identity::{Identity, Label, VerifyKey};
pub use contacts::{Contact, Observed, Source};

/// Magic bytes at the start of the keychain plaintext.
const KEYCHAIN_MAGIC: &[u8; 12] = b"MTOSKEYCHAIN";
/// Version of the keychain plaintext encoding this build writes (2: with
/// contacts). Version 1 (identities only) is still read.
const KEYCHAIN_VERSION: u8 = 2;
/// The most identities one keychain holds (the count is a u16).
pub const MAX_IDENTITIES: usize = u16::MAX as usize;
/// The shortest query that may name an identity by a prefix of its id.
pub const MIN_ID_PREFIX: usize = 4;
/// The largest scrypt work factor accepted when opening a keychain
/// (2^22 is about 4 GiB·s of work): a bound against a planted file that
/// would take hours to try.
pub const MAX_LOG_N: u8 = 22;

/// How much scrypt work protects the passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfCost {
    /// age's calibration: about one second on this device.
    Calibrated,
    /// An explicit work factor N = 2^log_n (1..=[`MAX_LOG_N`]); tests and
    /// scripts use a low one, which weakens the protection accordingly.
    LogN(u8),
}

/// Many identities and contacts, each in the order they were added.
#[derive(Debug, Default, Clone)]
pub struct Keychain {
    identities: Vec<Identity>,
    contacts: Vec<Contact>,
}

impl Keychain {
    /// An empty keychain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The identities, oldest first.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether the keychain holds no identity.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Adds an identity; refuses a key already present or a label in use.
    pub fn add(&mut self, identity: Identity) -> Result<(), KeychainError> {
        if self.identities.len() >= MAX_IDENTITIES {
            return Err(KeychainError::Full(MAX_IDENTITIES));
        }
        if self.by_key(&identity.verify_key()).is_some() {
            return Err(KeychainError::Duplicate(identity.id().to_string()));
        }
        if self.contact_by_key(&identity.verify_key()).is_some() {
            return Err(KeychainError::Duplicate(identity.id().to_string()));
        }
        contacts::check_label_free(self, identity.label())?;
        self.identities.push(identity);
        Ok(())
    }

    /// The label a new identity gets when none is chosen: `identity-N`,
    /// N the first number from the count of identities up that no
    /// identity's label uses.
    pub fn free_label(&self) -> Result<Label, LabelError> {
        let mut n = self.identities.len() + 1;
        loop {
            let label = Label::new(format!("identity-{n}"))?;
            if contacts::check_label_free(self, &label).is_ok() {
                return Ok(label);
            }
            n += 1;
        }
    }

    /// The identity with this verify key.
    pub fn by_key(&self, key: &VerifyKey) -> Option<&Identity> {
        self.identities.iter().find(|i| &i.verify_key() == key)
    }

    /// Finds one identity by exact label or by a prefix (at least
    /// [`MIN_ID_PREFIX`] hex digits) of its id.
    pub fn find(&self, query: &str) -> Result<&Identity, KeychainError> {
        let index = self.find_index(query)?;
        Ok(&self.identities[index])
    }

    /// Removes the identity [`Keychain::find`] would return.
    pub fn remove(&mut self, query: &str) -> Result<Identity, KeychainError> {
        let index = self.find_index(query)?;
        Ok(self.identities.remove(index))
    }

    fn find_index(&self, query: &str) -> Result<usize, KeychainError> {
        find_in(
            &self.identities,
            |i| i.label().as_str(),
            |i| i.id().to_string(),
            query,
        )
    }

    /// The canonical plaintext: magic, version, the secret records, the
    /// contacts.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w =
            Writer::with_capacity(18 + self.identities.len() * 160 + self.contacts.len() * 440);
        w.bytes(KEYCHAIN_MAGIC).u8(KEYCHAIN_VERSION);
        // `add` and `add_contact` keep the counts within u16.
        w.u16(u16::try_from(self.identities.len()).unwrap_or(u16::MAX));
        for identity in self.identities.iter().take(MAX_IDENTITIES) {
            identity.encode_secret_record(&mut w);
        }
        w.u16(u16::try_from(self.contacts.len()).unwrap_or(u16::MAX));
        for contact in self.contacts.iter().take(contacts::MAX_CONTACTS) {
            contact.encode(&mut w);
        }
        Zeroizing::new(w.into_vec())
    }

    /// Decodes the plaintext, rejecting anything non-canonical.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if &r.array::<12>("keychain magic")? != KEYCHAIN_MAGIC {
            return Err(DecodeError::Invalid {
                what: "keychain magic",
                reason: "not an mtos keychain",
            });
        }
        let version = r.u8("keychain version")?;
        if !(1..=KEYCHAIN_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                what: "keychain",
                version,
            });
        }
        let count = r.u16("identity count")?;
        let mut keychain = Keychain::new();
        for _ in 0..count {
            let identity = Identity::decode_secret_record(&mut r)?;
            keychain.add(identity).map_err(|_| DecodeError::Invalid {
                what: "keychain",
                reason: "duplicate identity or label",
            })?;
        }
        if version >= 2 {
            let count = r.u16("contact count")?;
            for _ in 0..count {
                let contact = Contact::decode(&mut r)?;
                keychain
                    .add_contact(contact)
                    .map_err(|_| DecodeError::Invalid {
                        what: "keychain",
                        reason: "a duplicate contact, label, or a contact that is an own identity",
                    })?;
            }
        }
        r.finish("keychain")?;
        Ok(keychain)
    }

    /// Encrypts the keychain with an age passphrase (scrypt) stanza.
    pub fn seal(&self, passphrase: &SecretString, cost: KdfCost) -> Result<Vec<u8>, KeychainError> {
        let sealed = self.seal_once(passphrase, cost)?;
        // age's calibration can exceed what `open` accepts on a very fast
        // machine (or when its timer reads zero); never write a keychain we
        // would then refuse to open.
        match (cost, scrypt_log_n(&sealed)) {
            (KdfCost::Calibrated, Some(n)) if n > MAX_LOG_N => {
                self.seal_once(passphrase, KdfCost::LogN(MAX_LOG_N))
            }
            _ => Ok(sealed),
        }
    }

    fn seal_once(
        &self,
        passphrase: &SecretString,
        cost: KdfCost,
    ) -> Result<Vec<u8>, KeychainError> {
        let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
        if let KdfCost::LogN(log_n) = cost {
            recipient.set_work_factor(log_n.clamp(1, MAX_LOG_N));
        }
        let encryptor =
            age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| KeychainError::Encrypt(e.to_string()))?;
        let plaintext = self.encode();
        let mut sealed = Vec::with_capacity(plaintext.len() + 256);
        let mut writer = encryptor
            .wrap_output(&mut sealed)
            .map_err(|e| KeychainError::Encrypt(e.to_string()))?;
        writer
            .write_all(&plaintext)
            .and_then(|()| writer.finish().map(|_| ()))
            .map_err(|e| KeychainError::Encrypt(e.to_string()))?;
        Ok(sealed)
    }

    /// Decrypts and decodes a sealed keychain.
    pub fn open(sealed: &[u8], passphrase: &SecretString) -> Result<Self, KeychainError> {
        let decryptor = age::Decryptor::new_buffered(sealed).map_err(map_decrypt_error)?;
        if !decryptor.is_scrypt() {
            return Err(KeychainError::NotPassphraseProtected);
        }
        let mut identity = age::scrypt::Identity::new(passphrase.clone());
        identity.set_max_work_factor(MAX_LOG_N);
        let mut reader = decryptor
            .decrypt(iter::once(&identity as &dyn age::Identity))
            .map_err(map_decrypt_error)?;
        let mut plaintext = Zeroizing::new(Vec::with_capacity(sealed.len()));
        reader
            .read_to_end(&mut plaintext)
            .map_err(|e| KeychainError::Damaged(format!("payload does not authenticate ({e})")))?;
        Ok(Self::decode(&plaintext)?)
    }
}

/// The one entry of `items` whose label is `query`, or else whose id
/// starts with `query` (at least [`MIN_ID_PREFIX`] hex digits, any case).
fn find_in<T>(
    items: &[T],
    label: impl Fn(&T) -> &str,
    id: impl Fn(&T) -> String,
    query: &str,
) -> Result<usize, KeychainError> {
    let by_label: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| label(i) == query)
        .map(|(n, _)| n)
        .collect();
    let prefix = query.to_ascii_lowercase();
    let by_id: Vec<usize> =
        if prefix.len() >= MIN_ID_PREFIX && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            items
                .iter()
                .enumerate()
                .filter(|(_, i)| id(i).starts_with(&prefix))
                .map(|(n, _)| n)
                .collect()
        } else {
            Vec::new()
        };
    if let [one] = by_label[..] {
        // A label that is also another entry's id prefix (a label chosen
        // to look like someone's id) names two entries: refused, so a
        // query by id never reaches the wrong key.
        if by_id.iter().any(|&n| n != one) {
            return Err(KeychainError::Ambiguous {
                query: query.chars().take(80).collect(),
                candidates: [one]
                    .iter()
                    .chain(by_id.iter().filter(|&&n| n != one))
                    .map(|n| format!("{} \"{}\"", id(&items[*n]), label(&items[*n])))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        return Ok(one);
    }
    match by_id[..] {
        [one] => Ok(one),
        [] => Err(KeychainError::NotFound(query.chars().take(80).collect())),
        _ => Err(KeychainError::Ambiguous {
            query: query.chars().take(80).collect(),
            candidates: by_id
                .iter()
                .map(|n| id(&items[*n]))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The work factor in a sealed keychain's scrypt stanza
/// (`-> scrypt <salt> <log_n>`).
fn scrypt_log_n(sealed: &[u8]) -> Option<u8> {
    let header = sealed.get(..sealed.len().min(512))?;
    let text = String::from_utf8_lossy(header);
    text.lines()
        .find_map(|l| l.strip_prefix("-> scrypt "))
        .and_then(|args| args.split(' ').nth(1))
        .and_then(|n| n.parse().ok())
}

fn map_decrypt_error(e: age::DecryptError) -> KeychainError {
    use age::DecryptError as E;
    match e {
        E::DecryptionFailed | E::KeyDecryptionFailed | E::NoMatchingKeys => {
            KeychainError::WrongPassphrase
        }
        E::ExcessiveWork { required, .. } => KeychainError::ExcessiveWork {
            required,
            max: MAX_LOG_N,
        },
        E::InvalidHeader => KeychainError::Damaged("invalid age header".into()),
        E::InvalidMac => KeychainError::Damaged("header MAC does not match".into()),
        E::UnknownFormat => KeychainError::Damaged("not an age file, or an unknown version".into()),
        E::Io(e) => KeychainError::Damaged(format!("unreadable ({e})")),
        other => KeychainError::Damaged(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Label, Visibility};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    pub(crate) fn sample(n: usize) -> Keychain {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut kc = Keychain::new();
        for i in 0..n {
            let vis = if i % 2 == 0 {
                Visibility::Public
            } else {
                Visibility::Private
            };
            let label = Label::new(format!("identity {i}")).unwrap();
            kc.add(Identity::generate(
                &mut rng,
                label,
                vis,
                1_700_000_000 + i as u64,
            ))
            .unwrap();
        }
        kc
    }

    #[test]
    fn encode_round_trip() {
        let kc = sample(5);
        let bytes = kc.encode();
        let back = Keychain::decode(&bytes).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(&back.encode()[..], &bytes[..]);
        for (a, b) in kc.identities().iter().zip(back.identities()) {
            assert_eq!(a.verify_key(), b.verify_key());
            assert_eq!(a.encryption_key(), b.encryption_key());
            assert_eq!(a.label(), b.label());
            assert_eq!(a.visibility(), b.visibility());
            assert_eq!(a.created(), b.created());
        }
    }

    #[test]
    fn decode_rejects_truncation_and_trailing_bytes() {
        let bytes = sample(2).encode();
        for cut in 0..bytes.len() {
            assert!(Keychain::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Keychain::decode(&longer).is_err());
    }

    #[test]
    fn add_refuses_duplicates() {
        let mut kc = sample(2);
        let again = kc.identities()[0].clone();
        assert!(matches!(kc.add(again), Err(KeychainError::Duplicate(_))));
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let same_label = Identity::generate(
            &mut rng,
            Label::new("identity 1").unwrap(),
            Visibility::Public,
            0,
        );
        assert!(matches!(
            kc.add(same_label),
            Err(KeychainError::DuplicateLabel(_))
        ));
    }

    #[test]
    fn find_by_label_or_id_prefix() {
        let mut kc = sample(3);
        let id = kc.identities()[1].id().to_string();
        assert_eq!(kc.find("identity 1").unwrap().id().to_string(), id);
        assert_eq!(kc.find(&id[..6]).unwrap().id().to_string(), id);
        assert_eq!(kc.find(&id.to_uppercase()).unwrap().id().to_string(), id);
        assert!(matches!(kc.find("nobody"), Err(KeychainError::NotFound(_))));
        assert!(matches!(kc.find(&id[..3]), Err(KeychainError::NotFound(_))));
        let removed = kc.remove(&id).unwrap();
        assert_eq!(removed.id().to_string(), id);
        assert_eq!(kc.len(), 2);
        assert!(matches!(kc.find(&id), Err(KeychainError::NotFound(_))));
    }

    #[test]
    fn seal_open_and_wrong_passphrase() {
        let kc = sample(3);
        let pass = SecretString::from("correct horse".to_owned());
        let sealed = kc.seal(&pass, KdfCost::LogN(4)).unwrap();
        let back = Keychain::open(&sealed, &pass).unwrap();
        assert_eq!(&back.encode()[..], &kc.encode()[..]);
        let wrong = SecretString::from("battery staple".to_owned());
        assert!(matches!(
            Keychain::open(&sealed, &wrong),
            Err(KeychainError::WrongPassphrase)
        ));
    }

    #[test]
    fn sealed_work_factor_is_readable_and_bounded() {
        let pass = SecretString::from("pw".to_owned());
        let sealed = sample(1).seal(&pass, KdfCost::LogN(5)).unwrap();
        assert_eq!(scrypt_log_n(&sealed), Some(5));
        // Out-of-range requests are clamped (0 is not a valid scrypt cost;
        // the upper clamp to MAX_LOG_N would cost 4 GiB here, not tested).
        let sealed = sample(1).seal(&pass, KdfCost::LogN(0)).unwrap();
        assert_eq!(scrypt_log_n(&sealed), Some(1));
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let kc = sample(3);
        let pass = SecretString::from("pw".to_owned());
        let sealed = kc.seal(&pass, KdfCost::LogN(2)).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0xff;
            match Keychain::open(&bad, &pass) {
                Err(KeychainError::WrongPassphrase | KeychainError::Damaged(_)) => {}
                Err(KeychainError::ExcessiveWork { .. }) => {}
                other => panic!("byte {i}: {other:?}"),
            }
        }
        for cut in 0..sealed.len() {
            assert!(Keychain::open(&sealed[..cut], &pass).is_err(), "cut {cut}");
        }
    }
}
