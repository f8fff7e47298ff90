//! Sealing: an item is encrypted as a standard age file, then cut into a
//! chunk tree ([`super::tree`]).
//!
//! * A **public** item is encrypted to an X25519 key derived from the
//!   random per-item key in its reference; anyone holding the reference can
//!   read it, no storer can.
//! * A **private** item is encrypted to its recipients' X25519 keys; the
//!   reference alone does not open it.
//!
//! Both carry the same number of recipient stanzas, padded with stanzas to
//! fresh random keys up to a bucket ([`stanza_bucket`]) and shuffled, so a
//! storer can neither count readers nor tell public items from private
//! ones. The sealed bytes are an ordinary age file: `age -d -i KEY`
//! decrypts them with a key exported by `mtos id export --age`.

use std::io::Read;

use rand::CryptoRng;
use rand::seq::SliceRandom;
use zeroize::Zeroizing;

use super::Item;
use super::reference::{Audience, ItemRef, Locator};
use super::tree::{self, ChunkSink, ChunkSource, TreeInfo, TreeShape, TreeWriter};
use super::walk::{self, Walk};
use crate::agekeys;
use crate::error::{OpenError, SealError};

/// Most recipients of one private item.
pub const MAX_RECIPIENTS: usize = 256;
/// Largest sealed item accepted (the item's body limit plus headers).
pub const MAX_SEALED_LEN: u64 = super::MAX_BODY_LEN + (1 << 20);

/// BLAKE3 key-derivation contexts (globally unique, per the BLAKE3 spec).
const TREE_KEY_CONTEXT: &str = "mtos item v1 manifest tree key";
const PUBLIC_X25519_CONTEXT: &str = "mtos item v1 public item x25519 key";

/// The number of recipient stanzas for `n` real recipients: 4, 16, 64 or
/// 256 (each bucket holds as many as most groups need while keeping few
/// distinguishable sizes).
pub fn stanza_bucket(n: usize) -> usize {
    [4, 16, 64, MAX_RECIPIENTS]
        .into_iter()
        .find(|b| n <= *b)
        .unwrap_or(MAX_RECIPIENTS)
}

/// Who can open a sealed item.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Anyone with the reference.
    Public,
    /// The holders of these X25519 keys.
    Private(&'a [[u8; 32]]),
}

/// The result of sealing.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The reference to share with readers.
    pub reference: ItemRef,
    /// The shape of the stored tree.
    pub shape: TreeShape,
}

fn tree_key(item_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(TREE_KEY_CONTEXT, item_key))
}

fn public_item_secret(item_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(PUBLIC_X25519_CONTEXT, item_key))
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

/// Encrypts an already signed `item` and stores its chunks
/// in `sink`. Randomness of our own (the item key, padding keys, stanza
/// order) comes from `rng`; age draws its file key and ephemeral keys from
/// the OS.
pub fn seal<R: CryptoRng + ?Sized, S: ChunkSink>(
    rng: &mut R,
    item: &Item,
    access: Access<'_>,
    sink: &mut S,
) -> Result<Sealed, SealError> {
    let mut item_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(item_key.as_mut());

    let (audience, mut keys): (Audience, Vec<[u8; 32]>) = match access {
        Access::Public => (
            Audience::Public,
            vec![x25519_public(&public_item_secret(&item_key))],
        ),
        Access::Private(keys) => {
            let mut unique = keys.to_vec();
            unique.sort_unstable();
            unique.dedup();
            if unique.is_empty() || unique.len() > MAX_RECIPIENTS {
                return Err(SealError::TooManyRecipients {
                    max: MAX_RECIPIENTS,
                    got: unique.len(),
                });
            }
            (Audience::Private, unique)
        }
    };
    let bucket = stanza_bucket(keys.len());
    while keys.len() < bucket {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        keys.push(x25519_public(&secret));
    }
    keys.shuffle(rng);
    let recipients = keys
        .iter()
        .map(|k| agekeys::recipient(k).ok_or(SealError::BadRecipient))
        .collect::<Result<Vec<_>, _>>()?;

    let header = item.encode_header();
    let plain_len = 4 + header.len() as u64 + item.body_len();
    if plain_len > MAX_SEALED_LEN {
        return Err(SealError::TooLarge {
            size: plain_len,
            max: MAX_SEALED_LEN,
        });
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SealError::Store(std::io::Error::other(e.to_string())))?;
    let tk = tree_key(&item_key);
    let writer = TreeWriter::new(sink, *tk, MAX_SEALED_LEN);
    let too_large = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            SealError::TooLarge {
                size: plain_len,
                max: MAX_SEALED_LEN,
            }
        } else {
            SealError::Store(e)
        }
    };
    let mut stream = encryptor.wrap_output(writer).map_err(too_large)?;
    item.write_to(&header, &mut stream).map_err(too_large)?;
    let writer = stream.finish().map_err(too_large)?;
    let (root, shape) = writer.finish()?;
    Ok(Sealed {
        reference: ItemRef::new(audience, root, *item_key),
        shape,
    })
}

/// Reassembles the sealed bytes (an age file) from the chunk tree,
/// verifying every chunk. `mtos item inspect --export-sealed` writes them.
pub fn fetch_sealed<S: ChunkSource>(
    source: &mut S,
    reference: &ItemRef,
    max_len: u64,
) -> Result<Vec<u8>, OpenError> {
    tree::assemble(
        source,
        &tree_key(reference.key()),
        reference.root(),
        max_len,
    )
}

/// The chunks of the item that `source` lacks and whose place is known
/// ([`walk::missing`]): fetch them and ask again until none is left, or
/// walk with [`walk`] to ask for each as soon as its parent arrives.
pub fn missing<S: ChunkSource>(
    source: &mut S,
    reference: &ItemRef,
    max_len: u64,
) -> Result<Vec<Locator>, OpenError> {
    walk::missing(source, tree_key(reference.key()), reference.root(), max_len)
}

/// A walk of the item's tree at `reference` for fetching it
/// ([`Walk::lacking_below`]), refusing an item announced larger than
/// `max_len`.
pub fn walk(reference: &ItemRef, max_len: u64) -> Walk {
    Walk::new(tree_key(reference.key()), *reference.root(), max_len)
}

/// The sealed bytes read for [`open_head`]: an age header of 256
/// stanzas and its grease (under 32 KiB), then two of age's 64 KiB
/// payload chunks (the item's header is at most 16 KiB and lies in the
/// first; the second shows age that the first is not the last).
const HEAD_PREFIX: usize = 32 * 1024 + 2 * (64 * 1024 + 16) + 16;

/// An item's signed header, verified, its parts' lengths, and the first
/// `max_data` bytes of its parts' data (fewer when the item is shorter, at most 64 KiB),
/// reading only the first chunks of the tree (about 160 KiB whatever the
/// item's size): what a thread needs of the many items it looks among.
/// The parts come back empty; data of a part is only authentic once it
/// is whole and matches the part's digest ([`Item::part_digests`]).
pub fn open_head<S: ChunkSource>(
    source: &mut S,
    reference: &ItemRef,
    identities: &[Zeroizing<[u8; 32]>],
    max_len: u64,
    max_data: usize,
) -> Result<(Item, Vec<u64>, Vec<u8>), OpenError> {
    let ids = identities_for(reference, identities)?;
    let sealed = tree::prefix(
        source,
        &tree_key(reference.key()),
        reference.root(),
        max_len,
        HEAD_PREFIX,
    )?;
    let decryptor = age::Decryptor::new_buffered(&sealed[..]).map_err(map_age)?;
    let mut reader = decryptor
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(map_age)?;
    let bad = |e: std::io::Error| OpenError::Sealed(format!("payload does not authenticate ({e})"));
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).map_err(bad)?;
    let header_len = u32::from_be_bytes(len) as usize;
    if header_len > super::MAX_HEADER_LEN {
        return Err(OpenError::Sealed(format!(
            "an item header of {header_len} bytes, over the limit"
        )));
    }
    let mut header = Zeroizing::new(vec![0u8; header_len]);
    reader.read_exact(&mut header).map_err(bad)?;
    let (item, lengths) = Item::decode_header(&header)?;
    // Only what lies in the chunks read; a read past them fails, and
    // ends the data.
    let mut data = Vec::new();
    let _ = (&mut reader)
        .take(max_data.min(64 * 1024) as u64)
        .read_to_end(&mut data);
    Ok((item, lengths, data))
}

/// Walks the manifest nodes.
pub fn inspect<S: ChunkSource>(
    source: &mut S,
    reference: &ItemRef,
    max_len: u64,
) -> Result<TreeInfo, OpenError> {
    tree::inspect(
        source,
        &tree_key(reference.key()),
        reference.root(),
        max_len,
    )
}

/// Decrypts and verifies sealed bytes. Public items use the key in the
/// reference; private items try `identities` (X25519 secrets).
fn identities_for(
    reference: &ItemRef,
    identities: &[Zeroizing<[u8; 32]>],
) -> Result<Vec<age::x25519::Identity>, OpenError> {
    let ids: Vec<age::x25519::Identity> = match reference.audience() {
        Audience::Public => agekeys::identity(&public_item_secret(reference.key()))
            .into_iter()
            .collect(),
        Audience::Private => identities
            .iter()
            .filter_map(|s| agekeys::identity(s))
            .collect(),
    };
    if ids.is_empty() {
        return Err(OpenError::NotARecipient);
    }
    Ok(ids)
}

/// Opens the sealed bytes of an item (an age file) for the identities
/// given, and verifies it whole.
pub fn open_sealed(
    sealed: &[u8],
    reference: &ItemRef,
    identities: &[Zeroizing<[u8; 32]>],
) -> Result<Item, OpenError> {
    let ids = identities_for(reference, identities)?;
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(map_age)?;
    let reader = decryptor
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(map_age)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(sealed.len()));
    reader
        .take(MAX_SEALED_LEN)
        .read_to_end(&mut plain)
        .map_err(|e| OpenError::Sealed(format!("payload does not authenticate ({e})")))?;
    Ok(Item::decode(&plain)?)
}

/// Fetches, decrypts and verifies an item.
pub fn open<S: ChunkSource>(
    source: &mut S,
    reference: &ItemRef,
    identities: &[Zeroizing<[u8; 32]>],
    max_len: u64,
) -> Result<Item, OpenError> {
    let sealed = fetch_sealed(source, reference, max_len)?;
    open_sealed(&sealed, reference, identities)
}

fn map_age(e: age::DecryptError) -> OpenError {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys => OpenError::NotARecipient,
        E::InvalidMac => OpenError::Sealed("header MAC does not match".into()),
        E::InvalidHeader => OpenError::Sealed("invalid age header".into()),
        E::DecryptionFailed | E::KeyDecryptionFailed => {
            OpenError::Sealed("a recipient stanza does not decrypt".into())
        }
        other => OpenError::Sealed(other.to_string()),
    }
}
