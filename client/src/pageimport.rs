//! Items from the web's own metadata (`mtos import`, `mtos publish
//! --import`): what `mtos_import` finds in a saved page or an oEmbed
//! response becomes an item's type, parts and tags (`specs/item.md` §7).

use std::io::Read;
use std::path::Path;

use mtos_crypto::item::{ContentType, MAX_TAG_LEN, MAX_TAGS, Part};
use mtos_import::{Imported, MAX_OEMBED_BYTES, MAX_PAGE_BYTES, Options};

use crate::ClientError;

/// The MIME type of an imported item's schema.org description.
pub const JSON_LD_MIME: &str = "application/ld+json";
/// The MIME type of its embed markup (kept as data: offered as a file,
/// never drawn).
pub const EMBED_MIME: &str = "text/html; charset=utf-8";

/// Reads at most `limit` bytes of `path` (`-`: standard input), refusing
/// more before anything is parsed.
pub fn read_capped(path: &Path, limit: usize, what: &'static str) -> Result<Vec<u8>, ClientError> {
    let name = path.display().to_string();
    let too_large = |len| ClientError::PageImport {
        path: name.clone(),
        source: mtos_import::ImportError::TooLarge { what, len, limit },
    };
    let mut data = Vec::new();
    let cap = limit as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|source| ClientError::Io {
                path: path.to_owned(),
                source,
            })?;
    } else {
        data = crate::compose::read_regular(path, cap)?;
    }
    if data.len() > limit {
        return Err(too_large(data.len()));
    }
    Ok(data)
}

/// Imports the page at `page` (`-`: standard input), with its oEmbed
/// response at `oembed` and its address `url` when given.
pub fn import_files(
    page: &Path,
    oembed: Option<&Path>,
    url: Option<&str>,
) -> Result<Imported, ClientError> {
    let data = read_capped(page, MAX_PAGE_BYTES, "the page")?;
    let oembed_data = oembed
        .map(|p| read_capped(p, MAX_OEMBED_BYTES, "the oEmbed response"))
        .transpose()?;
    mtos_import::import(
        &data,
        oembed_data.as_deref(),
        &Options {
            url: url.map(str::to_owned),
        },
    )
    .map_err(|source| ClientError::PageImport {
        path: page.display().to_string(),
        source,
    })
}

/// The item type of an import.
pub fn content_type(imported: &Imported) -> ContentType {
    ContentType::parse(&imported.content_type).unwrap_or(ContentType::WebPage)
}

/// The parts an import gives, in order: its summary as text (when it has
/// one), its schema.org description as JSON-LD, its embed markup.
pub fn parts(imported: &Imported) -> Vec<Part> {
    let mut parts = Vec::new();
    let summary = imported.summary();
    if !summary.is_empty() {
        parts.push(Part::text(summary));
    }
    let ld = serde_json::to_string_pretty(&imported.json_ld()).unwrap_or_default();
    parts.push(Part::text_with_mime(ld, JSON_LD_MIME));
    if let Some(html) = &imported.fields.embed_html {
        parts.push(Part::text_with_mime(html.clone(), EMBED_MIME));
    }
    parts
}

/// Tags from keywords: white space becomes `-`, a leading `#` goes,
/// each cut to the tag length limit at a character boundary; repeats and
/// empties dropped; at most `room` of them.
pub fn tags(keywords: &[String], room: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keywords {
        if out.len() >= room.min(MAX_TAGS) {
            break;
        }
        let joined: String = k
            .trim()
            .trim_start_matches('#')
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-");
        let mut tag: String = joined.chars().filter(|c| !c.is_control()).collect();
        while tag.len() > MAX_TAG_LEN {
            tag.pop();
        }
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_an_import_gives_is_an_item_type() {
        for t in mtos_import::CONTENT_TYPES {
            assert!(ContentType::parse(t).is_some(), "{t}");
        }
    }

    #[test]
    fn keywords_become_valid_tags() {
        let long = "é".repeat(40);
        let got = tags(
            &[
                "#rust lang".into(),
                "rust-lang".into(),
                "  ".into(),
                long.clone(),
                "a\u{7}b".into(),
            ],
            32,
        );
        assert_eq!(got[0], "rust-lang");
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], "é".repeat(32));
        assert_eq!(got[2], "ab");
        assert_eq!(tags(&["a".into(), "b".into()], 1), vec!["a".to_owned()]);
    }
}
