//! What an import finds: the fields of an item's metadata, where each
//! came from, and what was left out on the way.

use serde::{Deserialize, Serialize};

/// Where a field was found. The order of the variants is the precedence
/// (`specs/item.md` §7): a field comes from the first source that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `<script type="application/ld+json">`, schema.org vocabulary.
    JsonLd,
    /// `itemscope` / `itemtype` / `itemprop`, schema.org vocabulary.
    Microdata,
    /// RDFa attributes (`vocab`, `typeof`, `property`), schema.org
    /// vocabulary.
    Rdfa,
    /// `og:`, `article:`, `video:`, `music:` meta tags.
    OpenGraph,
    /// `twitter:` meta tags.
    Twitter,
    /// An oEmbed response given beside the page, or as the input.
    Oembed,
    /// A site profile's rule (`crate::profiles`).
    Profile,
    /// The page's own HTML: `<title>`, `<meta name=description|author|
    /// keywords>`, `<link rel=canonical>`, `rel=license`, `<html lang>`,
    /// the oEmbed discovery link.
    Html,
}

impl Source {
    /// Every source, in precedence order.
    pub const ALL: [Source; 8] = [
        Source::JsonLd,
        Source::Microdata,
        Source::Rdfa,
        Source::OpenGraph,
        Source::Twitter,
        Source::Oembed,
        Source::Profile,
        Source::Html,
    ];

    /// Its name as the output and the spec write it.
    pub fn name(self) -> &'static str {
        match self {
            Source::JsonLd => "json-ld",
            Source::Microdata => "microdata",
            Source::Rdfa => "rdfa",
            Source::OpenGraph => "open-graph",
            Source::Twitter => "twitter",
            Source::Oembed => "oembed",
            Source::Profile => "profile",
            Source::Html => "html",
        }
    }
}

/// An item's metadata, every string cleaned (`crate::text`): one line,
/// no control characters, URLs absolute http(s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    /// Title (schema.org `name` or `headline`, `og:title`, `<title>`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description or summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Author or authors (names joined by ", ").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Publication date as the source gives it (ISO 8601 mostly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// The canonical address of the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The site's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    /// A license: its URL, or its name when the source gives no URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// A picture standing for the item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// Addresses of the item's media (files, players), in the order
    /// found, without repeats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<String>,
    /// Duration of a video or a track, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// A track's artist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    /// A track's album.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub album: Option<String>,
    /// Keywords, in the order found, without repeats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Language (a BCP 47 tag or a locale such as `en_US`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Embed markup from oEmbed's `html`, sanitised (`crate::embed`):
    /// kept as data, never run by the terminal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed_html: Option<String>,
    /// The page's oEmbed discovery link: where its oEmbed response could
    /// be asked for (the importer never asks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oembed: Option<String>,
}

/// A field's name, for provenance and profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// [`Fields::title`].
    Title,
    /// [`Fields::description`].
    Description,
    /// [`Fields::author`].
    Author,
    /// [`Fields::published`].
    Published,
    /// [`Fields::url`].
    Url,
    /// [`Fields::site_name`].
    SiteName,
    /// [`Fields::license`].
    License,
    /// [`Fields::thumbnail`].
    Thumbnail,
    /// [`Fields::media`].
    Media,
    /// [`Fields::duration_s`].
    Duration,
    /// [`Fields::artist`].
    Artist,
    /// [`Fields::album`].
    Album,
    /// [`Fields::keywords`].
    Keywords,
    /// [`Fields::language`].
    Language,
    /// [`Fields::embed_html`].
    EmbedHtml,
    /// [`Fields::oembed`].
    Oembed,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 16] = [
        Field::Title,
        Field::Description,
        Field::Author,
        Field::Published,
        Field::Url,
        Field::SiteName,
        Field::License,
        Field::Thumbnail,
        Field::Media,
        Field::Duration,
        Field::Artist,
        Field::Album,
        Field::Keywords,
        Field::Language,
        Field::EmbedHtml,
        Field::Oembed,
    ];

    /// Its name in [`Fields`]' serialisation.
    pub fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
            Field::Author => "author",
            Field::Published => "published",
            Field::Url => "url",
            Field::SiteName => "site_name",
            Field::License => "license",
            Field::Thumbnail => "thumbnail",
            Field::Media => "media",
            Field::Duration => "duration_s",
            Field::Artist => "artist",
            Field::Album => "album",
            Field::Keywords => "keywords",
            Field::Language => "language",
            Field::EmbedHtml => "embed_html",
            Field::Oembed => "oembed",
        }
    }
}

impl Fields {
    /// Whether `field` has a value.
    pub fn has(&self, field: Field) -> bool {
        match field {
            Field::Title => self.title.is_some(),
            Field::Description => self.description.is_some(),
            Field::Author => self.author.is_some(),
            Field::Published => self.published.is_some(),
            Field::Url => self.url.is_some(),
            Field::SiteName => self.site_name.is_some(),
            Field::License => self.license.is_some(),
            Field::Thumbnail => self.thumbnail.is_some(),
            Field::Media => !self.media.is_empty(),
            Field::Duration => self.duration_s.is_some(),
            Field::Artist => self.artist.is_some(),
            Field::Album => self.album.is_some(),
            Field::Keywords => !self.keywords.is_empty(),
            Field::Language => self.language.is_some(),
            Field::EmbedHtml => self.embed_html.is_some(),
            Field::Oembed => self.oembed.is_some(),
        }
    }

    /// Copies `field` from `other`.
    pub fn take(&mut self, other: &Fields, field: Field) {
        match field {
            Field::Title => self.title.clone_from(&other.title),
            Field::Description => self.description.clone_from(&other.description),
            Field::Author => self.author.clone_from(&other.author),
            Field::Published => self.published.clone_from(&other.published),
            Field::Url => self.url.clone_from(&other.url),
            Field::SiteName => self.site_name.clone_from(&other.site_name),
            Field::License => self.license.clone_from(&other.license),
            Field::Thumbnail => self.thumbnail.clone_from(&other.thumbnail),
            Field::Media => self.media.clone_from(&other.media),
            Field::Duration => self.duration_s = other.duration_s,
            Field::Artist => self.artist.clone_from(&other.artist),
            Field::Album => self.album.clone_from(&other.album),
            Field::Keywords => self.keywords.clone_from(&other.keywords),
            Field::Language => self.language.clone_from(&other.language),
            Field::EmbedHtml => self.embed_html.clone_from(&other.embed_html),
            Field::Oembed => self.oembed.clone_from(&other.oembed),
        }
    }

    /// Whether nothing describes an item: no title, description, address
    /// or media.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.url.is_none()
            && self.media.is_empty()
            && self.embed_html.is_none()
    }
}

/// A type as one source names it, and the item type it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeName {
    /// As the source names it: `NewsArticle`, `video.other`, `photo`.
    pub name: String,
    /// The item type (`specs/item.md` §1), when the name maps to one.
    pub content_type: Option<&'static str>,
}

/// What one source found.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    /// Its fields.
    pub fields: Fields,
    /// Its type, if it names one.
    pub kind: Option<TypeName>,
    /// The schema.org node the fields were read from (the schema.org
    /// syntaxes only), for site profiles' rules.
    pub node: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Something the import left out, repaired or could not read; the item
/// is made all the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Note {
    /// The page declares a legacy single-byte charset but its bytes are
    /// UTF-8 (a page saved by a browser keeps the declaration of the
    /// original): read as UTF-8.
    CharsetIgnored {
        /// The charset the page declares.
        declared: String,
    },
    /// A JSON-LD block that is not valid JSON: skipped.
    BadJsonLd {
        /// Its place among the page's JSON-LD blocks, from 1.
        block: usize,
        /// What the JSON parser said.
        error: String,
    },
    /// Relative URLs with no base to resolve them against (give the
    /// page's address with --url): left out.
    RelativeUrls {
        /// How many.
        count: usize,
    },
    /// URLs of a scheme other than http and https (`javascript:`,
    /// `data:`), or unparseable: left out.
    RefusedUrls {
        /// How many.
        count: usize,
    },
    /// Scripts, event handlers, styles, plug-ins or non-http addresses
    /// removed from the embed markup.
    EmbedSanitised,
    /// A bound reached (too many nodes, blocks or steps): the rest of
    /// that source was not read.
    Limit {
        /// Which bound.
        what: String,
    },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::CharsetIgnored { declared } => write!(
                f,
                "the page declares charset {declared} but is UTF-8: read as UTF-8"
            ),
            Note::BadJsonLd { block, error } => {
                write!(
                    f,
                    "JSON-LD block {block} is not valid JSON ({error}): skipped"
                )
            }
            Note::RelativeUrls { count } => write!(
                f,
                "{count} relative URL(s) left out: give the page's address with --url"
            ),
            Note::RefusedUrls { count } => write!(
                f,
                "{count} URL(s) left out: not http or https, or unreadable"
            ),
            Note::EmbedSanitised => write!(
                f,
                "scripts, event handlers or other active content removed from the embed markup"
            ),
            Note::Limit { what } => write!(f, "{what}: the rest was not read"),
        }
    }
}
