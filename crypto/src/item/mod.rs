//! mt-items: signed collections of text and binary parts under one
//! reference. The canonical encoding is normative in `specs/item.md`.
//!
//! The author signs a *header* that carries each body part's length and
//! BLAKE3 digest, not the parts themselves, so a large media item is
//! verified part by part without holding a second copy; any modified byte
//! of a part fails its digest, any modified byte of the header fails the
//! signature.

pub mod reference;
pub mod seal;
pub mod tree;
pub mod walk;

use std::fmt;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ItemError};
use crate::identity::{Identity, VerifyKey};
pub use reference::{Audience, ItemRef, Locator, placement_weight};

const ITEM_VERSION: u8 = 1;
const ITEM_SIGNATURE_CONTEXT: &[u8] = b"mtos-item-v1";
const FLAG_FEED: u8 = 0x01;
const FLAG_PREV: u8 = 0x02;

/// Most tags on one item.
pub const MAX_TAGS: usize = 32;
/// Longest tag, bytes.
pub const MAX_TAG_LEN: usize = 64;
/// Most typed references on one item.
pub const MAX_REFS: usize = 16;
/// Most body parts on one item.
pub const MAX_PARTS: usize = 64;
/// Longest MIME type, bytes.
pub const MAX_MIME_LEN: usize = 127;
/// Largest encoded header (the parts' bytes are not in it).
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// Largest total size of an item's parts.
pub const MAX_BODY_LEN: u64 = 1 << 30;

/// The kind of content, from the schema.org vocabulary (oEmbed's `photo`,
/// `video`, `link` and `rich` map to `ImageObject`, `VideoObject`,
/// `WebPage` and `MediaObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// A short text post.
    Note,
    /// A long text with a title.
    Article,
    /// A reply in a discussion.
    Comment,
    /// An image.
    ImageObject,
    /// A video.
    VideoObject,
    /// Sound.
    AudioObject,
    /// Any other media file.
    MediaObject,
    /// A document (PDF, office file).
    DigitalDocument,
    /// A web page or link.
    WebPage,
    /// An event.
    Event,
    /// A collection of items (an album, a playlist).
    Collection,
}

impl ContentType {
    /// All types, in their encoding order.
    pub const ALL: [ContentType; 11] = [
        ContentType::Note,
        ContentType::Article,
        ContentType::Comment,
        ContentType::ImageObject,
        ContentType::VideoObject,
        ContentType::AudioObject,
        ContentType::MediaObject,
        ContentType::DigitalDocument,
        ContentType::WebPage,
        ContentType::Event,
        ContentType::Collection,
    ];

    /// The schema.org name, as encoded.
    pub fn name(self) -> &'static str {
        match self {
            ContentType::Note => "Note",
            ContentType::Article => "Article",
            ContentType::Comment => "Comment",
            ContentType::ImageObject => "ImageObject",
            ContentType::VideoObject => "VideoObject",
            ContentType::AudioObject => "AudioObject",
            ContentType::MediaObject => "MediaObject",
            ContentType::DigitalDocument => "DigitalDocument",
            ContentType::WebPage => "WebPage",
            ContentType::Event => "Event",
            ContentType::Collection => "Collection",
        }
    }

    /// Parses a schema.org name (exact) or, for people typing it, any
    /// letter case and the oEmbed aliases.
    pub fn parse(text: &str) -> Option<Self> {
        let alias = match text.to_ascii_lowercase().as_str() {
            "photo" | "image" => Some(ContentType::ImageObject),
            "video" => Some(ContentType::VideoObject),
            "audio" => Some(ContentType::AudioObject),
            "link" => Some(ContentType::WebPage),
            "rich" | "media" => Some(ContentType::MediaObject),
            _ => None,
        };
        alias.or_else(|| {
            Self::ALL
                .into_iter()
                .find(|t| t.name().eq_ignore_ascii_case(text))
        })
    }

    fn decode(name: &str) -> Result<Self, DecodeError> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or(DecodeError::Invalid {
                what: "content type",
                reason: "not a known schema.org type",
            })
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an item relates to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// A reply to the other item.
    ReplyTo,
    /// A remix: made from the other item's content.
    RemixOf,
    /// A reblog: shares the other item.
    ReblogOf,
    /// The display component: an item holding the web component that
    /// draws this one (`specs/item.md` §6); at most one per item.
    Component,
}

impl RefKind {
    fn to_byte(self) -> u8 {
        match self {
            RefKind::ReplyTo => 1,
            RefKind::RemixOf => 2,
            RefKind::ReblogOf => 3,
            RefKind::Component => 4,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(RefKind::ReplyTo),
            2 => Ok(RefKind::RemixOf),
            3 => Ok(RefKind::ReblogOf),
            4 => Ok(RefKind::Component),
            _ => Err(DecodeError::Invalid {
                what: "reference kind",
                reason: "must be 1 (reply-to), 2 (remix-of), 3 (reblog-of) or 4 (component)",
            }),
        }
    }
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefKind::ReplyTo => "reply-to",
            RefKind::RemixOf => "remix-of",
            RefKind::ReblogOf => "reblog-of",
            RefKind::Component => "component",
        })
    }
}

/// A typed link to another item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedRef {
    /// The relation.
    pub kind: RefKind,
    /// The other item.
    pub target: ItemRef,
}

/// Where an item sits in its author's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition {
    /// The feed's identifier.
    pub feed: [u8; 32],
    /// The entry number, from 0.
    pub seq: u64,
    /// The author's previous item in this feed.
    pub prev: Option<ItemRef>,
}

/// Whether a part is text (UTF-8) or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// UTF-8 text.
    Text,
    /// Any bytes.
    Binary,
}

/// One body part.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    kind: PartKind,
    mime: String,
    data: Vec<u8>,
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Part")
            .field("kind", &self.kind)
            .field("mime", &self.mime)
            .field("len", &self.data.len())
            .finish()
    }
}

impl Part {
    /// A text part (`text/plain; charset=utf-8`).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: PartKind::Text,
            mime: "text/plain; charset=utf-8".to_owned(),
            data: text.into().into_bytes(),
        }
    }

    /// A text part of another text type (`text/markdown`, `text/html`).
    pub fn text_with_mime(text: impl Into<String>, mime: impl Into<String>) -> Self {
        Self {
            kind: PartKind::Text,
            mime: mime.into(),
            data: text.into().into_bytes(),
        }
    }

    /// A binary part with its MIME type.
    pub fn binary(data: Vec<u8>, mime: impl Into<String>) -> Self {
        Self {
            kind: PartKind::Binary,
            mime: mime.into(),
            data,
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> PartKind {
        self.kind
    }

    /// The MIME type.
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// The bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The text, for a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self.kind {
            PartKind::Text => std::str::from_utf8(&self.data).ok(),
            PartKind::Binary => None,
        }
    }
}

/// An item before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDraft {
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The kind of content.
    pub content_type: ContentType,
    /// Position in the author's feed, if the item is a feed entry.
    pub feed: Option<FeedPosition>,
    /// Tags.
    pub tags: Vec<String>,
    /// Replies, remixes, reblogs.
    pub refs: Vec<TypedRef>,
    /// The body.
    pub parts: Vec<Part>,
}

impl ItemDraft {
    /// A draft with no feed position, tags or references.
    pub fn new(content_type: ContentType, created_ms: u64, parts: Vec<Part>) -> Self {
        Self {
            created_ms,
            content_type,
            feed: None,
            tags: Vec::new(),
            refs: Vec::new(),
            parts,
        }
    }

    /// Validates and signs the draft as `author`.
    pub fn sign(self, author: &Identity) -> Result<Item, ItemError> {
        validate(&self)?;
        let digests = self
            .parts
            .iter()
            .map(|p| *blake3::hash(&p.data).as_bytes())
            .collect::<Vec<_>>();
        let mut item = Item {
            author: author.verify_key(),
            draft: self,
            digests,
            signature: [0; 64],
        };
        let unsigned = item.encode_unsigned_header();
        item.signature = author.sign(&signed_message(&unsigned));
        Ok(item)
    }
}

fn signed_message(unsigned_header: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ITEM_SIGNATURE_CONTEXT.len() + unsigned_header.len());
    m.extend_from_slice(ITEM_SIGNATURE_CONTEXT);
    m.extend_from_slice(unsigned_header);
    m
}

fn invalid(msg: impl Into<String>) -> ItemError {
    ItemError::Invalid(msg.into())
}

fn validate_mime(mime: &str) -> Result<(), &'static str> {
    if mime.is_empty() || mime.len() > MAX_MIME_LEN {
        return Err("a MIME type is 1 to 127 bytes");
    }
    if !mime.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("a MIME type is printable ASCII");
    }
    let essence = mime.split(';').next().unwrap_or_default();
    match essence.split_once('/') {
        Some((t, s))
            if !t.is_empty() && !s.is_empty() && !essence.contains(' ') && !s.contains('/') =>
        {
            Ok(())
        }
        _ => Err("a MIME type looks like type/subtype"),
    }
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err("a tag is 1 to 64 bytes");
    }
    if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a tag has no spaces or control characters");
    }
    Ok(())
}

fn validate(d: &ItemDraft) -> Result<(), ItemError> {
    if d.tags.len() > MAX_TAGS {
        return Err(invalid(format!("at most {MAX_TAGS} tags")));
    }
    for (i, tag) in d.tags.iter().enumerate() {
        validate_tag(tag).map_err(|e| invalid(format!("tag \"{tag}\": {e}")))?;
        if d.tags[..i].contains(tag) {
            return Err(invalid(format!("tag \"{tag}\" given twice")));
        }
    }
    if d.refs.len() > MAX_REFS {
        return Err(invalid(format!("at most {MAX_REFS} references")));
    }
    if d.refs
        .iter()
        .filter(|r| r.kind == RefKind::Component)
        .count()
        > 1
    {
        return Err(invalid("at most one component reference"));
    }
    if d.parts.is_empty() {
        return Err(invalid("an item has at least one body part"));
    }
    if d.parts.len() > MAX_PARTS {
        return Err(invalid(format!("at most {MAX_PARTS} body parts")));
    }
    let mut total: u64 = 0;
    for (i, p) in d.parts.iter().enumerate() {
        validate_mime(&p.mime).map_err(|e| invalid(format!("part {i}: {e}")))?;
        if p.kind == PartKind::Text && std::str::from_utf8(&p.data).is_err() {
            return Err(invalid(format!("part {i}: text is not UTF-8")));
        }
        total = total.saturating_add(p.data.len() as u64);
    }
    if total > MAX_BODY_LEN {
        return Err(invalid(format!(
            "the body is {total} bytes, the limit is {MAX_BODY_LEN}"
        )));
    }
    Ok(())
}

/// A signed item. Built by [`ItemDraft::sign`] or by decoding, which
/// verifies the signature and every part's digest: an `Item` value is
/// always authentic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    author: VerifyKey,
    draft: ItemDraft,
    digests: Vec<[u8; 32]>,
    signature: [u8; 64],
}

impl Item {
    /// The author's verify key (a throwaway key for anonymous items).
    pub fn author(&self) -> &VerifyKey {
        &self.author
    }

    /// Creation time, Unix milliseconds.
    pub fn created_ms(&self) -> u64 {
        self.draft.created_ms
    }

    /// The kind of content.
    pub fn content_type(&self) -> ContentType {
        self.draft.content_type
    }

    /// Position in the author's feed.
    pub fn feed(&self) -> Option<&FeedPosition> {
        self.draft.feed.as_ref()
    }

    /// Tags.
    pub fn tags(&self) -> &[String] {
        &self.draft.tags
    }

    /// Typed references.
    pub fn refs(&self) -> &[TypedRef] {
        &self.draft.refs
    }

    /// Body parts.
    pub fn parts(&self) -> &[Part] {
        &self.draft.parts
    }

    /// The BLAKE3 digest of each part, as signed.
    pub fn part_digests(&self) -> &[[u8; 32]] {
        &self.digests
    }

    /// The author's signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    fn encode_unsigned_header(&self) -> Vec<u8> {
        let d = &self.draft;
        let mut w = Writer::with_capacity(256);
        w.u8(ITEM_VERSION)
            .bytes(self.author.as_bytes())
            .u64(d.created_ms);
        let mut flags = 0;
        if let Some(feed) = &d.feed {
            flags |= FLAG_FEED;
            if feed.prev.is_some() {
                flags |= FLAG_PREV;
            }
        }
        w.u8(flags);
        if let Some(feed) = &d.feed {
            w.bytes(&feed.feed).u64(feed.seq);
            if let Some(prev) = &feed.prev {
                prev.encode_into(&mut w);
            }
        }
        w.short_str(d.content_type.name());
        // Counts are within u8 after `validate`.
        w.u8(u8::try_from(d.tags.len()).unwrap_or(u8::MAX));
        for tag in &d.tags {
            w.short_str(tag);
        }
        w.u8(u8::try_from(d.refs.len()).unwrap_or(u8::MAX));
        for r in &d.refs {
            w.u8(r.kind.to_byte());
            r.target.encode_into(&mut w);
        }
        w.u8(u8::try_from(d.parts.len()).unwrap_or(u8::MAX));
        for (p, digest) in d.parts.iter().zip(&self.digests) {
            w.u8(match p.kind {
                PartKind::Text => 0,
                PartKind::Binary => 1,
            })
            .short_str(&p.mime)
            .u64(p.data.len() as u64)
            .bytes(digest);
        }
        w.into_vec()
    }

    /// The signed header: everything but the parts' bytes, then the
    /// signature.
    pub fn encode_header(&self) -> Vec<u8> {
        let mut h = self.encode_unsigned_header();
        h.extend_from_slice(&self.signature);
        h
    }

    /// Total length of the parts' bytes.
    pub fn body_len(&self) -> u64 {
        self.draft.parts.iter().map(|p| p.data.len() as u64).sum()
    }

    /// The whole item: `header_len:u32 || header || part bytes...`.
    pub fn encode(&self) -> Vec<u8> {
        let header = self.encode_header();
        let mut out = Vec::with_capacity(4 + header.len() + self.body_len() as usize);
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&header, &mut out);
        out
    }

    /// Streams the encoding into `out` (used by sealing, so a large item
    /// is never copied whole).
    pub(crate) fn write_to<W: std::io::Write>(
        &self,
        header: &[u8],
        out: &mut W,
    ) -> std::io::Result<()> {
        let len = u32::try_from(header.len()).unwrap_or(u32::MAX);
        out.write_all(&len.to_be_bytes())?;
        out.write_all(header)?;
        for p in &self.draft.parts {
            out.write_all(&p.data)?;
        }
        Ok(())
    }

    /// Decodes the whole item and verifies the signature and every part.
    pub fn decode(bytes: &[u8]) -> Result<Self, ItemError> {
        let mut r = Reader::new(bytes);
        let header_len = u32::from_be_bytes(r.array("item header length")?) as usize;
        if header_len > MAX_HEADER_LEN {
            return Err(DecodeError::Invalid {
                what: "item header length",
                reason: "larger than 16 KiB",
            }
            .into());
        }
        let header = r.take(header_len, "item header")?;
        let (mut item, lengths) = Self::decode_header(header)?;
        for (i, len) in lengths.iter().enumerate() {
            let len = usize::try_from(*len).map_err(|_| DecodeError::Truncated { what: "part" })?;
            let data = r.take(len, "body part")?;
            if blake3::hash(data).as_bytes() != &item.digests[i] {
                return Err(ItemError::PartDigest { index: i });
            }
            item.draft.parts[i].data = data.to_vec();
            if item.draft.parts[i].kind == PartKind::Text && std::str::from_utf8(data).is_err() {
                return Err(invalid(format!("part {i}: text is not UTF-8")));
            }
        }
        r.finish("item")?;
        Ok(item)
    }

    /// Decodes and verifies a header; the parts come back empty, with
    /// their announced lengths alongside.
    pub fn decode_header(header: &[u8]) -> Result<(Self, Vec<u64>), ItemError> {
        let mut r = Reader::new(header);
        let version = r.u8("item version")?;
        if version != ITEM_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "item",
                version,
            }
            .into());
        }
        let author = VerifyKey::from_bytes(r.array("author key")?)?;
        let created_ms = r.u64("creation time")?;
        let flags = r.u8("item flags")?;
        if flags & !(FLAG_FEED | FLAG_PREV) != 0
            || (flags & FLAG_PREV != 0 && flags & FLAG_FEED == 0)
        {
            return Err(DecodeError::Invalid {
                what: "item flags",
                reason: "unknown bits, or prev without a feed",
            }
            .into());
        }
        let feed = if flags & FLAG_FEED != 0 {
            let feed = r.array("feed id")?;
            let seq = r.u64("feed sequence")?;
            let prev = if flags & FLAG_PREV != 0 {
                Some(ItemRef::decode_from(&mut r)?)
            } else {
                None
            };
            Some(FeedPosition { feed, seq, prev })
        } else {
            None
        };
        let content_type = ContentType::decode(r.short_str("content type")?)?;
        let n_tags = usize::from(r.u8("tag count")?);
        let mut tags = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            tags.push(r.short_str("tag")?.to_owned());
        }
        let n_refs = usize::from(r.u8("reference count")?);
        let mut refs = Vec::with_capacity(n_refs);
        for _ in 0..n_refs {
            let kind = RefKind::from_byte(r.u8("reference kind")?)?;
            refs.push(TypedRef {
                kind,
                target: ItemRef::decode_from(&mut r)?,
            });
        }
        let n_parts = usize::from(r.u8("part count")?);
        let mut parts = Vec::with_capacity(n_parts);
        let mut digests = Vec::with_capacity(n_parts);
        let mut lengths = Vec::with_capacity(n_parts);
        for _ in 0..n_parts {
            let kind = match r.u8("part kind")? {
                0 => PartKind::Text,
                1 => PartKind::Binary,
                _ => {
                    return Err(DecodeError::Invalid {
                        what: "part kind",
                        reason: "must be 0 (text) or 1 (binary)",
                    }
                    .into());
                }
            };
            let mime = r.short_str("MIME type")?.to_owned();
            lengths.push(r.u64("part length")?);
            digests.push(r.array("part digest")?);
            parts.push(Part {
                kind,
                mime,
                data: Vec::new(),
            });
        }
        let unsigned_len = header.len().saturating_sub(64);
        let signature = r.array::<64>("signature")?;
        r.finish("item header")?;

        let draft = ItemDraft {
            created_ms,
            content_type,
            feed,
            tags,
            refs,
            parts,
        };
        // The same rules as signing (the parts' bytes are checked later).
        validate(&draft).map_err(|e| match e {
            ItemError::Invalid(m) => ItemError::Decode(DecodeError::Invalid {
                what: "item",
                reason: leak_reason(&m),
            }),
            other => other,
        })?;
        if lengths.iter().fold(0u64, |a, l| a.saturating_add(*l)) > MAX_BODY_LEN {
            return Err(invalid("the body is larger than 1 GiB"));
        }
        if !author.verify(&signed_message(&header[..unsigned_len]), &signature) {
            return Err(ItemError::BadSignature);
        }
        Ok((
            Self {
                author,
                draft,
                digests,
                signature,
            },
            lengths,
        ))
    }
}

/// Maps a validation message to a static reason for [`DecodeError`].
fn leak_reason(message: &str) -> &'static str {
    if message.contains("tag") {
        "a tag breaks the tag rules"
    } else if message.contains("MIME") {
        "a MIME type breaks the rules"
    } else if message.contains("part") {
        "the body parts break the rules"
    } else {
        "a field breaks the rules of specs/item.md"
    }
}

#[cfg(test)]
mod tests;
