//! Site profiles: for sites whose pages say something the generic rules
//! do not read (an author in an element's attribute, a track's artist in
//! a site-specific meta tag, a wiki article's summary in its JSON-LD
//! `headline`), a row of a table, not a scraper per site. A profile's
//! fields rank below oEmbed and above the page's `<title>`-level HTML
//! (`specs/item.md` §7): they fill what the standard sources left
//! empty, never override them.

use scraper::{Html, Node};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::fields::{Field, Fields};
use crate::html::{Scan, text_of};
use crate::schema::{MAX_KEYWORDS, first_distinct};
use crate::text::{self, MAX_DESCRIPTION, MAX_FIELD, MAX_TITLE};

/// Where a profile's rule reads a value.
#[derive(Debug, Clone, Copy)]
pub enum Locator {
    /// A meta tag's content, by its `property` or `name`.
    Meta(&'static str),
    /// An attribute of the first element of a name.
    Attr(&'static str, &'static str),
    /// The text of the first element of a name.
    Text(&'static str),
    /// A property of the schema.org node the JSON-LD is about.
    JsonLd(&'static str),
}

/// How a page is recognised besides its host.
#[derive(Debug, Clone, Copy)]
pub enum Marker {
    /// A meta tag with this key is present.
    Meta(&'static str),
    /// A `<link rel=alternate>` of this type is present.
    Alternate(&'static str),
    /// The `generator` meta tag starts with this (case-insensitively).
    Generator(&'static str),
    /// An element of this name is present.
    Element(&'static str),
}

/// One site's profile.
#[derive(Debug)]
pub struct Profile {
    /// Its name, as the output gives it.
    pub name: &'static str,
    /// Hosts it applies to (and their subdomains).
    pub hosts: &'static [&'static str],
    /// Markers that also select it, whatever the host (software run on
    /// many hosts, such as Mastodon).
    pub markers: &'static [Marker],
    /// An item type for its pages when no schema.org syntax gives one.
    pub content_type: Option<&'static str>,
    /// Its rules, in order: the first that gives a field a value wins.
    pub rules: &'static [(Field, Locator)],
}

use Field as F;
use Locator as L;

/// The profiles. Each one's fixture is `tests/fixtures/site-NAME.html`.
pub static PROFILES: &[Profile] = &[
    // SoundCloud names a track's artist only in a Twitter audio card tag.
    Profile {
        name: "soundcloud",
        hosts: &["soundcloud.com"],
        markers: &[],
        content_type: None,
        rules: &[(F::Artist, L::Meta("twitter:audio:artist_name"))],
    },
    // Wikipedia's JSON-LD gives the article's short description as its
    // `headline` (the title is its `name`), and no description.
    Profile {
        name: "wikipedia",
        hosts: &[
            "wikipedia.org",
            "wikimedia.org",
            "wiktionary.org",
            "wikibooks.org",
            "wikivoyage.org",
        ],
        markers: &[Marker::Generator("MediaWiki")],
        content_type: None,
        rules: &[(F::Description, L::JsonLd("headline"))],
    },
    // Reddit's post pages (the "shreddit" front end) may carry no
    // metadata but the attributes of their <shreddit-post> element.
    Profile {
        name: "reddit",
        hosts: &["reddit.com", "redd.it"],
        markers: &[Marker::Element("shreddit-post")],
        content_type: Some("Note"),
        rules: &[
            (F::Title, L::Attr("shreddit-post", "post-title")),
            (F::Author, L::Attr("shreddit-post", "author")),
            (F::Published, L::Attr("shreddit-post", "created-timestamp")),
            (F::Url, L::Attr("shreddit-post", "permalink")),
            (F::Url, L::Attr("shreddit-post", "content-href")),
            (
                F::SiteName,
                L::Attr("shreddit-post", "subreddit-prefixed-name"),
            ),
            (F::Language, L::Attr("shreddit-post", "post-language")),
        ],
    },
    // Mastodon (and the servers that copy its pages) write the time of a
    // post as og:published_time, not Open Graph's article:published_time.
    Profile {
        name: "mastodon",
        hosts: &[],
        markers: &[Marker::Alternate("application/activity+json")],
        content_type: Some("Note"),
        rules: &[(F::Published, L::Meta("og:published_time"))],
    },
    // diaspora* writes Open Graph's article: keys under og: and keeps
    // og:type "website" on posts.
    Profile {
        name: "diaspora",
        hosts: &[],
        markers: &[Marker::Meta("og:article:author")],
        content_type: Some("Note"),
        rules: &[
            (F::Author, L::Meta("og:article:author")),
            (F::Published, L::Meta("og:article:published_time")),
        ],
    },
];

fn host_matches(host: &str, wanted: &str) -> bool {
    host == wanted
        || host
            .strip_suffix(wanted)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The profile for a page at `host` with the markers `scan` and `doc`
/// show.
pub fn find(
    host: Option<&str>,
    scan: &Scan,
    doc: &Html,
    ctx: &mut Ctx,
) -> Option<&'static Profile> {
    let by_host = host.and_then(|h| {
        let h = h.to_ascii_lowercase();
        PROFILES
            .iter()
            .find(|p| p.hosts.iter().any(|w| host_matches(&h, w)))
    });
    by_host.or_else(|| {
        PROFILES.iter().find(|p| {
            p.markers.iter().any(|m| match m {
                Marker::Element(name) => first_element(doc, name, ctx).is_some(),
                Marker::Meta(k) => scan.meta(k).is_some(),
                Marker::Alternate(t) => scan
                    .links
                    .iter()
                    .any(|l| l.rel.iter().any(|r| r == "alternate") && l.kind == *t),
                Marker::Generator(g) => scan.meta("generator").is_some_and(|v| {
                    v.trim()
                        .to_ascii_lowercase()
                        .starts_with(&g.to_ascii_lowercase())
                }),
            })
        })
    })
}

fn first_element<'d>(
    doc: &'d Html,
    name: &str,
    ctx: &mut Ctx,
) -> Option<ego_tree::NodeRef<'d, Node>> {
    for n in doc.tree.root().descendants() {
        if !ctx.step(1) {
            return None;
        }
        if let Node::Element(el) = n.value()
            && el.name() == name
        {
            return Some(n);
        }
    }
    None
}

/// The fields `profile`'s rules give on this page.
pub fn fields(
    profile: &Profile,
    doc: &Html,
    scan: &Scan,
    node: Option<&serde_json::Map<String, Value>>,
    ctx: &mut Ctx,
) -> Fields {
    let mut f = Fields::default();
    for (field, locator) in profile.rules {
        if f.has(*field) {
            continue;
        }
        let raw: Option<String> = match locator {
            L::Meta(k) => scan.meta(k).map(str::to_owned),
            L::Attr(name, attr) => first_element(doc, name, ctx)
                .and_then(|n| n.value().as_element()?.attr(attr).map(str::to_owned)),
            L::Text(name) => first_element(doc, name, ctx).map(|n| text_of(n, 64 * 1024, ctx)),
            L::JsonLd(k) => node.and_then(|n| match n.get(*k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(a)) => a.iter().find_map(|v| v.as_str().map(str::to_owned)),
                _ => None,
            }),
        };
        if let Some(raw) = raw {
            set(&mut f, *field, &raw, ctx);
        }
    }
    f
}

/// Sets `field` from raw text, cleaned as that field's sources are.
fn set(f: &mut Fields, field: Field, raw: &str, ctx: &mut Ctx) {
    let t = |max| text::clean(raw, max);
    match field {
        F::Title => f.title = t(MAX_TITLE),
        F::Description => f.description = t(MAX_DESCRIPTION),
        F::Author => f.author = t(MAX_FIELD),
        F::Published => f.published = t(MAX_FIELD),
        F::Url => f.url = ctx.url(raw),
        F::SiteName => f.site_name = t(MAX_FIELD),
        F::License => {
            f.license = if text::looks_like_url(raw) {
                ctx.url(raw)
            } else {
                t(MAX_FIELD)
            }
        }
        F::Thumbnail => f.thumbnail = ctx.url(raw),
        F::Media => f.media = ctx.url(raw).into_iter().collect(),
        F::Duration => f.duration_s = text::parse_duration(raw),
        F::Artist => f.artist = t(MAX_FIELD),
        F::Album => f.album = t(MAX_FIELD),
        F::Keywords => {
            f.keywords = first_distinct(
                raw.split(',').filter_map(|w| text::clean(w, MAX_FIELD)),
                MAX_KEYWORDS,
            );
        }
        F::Language => f.language = t(MAX_FIELD),
        // Embed markup and discovery links come from oEmbed and the
        // page's links only.
        F::EmbedHtml | F::Oembed => {}
    }
}
