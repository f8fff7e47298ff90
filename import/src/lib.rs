#![doc = include_str!("../README.md")]

mod charset;
mod ctx;
mod depth;
mod embed;
mod error;
mod fields;
mod html;
mod jsonld;
mod meta;
mod microdata;
mod oembed;
pub mod profiles;
mod rdfa;
mod schema;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

pub use error::ImportError;
pub use fields::{Field, Fields, Note, Source};
pub use oembed::MAX_OEMBED_BYTES;

use ctx::Ctx;
use fields::Candidate;

/// Largest page read, in bytes: a saved page over it is refused before
/// anything is parsed.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The item types an import gives (`specs/item.md` §1's names).
pub const CONTENT_TYPES: [&str; 11] = [
    "Note",
    "Article",
    "Comment",
    "ImageObject",
    "VideoObject",
    "AudioObject",
    "MediaObject",
    "DigitalDocument",
    "WebPage",
    "Event",
    "Collection",
];

/// What the person tells the importer besides the input.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The address the page was saved from: relative URLs resolve
    /// against it (else against the page's `<base>`, canonical link or
    /// `og:url`).
    pub url: Option<String>,
}

/// An import's result: the item's metadata, where each part of it came
/// from, and what was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imported {
    /// The item type (`specs/item.md` §1).
    pub content_type: String,
    /// The type as the source that gave it names it (`NewsArticle`,
    /// `video.other`, `photo`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// The fields.
    pub fields: Fields,
    /// For `type` and each field with a value: the source it came from.
    pub sources: BTreeMap<String, Source>,
    /// The site profile applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// What was left out, repaired or unreadable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// Imports `input`: a saved HTML page, or an oEmbed response (JSON or
/// XML); `oembed`, a page's oEmbed response saved beside it. Never
/// fetches anything: every URL found is data.
pub fn import(
    input: &[u8],
    oembed: Option<&[u8]>,
    options: &Options,
) -> Result<Imported, ImportError> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(ImportError::Empty { what: "the input" });
    }
    let given_base = match &options.url {
        None => None,
        Some(u) => match Url::parse(u.trim()) {
            Ok(b) if matches!(b.scheme(), "http" | "https") => Some(b),
            _ => {
                return Err(ImportError::BadBase {
                    given: text::clean(u, 100).unwrap_or_default(),
                });
            }
        },
    };
    if oembed::sniff(input) {
        if oembed.is_some() {
            return Err(ImportError::TwoOEmbeds);
        }
        let mut ctx = Ctx::new(given_base);
        let c = oembed::candidate(input, &mut ctx)?;
        return finish(vec![(Source::Oembed, c)], None, ctx);
    }
    if input.len() > MAX_PAGE_BYTES {
        return Err(ImportError::TooLarge {
            what: "the page",
            len: input.len(),
            limit: MAX_PAGE_BYTES,
        });
    }
    let (text, charset_note) = charset::decode(input);
    let mut ctx = Ctx::new(given_base);
    if let Some(n) = charset_note {
        ctx.note(n);
    }
    let doc = match depth::cut(&text) {
        None => parse(&text),
        Some(at) => {
            ctx.note(Note::Limit {
                what: format!(
                    "elements nested deeper than {}, or more than {} formatting elements active (or {} re-created), after byte {at} of the page",
                    depth::MAX_DEPTH,
                    depth::MAX_FORMATTING,
                    depth::MAX_RECREATED
                ),
            });
            parse(&text[..at])
        }
    };
    drop(text);
    let scan = html::scan(&doc, &mut ctx);
    if scan.jsonld_cut {
        ctx.note(Note::Limit {
            what: format!("more than {} JSON-LD blocks", html::MAX_JSONLD_BLOCKS),
        });
    }
    if ctx.base.is_none() {
        ctx.base = page_base(&scan);
    }
    let mut found: Vec<(Source, Candidate)> = Vec::new();
    let jsonld = jsonld::parse(&scan.jsonld, &mut ctx);
    found.extend(schema::candidate(&jsonld, &mut ctx).map(|c| (Source::JsonLd, c)));
    let md = microdata::items(&doc, &mut ctx);
    found.extend(schema::candidate(&md, &mut ctx).map(|c| (Source::Microdata, c)));
    let rdfa = rdfa::nodes(&doc, &mut ctx);
    found.extend(schema::candidate(&rdfa, &mut ctx).map(|c| (Source::Rdfa, c)));
    found.push((Source::OpenGraph, meta::open_graph(&scan, &mut ctx)));
    found.push((Source::Twitter, meta::twitter(&scan, &mut ctx)));
    if let Some(o) = oembed {
        found.push((Source::Oembed, oembed::candidate(o, &mut ctx)?));
    }
    found.push((Source::Html, meta::page(&scan, &mut ctx)));

    // The site: by the page's address as the sources give it, else by
    // the base, else by the markers of software run on many hosts.
    let (merged, _) = merge(&found);
    let host = merged
        .url
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .or_else(|| ctx.base.clone())
        .and_then(|u| u.host_str().map(str::to_owned));
    let profile = profiles::find(host.as_deref(), &scan, &doc, &mut ctx);
    if let Some(p) = profile {
        let node = found
            .iter()
            .find(|(s, _)| *s == Source::JsonLd)
            .and_then(|(_, c)| c.node.as_ref());
        let f = profiles::fields(p, &doc, &scan, node, &mut ctx);
        found.push((
            Source::Profile,
            Candidate {
                fields: f,
                kind: None,
                node: None,
            },
        ));
        found.sort_by_key(|(s, _)| *s);
    }
    finish(found, profile, ctx)
}

/// The page's tree as a reader without scripts builds it: what a page
/// shows in `<noscript>` (often its metadata for crawlers) is markup, not
/// text.
fn parse(text: &str) -> scraper::Html {
    use html5ever::tendril::TendrilSink;
    let opts = html5ever::ParseOpts {
        tree_builder: html5ever::tree_builder::TreeBuilderOpts {
            scripting_enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    html5ever::driver::parse_document(
        scraper::HtmlTreeSink::new(scraper::Html::new_document()),
        opts,
    )
    .one(text)
}

/// Each field from the first source that has it; the sources used.
fn merge(found: &[(Source, Candidate)]) -> (Fields, BTreeMap<String, Source>) {
    let mut fields = Fields::default();
    let mut sources = BTreeMap::new();
    for field in Field::ALL {
        if let Some((s, c)) = found.iter().find(|(_, c)| c.fields.has(field)) {
            fields.take(&c.fields, field);
            sources.insert(field.name().to_owned(), *s);
        }
    }
    (fields, sources)
}

fn finish(
    found: Vec<(Source, Candidate)>,
    profile: Option<&profiles::Profile>,
    ctx: Ctx,
) -> Result<Imported, ImportError> {
    let (fields, mut sources) = merge(&found);
    if fields.is_empty() {
        return Err(ImportError::Nothing);
    }
    let typed = found.iter().find_map(|(s, c)| {
        c.kind
            .as_ref()
            .and_then(|k| k.content_type.map(|ct| (*s, k.name.clone(), ct)))
    });
    let schema_typed = typed
        .as_ref()
        .is_some_and(|(s, _, _)| matches!(s, Source::JsonLd | Source::Microdata | Source::Rdfa));
    let (content_type, schema_type) = match (typed, profile.and_then(|p| p.content_type)) {
        (Some((s, name, ct)), _) if schema_typed => {
            sources.insert("type".into(), s);
            (ct, Some(name))
        }
        (typed, Some(ct)) => {
            sources.insert("type".into(), Source::Profile);
            (ct, typed.map(|(_, name, _)| name))
        }
        (Some((s, name, ct)), None) => {
            sources.insert("type".into(), s);
            (ct, Some(name))
        }
        (None, None) => ("WebPage", None),
    };
    Ok(Imported {
        content_type: content_type.to_owned(),
        schema_type,
        fields,
        sources,
        profile: profile.map(|p| p.name.to_owned()),
        notes: ctx.finish(),
    })
}

/// The page's own idea of its address: `<base href>`, the canonical
/// link, `og:url`, the first that is absolute http(s).
fn page_base(scan: &html::Scan) -> Option<Url> {
    let canonical = scan
        .links
        .iter()
        .filter(|l| l.element == "link" && l.rel.iter().any(|r| r == "canonical"))
        .map(|l| l.href.as_str());
    scan.base
        .as_deref()
        .into_iter()
        .chain(canonical)
        .chain(scan.meta("og:url"))
        .find_map(|u| {
            Url::parse(u.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
        })
}

impl Imported {
    /// The item's schema.org description (`specs/item.md` §7), the
    /// content of its `application/ld+json` part.
    pub fn json_ld(&self) -> Value {
        let f = &self.fields;
        let mut m = Map::new();
        m.insert("@context".into(), json!("https://schema.org"));
        m.insert("@type".into(), json!(self.schema_type_for_ld()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        let named =
            |t: &str, n: &Option<String>| n.as_ref().map(|n| json!({"@type": t, "name": n}));
        put("name", f.title.clone().map(Value::String));
        put("description", f.description.clone().map(Value::String));
        put("author", named("Person", &f.author));
        put("datePublished", f.published.clone().map(Value::String));
        put("url", f.url.clone().map(Value::String));
        put("provider", named("Organization", &f.site_name));
        put("license", f.license.clone().map(Value::String));
        put("thumbnailUrl", f.thumbnail.clone().map(Value::String));
        put("contentUrl", (!f.media.is_empty()).then(|| json!(f.media)));
        put("duration", f.duration_s.map(|s| json!(format!("PT{s}S"))));
        put("byArtist", named("MusicGroup", &f.artist));
        put("inAlbum", named("MusicAlbum", &f.album));
        put(
            "keywords",
            (!f.keywords.is_empty()).then(|| json!(f.keywords)),
        );
        put("inLanguage", f.language.clone().map(Value::String));
        Value::Object(m)
    }

    /// A schema.org type for the JSON-LD: the source's when it is a
    /// schema.org name, else the item type.
    fn schema_type_for_ld(&self) -> String {
        match &self.schema_type {
            Some(t) if schema::content_type(t).is_some() => t.clone(),
            _ => self.content_type.clone(),
        }
    }

    /// The item's text: title, description and address, one a
    /// paragraph, for readers that show text parts only.
    pub fn summary(&self) -> String {
        let f = &self.fields;
        [&f.title, &f.description, &f.url]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}
