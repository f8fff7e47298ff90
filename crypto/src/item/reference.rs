//! Locators (where a chunk is stored: the hash of its bytes) and item
//! references (`mtos:item:` URIs: the root locator and the item key).

use std::fmt;

use zeroize::Zeroize;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, UriError};
use crate::uri;

/// URI kind of an item reference: `mtos:item:...`.
pub const ITEM_URI_KIND: &str = "item";
const ITEM_REF_VERSION: u8 = 1;
const FLAG_PRIVATE: u8 = 0x01;
/// Encoded length of an [`ItemRef`].
pub const ITEM_REF_LEN: usize = 66;

/// The address of a chunk: BLAKE3-256 of its bytes, so a chunk verifies
/// against its locator on its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locator([u8; 32]);

impl Locator {
    /// The locator of `chunk`.
    pub fn of(chunk: &[u8]) -> Self {
        Self(*blake3::hash(chunk).as_bytes())
    }

    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `chunk` is the chunk this locator names.
    pub fn matches(&self, chunk: &[u8]) -> bool {
        // Not secret: a locator is public, no constant-time need.
        Self::of(chunk) == *self
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locator({self})")
    }
}

/// Who can read an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone holding the reference.
    Public,
    /// Only the recipients it was sealed to (the reference alone is not
    /// enough).
    Private,
}

/// A reference to an item: its root locator and its 32-byte key. The key
/// is random per item (never derived from the content, so a storer cannot
/// confirm it holds a known file) and never leaves the client: requests to
/// the network carry locators only.
#[derive(Clone, PartialEq, Eq)]
pub struct ItemRef {
    audience: Audience,
    root: Locator,
    key: [u8; 32],
}

impl Drop for ItemRef {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemRef")
            .field("audience", &self.audience)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ItemRef {
    pub(crate) fn new(audience: Audience, root: Locator, key: [u8; 32]) -> Self {
        Self {
            audience,
            root,
            key,
        }
    }

    /// Public or private.
    pub fn audience(&self) -> Audience {
        self.audience
    }

    /// The locator of the root manifest node.
    pub fn root(&self) -> &Locator {
        &self.root
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Canonical encoding: version, flags, root locator, key (66 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(ITEM_REF_LEN);
        self.encode_into(&mut w);
        w.into_vec()
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        let flags = match self.audience {
            Audience::Public => 0,
            Audience::Private => FLAG_PRIVATE,
        };
        w.u8(ITEM_REF_VERSION)
            .u8(flags)
            .bytes(self.root.as_bytes())
            .bytes(&self.key);
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("item reference version")?;
        if version != ITEM_REF_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "item reference",
                version,
            });
        }
        let audience = match r.u8("item reference flags")? {
            0 => Audience::Public,
            FLAG_PRIVATE => Audience::Private,
            _ => {
                return Err(DecodeError::Invalid {
                    what: "item reference flags",
                    reason: "unknown flag bits",
                });
            }
        };
        let root = Locator(r.array("root locator")?);
        let key = r.array("item key")?;
        Ok(Self {
            audience,
            root,
            key,
        })
    }

    /// Decodes a canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let out = Self::decode_from(&mut r)?;
        r.finish("item reference")?;
        Ok(out)
    }

    /// `mtos:item:` and the base32 of the encoding.
    pub fn to_uri(&self) -> String {
        let mut bytes = self.encode();
        let out = uri::format(ITEM_URI_KIND, &bytes);
        bytes.zeroize();
        out
    }

    /// Parses a `mtos:item:` URI (any letter case).
    pub fn from_uri(text: &str) -> Result<Self, UriError> {
        let mut bytes = uri::parse(ITEM_URI_KIND, text)?;
        let out = Self::decode(&bytes);
        bytes.zeroize();
        Ok(out?)
    }
}

/// Domain of [`placement_weight`].
const PLACEMENT_CONTEXT: &str = "mtos-placement-v2";

/// The rendezvous weight of storage node `node` (its ed25519 key), salted
/// with `salt`, for `locator`: BLAKE3 in key-derivation mode under
/// `mtos-placement-v2` over `locator || node || salt`, compared as a
/// big-endian number (`specs/storage.md` §1). The K nodes of highest
/// weight hold the record. The salt is the shared random value of the
/// first epoch after the node was listed (`specs/directory.md` §6.4),
/// unknown when its key was made: no key can be ground to win a chosen
/// locator.
pub fn placement_weight(locator: &Locator, node: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(PLACEMENT_CONTEXT);
    h.update(locator.as_bytes());
    h.update(node);
    h.update(salt);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ref_round_trips_and_rejects_damage() {
        let r = ItemRef::new(Audience::Private, Locator::of(b"x"), [7; 32]);
        let bytes = r.encode();
        assert_eq!(bytes.len(), ITEM_REF_LEN);
        assert_eq!(ItemRef::decode(&bytes).unwrap(), r);
        assert_eq!(ItemRef::from_uri(&r.to_uri()).unwrap(), r);
        assert!(r.to_uri().starts_with("mtos:item:"));
        for cut in 0..bytes.len() {
            assert!(ItemRef::decode(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert!(matches!(
            ItemRef::decode(&bad),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut bad = bytes.clone();
        bad[1] = 0x80;
        assert!(matches!(
            ItemRef::decode(&bad),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(!format!("{r:?}").contains("0707070707"));
    }

    #[test]
    fn locator_is_blake3() {
        let l = Locator::of(b"abc");
        assert_eq!(
            l.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert!(l.matches(b"abc"));
        assert!(!l.matches(b"abd"));
    }
}
