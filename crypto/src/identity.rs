//! Identities: an ed25519 signing key and an X25519 (age) encryption key
//! under a label, public or private. Encodings are normative in
//! `specs/identity.md`.

use std::fmt;

use ed25519_dalek::Signer;
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::agekeys;
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ExportError, LabelError, UriError};
use crate::fingerprint::Fingerprint;
use crate::uri;

/// Domain separation of the public identity self-signature.
const PUBLIC_IDENTITY_CONTEXT: &[u8] = b"mtos-public-identity-v1";
/// Version byte of the public identity record.
const PUBLIC_IDENTITY_VERSION: u8 = 1;
/// Version byte of an exported secret identity.
const SECRET_EXPORT_VERSION: u8 = 1;
/// The line prefix of an exported secret identity.
pub const SECRET_EXPORT_PREFIX: &str = "mtos-secret-identity-v1:";
/// Domain separation of the export checksum.
const SECRET_EXPORT_CONTEXT: &[u8] = b"mtos-secret-identity-v1";
/// URI kind of a public identity: `mtos:id:...`.
pub const IDENTITY_URI_KIND: &str = "id";

/// A human-chosen name for an identity: 1 to 64 bytes of UTF-8, no control
/// characters, no leading or trailing whitespace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(String);

impl Label {
    /// Longest label, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates a label.
    pub fn new(label: impl Into<String>) -> Result<Self, LabelError> {
        let label = label.into();
        if label.trim().is_empty() {
            return Err(LabelError::Empty);
        }
        if label.len() > Self::MAX_LEN {
            return Err(LabelError::TooLong {
                max: Self::MAX_LEN,
                len: label.len(),
            });
        }
        if label.trim() != label || label.chars().any(char::is_control) {
            return Err(LabelError::BadCharacters);
        }
        Ok(Self(label))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let raw = r.short_str("label")?;
        Self::new(raw).map_err(|e| DecodeError::Invalid {
            what: "label",
            reason: match e {
                LabelError::Empty => "empty",
                LabelError::TooLong { .. } => "longer than 64 bytes",
                LabelError::BadCharacters => "control characters or surrounding spaces",
            },
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Whether an identity may be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// May be published on the network.
    Public,
    /// Shared out of band only; never published.
    Private,
}

impl Visibility {
    fn to_byte(self) -> u8 {
        match self {
            Visibility::Public => 0,
            Visibility::Private => 1,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(Visibility::Public),
            1 => Ok(Visibility::Private),
            _ => Err(DecodeError::Invalid {
                what: "visibility",
                reason: "must be 0 (public) or 1 (private)",
            }),
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        })
    }
}

/// An ed25519 verification key (32 bytes, the compressed point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifyKey([u8; 32]);

impl VerifyKey {
    /// Wraps raw bytes, checking that they decode to a curve point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| DecodeError::Invalid {
            what: "verify key",
            reason: "not an ed25519 public key",
        })?;
        Ok(Self(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies `signature` over `message` (strict: rejects small-order and
    /// non-canonical encodings, so a signature is never malleable).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &sig).is_ok()
    }

    /// The short local handle of the identity with this key.
    pub fn id(&self) -> IdentityId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[..8]);
        IdentityId(id)
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({})", hex(&self.0))
    }
}

impl fmt::Display for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A short local handle: the first 8 bytes of the verify key in hex. Used
/// to name identities on the command line; never a security boundary (the
/// fingerprint is).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityId([u8; 8]);

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityId({self})")
    }
}

/// A person's identity with its secret keys. Secrets are zeroized on drop
/// and never printed by `Debug`.
#[derive(Clone)]
pub struct Identity {
    label: Label,
    visibility: Visibility,
    created: u64,
    signing: ed25519_dalek::SigningKey,
    encryption: x25519_dalek::StaticSecret,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .field("label", &self.label)
            .field("visibility", &self.visibility)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates an identity from the caller's RNG (the OS RNG in the CLI,
    /// a seeded one in simulations and test vectors). `created` is Unix
    /// seconds, passed in because this crate never reads the clock.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        label: Label,
        visibility: Visibility,
        created: u64,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        let mut x_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        rng.fill_bytes(x_secret.as_mut());
        Self::from_secrets(label, visibility, created, &seed, &x_secret)
    }

    /// A fresh, unlinkable identity for anonymous authorship: it is never
    /// stored in a keychain and shares nothing with any other identity.
    pub fn throwaway<R: CryptoRng + ?Sized>(rng: &mut R, created: u64) -> Self {
        Self::generate(
            rng,
            Label("anonymous".to_owned()),
            Visibility::Private,
            created,
        )
    }

    /// Rebuilds an identity from its raw secrets (the ed25519 seed and the
    /// X25519 scalar), as stored in a keychain.
    pub fn from_secrets(
        label: Label,
        visibility: Visibility,
        created: u64,
        seed: &[u8; 32],
        x_secret: &[u8; 32],
    ) -> Self {
        Self {
            label,
            visibility,
            created,
            signing: ed25519_dalek::SigningKey::from_bytes(seed),
            encryption: x25519_dalek::StaticSecret::from(*x_secret),
        }
    }

    /// The label.
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// Renames the identity (the keys are unchanged).
    pub fn set_label(&mut self, label: Label) {
        self.label = label;
    }

    /// Public or private.
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }

    /// Creation time, Unix seconds.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The ed25519 verification key.
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 public key that age recipients encrypt to.
    pub fn encryption_key(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.encryption).to_bytes()
    }

    /// The short local handle.
    pub fn id(&self) -> IdentityId {
        self.verify_key().id()
    }

    /// The raw X25519 secret, for opening items sealed to this identity.
    pub fn x25519_secret_bytes(&self) -> [u8; 32] {
        self.encryption.to_bytes()
    }

    /// The raw ed25519 seed, for libraries that take the key as bytes (the
    /// node's libp2p identity is its ed25519 key, so its PeerId is
    /// derived from the key the network document lists).
    pub fn ed25519_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Signs a message with the ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The fingerprint of the public keys.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.verify_key(), &self.encryption_key())
    }

    /// The public half, self-signed, as carried in URIs and QR codes.
    pub fn public(&self) -> PublicIdentity {
        let verify_key = self.verify_key();
        let encryption_key = self.encryption_key();
        let body = PublicIdentity::signed_body(&verify_key, &encryption_key, &self.label);
        let signature = self.sign(&body);
        PublicIdentity {
            verify_key,
            encryption_key,
            label: self.label.clone(),
            signature,
        }
    }

    /// The X25519 secret as a standard age identity (`AGE-SECRET-KEY-1...`),
    /// usable with the `age` and `rage` tools.
    pub fn age_secret_key(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(self.encryption.to_bytes());
        agekeys::secret_key_string(&secret)
    }

    /// The X25519 public key as a standard age recipient (`age1...`).
    pub fn age_recipient(&self) -> String {
        agekeys::recipient_string(&self.encryption_key())
    }

    /// The identity as an age identity, for decrypting items sealed to it.
    pub fn age_identity(&self) -> Result<age::x25519::Identity, DecodeError> {
        self.age_secret_key()
            .parse::<age::x25519::Identity>()
            .map_err(|_| DecodeError::Invalid {
                what: "age identity",
                reason: "age refused the key encoding",
            })
    }

    /// Canonical encoding of the secret record (keychain entries and
    /// exports): visibility, created, label, ed25519 seed, X25519 secret.
    pub(crate) fn encode_secret_record(&self, w: &mut Writer) {
        let seed = Zeroizing::new(self.signing.to_bytes());
        let x_secret = Zeroizing::new(self.encryption.to_bytes());
        w.u8(self.visibility.to_byte())
            .u64(self.created)
            .short_str(self.label.as_str())
            .bytes(seed.as_ref())
            .bytes(x_secret.as_ref());
    }

    pub(crate) fn decode_secret_record(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let visibility = Visibility::from_byte(r.u8("visibility")?)?;
        let created = r.u64("creation time")?;
        let label = Label::decode(r)?;
        let seed = Zeroizing::new(r.array::<32>("ed25519 seed")?);
        let x_secret = Zeroizing::new(r.array::<32>("X25519 secret")?);
        Ok(Self::from_secrets(
            label, visibility, created, &seed, &x_secret,
        ))
    }

    /// The secret identity as a text file for moving it to another device:
    /// a comment line and one `mtos-secret-identity-v1:` line with a
    /// checksum, so a damaged or mistyped copy is caught on import.
    pub fn export_secret(&self) -> Zeroizing<String> {
        let mut w = Writer::with_capacity(160);
        w.u8(SECRET_EXPORT_VERSION);
        self.encode_secret_record(&mut w);
        let mut payload = Zeroizing::new(w.into_vec());
        let sum = export_checksum(&payload);
        payload.extend_from_slice(&sum);
        let encoded = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&payload));
        Zeroizing::new(format!(
            "# mtos secret identity \"{}\" ({}). Anyone holding this file can sign and read as this identity.\n{}{}\n",
            self.label,
            self.id(),
            SECRET_EXPORT_PREFIX,
            encoded.to_ascii_lowercase()
        ))
    }

    /// Parses [`Identity::export_secret`] output. Lines starting with `#`
    /// and blank lines are ignored.
    pub fn import_secret(text: &str) -> Result<Self, ExportError> {
        let line = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(SECRET_EXPORT_PREFIX))
            .ok_or(ExportError::NotAnExport)?;
        let upper = Zeroizing::new(line.trim().to_ascii_uppercase());
        let raw = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(upper.as_bytes())
                .map_err(|_| ExportError::BadBase32)?,
        );
        if raw.len() < 4 {
            return Err(ExportError::Decode(DecodeError::Truncated {
                what: "secret identity",
            }));
        }
        let (payload, sum) = raw.split_at(raw.len() - 4);
        if export_checksum(payload) != sum {
            return Err(ExportError::Checksum);
        }
        let mut r = Reader::new(payload);
        let version = r.u8("secret identity version")?;
        if version != SECRET_EXPORT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "secret identity",
                version,
            }
            .into());
        }
        let identity = Self::decode_secret_record(&mut r)?;
        r.finish("secret identity")?;
        Ok(identity)
    }
}

fn export_checksum(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(SECRET_EXPORT_CONTEXT)
        .chain_update(payload)
        .finalize();
    let mut out = [0u8; 4];
    out.copy_from_slice(&digest[..4]);
    out
}

/// The public half of an identity, self-signed by its ed25519 key so the
/// label and encryption key cannot be swapped by whoever relays it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    verify_key: VerifyKey,
    encryption_key: [u8; 32],
    label: Label,
    signature: [u8; 64],
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("verify_key", &self.verify_key)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl PublicIdentity {
    fn signed_body(verify_key: &VerifyKey, encryption_key: &[u8; 32], label: &Label) -> Vec<u8> {
        let mut w = Writer::with_capacity(PUBLIC_IDENTITY_CONTEXT.len() + 130);
        w.bytes(PUBLIC_IDENTITY_CONTEXT);
        Self::encode_unsigned(&mut w, verify_key, encryption_key, label);
        w.into_vec()
    }

    fn encode_unsigned(
        w: &mut Writer,
        verify_key: &VerifyKey,
        encryption_key: &[u8; 32],
        label: &Label,
    ) {
        w.u8(PUBLIC_IDENTITY_VERSION)
            .bytes(verify_key.as_bytes())
            .bytes(encryption_key)
            .short_str(label.as_str());
    }

    /// The ed25519 verification key.
    pub fn verify_key(&self) -> &VerifyKey {
        &self.verify_key
    }

    /// The X25519 encryption key.
    pub fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption_key
    }

    /// The label its owner chose.
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// The short local handle.
    pub fn id(&self) -> IdentityId {
        self.verify_key.id()
    }

    /// The fingerprint of the public keys.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.verify_key, &self.encryption_key)
    }

    /// The key as a standard age recipient (`age1...`).
    pub fn age_recipient(&self) -> String {
        agekeys::recipient_string(&self.encryption_key)
    }

    /// Canonical encoding (`specs/identity.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(130 + self.label.as_str().len());
        Self::encode_unsigned(&mut w, &self.verify_key, &self.encryption_key, &self.label);
        w.bytes(&self.signature);
        w.into_vec()
    }

    /// Decodes and verifies the self-signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("public identity version")?;
        if version != PUBLIC_IDENTITY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "public identity",
                version,
            });
        }
        let verify_key = VerifyKey::from_bytes(r.array("verify key")?)?;
        let encryption_key = r.array::<32>("encryption key")?;
        let label = Label::decode(&mut r)?;
        let signature = r.array::<64>("signature")?;
        r.finish("public identity")?;
        let body = Self::signed_body(&verify_key, &encryption_key, &label);
        if !verify_key.verify(&body, &signature) {
            return Err(DecodeError::BadSignature {
                what: "public identity",
            });
        }
        Ok(Self {
            verify_key,
            encryption_key,
            label,
            signature,
        })
    }

    /// The compact URI: `mtos:id:` and the lowercase, unpadded base32 of
    /// the encoding. Its uppercase form fits a QR code's alphanumeric mode.
    pub fn to_uri(&self) -> String {
        uri::format(IDENTITY_URI_KIND, &self.encode())
    }

    /// Parses a URI (any letter case) and verifies the self-signature.
    pub fn from_uri(text: &str) -> Result<Self, UriError> {
        let payload = uri::parse(IDENTITY_URI_KIND, text)?;
        Ok(Self::decode(&payload)?)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn alice() -> Identity {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        Identity::generate(
            &mut rng,
            Label::new("alice").unwrap(),
            Visibility::Public,
            1_700_000_000,
        )
    }

    #[test]
    fn labels_are_validated() {
        assert!(Label::new("alice").is_ok());
        assert!(Label::new("Ünïcode name 1").is_ok());
        assert_eq!(Label::new(""), Err(LabelError::Empty));
        assert_eq!(Label::new("   "), Err(LabelError::Empty));
        assert_eq!(Label::new(" x"), Err(LabelError::BadCharacters));
        assert_eq!(Label::new("a\nb"), Err(LabelError::BadCharacters));
        assert!(matches!(
            Label::new("x".repeat(65)),
            Err(LabelError::TooLong { len: 65, .. })
        ));
        assert!(Label::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn same_seed_same_identity_and_throwaways_are_distinct() {
        assert_eq!(alice().verify_key(), alice().verify_key());
        assert_eq!(alice().encryption_key(), alice().encryption_key());
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let a = Identity::throwaway(&mut rng, 0);
        let b = Identity::throwaway(&mut rng, 0);
        assert_ne!(a.verify_key(), b.verify_key());
        assert_ne!(a.encryption_key(), b.encryption_key());
        assert_eq!(a.visibility(), Visibility::Private);
    }

    #[test]
    fn signatures_verify_and_reject_changes() {
        let id = alice();
        let sig = id.sign(b"hello");
        assert!(id.verify_key().verify(b"hello", &sig));
        assert!(!id.verify_key().verify(b"hellp", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!id.verify_key().verify(b"hello", &bad));
    }

    #[test]
    fn public_identity_round_trips_and_rejects_every_flipped_byte() {
        let public = alice().public();
        let bytes = public.encode();
        assert_eq!(PublicIdentity::decode(&bytes).unwrap(), public);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            assert!(PublicIdentity::decode(&bad).is_err(), "byte {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(PublicIdentity::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PublicIdentity::decode(&longer).is_err());
    }

    #[test]
    fn uri_round_trips_in_either_case() {
        let public = alice().public();
        let uri = public.to_uri();
        assert!(uri.starts_with("mtos:id:"));
        assert_eq!(PublicIdentity::from_uri(&uri).unwrap(), public);
        assert_eq!(
            PublicIdentity::from_uri(&uri.to_ascii_uppercase()).unwrap(),
            public
        );
        assert_eq!(
            PublicIdentity::from_uri(&format!("  {uri}\n")).unwrap(),
            public
        );
    }

    #[test]
    fn malformed_uris_get_distinct_errors() {
        let uri = alice().public().to_uri();
        assert_eq!(
            PublicIdentity::from_uri("https://x"),
            Err(UriError::NotMtos)
        );
        assert!(matches!(
            PublicIdentity::from_uri("mtos:item:aaaa"),
            Err(UriError::WrongKind { .. })
        ));
        assert_eq!(
            PublicIdentity::from_uri("mtos:id:!!!"),
            Err(UriError::BadBase32)
        );
        let truncated = &uri[..uri.len() - 8];
        assert!(matches!(
            PublicIdentity::from_uri(truncated),
            Err(UriError::Payload(_)) | Err(UriError::BadBase32)
        ));
        // A one-character typo breaks the self-signature (or the encoding).
        let mut typo: Vec<char> = uri.chars().collect();
        let i = typo.len() - 40;
        typo[i] = if typo[i] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();
        assert!(matches!(
            PublicIdentity::from_uri(&typo),
            Err(UriError::Payload(_)) | Err(UriError::BadBase32)
        ));
    }

    #[test]
    fn secret_export_round_trips_and_catches_damage() {
        let id = alice();
        let text = id.export_secret();
        let back = Identity::import_secret(&text).unwrap();
        assert_eq!(back.verify_key(), id.verify_key());
        assert_eq!(back.encryption_key(), id.encryption_key());
        assert_eq!(back.label(), id.label());
        assert_eq!(back.created(), id.created());

        assert_eq!(
            Identity::import_secret("hello").unwrap_err(),
            ExportError::NotAnExport
        );
        let line = text.lines().nth(1).unwrap();
        let mut chars: Vec<char> = line.chars().collect();
        let i = SECRET_EXPORT_PREFIX.len() + 10;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let damaged: String = chars.into_iter().collect();
        assert_eq!(
            Identity::import_secret(&damaged).unwrap_err(),
            ExportError::Checksum
        );
        assert_eq!(
            Identity::import_secret(&format!("{SECRET_EXPORT_PREFIX}0189")).unwrap_err(),
            ExportError::BadBase32
        );
    }

    #[test]
    fn age_keys_use_the_standard_encodings() {
        let id = alice();
        let secret = id.age_secret_key();
        assert!(secret.starts_with("AGE-SECRET-KEY-1"));
        let age_id = id.age_identity().unwrap();
        assert_eq!(age_id.to_public().to_string(), id.age_recipient());
        assert!(id.age_recipient().starts_with("age1"));
        assert_eq!(id.public().age_recipient(), id.age_recipient());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let id = alice();
        let debug = format!("{id:?}");
        let seed = hex(&id.signing.to_bytes());
        let x = hex(&id.encryption.to_bytes());
        assert!(!debug.contains(&seed[..16]));
        assert!(!debug.contains(&x[..16]));
        assert!(!debug.contains("AGE-SECRET"));
    }
}
