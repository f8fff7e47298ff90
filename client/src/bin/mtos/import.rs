//! `mtos import FILE|-`: an item from a saved web page or an oEmbed
//! response (`specs/item.md` §7).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use mtos_client::pageimport;
use mtos_client::{ClientError, Home};
use mtos_import::{Field, Imported, MAX_PAGE_BYTES, Options};

use crate::item::{SealOpts, printable, seal_request};

/// The options of `mtos import`.
#[derive(Debug, Args)]
pub struct ImportOpts {
    /// The saved page (HTML) or oEmbed response (JSON or XML); - reads it
    /// from standard input.
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
    /// Media files saved alongside the page, attached as binary parts (as
    /// are FILEs after the input).
    #[arg(long = "with-media", value_name = "FILE", num_args = 1..)]
    pub with_media: Vec<PathBuf>,
    /// Show what the import finds and where each field came from; seal
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print it as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    #[command(flatten)]
    pub seal: SealOpts,
}

pub fn run(home: &Home, opts: ImportOpts) -> Result<String, ClientError> {
    let ImportOpts {
        input,
        with_media,
        dry_run,
        json,
        mut seal,
    } = opts;
    if seal.import.is_some() {
        return Err(ClientError::Refused(
            "give the page once: `mtos import FILE` (--import is for `mtos publish` and `mtos item seal`)".into(),
        ));
    }
    let imported = read(&input, seal.oembed.take(), seal.url.take())?;
    if dry_run {
        if json {
            let mut out = serde_json::to_string_pretty(&imported).unwrap_or_default();
            out.push('\n');
            return Ok(out);
        }
        return Ok(describe(&imported));
    }
    eprint!("{}", describe(&imported));
    seal.files.extend(with_media);
    let sealed = seal_request(home, seal.into_request()?, Some(&imported))?;
    Ok(format!("{}\n", sealed.reference.to_uri()))
}

fn read(
    input: &Path,
    oembed: Option<PathBuf>,
    url: Option<String>,
) -> Result<Imported, ClientError> {
    if input != Path::new("-") {
        return pageimport::import_files(input, oembed.as_deref(), url.as_deref());
    }
    let data = pageimport::read_capped(input, MAX_PAGE_BYTES, "the page")?;
    let oembed_data = oembed
        .as_deref()
        .map(|p| pageimport::read_capped(p, mtos_import::MAX_OEMBED_BYTES, "the oEmbed response"))
        .transpose()?;
    mtos_import::import(&data, oembed_data.as_deref(), &Options { url }).map_err(|source| {
        ClientError::PageImport {
            path: "-".into(),
            source,
        }
    })
}

/// What the import found, one field a line with its source; every value
/// printed escaped of anything a terminal would obey.
fn describe(i: &Imported) -> String {
    let mut out = String::new();
    let source = |name: &str| {
        i.sources
            .get(name)
            .map(|s| format!(" ({})", s.name()))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "type: {}{}{}",
        i.content_type,
        i.schema_type
            .as_deref()
            .map(|t| format!(" [{}]", printable(t)))
            .unwrap_or_default(),
        source("type")
    );
    if let Some(p) = &i.profile {
        let _ = writeln!(out, "site profile: {p}");
    }
    let f = &i.fields;
    for field in Field::ALL {
        let name = field.name();
        let value = match field {
            Field::Title => f.title.clone(),
            Field::Description => f.description.clone(),
            Field::Author => f.author.clone(),
            Field::Published => f.published.clone(),
            Field::Url => f.url.clone(),
            Field::SiteName => f.site_name.clone(),
            Field::License => f.license.clone(),
            Field::Thumbnail => f.thumbnail.clone(),
            Field::Media => (!f.media.is_empty()).then(|| f.media.join(" ")),
            Field::Duration => f.duration_s.map(|s| format!("{s} s")),
            Field::Artist => f.artist.clone(),
            Field::Album => f.album.clone(),
            Field::Keywords => (!f.keywords.is_empty()).then(|| f.keywords.join(", ")),
            Field::Language => f.language.clone(),
            Field::EmbedHtml => f
                .embed_html
                .as_ref()
                .map(|h| format!("{} bytes of markup, kept as data", h.len())),
            Field::Oembed => f.oembed.clone(),
        };
        if let Some(v) = value {
            let _ = writeln!(out, "{name}: {}{}", printable(&v), source(name));
        }
    }
    for n in &i.notes {
        let _ = writeln!(out, "note: {}", printable(&n.to_string()));
    }
    out
}
