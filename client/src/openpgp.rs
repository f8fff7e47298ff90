//! mtos identities as OpenPGP v4 keys (`specs/identity.md` §10), for
//! GnuPG and the tools around it: a certificate (the ed25519 signing key
//! as a legacy EdDSA primary, the X25519 key as an ECDH cv25519 subkey,
//! the label as user id, every time the identity's creation time so a
//! re-export is the same key with the same fingerprint), detached
//! signatures over files, and the import of an OpenPGP secret key.
//! Built on rpgp (`pgp`); the key packets are assembled from the
//! identity's own keys, since rpgp's builder draws new ones.

use mtos_crypto::{Identity, Label, Visibility};
use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, SignedKeyDetails, SignedPublicKey,
    SignedPublicSubKey, SignedSecretKey, SubpacketConfig,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::crypto::{ecdh, ed25519, eddsa_legacy};
use pgp::packet::{
    Features, KeyFlags, PubKeyInner, PublicKey, PublicSubkey, SecretKey, SignatureConfig,
    SignatureType, Subpacket, SubpacketData, UserId,
};
use pgp::types::{
    CompressionAlgorithm, EcdhPublicParams, EddsaLegacyPublicParams, KeyDetails as _, KeyVersion,
    Password, PlainSecretParams, PublicParams, SecretParams, SignedUser, Tag, Timestamp,
};
use zeroize::Zeroizing;

/// Why an OpenPGP step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenPgpError {
    /// Not an armored OpenPGP key or signature of the kind expected.
    #[error("not {0}")]
    NotOpenPgp(&'static str),
    /// A key mtos cannot take (another algorithm, version).
    #[error("this OpenPGP key cannot be an mtos identity: {0}")]
    Unsupported(String),
    /// The secret key is protected and the passphrase does not open it.
    #[error("the OpenPGP key's passphrase does not unlock it")]
    WrongPassphrase,
    /// The signature does not verify.
    #[error("BAD signature: {0}")]
    BadSignature(String),
    /// Times past what OpenPGP v4 holds (2106).
    #[error("the identity's creation time does not fit an OpenPGP key")]
    Time,
    /// rpgp refused.
    #[error("OpenPGP: {0}")]
    Library(String),
}

fn lib(e: pgp::errors::Error) -> OpenPgpError {
    OpenPgpError::Library(one_line(&e.to_string()))
}

/// rpgp's messages can span lines: one line, for an error.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A signature that does not verify.
fn bad(e: pgp::errors::Error) -> OpenPgpError {
    OpenPgpError::BadSignature(one_line(&e.to_string()))
}

fn created(identity: &Identity) -> Result<Timestamp, OpenPgpError> {
    u32::try_from(identity.created())
        .map(Timestamp::from_secs)
        .map_err(|_| OpenPgpError::Time)
}

/// The identity's signing key as an OpenPGP secret primary key.
fn primary(identity: &Identity) -> Result<SecretKey, OpenPgpError> {
    let sk =
        ed25519::SecretKey::try_from_bytes(*identity.ed25519_seed(), ed25519::Mode::EdDSALegacy)
            .map_err(lib)?;
    let params = PublicParams::EdDSALegacy(EddsaLegacyPublicParams::from(&sk));
    let inner = PubKeyInner::new(
        KeyVersion::V4,
        PublicKeyAlgorithm::EdDSALegacy,
        created(identity)?,
        None,
        params,
    )
    .map_err(lib)?;
    let public = PublicKey::from_inner(inner).map_err(lib)?;
    SecretKey::new(
        public,
        SecretParams::Plain(PlainSecretParams::EdDSALegacy(
            eddsa_legacy::SecretKey::Ed25519(sk),
        )),
    )
    .map_err(lib)
}

/// The identity's X25519 key as an ECDH cv25519 public subkey (SHA-256,
/// AES-128 key wrap, as GnuPG makes them).
fn subkey(identity: &Identity) -> Result<PublicSubkey, OpenPgpError> {
    // OpenPGP stores a cv25519 secret in the reverse of X25519's byte
    // order; rpgp's constructor takes it in that order.
    let mut reversed = Zeroizing::new(identity.x25519_secret_bytes());
    reversed.reverse();
    let sk = ecdh::SecretKey::Curve25519Legacy(
        ecdh::Curve25519Legacy::try_from_bytes_rev(&reversed[..]).map_err(lib)?,
    );
    let params = PublicParams::ECDH(EcdhPublicParams::try_from(&sk).map_err(lib)?);
    let inner = PubKeyInner::new(
        KeyVersion::V4,
        PublicKeyAlgorithm::ECDH,
        created(identity)?,
        None,
        params,
    )
    .map_err(lib)?;
    PublicSubkey::from_inner(inner).map_err(lib)
}

fn sub(data: SubpacketData) -> Result<Subpacket, OpenPgpError> {
    Subpacket::regular(data).map_err(lib)
}

/// A self-signature of `typ` by `primary` at `ts` giving `flags`: the
/// time, the issuer's fingerprint and the flags hashed, its key id not.
fn self_signature(
    primary: &SecretKey,
    typ: SignatureType,
    ts: Timestamp,
    flags: KeyFlags,
) -> Result<SignatureConfig, OpenPgpError> {
    let mut cfg = SignatureConfig::v4(typ, PublicKeyAlgorithm::EdDSALegacy, HashAlgorithm::Sha256);
    cfg.hashed_subpackets = vec![
        sub(SubpacketData::SignatureCreationTime(ts))?,
        sub(SubpacketData::IssuerFingerprint(primary.fingerprint()))?,
        sub(SubpacketData::KeyFlags(flags))?,
    ];
    cfg.unhashed_subpackets = vec![sub(SubpacketData::IssuerKeyId(primary.legacy_key_id()))?];
    Ok(cfg)
}

/// The identity's certificate, armored: the same bytes every time.
pub fn certificate(identity: &Identity) -> Result<String, OpenPgpError> {
    let primary = primary(identity)?;
    let subkey = subkey(identity)?;
    let ts = created(identity)?;
    let pw = Password::empty();
    let uid = UserId::from_str(Default::default(), identity.label().as_str()).map_err(lib)?;
    let mut flags = KeyFlags::default();
    flags.set_certify(true);
    flags.set_sign(true);
    let mut features = Features::default();
    features.set_seipd_v1(true);
    let mut cfg = self_signature(&primary, SignatureType::CertPositive, ts, flags)?;
    cfg.hashed_subpackets.extend([
        sub(SubpacketData::PreferredSymmetricAlgorithms(
            vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
        ))?,
        sub(SubpacketData::PreferredHashAlgorithms(
            vec![HashAlgorithm::Sha512, HashAlgorithm::Sha256].into(),
        ))?,
        sub(SubpacketData::PreferredCompressionAlgorithms(
            vec![CompressionAlgorithm::Uncompressed].into(),
        ))?,
        sub(SubpacketData::Features(features))?,
        sub(SubpacketData::IsPrimary(true))?,
    ]);
    let uid_sig = cfg
        .sign_certification(&primary, primary.public_key(), &pw, Tag::UserId, &uid)
        .map_err(lib)?;
    let mut encrypt = KeyFlags::default();
    encrypt.set_encrypt_comms(true);
    encrypt.set_encrypt_storage(true);
    let sub_sig = self_signature(&primary, SignatureType::SubkeyBinding, ts, encrypt)?
        .sign_subkey_binding(&primary, primary.public_key(), &pw, &subkey)
        .map_err(lib)?;
    let cert = SignedPublicKey::new(
        primary.public_key().clone(),
        SignedKeyDetails::new(
            vec![],
            vec![],
            vec![SignedUser::new(uid, vec![uid_sig])],
            vec![],
        ),
        vec![SignedPublicSubKey::new(subkey, vec![sub_sig])],
    );
    cert.verify_bindings().map_err(lib)?;
    cert.to_armored_string(ArmorOptions::default()).map_err(lib)
}

/// The identity's OpenPGP fingerprint (40 uppercase hex digits).
pub fn fingerprint(identity: &Identity) -> Result<String, OpenPgpError> {
    Ok(format!("{:X}", primary(identity)?.fingerprint()))
}

/// A detached signature over `data` made at `now` (Unix seconds),
/// armored, as `gpg --detach-sign --armor` makes them.
pub fn sign(identity: &Identity, data: &[u8], now: u64) -> Result<String, OpenPgpError> {
    let key = primary(identity)?;
    let now = u32::try_from(now).map_err(|_| OpenPgpError::Time)?;
    let hashed = vec![
        sub(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
        sub(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
            now,
        )))?,
    ];
    let unhashed = vec![sub(SubpacketData::IssuerKeyId(key.legacy_key_id()))?];
    // A v4 EdDSA signature draws nothing from the generator (only v6
    // salts would); rpgp's signature wants one all the same.
    let sig = DetachedSignature::sign_binary_data_with_subpackets(
        rand_core_06::OsRng,
        &key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        data,
        SubpacketConfig::UserDefined { hashed, unhashed },
    )
    .map_err(lib)?;
    sig.to_armored_string(ArmorOptions::default()).map_err(lib)
}

/// Checks an armored detached signature over `data` by `identity`'s key.
pub fn verify(identity: &Identity, signature: &str, data: &[u8]) -> Result<(), OpenPgpError> {
    let (sig, _) = DetachedSignature::from_string(signature)
        .map_err(|_| OpenPgpError::NotOpenPgp("an armored OpenPGP signature"))?;
    if !matches!(
        sig.signature.typ(),
        Some(SignatureType::Binary | SignatureType::Text)
    ) {
        return Err(OpenPgpError::NotOpenPgp("a signature over a file"));
    }
    let key = primary(identity)?;
    sig.verify(key.public_key(), data).map_err(bad)
}

/// Checks an armored detached signature over `data` by the primary key
/// of an armored certificate; names the signer (its user id and
/// fingerprint).
pub fn verify_with_certificate(
    certificate: &str,
    signature: &str,
    data: &[u8],
) -> Result<String, OpenPgpError> {
    let (cert, _) = SignedPublicKey::from_string(certificate)
        .map_err(|_| OpenPgpError::NotOpenPgp("an armored OpenPGP certificate"))?;
    cert.verify_bindings().map_err(bad)?;
    let (sig, _) = DetachedSignature::from_string(signature)
        .map_err(|_| OpenPgpError::NotOpenPgp("an armored OpenPGP signature"))?;
    if !matches!(
        sig.signature.typ(),
        Some(SignatureType::Binary | SignatureType::Text)
    ) {
        return Err(OpenPgpError::NotOpenPgp("a signature over a file"));
    }
    sig.verify(&cert, data).map_err(bad)?;
    // The user id is the certificate's own claim, printed without control
    // characters (no terminal escapes): the fingerprint is what counts.
    let user: String = cert
        .details
        .users
        .first()
        .and_then(|u| u.id.as_str().map(str::to_owned))
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(128)
        .collect();
    Ok(format!(
        "key {:X} (its certificate calls it \"{user}\"; compare the fingerprint with the signer's)",
        cert.fingerprint()
    ))
}

/// What an OpenPGP secret key became.
#[derive(Debug)]
pub struct Imported {
    /// The identity (its creation time the OpenPGP key's).
    pub identity: Identity,
    /// The OpenPGP fingerprint, as GnuPG shows it.
    pub fingerprint: String,
    /// The key had no cv25519 encryption subkey: the identity's X25519
    /// key was made here, and the OpenPGP key was sign-only.
    pub sign_only: bool,
}

/// Whether `text` is an armored OpenPGP secret key.
pub fn is_secret_key(text: &str) -> bool {
    text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----")
}

/// Imports an armored OpenPGP secret key (an ed25519 primary, and a
/// cv25519 encryption subkey if it has one) as an identity labelled
/// `label`, or after its user id. A protected key is unlocked with
/// `passphrase`, asked for only then.
pub fn import(
    armored: &str,
    label: Option<Label>,
    passphrase: impl FnOnce() -> Result<mtos_crypto::SecretString, crate::ClientError>,
) -> Result<Imported, crate::ClientError> {
    use mtos_crypto::ExposeSecret as _;
    // The bindings' signatures are not required to verify (a key others
    // certified carries signatures rpgp checks against its own primary):
    // what is taken is checked against the key material itself below.
    let (key, _) = SignedSecretKey::from_string(armored)
        .map_err(|_| OpenPgpError::NotOpenPgp("an armored OpenPGP secret key"))?;
    let primary = &key.primary_key;
    if primary.version() != KeyVersion::V4 {
        return Err(
            OpenPgpError::Unsupported(format!("a version {:?} key", primary.version())).into(),
        );
    }
    if !matches!(
        primary.public_key().public_params(),
        PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { .. })
    ) {
        return Err(OpenPgpError::Unsupported(
            "its primary key is not ed25519 (make one with gpg --quick-gen-key NAME ed25519)"
                .into(),
        )
        .into());
    }
    // Asked once, when a key is locked; the same answer unlocks the subkey.
    let mut asked: Option<mtos_crypto::SecretString> = None;
    let mut ask = Some(passphrase);
    let mut unlock = |locked: bool| -> Result<Password, crate::ClientError> {
        if !locked {
            return Ok(Password::empty());
        }
        if asked.is_none()
            && let Some(f) = ask.take()
        {
            asked = Some(f()?);
        }
        Ok(asked
            .as_ref()
            .map_or_else(Password::empty, |p| Password::from(p.expose_secret())))
    };
    let mut seed = Zeroizing::new([0u8; 32]);
    let pw = unlock(primary.secret_params().is_encrypted())?;
    primary
        .unlock(&pw, |_, plain| {
            if let PlainSecretParams::EdDSALegacy(eddsa_legacy::SecretKey::Ed25519(k)) = plain {
                seed.copy_from_slice(k.as_bytes());
            }
            Ok(())
        })
        .map_err(|_| OpenPgpError::WrongPassphrase)?
        .map_err(lib)?;
    // The newest binding of each subkey says whether it encrypts.
    let mut x25519: Option<(Zeroizing<[u8; 32]>, [u8; 32])> = None;
    for s in &key.secret_subkeys {
        let encrypts = s
            .signatures
            .iter()
            .max_by_key(|sig| sig.created().map(|t| t.as_secs()))
            .is_some_and(|sig| {
                sig.key_flags().encrypt_comms() || sig.key_flags().encrypt_storage()
            });
        let PublicParams::ECDH(EcdhPublicParams::Curve25519Legacy { p, .. }) =
            s.key.public_key().public_params()
        else {
            continue;
        };
        if !encrypts {
            continue;
        }
        let mut public = [0u8; 32];
        if p.as_bytes().len() != 32 {
            continue;
        }
        public.copy_from_slice(p.as_bytes());
        let pw = unlock(s.key.secret_params().is_encrypted())?;
        let mut found = Zeroizing::new([0u8; 32]);
        let mut got = false;
        s.key
            .unlock(&pw, |_, plain| {
                if let PlainSecretParams::ECDH(ecdh::SecretKey::Curve25519Legacy(c)) = plain {
                    // rpgp gives it in X25519 order already.
                    found.copy_from_slice(c.as_bytes());
                    got = true;
                }
                Ok(())
            })
            .map_err(|_| OpenPgpError::WrongPassphrase)?
            .map_err(lib)?;
        if got {
            x25519 = Some((found, public));
            break;
        }
    }
    let sign_only = x25519.is_none();
    let (x25519, subkey_public) = match x25519 {
        Some((secret, public)) => (secret, Some(public)),
        None => {
            let mut fresh = Zeroizing::new([0u8; 32]);
            rand::Rng::fill_bytes(&mut rand::rng(), fresh.as_mut());
            (fresh, None)
        }
    };
    let label = match label {
        Some(l) => l,
        None => label_of(&key)?,
    };
    let identity = Identity::from_secrets(
        label,
        Visibility::Private,
        u64::from(primary.created_at().as_secs()),
        &seed,
        &x25519,
    );
    // The seed is the primary's, the X25519 secret the subkey's: each
    // public key must be the key's, or GnuPG users would check signatures
    // against, and encrypt to, keys this identity does not hold.
    let fingerprint = format!("{:X}", primary.fingerprint());
    if self::fingerprint(&identity)? != fingerprint
        || subkey_public.is_some_and(|p| p != identity.encryption_key())
    {
        return Err(
            OpenPgpError::Unsupported("its secret does not match its public key".into()).into(),
        );
    }
    Ok(Imported {
        identity,
        fingerprint,
        sign_only,
    })
}

/// A label from the key's user id: the whole id when it is a valid
/// label, else its name part, else `openpgp-` and the key id.
fn label_of(key: &SignedSecretKey) -> Result<Label, mtos_crypto::LabelError> {
    let id = key
        .details
        .users
        .iter()
        .find(|u| u.is_primary())
        .or(key.details.users.first())
        .and_then(|u| u.id.as_str().map(str::to_owned))
        .unwrap_or_default();
    let name = id.split(" <").next().unwrap_or("").trim().to_owned();
    Label::new(id)
        .or_else(|_| Label::new(name))
        .or_else(|_| Label::new(format!("openpgp-{:X}", key.primary_key.fingerprint())))
}
