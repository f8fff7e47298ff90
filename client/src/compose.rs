//! Composing an item from what a person gives (texts, files, type, tags,
//! references, recipients, who signs) and sealing it into a chunk store:
//! what `mtos item seal`, `mtos publish` and the screen share.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use mtos_crypto::KeychainError;
use mtos_crypto::item::seal::{self, Access};
use mtos_crypto::item::{
    Audience, ContentType, ItemDraft, ItemRef, Part, PartKind, RefKind, TypedRef,
};
use mtos_crypto::{Identity, Keychain, PublicIdentity, agekeys};
use mtos_import::Imported;

use crate::ClientError;
use crate::pageimport;
use crate::store::ChunkStore;

/// What to seal: the options of `mtos item seal` and `mtos publish`, as
/// the screen's API carries them (`specs/screen.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealRequest {
    /// Text parts.
    pub text: Vec<String>,
    /// Files to include as binary parts (absolute paths: the screen reads
    /// them).
    pub files: Vec<PathBuf>,
    /// A schema.org type name; `None`: from the parts.
    pub content_type: Option<String>,
    /// Tags.
    pub tag: Vec<String>,
    /// Items this one replies to.
    pub reply_to: Vec<String>,
    /// Items this one remixes.
    pub remix_of: Vec<String>,
    /// Items this one reblogs.
    pub reblog: Vec<String>,
    /// The item holding the web component that displays this one
    /// (`specs/item.md` §6). Left out of the request when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// A saved web page, or an oEmbed response, whose metadata the item
    /// is made from (`specs/item.md` §7). Left out of the request when
    /// `None`, as are the next two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<PathBuf>,
    /// The page's oEmbed response, saved beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_oembed: Option<PathBuf>,
    /// The address the page was saved from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_url: Option<String>,
    /// Recipients of a private item.
    pub to: Vec<String>,
    /// Signed with a throwaway key.
    pub anonymous: bool,
    /// The identity that signs (label or id prefix).
    pub as_id: Option<String>,
}

impl SealRequest {
    /// Whether sealing it needs the keychain (to sign, or to find a
    /// recipient named by label).
    pub fn needs_keychain(&self) -> bool {
        !self.anonymous || self.to.iter().any(|t| is_local_name(t))
    }

    /// What identifies this request: its options and the contents of its
    /// files. The same request made again finds the item sealed the first
    /// time and resumes it (`crate::pending`).
    pub fn digest(&self) -> Result<String, ClientError> {
        let mut h = blake3::Hasher::new_derive_key("mtos publish command v1");
        let mut field = |name: &str, value: &[u8]| {
            for part in [name.as_bytes(), value] {
                h.update(&(part.len() as u64).to_be_bytes());
                h.update(part);
            }
        };
        for t in &self.text {
            field("text", t.as_bytes());
        }
        for path in self
            .files
            .iter()
            .chain(&self.import)
            .chain(&self.import_oembed)
        {
            let mut file = blake3::Hasher::new();
            let io = |source| ClientError::Io {
                path: path.clone(),
                source,
            };
            file.update_reader(fs::File::open(path).map_err(io)?)
                .map_err(io)?;
            field("file", path.as_os_str().as_encoded_bytes());
            field("file-bytes", file.finalize().as_bytes());
        }
        field(
            "type",
            self.content_type.as_deref().unwrap_or("").as_bytes(),
        );
        for (name, list) in [
            ("tag", &self.tag),
            ("reply-to", &self.reply_to),
            ("remix-of", &self.remix_of),
            ("reblog", &self.reblog),
            ("to", &self.to),
        ] {
            for v in list {
                field(name, v.as_bytes());
            }
        }
        // Only when given: the digests of requests without one stay as
        // they were.
        if let Some(c) = &self.component {
            field("component", c.as_bytes());
        }
        // Only when given, and apart from the files: `publish page.html`
        // and `publish --import page.html` are different items.
        for (name, path) in [
            ("import", &self.import),
            ("import-oembed", &self.import_oembed),
        ] {
            if let Some(path) = path {
                let mut file = blake3::Hasher::new();
                let io = |source| ClientError::Io {
                    path: path.clone(),
                    source,
                };
                file.update_reader(fs::File::open(path).map_err(io)?)
                    .map_err(io)?;
                field(name, path.as_os_str().as_encoded_bytes());
                field(&format!("{name}-bytes"), file.finalize().as_bytes());
            }
        }
        if let Some(u) = &self.import_url {
            field("import-url", u.as_bytes());
        }
        field("anonymous", &[u8::from(self.anonymous)]);
        field("as", self.as_id.as_deref().unwrap_or("").as_bytes());
        Ok(h.finalize().to_hex().to_string())
    }
}

/// An item sealed into a store.
#[derive(Debug)]
pub struct Sealed {
    /// Its reference.
    pub reference: ItemRef,
    /// Who signed it, unless anonymous.
    pub author: Option<Identity>,
    /// One line saying what was sealed, for the person.
    pub summary: String,
}

/// At most `cap` bytes of the regular file at `path`: a FIFO or a
/// device (`/dev/zero`, a shell's `<(...)`) would block or never end.
pub(crate) fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    if !fs::metadata(path).map_err(io)?.is_file() {
        return Err(ClientError::Refused(format!(
            "{}: not a regular file (save it to a file first)",
            path.display()
        )));
    }
    let mut data = Vec::new();
    fs::File::open(path)
        .map_err(io)?
        .take(cap)
        .read_to_end(&mut data)
        .map_err(io)?;
    Ok(data)
}

fn read_part(path: &Path, budget: &mut u64) -> Result<Part, ClientError> {
    let data = read_regular(path, *budget + 1)?;
    if data.len() as u64 > *budget {
        return Err(ClientError::TooLarge {
            path: path.display().to_string(),
            limit: mtos_crypto::item::MAX_BODY_LEN,
        });
    }
    *budget -= data.len() as u64;
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    Ok(Part::binary(data, mime))
}

fn infer_type(parts: &[Part]) -> ContentType {
    let binary: Vec<&str> = parts
        .iter()
        .filter(|p| p.kind() == PartKind::Binary)
        .map(|p| p.mime())
        .collect();
    let all = |prefix: &str| !binary.is_empty() && binary.iter().all(|m| m.starts_with(prefix));
    if binary.is_empty() {
        ContentType::Note
    } else if all("image/") {
        ContentType::ImageObject
    } else if all("video/") {
        ContentType::VideoObject
    } else if all("audio/") {
        ContentType::AudioObject
    } else if binary.iter().all(|m| *m == "application/pdf") {
        ContentType::DigitalDocument
    } else {
        ContentType::MediaObject
    }
}

/// Resolves a recipient to an X25519 key.
fn recipient_key(text: &str, keychain: Option<&Keychain>) -> Result<[u8; 32], ClientError> {
    let t = text.trim();
    if t.to_ascii_lowercase().starts_with("mtos:") {
        return Ok(*PublicIdentity::from_uri(t)?.encryption_key());
    }
    if t.starts_with("age1") {
        return agekeys::parse_recipient(t).ok_or_else(|| ClientError::BadRecipient(t.into()));
    }
    let Some(keychain) = keychain else {
        return Err(ClientError::BadRecipient(t.chars().take(80).collect()));
    };
    // Labels name one key: identities and contacts share one namespace,
    // and a name that a contact and an identity both answer to (a label
    // that is the other's id prefix) is refused rather than guessed.
    match (keychain.find_contact(t), keychain.find(t)) {
        (Ok(contact), Err(_)) => {
            if contact.changed().is_some() {
                return Err(ClientError::ContactChanged(contact.label().to_string()));
            }
            Ok(*contact.identity().encryption_key())
        }
        (Err(_), Ok(identity)) => Ok(identity.encryption_key()),
        (Ok(c), Ok(i)) => Err(KeychainError::Ambiguous {
            query: t.chars().take(80).collect(),
            candidates: format!(
                "contact {} \"{}\", identity {} \"{}\"",
                c.identity().id(),
                c.label(),
                i.id(),
                i.label()
            ),
        }
        .into()),
        (Err(KeychainError::Ambiguous { query, candidates }), _)
        | (_, Err(KeychainError::Ambiguous { query, candidates })) => {
            Err(KeychainError::Ambiguous { query, candidates }.into())
        }
        (Err(_), Err(_)) => Err(ClientError::BadRecipient(t.chars().take(80).collect())),
    }
}

fn is_local_name(text: &str) -> bool {
    let t = text.trim();
    !t.to_ascii_lowercase().starts_with("mtos:") && !t.starts_with("age1")
}

/// Seals the item `args` asks for into `store`, signed by an identity of
/// `keychain` (needed unless anonymous: [`SealRequest::needs_keychain`]),
/// created at `now` (Unix seconds).
pub fn seal_into(
    store: &ChunkStore,
    keychain: Option<&Keychain>,
    args: SealRequest,
    now: u64,
) -> Result<Sealed, ClientError> {
    let imported = match &args.import {
        Some(page) => Some(pageimport::import_files(
            page,
            args.import_oembed.as_deref(),
            args.import_url.as_deref(),
        )?),
        None if args.import_oembed.is_some() || args.import_url.is_some() => {
            return Err(ClientError::Refused(
                "--oembed and --url describe a page given with --import".into(),
            ));
        }
        None => None,
    };
    seal_with(store, keychain, args, imported.as_ref(), now)
}

/// Seals the item `args` asks for, made from `imported` (an import
/// already read, `args.import` ignored) when given.
pub fn seal_with(
    store: &ChunkStore,
    keychain: Option<&Keychain>,
    args: SealRequest,
    imported: Option<&Imported>,
    now: u64,
) -> Result<Sealed, ClientError> {
    if args.needs_keychain() && keychain.is_none() {
        return Err(ClientError::Refused("no keychain".into()));
    }
    let mut refs = Vec::new();
    for (kind, list) in [
        (RefKind::ReplyTo, &args.reply_to),
        (RefKind::RemixOf, &args.remix_of),
        (RefKind::ReblogOf, &args.reblog),
    ] {
        for r in list {
            refs.push(TypedRef {
                kind,
                target: ItemRef::from_uri(r)?,
            });
        }
    }
    if let Some(c) = &args.component {
        refs.push(TypedRef {
            kind: RefKind::Component,
            target: ItemRef::from_uri(c)?,
        });
    }
    let mut parts: Vec<Part> = imported.map(pageimport::parts).unwrap_or_default();
    parts.extend(args.text.into_iter().map(Part::text));
    let mut budget = mtos_crypto::item::MAX_BODY_LEN;
    for path in &args.files {
        parts.push(read_part(path, &mut budget)?);
    }
    if parts.is_empty() {
        return Err(ClientError::Refused(
            "nothing to seal: give --text and/or files".into(),
        ));
    }
    let content_type = match &args.content_type {
        Some(t) => ContentType::parse(t).ok_or_else(|| {
            ClientError::Item(mtos_crypto::ItemError::Invalid(format!(
                "unknown type \"{t}\" (see `mtos item seal --help`)"
            )))
        })?,
        None => match imported {
            Some(i) => pageimport::content_type(i),
            None => infer_type(&parts),
        },
    };

    let author: Identity = if args.anonymous {
        Identity::throwaway(&mut rand::rng(), now)
    } else {
        let keychain = keychain.ok_or_else(|| ClientError::Refused("no keychain".into()))?;
        match (&args.as_id, keychain.identities()) {
            (Some(q), _) => keychain.find(q)?.clone(),
            (None, [only]) => only.clone(),
            (None, []) => {
                return Err(ClientError::Refused(
                    "no identity to sign with: create one with `mtos id new`, or use --anonymous"
                        .into(),
                ));
            }
            (None, _) => {
                return Err(ClientError::Refused(
                    "several identities: choose one with --as ID, or use --anonymous".into(),
                ));
            }
        }
    };
    let mut recipients = Vec::new();
    for r in &args.to {
        recipients.push(recipient_key(r, keychain)?);
    }
    if !recipients.is_empty() && !args.anonymous && !recipients.contains(&author.encryption_key()) {
        // The author keeps the ability to read what they sealed, unless
        // that would push the item past the recipient limit.
        if recipients.len() < seal::MAX_RECIPIENTS {
            recipients.push(author.encryption_key());
        }
    }

    let mut draft = ItemDraft::new(content_type, now.saturating_mul(1000), parts);
    let mut tags = args.tag;
    if let Some(i) = imported {
        let room = mtos_crypto::item::MAX_TAGS.saturating_sub(tags.len());
        for t in pageimport::tags(&i.fields.keywords, room + tags.len()) {
            if tags.len() < mtos_crypto::item::MAX_TAGS && !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    draft.tags = tags;
    draft.refs = refs;
    let item = draft.sign(&author)?;

    let mut writer = store.writer();
    let access = if recipients.is_empty() {
        Access::Public
    } else {
        Access::Private(&recipients)
    };
    let sealed = seal::seal(&mut rand::rng(), &item, access, &mut writer)?;
    let store_error = |e: std::io::Error| ClientError::Store {
        path: store.path().to_owned(),
        reason: e.to_string(),
    };
    writer.finish().map_err(store_error)?;
    // Once its chunks are written: `known` lists items held whole.
    store.remember(&sealed.reference).map_err(store_error)?;
    let shape = sealed.shape;
    let summary = format!(
        "sealed {} {} by {}: {} bytes in {} chunk{}{}",
        match sealed.reference.audience() {
            Audience::Public => "public",
            Audience::Private => "private",
        },
        item.content_type(),
        if args.anonymous {
            "a throwaway key (anonymous)".to_owned()
        } else {
            format!("\"{}\" ({})", author.label(), author.id())
        },
        shape.sealed_len,
        shape.total_chunks(),
        if shape.total_chunks() == 1 { "" } else { "s" },
        if shape.levels == 0 { " (inline)" } else { "" },
    );
    Ok(Sealed {
        reference: sealed.reference,
        author: (!args.anonymous).then_some(author),
        summary,
    })
}
