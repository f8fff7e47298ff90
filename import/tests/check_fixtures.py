#!/usr/bin/env python3
"""Cross-checks the importer's fixture expectations with another extractor.

Every fixture in import/tests/fixtures has an .expected.json that the Rust
importer must reproduce (tests/fixtures.rs). This script reads the same
fixtures with Python's extruct (JSON-LD, microdata, RDFa through pyRdfa and
rdflib, Open Graph) and lxml (Twitter cards, the page's own tags), applies
the field rules and the precedence of specs/item.md section 7, written here
again from the spec, and checks that each expected field has the value and
the source this reading gives. A fixture and the Rust parser therefore
cannot share a misreading of the markup.

Deviations from extruct, from the spec: a microdata <link> with no href but
a content attribute (YouTube's <link itemprop="name" content="...">) gives
its content; JSON-LD blocks are read one by one with Python's json after
taking off HTML comment and CDATA wrappers (extruct drops every block of a
page when one is malformed, and reads a wrapper only on one line). pyRdfa, under extruct, does not read
HTML+RDFa's datetime attribute of <time>: the fixtures give RDFa dates in
content attributes.

Not compared here: notes, and the exact serialisation of sanitised embed
markup (ammonia's); for embed markup this checks that it is present exactly
when the oEmbed response has html, keeps the player's address, and holds no
script, event handler or javascript: address.
"""

import codecs
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from urllib.parse import urljoin, urlsplit, urlunsplit

import extruct
import lxml.html
from extruct.w3cmicrodata import LxmlMicrodataExtractor

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
PRECEDENCE = ["json-ld", "microdata", "rdfa", "open-graph", "twitter", "oembed", "profile", "html"]
FIELDS = ["title", "description", "author", "published", "url", "site_name", "license",
          "thumbnail", "media", "duration_s", "artist", "album", "keywords", "language",
          "embed_html", "oembed"]
LIST_FIELDS = {"media", "keywords"}
MAX_KEYWORDS = 32

# --- specs/item.md section 7: schema.org types to item types ------------
PAGE_TYPES = {"WebPage", "WebSite", "AboutPage", "ItemPage", "ProfilePage", "QAPage", "FAQPage",
              "CollectionPage", "SearchResultsPage", "MediaPage", "RealEstateListing",
              "ContactPage", "CheckoutPage", "MedicalWebPage"}
SCHEMA_TYPES = {
    "Note": ["Note", "SocialMediaPosting", "DiscussionForumPosting", "LiveBlogPosting"],
    "Comment": ["Comment", "Answer", "Question", "CorrectionComment"],
    "VideoObject": ["VideoObject", "Movie", "Clip", "MovieClip", "VideoClip", "TVClip",
                    "MusicVideoObject", "Episode", "TVEpisode", "TVSeries", "VideoGame",
                    "BroadcastEvent"],
    "AudioObject": ["AudioObject", "MusicRecording", "PodcastEpisode", "RadioEpisode",
                    "Audiobook", "AudioObjectSnapshot", "Song"],
    "ImageObject": ["ImageObject", "Photograph", "Barcode", "ImageObjectSnapshot", "Painting",
                    "VisualArtwork"],
    "MediaObject": ["MediaObject", "3DModel", "DataDownload", "MusicComposition",
                    "SoftwareApplication", "MobileApplication", "WebApplication"],
    "DigitalDocument": ["DigitalDocument", "TextDigitalDocument", "SpreadsheetDigitalDocument",
                        "PresentationDigitalDocument", "NoteDigitalDocument", "Book", "Dataset",
                        "Thesis", "Chapter", "Report", "ScholarlyArticle"],
    "Collection": ["Collection", "ItemList", "MusicAlbum", "MusicPlaylist",
                   "CreativeWorkSeries", "Periodical", "PodcastSeries", "ImageGallery",
                   "VideoGallery", "MediaGallery"],
    "Event": ["Event", "Festival", "ExhibitionEvent"],
    "Article": ["Article", "BlogPosting", "NewsArticle", "TechArticle", "Review", "Recipe",
                "HowTo", "CreativeWork"],
}
OG_TYPES = {
    "Article": ["article", "blog", "tumblr-feed:text", "tumblr-feed:quote", "tumblr-feed:chat"],
    "VideoObject": ["video", "video.movie", "video.episode", "video.tv_show", "video.other",
                    "tumblr-feed:video", "instapp:video"],
    "AudioObject": ["music.song", "music.radio_station", "soundcloud:sound",
                    "tumblr-feed:audio", "song"],
    "Collection": ["music.album", "music.playlist", "soundcloud:playlist", "album"],
    "ImageObject": ["image", "photo", "instapp:photo", "tumblr-feed:photo",
                    "tumblr-feed:photoset"],
    "DigitalDocument": ["book"],
    "WebPage": ["tumblr-feed:link", "website", "profile", "instapp:person"],
    "Event": ["event"],
}
OEMBED_TYPES = {"photo": "ImageObject", "video": "VideoObject", "link": "WebPage",
                "rich": "MediaObject"}
TWITTER_TYPES = {"photo": "ImageObject", "player": "MediaObject"}

# --- specs/item.md section 7.4: site profiles ---------------------------
# name, hosts, markers, item type, rules (field, kind, arguments)
PROFILES = [
    ("soundcloud", ["soundcloud.com"], [], None,
     [("artist", "meta", "twitter:audio:artist_name")]),
    ("wikipedia", ["wikipedia.org", "wikimedia.org", "wiktionary.org", "wikibooks.org", "wikivoyage.org"],
     [("generator", "MediaWiki")], None, [("description", "jsonld", "headline")]),
    ("reddit", ["reddit.com", "redd.it"], [("element", "shreddit-post")], "Note",
     [("title", "attr", "shreddit-post", "post-title"), ("author", "attr", "shreddit-post", "author"),
      ("published", "attr", "shreddit-post", "created-timestamp"),
      ("url", "attr", "shreddit-post", "permalink"), ("url", "attr", "shreddit-post", "content-href"),
      ("site_name", "attr", "shreddit-post", "subreddit-prefixed-name"),
      ("language", "attr", "shreddit-post", "post-language")]),
    ("mastodon", [], [("alternate", "application/activity+json")], "Note",
     [("published", "meta", "og:published_time")]),
    ("diaspora", [], [("meta", "og:article:author")], "Note",
     [("author", "meta", "og:article:author"), ("published", "meta", "og:article:published_time")]),
]


def schema_item_type(name):
    name = strip_vocab(name)
    if name in PAGE_TYPES:
        return ("WebPage", True)
    for t, names in SCHEMA_TYPES.items():
        if name in names:
            return (t, False)
    if name.endswith("Article"):
        return ("Article", False)
    if name.endswith("Event"):
        return ("Event", False)
    return None


def strip_vocab(name):
    n = name.strip()
    for p in ["https://schema.org/", "http://schema.org/", "https://www.schema.org/",
              "http://www.schema.org/", "schema:"]:
        if n.startswith(p):
            return n[len(p):]
    return n


def lookup(table, value):
    for t, names in table.items():
        if value in names:
            return t
    return None


# --- cleaning ------------------------------------------------------------
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def is_control(c):
    o = ord(c)
    return o < 0x20 or 0x7f <= o < 0xa0


def clean(text, max_chars=10000):
    if text is None:
        return None
    words, cur = [], []
    for c in str(text):
        if c in BIDI:
            continue
        if c.isspace() or is_control(c):
            if cur:
                words.append("".join(cur))
                cur = []
            continue
        cur.append(c)
    if cur:
        words.append("".join(cur))
    out = " ".join(words)
    return out or None


def clean_url(raw, base):
    if raw is None:
        return None
    raw = str(raw).strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if not parts.scheme:
        if not base:
            return None
        raw = urljoin(base, raw)
        parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment))


def looks_like_url(s):
    s = s.strip()
    return s.startswith("http://") or s.startswith("https://") or s.startswith("//")


def parse_duration(text):
    t = str(text).strip()
    if re.fullmatch(r"\d+", t):
        return int(t)
    if re.fullmatch(r"\d+\.\d*", t):
        return int(float(t))
    m = re.fullmatch(r"[Pp](?:(\d+)D)?(?:[Tt])?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,]\d+)?S)?", t)
    if not m or not any(m.groups()):
        return None
    if "T" not in t.upper() and m.group(3) and not (m.group(1) or m.group(2)):
        return None  # P3M: months
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def dedup(values):
    out = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


# --- reading the page ----------------------------------------------------
SINGLE_BYTE = {"iso-8859-1": "cp1252", "latin1": "cp1252", "l1": "cp1252", "us-ascii": "cp1252",
               "ascii": "cp1252", "windows-1252": "cp1252", "cp1252": "cp1252",
               "windows-1251": "cp1251", "koi8-r": "koi8_r", "iso-8859-15": "iso8859_15"}


def decode(data):
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16", "replace")
    head = re.sub(rb"<!--.*?-->", b"", data[:1024], flags=re.S)
    m = re.search(rb"<meta[\s/][^>]*charset\s*=\s*[\"']?([^\"'\s;/>]+)", head, re.I)
    label = m.group(1).decode("ascii", "replace").lower() if m else "utf-8"
    if label.startswith("utf-16") or label in ("utf-8", "utf8"):
        return data.decode("utf-8", "replace")
    codec = SINGLE_BYTE.get(label, label)
    try:
        data.decode("ascii")
        is_ascii = True
    except UnicodeDecodeError:
        is_ascii = False
    if not is_ascii:
        try:
            return data.decode("utf-8")  # the declaration lies
        except UnicodeDecodeError:
            pass
    return data.decode(codec, "replace")


class LinkContentMicrodata(LxmlMicrodataExtractor):
    def _extract_property_value(self, node, items_seen, base_url, itemids, force=False):
        if node.tag == "link" and node.get("href") is None and node.get("content") is not None:
            return node.get("content")
        return super()._extract_property_value(node, items_seen, base_url, itemids, force)


def microdata_to_ld(item):
    if isinstance(item, dict) and "properties" in item:
        node = {}
        t = item.get("type")
        if t:
            node["@type"] = [strip_vocab(x) for x in t] if isinstance(t, list) else strip_vocab(t)
        for k, v in item["properties"].items():
            node[strip_vocab(k)] = [microdata_to_ld(x) for x in v] if isinstance(v, list) else microdata_to_ld(v)
        return node
    return item


def rdfa_to_ld(graph):
    """pyRdfa's expanded JSON-LD to nested compact schema.org nodes."""
    nodes = {}
    for n in graph:
        if isinstance(n, dict) and "@id" in n:
            nodes[n["@id"]] = n
    referenced = set()
    for i, n in nodes.items():
        for k, vs in n.items():
            if k.startswith("@"):
                continue
            for v in vs if isinstance(vs, list) else [vs]:
                if isinstance(v, dict) and "@id" in v and v["@id"] != i:
                    referenced.add(v["@id"])

    def schema_key(k):
        for p in ("http://schema.org/", "https://schema.org/"):
            if k.startswith(p):
                return k[len(p):]
        return None

    def convert(n, seen):
        out = {}
        types = [schema_key(t) for t in n.get("@type", [])]
        types = [t for t in types if t]
        if types:
            out["@type"] = types[0] if len(types) == 1 else types
        for k, vs in n.items():
            key = schema_key(k)
            if not key:
                continue
            vals = []
            for v in vs:
                if "@value" in v:
                    vals.append(v["@value"])
                elif "@id" in v:
                    target = nodes.get(v["@id"])
                    if target is not None and v["@id"] not in seen and any(not x.startswith("@") for x in target):
                        vals.append(convert(target, seen | {v["@id"]}))
                    else:
                        vals.append(v["@id"])
            out[key] = vals[0] if len(vals) == 1 else vals
        return out

    return [convert(n, {i}) for i, n in nodes.items()
            if i not in referenced and any(schema_key(t) for t in n.get("@type", []))]


# --- schema.org fields (all three syntaxes) ------------------------------
def walk(roots):
    out, stack = [], list(reversed(roots))
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out.append(v)
            for k in reversed(sorted(v.keys())):
                if k != "@context":
                    stack.append(v[k])
        elif isinstance(v, list):
            stack.extend(reversed(v))
    return out


def types_of(n):
    t = n.get("@type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    return []


def schema_fields(roots, base):
    nodes = walk(roots)
    ids = {}
    for n in nodes:
        if isinstance(n.get("@id"), str) and len(n) > 1:
            ids.setdefault(n["@id"], n)

    def follow(v):
        if isinstance(v, dict) and len(v) == 1 and isinstance(v.get("@id"), str) and v["@id"] in ids:
            return ids[v["@id"]]
        return v

    def values(n, k):
        v = n.get(k)
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def scalar(v):
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("@value"), str):
            return v["@value"]
        return None

    def text(n, k):
        for v in values(n, k):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                s = clean(str(v))
            else:
                s = clean(scalar(v))
            if s:
                return s
        return None

    def names(n, k):
        out = []
        for v in values(n, k):
            if isinstance(v, dict):
                v = follow(v)
                s = clean(scalar(v)) if "@value" in v else (text(v, "name") or text(v, "alternateName"))
            else:
                s = clean(scalar(v))
            if s and s not in out:
                out.append(s)
        return clean(", ".join(out)) if out else None

    def url(n, k):
        for v in values(n, k):
            if isinstance(v, dict):
                v = follow(v)
                raw = next((scalar(v.get(x)) for x in ("url", "contentUrl", "@id") if scalar(v.get(x))), None)
            else:
                raw = scalar(v)
            u = clean_url(raw, base)
            if u:
                return u
        return None

    def pick(want_page):
        for n in nodes:
            for t in types_of(n):
                m = schema_item_type(t)
                if m and m[1] == want_page:
                    return n, t, m[0]
        return None

    found = pick(False) or pick(True)
    if not found:
        return None, None, None
    node, tname, ct = found
    f = {}
    f["title"] = text(node, "name") or text(node, "headline")
    f["description"] = text(node, "description")
    f["author"] = names(node, "author") or names(node, "creator")
    f["published"] = next((text(node, k) for k in ("datePublished", "uploadDate", "dateCreated") if text(node, k)), None)
    f["url"] = url(node, "url")
    site = names(node, "publisher") or names(node, "provider")
    if not site:
        for n in nodes:
            if "WebSite" in [strip_vocab(t) for t in types_of(n)] and text(n, "name"):
                site = text(n, "name")
                break
    f["site_name"] = site
    lic = None
    for v in values(node, "license"):
        if isinstance(v, dict):
            v = follow(v)
            raw = scalar(v.get("url")) or scalar(v.get("@id"))
            lic = clean_url(raw, base) if raw else None
            lic = lic or text(v, "name")
        elif scalar(v):
            s = scalar(v)
            lic = clean_url(s, base) if looks_like_url(s) else clean(s)
        if lic:
            break
    f["license"] = lic
    f["thumbnail"] = url(node, "thumbnailUrl") or url(node, "image") or url(node, "thumbnail")
    media = [url(node, "contentUrl"), url(node, "embedUrl")]
    for k in ("video", "audio", "associatedMedia", "encoding"):
        for child in values(node, k):
            if isinstance(child, dict):
                child = follow(child)
                media += [url(child, "contentUrl"), url(child, "embedUrl")]
    f["media"] = dedup(media)
    d = text(node, "duration")
    f["duration_s"] = parse_duration(d) if d else None
    f["artist"] = names(node, "byArtist")
    f["album"] = names(node, "inAlbum")
    kws = []
    for v in values(node, "keywords"):
        if scalar(v):
            kws += [clean(x) for x in scalar(v).split(",")]
    f["keywords"] = dedup(kws)[:MAX_KEYWORDS]
    f["language"] = names(node, "inLanguage")
    return f, strip_vocab(tname), ct


def meta_fields(pairs, keys_text, base):
    pass


def og_fields(props, base):
    def first_text(keys):
        for k in keys:
            for p, v in props:
                if p == k and clean(v):
                    return clean(v)
        return None

    def first_url(keys):
        for k in keys:
            for p, v in props:
                if p == k and clean_url(v, base):
                    return clean_url(v, base)
        return None

    f = {}
    f["title"] = first_text(["og:title"])
    f["description"] = first_text(["og:description"])
    f["author"] = first_text(["article:author", "book:author"])
    f["published"] = first_text(["article:published_time", "video:release_date", "music:release_date", "book:release_date"])
    f["url"] = first_url(["og:url"])
    f["site_name"] = first_text(["og:site_name"])
    f["thumbnail"] = first_url(["og:image", "og:image:url", "og:image:secure_url"])
    mk = ["og:video", "og:video:url", "og:video:secure_url", "og:audio", "og:audio:url", "og:audio:secure_url"]
    f["media"] = dedup([clean_url(v, base) for p, v in props if p in mk])
    f["duration_s"] = None
    for k in ["video:duration", "music:duration", "og:video:duration"]:
        vals = [v for p, v in props if p == k]
        if vals:
            f["duration_s"] = parse_duration(vals[0])
            if f["duration_s"] is not None:
                break
    f["artist"] = first_text(["og:audio:artist", "music:musician:name"])
    f["album"] = first_text(["og:audio:album", "music:album:name"])
    kk = ["article:tag", "video:tag", "og:video:tag", "book:tag"]
    f["keywords"] = dedup([clean(v) for p, v in props if p in kk])[:MAX_KEYWORDS]
    f["language"] = first_text(["og:locale"])
    t = first_text(["og:type"])
    return f, t, (lookup(OG_TYPES, t.lower()) if t else None)


def page_reading(doc):
    metas = []
    for el in doc.iter("meta"):
        content = el.get("content")
        if content is None:
            continue
        keys = []
        for a in ("property", "name"):
            k = (el.get(a) or "").strip().lower()
            if k and k not in keys:
                keys.append(k)
        metas += [(k, content) for k in keys]
    links = []
    for el in doc.iter("link", "a", "area"):
        if el.get("rel") is not None and el.get("href") is not None:
            links.append((el.tag, el.get("rel").lower().split(), el.get("href"), (el.get("type") or "").strip().lower()))
    return metas, links


def twitter_fields(metas, base):
    def first(keys, conv):
        for k in keys:
            for p, v in metas:
                if p == k and conv(v):
                    return conv(v)
        return None
    f = {"title": first(["twitter:title"], clean), "description": first(["twitter:description"], clean),
         "author": first(["twitter:creator"], clean), "site_name": first(["twitter:site"], clean),
         "thumbnail": first(["twitter:image", "twitter:image:src"], lambda v: clean_url(v, base)),
         "media": dedup([clean_url(v, base) for p, v in metas if p in ("twitter:player", "twitter:player:stream")])}
    t = first(["twitter:card"], clean)
    return f, t, (TWITTER_TYPES.get(t.lower()) if t else None)


def html_fields(doc, metas, links, base):
    title = doc.find(".//title")
    f = {"title": clean(title.text_content()) if title is not None else None}
    f["description"] = next((clean(v) for k, v in metas if k == "description" and clean(v)), None)
    f["author"] = next((clean(v) for k, v in metas if k == "author" and clean(v)), None)
    kw = next((v for k, v in metas if k == "keywords"), None)
    f["keywords"] = dedup([clean(x) for x in kw.split(",")])[:MAX_KEYWORDS] if kw else []
    root = doc.getroottree().getroot()
    f["language"] = clean(root.get("lang")) if root.get("lang") is not None else None
    f["url"] = next((clean_url(h, base) for tag, rel, h, t in links if tag == "link" and "canonical" in rel and clean_url(h, base)), None)
    f["license"] = next((clean_url(h, base) for tag, rel, h, t in links if "license" in rel and clean_url(h, base)), None)
    f["oembed"] = next((clean_url(h, base) for tag, rel, h, t in links
                        if tag == "link" and "alternate" in rel and t in ("application/json+oembed", "text/json+oembed", "text/xml+oembed", "application/xml+oembed")
                        and clean_url(h, base)), None)
    return f


def oembed_reading(data, base):
    text = data.decode("utf-8-sig").lstrip()
    if text.startswith("{"):
        m = json.loads(text)
        m = {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in m.items()}
    else:
        root = ET.fromstring(text)
        m = {}
        for child in root:
            m.setdefault(child.tag, "".join(child.itertext()))
    f = {"title": clean(m.get("title")), "description": clean(m.get("description")),
         "author": clean(m.get("author_name")), "site_name": clean(m.get("provider_name")),
         "thumbnail": clean_url(m.get("thumbnail_url"), base),
         "media": dedup([clean_url(m.get("url"), base)]),
         "duration_s": parse_duration(m["duration"]) if m.get("duration") is not None else None,
         "embed_html": m.get("html")}
    t = clean(m.get("type"))
    return f, t, OEMBED_TYPES.get(t.lower()) if t else None


def host_matches(host, wanted):
    return host == wanted or host.endswith("." + wanted)


def find_profile(host, metas, links, doc):
    if host:
        for p in PROFILES:
            if any(host_matches(host.lower(), h) for h in p[1]):
                return p
    for p in PROFILES:
        for kind, arg in p[2]:
            if kind == "generator":
                g = next((v for k, v in metas if k == "generator"), None)
                if g and g.strip().lower().startswith(arg.lower()):
                    return p
            if kind == "alternate" and any("alternate" in rel and t == arg for _, rel, _, t in links):
                return p
            if kind == "element" and next(iter(doc.iter(arg)), None) is not None:
                return p
            if kind == "meta" and any(k == arg for k, _ in metas):
                return p
    return None


def profile_fields(p, doc, metas, jsonld_node, base):
    f = {}
    for rule in p[4]:
        field, kind = rule[0], rule[1]
        if f.get(field):
            continue
        raw = None
        if kind == "meta":
            raw = next((v for k, v in metas if k == rule[2]), None)
        elif kind == "attr":
            el = next(iter(doc.iter(rule[2])), None)
            raw = el.get(rule[3]) if el is not None else None
        elif kind == "text":
            el = next(iter(doc.iter(rule[2])), None)
            raw = el.text_content() if el is not None else None
        elif kind == "jsonld" and jsonld_node:
            v = jsonld_node.get(rule[2])
            raw = v if isinstance(v, str) else (next((x for x in v if isinstance(x, str)), None) if isinstance(v, list) else None)
        if raw is None:
            continue
        if field in ("url", "thumbnail"):
            f[field] = clean_url(raw, base)
        elif field == "media":
            f[field] = dedup([clean_url(raw, base)])
        elif field == "license":
            f[field] = clean_url(raw, base) if looks_like_url(raw) else clean(raw)
        else:
            f[field] = clean(raw)
    return f


def read_fixture(path):
    data = open(path, "rb").read()
    stem = path.rsplit(".", 1)[0]
    url_file = stem + ".url"
    given = open(url_file).read().strip() if os.path.exists(url_file) else None
    readings, types = {}, {}
    profile = None
    if data.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"{") or path.endswith(".xml"):
        f, t, ct = oembed_reading(data, given)
        readings["oembed"] = f
        types["oembed"] = (t, ct)
        return readings, types, profile
    text = decode(data)
    doc = lxml.html.fromstring(text)
    metas, links = page_reading(doc)
    base = given
    if not base:
        cands = [el.get("href") for el in doc.iter("base") if el.get("href")][:1]
        cands += [h for tag, rel, h, t in links if tag == "link" and "canonical" in rel]
        cands += [v for k, v in metas if k == "og:url"]
        base = next((c.strip() for c in cands if urlsplit(c.strip()).scheme in ("http", "https")), None)
    ex = extruct.extract(text, base_url=base, syntaxes=["rdfa", "opengraph"], uniform=False, errors="ignore")
    # JSON-LD block by block: a malformed block is skipped, not the rest.
    ex["json-ld"] = []
    for script in doc.iter("script"):
        if (script.get("type") or "").split(";")[0].strip().lower() == "application/ld+json":
            t = script.text_content().strip()
            for open_, close in (("<!--", "-->"), ("<![CDATA[", "]]>"), ("//<![CDATA[", "//]]>")):
                if t.startswith(open_) and t.endswith(close):
                    t = t[len(open_):-len(close)].strip()
            t = t[:-1].rstrip() if t.endswith(";") else t
            try:
                data = json.loads(t)
            except ValueError:
                continue
            ex["json-ld"] += data if isinstance(data, list) else [data]
    md = LinkContentMicrodata().extract(text, base_url=base)
    jl = schema_fields(ex.get("json-ld", []), base)
    readings["json-ld"], types["json-ld"] = (jl[0] or {}), (jl[1], jl[2])
    m = schema_fields([microdata_to_ld(i) for i in md], base)
    readings["microdata"], types["microdata"] = (m[0] or {}), (m[1], m[2])
    r = schema_fields(rdfa_to_ld(ex.get("rdfa", [])), base)
    readings["rdfa"], types["rdfa"] = (r[0] or {}), (r[1], r[2])
    props = []
    for block in ex.get("opengraph", []):
        props += [(k.lower(), v) for k, v in block["properties"]]
    og = og_fields(props, base)
    readings["open-graph"], types["open-graph"] = og[0], (og[1], og[2])
    tw = twitter_fields(metas, base)
    readings["twitter"], types["twitter"] = tw[0], (tw[1], tw[2])
    for suffix in (".oembed.json", ".oembed.xml"):
        if os.path.exists(stem + suffix):
            o = oembed_reading(open(stem + suffix, "rb").read(), base)
            readings["oembed"], types["oembed"] = o[0], (o[1], o[2])
    readings["html"] = html_fields(doc, metas, links, base)
    first_url = next((readings[s]["url"] for s in PRECEDENCE if readings.get(s, {}).get("url")), None)
    host = urlsplit(first_url or base or "").hostname
    profile = find_profile(host, metas, links, doc)
    if profile:
        node = None
        if jl[0] is not None:
            nodes = walk(ex.get("json-ld", []))
            node = next((n for n in nodes if any((schema_item_type(t) or (None, True))[1] is False for t in types_of(n))), None)
            node = node or next((n for n in nodes if any(schema_item_type(t) for t in types_of(n))), None)
        readings["profile"] = profile_fields(profile, doc, metas, node, base)
    return readings, types, profile


def check(path):
    problems = []
    expected = json.load(open(path.rsplit(".", 1)[0] + ".expected.json"))
    readings, types, profile = read_fixture(path)
    for field in FIELDS:
        src = next((s for s in PRECEDENCE if readings.get(s, {}).get(field)), None)
        got = readings[src][field] if src else None
        want = expected["fields"].get(field)
        want_src = expected["sources"].get(field)
        if field == "embed_html":
            if (want is None) != (got is None) or src != want_src:
                problems.append(f"embed_html: present {want is not None}, this reading {got is not None}")
            elif want:
                low = want.lower()
                if "<script" in low or re.search(r"\son\w+\s*=", low) or "javascript:" in low:
                    problems.append("embed_html keeps active content")
                for src_url in re.findall(r'<iframe[^>]*src="(https?://[^"]+)"', got):
                    if src_url not in want:
                        problems.append(f"embed_html lost the player {src_url}")
            continue
        if field in LIST_FIELDS:
            got = got or []
            want = want or []
        if got != want or (want and src != want_src):
            problems.append(f"{field}: expected {want!r} from {want_src}, this reading gives {got!r} from {src}")
    # The type: a schema.org syntax's, else the profile's, else the first source's.
    typed = next(((s, types[s]) for s in PRECEDENCE if s in types and types[s][1]), None)
    schema_typed = typed and typed[0] in ("json-ld", "microdata", "rdfa")
    if typed and schema_typed:
        want_type = (typed[1][1], typed[1][0], typed[0])
    elif profile and profile[3]:
        want_type = (profile[3], typed[1][0] if typed else None, "profile")
    elif typed:
        want_type = (typed[1][1], typed[1][0], typed[0])
    else:
        want_type = ("WebPage", None, None)
    got_type = (expected["content_type"], expected.get("schema_type"), expected["sources"].get("type"))
    if want_type != got_type:
        problems.append(f"type: expected {got_type}, this reading gives {want_type}")
    if (profile[0] if profile else None) != expected.get("profile"):
        problems.append(f"profile: expected {expected.get('profile')}, this reading gives {profile[0] if profile else None}")
    return problems


def main():
    inputs = sorted(p for p in glob.glob(os.path.join(HERE, "*"))
                    if re.search(r"\.(html|json|xml)$", p) and ".expected." not in p and ".oembed." not in p)
    failed = 0
    for p in inputs:
        problems = check(p)
        if problems:
            failed += 1
            print(f"{os.path.basename(p)}:")
            for x in problems:
                print(f"  {x}")
    print(f"{len(inputs) - failed} of {len(inputs)} fixtures agree with extruct's reading")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
