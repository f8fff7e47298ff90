//! The meta-tag sources (Open Graph, Twitter cards) and the page's own
//! HTML (`<title>`, `<meta name=...>`, `rel` links, `<html lang>`).

use crate::ctx::Ctx;
use crate::fields::{Candidate, Fields, TypeName};
use crate::html::Scan;
use crate::schema::{MAX_KEYWORDS, MAX_MEDIA, first_distinct};
use crate::text::{self, MAX_DESCRIPTION, MAX_FIELD, MAX_TITLE};

/// The item type of an `og:type`: the Open Graph protocol's own types,
/// and those the named sites serve (`soundcloud:sound`, Instagram's
/// `instapp:photo`, Tumblr's `tumblr-feed:*`).
pub fn og_type(t: &str) -> Option<&'static str> {
    let t = t.trim().to_ascii_lowercase();
    Some(match t.as_str() {
        "article" | "blog" | "tumblr-feed:text" | "tumblr-feed:quote" | "tumblr-feed:chat" => {
            "Article"
        }
        "video" | "video.movie" | "video.episode" | "video.tv_show" | "video.other"
        | "tumblr-feed:video" | "instapp:video" => "VideoObject",
        "music.song"
        | "music.radio_station"
        | "soundcloud:sound"
        | "tumblr-feed:audio"
        | "song" => "AudioObject",
        "music.album" | "music.playlist" | "soundcloud:playlist" | "album" => "Collection",
        "image" | "photo" | "instapp:photo" | "tumblr-feed:photo" | "tumblr-feed:photoset" => {
            "ImageObject"
        }
        "book" => "DigitalDocument",
        "tumblr-feed:link" | "website" | "profile" | "instapp:person" => "WebPage",
        "event" => "Event",
        _ => return None,
    })
}

fn first_text(scan: &Scan, keys: &[&str], max: usize) -> Option<String> {
    keys.iter()
        .find_map(|k| scan.metas_of(k).find_map(|v| text::clean(v, max)))
}

fn first_url(scan: &Scan, keys: &[&str], ctx: &mut Ctx) -> Option<String> {
    for k in keys {
        for v in scan.metas_of(k) {
            if let Some(u) = ctx.url(v) {
                return Some(u);
            }
        }
    }
    None
}

fn all_urls(scan: &Scan, keys: &[&str], ctx: &mut Ctx) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, v) in &scan.metas {
        if out.len() >= MAX_MEDIA {
            break;
        }
        if keys.contains(&k.as_str())
            && let Some(u) = ctx.url(v)
            && !out.contains(&u)
        {
            out.push(u);
        }
    }
    out
}

fn all_texts(scan: &Scan, keys: &[&str]) -> Vec<String> {
    first_distinct(
        scan.metas
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .filter_map(|(_, v)| text::clean(v, MAX_FIELD)),
        MAX_KEYWORDS,
    )
}

/// What the Open Graph tags say.
pub fn open_graph(scan: &Scan, ctx: &mut Ctx) -> Candidate {
    let f = Fields {
        title: first_text(scan, &["og:title"], MAX_TITLE),
        description: first_text(scan, &["og:description"], MAX_DESCRIPTION),
        author: first_text(scan, &["article:author", "book:author"], MAX_FIELD),
        published: first_text(
            scan,
            &[
                "article:published_time",
                "video:release_date",
                "music:release_date",
                "book:release_date",
            ],
            MAX_FIELD,
        ),
        url: first_url(scan, &["og:url"], ctx),
        site_name: first_text(scan, &["og:site_name"], MAX_FIELD),
        thumbnail: first_url(
            scan,
            &["og:image", "og:image:url", "og:image:secure_url"],
            ctx,
        ),
        media: all_urls(
            scan,
            &[
                "og:video",
                "og:video:url",
                "og:video:secure_url",
                "og:audio",
                "og:audio:url",
                "og:audio:secure_url",
            ],
            ctx,
        ),
        duration_s: ["video:duration", "music:duration", "og:video:duration"]
            .iter()
            .find_map(|k| scan.meta(k).and_then(text::parse_duration)),
        artist: first_text(scan, &["og:audio:artist", "music:musician:name"], MAX_FIELD),
        album: first_text(scan, &["og:audio:album", "music:album:name"], MAX_FIELD),
        keywords: all_texts(
            scan,
            &["article:tag", "video:tag", "og:video:tag", "book:tag"],
        ),
        language: first_text(scan, &["og:locale"], MAX_FIELD),
        ..Fields::default()
    };
    let kind = scan.meta("og:type").and_then(|t| {
        text::clean(t, MAX_FIELD).map(|name| TypeName {
            content_type: og_type(&name),
            name,
        })
    });
    Candidate {
        fields: f,
        kind,
        node: None,
    }
}

/// What the Twitter card tags say.
pub fn twitter(scan: &Scan, ctx: &mut Ctx) -> Candidate {
    let f = Fields {
        title: first_text(scan, &["twitter:title"], MAX_TITLE),
        description: first_text(scan, &["twitter:description"], MAX_DESCRIPTION),
        author: first_text(scan, &["twitter:creator"], MAX_FIELD),
        site_name: first_text(scan, &["twitter:site"], MAX_FIELD),
        thumbnail: first_url(scan, &["twitter:image", "twitter:image:src"], ctx),
        media: all_urls(scan, &["twitter:player", "twitter:player:stream"], ctx),
        ..Fields::default()
    };
    let kind = scan.meta("twitter:card").and_then(|t| {
        text::clean(t, MAX_FIELD).map(|name| TypeName {
            content_type: match name.to_ascii_lowercase().as_str() {
                "photo" => Some("ImageObject"),
                "player" => Some("MediaObject"),
                _ => None,
            },
            name,
        })
    });
    Candidate {
        fields: f,
        kind,
        node: None,
    }
}

/// What the page's own HTML says.
pub fn page(scan: &Scan, ctx: &mut Ctx) -> Candidate {
    let mut f = Fields {
        title: scan
            .title
            .as_deref()
            .and_then(|t| text::clean(t, MAX_TITLE)),
        description: first_text(scan, &["description"], MAX_DESCRIPTION),
        author: first_text(scan, &["author"], MAX_FIELD),
        keywords: scan
            .meta("keywords")
            .map(|k| {
                first_distinct(
                    k.split(',').filter_map(|w| text::clean(w, MAX_FIELD)),
                    MAX_KEYWORDS,
                )
            })
            .unwrap_or_default(),
        language: scan.lang.as_deref().and_then(|l| text::clean(l, MAX_FIELD)),
        ..Fields::default()
    };
    fn rel(name: &'static str) -> impl Fn(&&crate::html::Link) -> bool {
        move |l| l.rel.iter().any(|r| r == name)
    }
    let canonical: Vec<String> = scan
        .links
        .iter()
        .filter(|l| l.element == "link")
        .filter(rel("canonical"))
        .map(|l| l.href.clone())
        .collect();
    f.url = canonical.iter().find_map(|h| ctx.url(h));
    let licenses: Vec<String> = scan
        .links
        .iter()
        .filter(rel("license"))
        .map(|l| l.href.clone())
        .collect();
    f.license = licenses.iter().find_map(|h| ctx.url(h));
    let oembed: Vec<String> = scan
        .links
        .iter()
        .filter(|l| l.element == "link")
        .filter(rel("alternate"))
        .filter(|l| {
            matches!(
                l.kind.as_str(),
                "application/json+oembed"
                    | "text/json+oembed"
                    | "text/xml+oembed"
                    | "application/xml+oembed"
            )
        })
        .map(|l| l.href.clone())
        .collect();
    f.oembed = oembed.iter().find_map(|h| ctx.url(h));
    Candidate {
        fields: f,
        kind: None,
        node: None,
    }
}
