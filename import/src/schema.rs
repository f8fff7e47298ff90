//! The schema.org vocabulary, whatever the syntax carried it (JSON-LD,
//! microdata, RDFa): every syntax's extractor gives JSON-LD-shaped nodes
//! (`{"@type": ..., "property": value}`), and this module finds the
//! node the page is about and reads the fields from it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::fields::{Candidate, Fields, Note, TypeName};
use crate::text::{self, MAX_DESCRIPTION, MAX_FIELD, MAX_TITLE};

/// Most nodes read from one syntax's data.
pub const MAX_NODES: usize = 10_000;

/// The item type a schema.org type maps to, and whether it is a page
/// type (a container the page's subject is usually inside of).
pub fn content_type(name: &str) -> Option<(&'static str, bool)> {
    let name = strip_vocab(name);
    let t = match name {
        "Note" => "Note",
        // Short posts on social sites and forums: schema.org files them
        // under Article, but they are what mtos calls a Note.
        "SocialMediaPosting" | "DiscussionForumPosting" | "LiveBlogPosting" => "Note",
        "Comment" | "Answer" | "Question" | "CorrectionComment" => "Comment",
        "VideoObject" | "Movie" | "Clip" | "MovieClip" | "VideoClip" | "TVClip"
        | "MusicVideoObject" | "Episode" | "TVEpisode" | "TVSeries" | "VideoGame"
        | "BroadcastEvent" => "VideoObject",
        "AudioObject"
        | "MusicRecording"
        | "PodcastEpisode"
        | "RadioEpisode"
        | "Audiobook"
        | "AudioObjectSnapshot"
        | "Song" => "AudioObject",
        "ImageObject"
        | "Photograph"
        | "Barcode"
        | "ImageObjectSnapshot"
        | "Painting"
        | "VisualArtwork" => "ImageObject",
        "MediaObject"
        | "3DModel"
        | "DataDownload"
        | "MusicComposition"
        | "SoftwareApplication"
        | "MobileApplication"
        | "WebApplication" => "MediaObject",
        "DigitalDocument"
        | "TextDigitalDocument"
        | "SpreadsheetDigitalDocument"
        | "PresentationDigitalDocument"
        | "NoteDigitalDocument"
        | "Book"
        | "Dataset"
        | "Thesis"
        | "Chapter"
        | "Report"
        | "ScholarlyArticle" => "DigitalDocument",
        "Collection" | "ItemList" | "MusicAlbum" | "MusicPlaylist" | "CreativeWorkSeries"
        | "Periodical" | "PodcastSeries" | "ImageGallery" | "VideoGallery" | "MediaGallery" => {
            "Collection"
        }
        "Event" | "Festival" | "ExhibitionEvent" => "Event",
        "WebPage" | "WebSite" | "AboutPage" | "ItemPage" | "ProfilePage" | "QAPage" | "FAQPage"
        | "CollectionPage" | "SearchResultsPage" | "MediaPage" | "RealEstateListing"
        | "ContactPage" | "CheckoutPage" | "MedicalWebPage" => return Some(("WebPage", true)),
        "Article" | "BlogPosting" | "NewsArticle" | "TechArticle" | "Review" | "Recipe"
        | "HowTo" | "CreativeWork" => "Article",
        n if n.ends_with("Article") => "Article",
        n if n.ends_with("Event") => "Event",
        _ => return None,
    };
    Some((t, false))
}

/// A type name without its vocabulary: `http://schema.org/Article`,
/// `https://schema.org/Article` and `schema:Article` are `Article`.
pub fn strip_vocab(name: &str) -> &str {
    let n = name.trim();
    for prefix in [
        "https://schema.org/",
        "http://schema.org/",
        "https://www.schema.org/",
        "http://www.schema.org/",
        "schema:",
    ] {
        if let Some(rest) = n.strip_prefix(prefix) {
            return rest;
        }
    }
    n
}

fn types(node: &Map<String, Value>) -> Vec<&str> {
    match node.get("@type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The nodes of `roots` in document order, depth first, and those named
/// by `@id` (with more than their `@id`).
struct Graph<'a> {
    nodes: Vec<&'a Map<String, Value>>,
    ids: HashMap<&'a str, &'a Map<String, Value>>,
}

fn graph<'a>(roots: &'a [Value], ctx: &mut Ctx) -> Graph<'a> {
    let mut g = Graph {
        nodes: Vec::new(),
        ids: HashMap::new(),
    };
    let mut stack: Vec<&Value> = roots.iter().rev().collect();
    while let Some(v) = stack.pop() {
        if !ctx.step(1) {
            break;
        }
        match v {
            Value::Object(m) => {
                if g.nodes.len() >= MAX_NODES {
                    ctx.note(Note::Limit {
                        what: format!("more than {MAX_NODES} schema.org nodes"),
                    });
                    break;
                }
                g.nodes.push(m);
                if let Some(Value::String(id)) = m.get("@id")
                    && m.len() > 1
                {
                    g.ids.entry(id.as_str()).or_insert(m);
                }
                for (k, child) in m.iter().rev() {
                    if k != "@context" {
                        stack.push(child);
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter().rev()),
            _ => {}
        }
    }
    g
}

/// Reads the fields of the node `roots` are about: the first node (in
/// document order) whose type maps to an item type other than a page's,
/// or else the first page.
pub fn candidate(roots: &[Value], ctx: &mut Ctx) -> Option<Candidate> {
    let g = graph(roots, ctx);
    let typed = |want_page: bool| {
        g.nodes.iter().find_map(|n| {
            types(n).into_iter().find_map(|t| match content_type(t) {
                Some((ct, page)) if page == want_page => Some((*n, t, ct)),
                _ => None,
            })
        })
    };
    let (node, name, ct) = typed(false).or_else(|| typed(true))?;
    let r = Reader { g: &g };
    let mut f = Fields {
        title: r
            .text(node, "name", MAX_TITLE)
            .or_else(|| r.text(node, "headline", MAX_TITLE)),
        description: r.text(node, "description", MAX_DESCRIPTION),
        author: r.names(node, "author").or_else(|| r.names(node, "creator")),
        published: ["datePublished", "uploadDate", "dateCreated"]
            .iter()
            .find_map(|k| r.text(node, k, MAX_FIELD)),
        url: r.url(node, "url", ctx),
        site_name: r
            .names(node, "publisher")
            .or_else(|| r.names(node, "provider"))
            .or_else(|| {
                g.nodes.iter().find_map(|n| {
                    types(n)
                        .iter()
                        .any(|t| strip_vocab(t) == "WebSite")
                        .then(|| r.text(n, "name", MAX_FIELD))
                        .flatten()
                })
            }),
        license: r.license(node, ctx),
        thumbnail: ["thumbnailUrl", "image", "thumbnail"]
            .iter()
            .find_map(|k| r.url(node, k, ctx)),
        ..Fields::default()
    };
    let mut media = Vec::new();
    for k in ["contentUrl", "embedUrl"] {
        media.extend(r.url(node, k, ctx));
    }
    for k in ["video", "audio", "associatedMedia", "encoding"] {
        for child in r.objects(node, k) {
            for k2 in ["contentUrl", "embedUrl"] {
                media.extend(r.url(child, k2, ctx));
            }
        }
    }
    f.media = first_distinct(media, MAX_MEDIA);
    f.duration_s = r
        .text(node, "duration", MAX_FIELD)
        .and_then(|d| text::parse_duration(&d));
    f.artist = r.names(node, "byArtist");
    f.album = r.names(node, "inAlbum");
    f.keywords = r.keywords(node);
    f.language = r.names(node, "inLanguage");
    Some(Candidate {
        fields: f,
        kind: Some(TypeName {
            name: text::clean(strip_vocab(name), MAX_FIELD).unwrap_or_default(),
            content_type: Some(ct),
        }),
        node: Some(node.clone()),
    })
}

/// The first `max` distinct values of `list`, reading no more of it than
/// needed.
pub fn first_distinct(list: impl IntoIterator<Item = String>, max: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for v in list {
        if out.len() >= max {
            break;
        }
        if seen.insert(v.clone()) {
            out.push(v);
        }
    }
    out
}

/// Most property names, or types, one element gives.
pub const MAX_TERMS: usize = 16;

/// `text` cut to at most `max` bytes at a character boundary.
pub fn capped(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

/// Most keywords kept.
pub const MAX_KEYWORDS: usize = 32;
/// Most media addresses kept.
pub const MAX_MEDIA: usize = 16;
/// Most names joined in one field (authors).
pub const MAX_NAMES: usize = 16;

struct Reader<'g, 'a> {
    g: &'g Graph<'a>,
}

impl<'a> Reader<'_, 'a> {
    fn objects(&self, node: &'a Map<String, Value>, key: &str) -> Vec<&'a Map<String, Value>> {
        let mut out = Vec::new();
        for v in self.values_raw(node, key) {
            if let Value::Object(m) = v {
                out.push(self.follow(m));
            }
        }
        out
    }

    fn values_raw(&self, node: &'a Map<String, Value>, key: &str) -> Vec<&'a Value> {
        match node.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
        }
    }

    /// `{"@id": x}` alone is the node named x, when the data has it.
    fn follow(&self, m: &'a Map<String, Value>) -> &'a Map<String, Value> {
        if m.len() == 1
            && let Some(Value::String(id)) = m.get("@id")
            && let Some(target) = self.g.ids.get(id.as_str())
        {
            return target;
        }
        m
    }

    /// A value's text: a string, a number, `{"@value": ...}`.
    fn scalar(v: &Value) -> Option<&str> {
        match v {
            Value::String(s) => Some(s),
            Value::Object(m) => m.get("@value").and_then(Value::as_str),
            _ => None,
        }
    }

    fn text(&self, node: &'a Map<String, Value>, key: &str, max: usize) -> Option<String> {
        self.values_raw(node, key)
            .into_iter()
            .find_map(|v| match v {
                Value::Number(n) => text::clean(&n.to_string(), max),
                v => Self::scalar(v).and_then(|s| text::clean(s, max)),
            })
    }

    /// Names: strings as they are, nodes by their `name` (else their
    /// `alternateName`, as Instagram's authors); several joined by ", ".
    fn names(&self, node: &'a Map<String, Value>, key: &str) -> Option<String> {
        let mut names: Vec<String> = Vec::new();
        for v in self.values_raw(node, key) {
            let name = match v {
                Value::Object(m) => {
                    let m = self.follow(m);
                    if m.contains_key("@value") {
                        Self::scalar(v).and_then(|s| text::clean(s, MAX_FIELD))
                    } else {
                        self.text(m, "name", MAX_FIELD)
                            .or_else(|| self.text(m, "alternateName", MAX_FIELD))
                    }
                }
                v => Self::scalar(v).and_then(|s| text::clean(s, MAX_FIELD)),
            };
            if let Some(n) = name
                && !names.contains(&n)
            {
                names.push(n);
                if names.len() >= MAX_NAMES {
                    break;
                }
            }
        }
        (!names.is_empty())
            .then(|| names.join(", "))
            .and_then(|s| text::clean(&s, MAX_FIELD))
    }

    /// A URL: a string, or a node's `url`, `contentUrl` or `@id`; the
    /// first that is kept.
    fn url(&self, node: &'a Map<String, Value>, key: &str, ctx: &mut Ctx) -> Option<String> {
        for v in self.values_raw(node, key) {
            let raw = match v {
                Value::Object(m) => {
                    let m = self.follow(m);
                    ["url", "contentUrl", "@id"]
                        .iter()
                        .find_map(|k| m.get(*k).and_then(Self::scalar))
                }
                v => Self::scalar(v),
            };
            if let Some(u) = raw.and_then(|r| ctx.url(r)) {
                return Some(u);
            }
        }
        None
    }

    /// A license: its URL when it is one, else its name.
    fn license(&self, node: &'a Map<String, Value>, ctx: &mut Ctx) -> Option<String> {
        for v in self.values_raw(node, "license") {
            match v {
                Value::Object(m) => {
                    let m = self.follow(m);
                    if let Some(u) = ["url", "@id"]
                        .iter()
                        .find_map(|k| m.get(*k).and_then(Self::scalar))
                        .and_then(|r| ctx.url(r))
                    {
                        return Some(u);
                    }
                    if let Some(n) = self.text(m, "name", MAX_FIELD) {
                        return Some(n);
                    }
                }
                v => {
                    if let Some(s) = Self::scalar(v) {
                        if text::looks_like_url(s) {
                            if let Some(u) = ctx.url(s) {
                                return Some(u);
                            }
                        } else if let Some(n) = text::clean(s, MAX_FIELD) {
                            return Some(n);
                        }
                    }
                }
            }
        }
        None
    }

    /// Keywords: an array of strings, or one string split at commas.
    fn keywords(&self, node: &'a Map<String, Value>) -> Vec<String> {
        first_distinct(
            self.values_raw(node, "keywords")
                .into_iter()
                .filter_map(Self::scalar)
                .flat_map(|s| s.split(','))
                .filter_map(|k| text::clean(k, MAX_FIELD)),
            MAX_KEYWORDS,
        )
    }
}

/// A node being read from microdata or RDFa: its types, and its
/// properties in document order (text, or a nested node by index).
#[derive(Debug, Default)]
pub struct Proto {
    /// Type names, vocabulary stripped.
    pub types: Vec<String>,
    /// Properties.
    pub props: Vec<(String, Slot)>,
}

/// A property's value while reading.
#[derive(Debug)]
pub enum Slot {
    /// Text.
    Text(String),
    /// A nested node (an index into the protos, always after its
    /// parent's).
    Node(usize),
}

/// The nodes `top` names, nested nodes in place, as JSON-LD-shaped
/// values: a property given more than once becomes an array.
pub fn assemble(protos: &[Proto], top: &[usize]) -> Vec<Value> {
    let mut built: Vec<Option<Value>> = vec![None; protos.len()];
    // Nested nodes come after their parents: build from the last.
    for index in (0..protos.len()).rev() {
        let p = &protos[index];
        let mut m = Map::new();
        match p.types.as_slice() {
            [] => {}
            [one] => {
                m.insert("@type".into(), Value::String(one.clone()));
            }
            many => {
                m.insert(
                    "@type".into(),
                    Value::Array(many.iter().cloned().map(Value::String).collect()),
                );
            }
        }
        for (name, slot) in &p.props {
            if name.starts_with('@') {
                continue;
            }
            let v = match slot {
                Slot::Text(t) => Value::String(t.clone()),
                Slot::Node(i) => built
                    .get_mut(*i)
                    .and_then(Option::take)
                    .unwrap_or(Value::Null),
            };
            match m.get_mut(name) {
                None => {
                    m.insert(name.clone(), v);
                }
                Some(Value::Array(a)) => a.push(v),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, v]);
                }
            }
        }
        built[index] = Some(Value::Object(m));
    }
    top.iter()
        .filter_map(|i| built.get_mut(*i).and_then(Option::take))
        .collect()
}
