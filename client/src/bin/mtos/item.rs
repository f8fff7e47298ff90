//! `mtos item ...`: seal, open and inspect items in the local store.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mtos_client::compose::{self, SealRequest};
use mtos_client::store::{ChunkStore, STORE_DIR};
use mtos_client::{ClientError, Home};
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use mtos_crypto::item::{Audience, Item, ItemRef, PartKind};
use mtos_crypto::{Identity, Keychain};
use zeroize::Zeroizing;

use crate::common::{date, no_overwrite, now, open as open_keychain, write_new_private_file};

// Parsed once per run: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    /// Sign, encrypt and store an item; print its mtos:item: reference.
    ///
    /// Each --text becomes a text part and each FILE a binary part (its MIME
    /// type guessed from its name). Without --to the item is public: anyone
    /// holding the reference can read it, no storer can. With --to it is
    /// private: only the recipients (and you) can read it. A RECIPIENT is an
    /// mtos:id: URI, an age1... key, or one of your identities. The reference
    /// holds the item's key: share it only with the people who should read it.
    ///
    /// Example: mtos item seal --text "sunset" photo.jpg --tag sky --as alice
    Seal(SealOpts),
    /// Fetch, decrypt and verify an item; print it or write its parts.
    ///
    /// Text parts are printed. With -o, a single part is written to OUT; several
    /// parts go into the directory OUT as part-N files. Existing files are never
    /// overwritten. A private item asks for your keychain passphrase.
    ///
    /// Example: mtos item open mtos:item:... -o photo.jpg
    Open {
        /// The mtos:item: reference.
        reference: String,
        /// Write the parts here instead of printing.
        #[arg(long, short, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Show an item's thread: the chain of replies, remixes and reblogs up
    /// to its root, and the items that answer it among your followed feeds
    /// and the items you sealed or fetched, as a tree.
    ///
    /// Items not in the local store are shown as missing; with --fetch, the
    /// chain's missing items are fetched first (through the screen, or a
    /// session of its own with --no-screen).
    ///
    /// Example: mtos item thread mtos:item:... --fetch
    Thread {
        /// The mtos:item: reference.
        reference: String,
        /// Fetch the chain's missing items through the network.
        #[arg(long)]
        fetch: bool,
    },
    /// Show an item's chunk tree and, for a public item, its signed metadata.
    ///
    /// Example: mtos item inspect mtos:item:... --export-sealed item.age
    Inspect {
        /// The mtos:item: reference.
        reference: String,
        /// Also write the sealed bytes (a standard age file) to this new file.
        #[arg(long, value_name = "FILE")]
        export_sealed: Option<PathBuf>,
    },
}

/// What to seal: the arguments of `mtos item seal` and `mtos publish`.
#[derive(Debug, Clone, Args)]
pub struct SealOpts {
    /// A text part (repeatable).
    #[arg(long, short, value_name = "TEXT")]
    pub text: Vec<String>,
    /// Files to include as binary parts.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// schema.org type: Note, Article, Comment, ImageObject, VideoObject, AudioObject, MediaObject, DigitalDocument, WebPage, Event, Collection [default: from the parts]
    #[arg(long = "type", value_name = "TYPE")]
    pub content_type: Option<String>,
    /// A tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// The item this one replies to.
    #[arg(long, value_name = "REF")]
    pub reply_to: Vec<String>,
    /// The item this one remixes.
    #[arg(long, value_name = "REF")]
    pub remix_of: Vec<String>,
    /// The item this one reblogs.
    #[arg(long, value_name = "REF")]
    pub reblog: Vec<String>,
    /// An item holding the web component that displays this one (an
    /// HTML file published as an item; `specs/item.md` §6).
    #[arg(long, value_name = "REF")]
    pub component: Option<String>,
    /// Make the item from a saved web page (HTML) or an oEmbed response
    /// (JSON or XML): type, title, description, author, date, address,
    /// site, license, picture and media addresses from its JSON-LD,
    /// microdata, RDFa, Open Graph, Twitter card and oEmbed metadata
    /// (`mtos import --dry-run FILE` shows what it finds). Nothing is
    /// fetched: addresses are kept as data.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// The page's oEmbed response, saved beside it (with --import).
    #[arg(long, value_name = "FILE")]
    pub oembed: Option<PathBuf>,
    /// The address the page was saved from: its relative addresses are
    /// resolved against it (with --import).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Make the item private to this recipient (repeatable).
    #[arg(long, value_name = "RECIPIENT")]
    pub to: Vec<String>,
    /// Sign with a fresh throwaway key that links to none of your identities.
    #[arg(long, conflicts_with = "as_id")]
    pub anonymous: bool,
    /// Sign as this identity (label or id prefix) [default: your only identity].
    #[arg(long = "as", value_name = "ID")]
    pub as_id: Option<String>,
}

impl SealOpts {
    /// The request these options make: file paths made absolute, so that
    /// a screen running elsewhere reads the same files.
    pub fn into_request(self) -> Result<SealRequest, ClientError> {
        let absolute = |f: PathBuf| {
            std::path::absolute(&f).map_err(|source| ClientError::Io { path: f, source })
        };
        if self.import.as_deref() == Some(Path::new("-")) {
            return Err(ClientError::Refused(
                "--import -: only `mtos import -` reads a page from standard input; save it to a file"
                    .into(),
            ));
        }
        let files = self
            .files
            .into_iter()
            .map(absolute)
            .collect::<Result<_, _>>()?;
        let import = self.import.map(absolute).transpose()?;
        let import_oembed = self.oembed.map(absolute).transpose()?;
        Ok(SealRequest {
            text: self.text,
            files,
            content_type: self.content_type,
            tag: self.tag,
            reply_to: self.reply_to,
            remix_of: self.remix_of,
            reblog: self.reblog,
            component: self.component,
            import,
            import_oembed,
            import_url: self.url,
            to: self.to,
            anonymous: self.anonymous,
            as_id: self.as_id,
        })
    }
}

pub fn run(home: &Home, cmd: ItemCommand) -> Result<String, ClientError> {
    match cmd {
        ItemCommand::Seal(opts) => {
            let (reference, _) = seal_into_store(home, opts)?;
            Ok(format!("{}\n", reference.to_uri()))
        }
        ItemCommand::Open { reference, output } => open_cmd(home, &reference, output.as_deref()),
        ItemCommand::Inspect {
            reference,
            export_sealed,
        } => inspect_cmd(home, &reference, export_sealed.as_deref()),
        ItemCommand::Thread { reference, .. } => crate::thread::run(home, &reference, None),
    }
}

/// Seals an item into the local store (a line about it on stderr) and
/// returns its reference, with its author unless it is anonymous.
pub fn seal_into_store(
    home: &Home,
    args: SealOpts,
) -> Result<(ItemRef, Option<Identity>), ClientError> {
    let sealed = seal_request(home, args.into_request()?, None)?;
    Ok((sealed.reference, sealed.author))
}

/// Seals `request` into the home's store (made from `imported` when
/// given, else from its own `--import`), opening the keychain when it
/// needs it; a line about it on stderr.
pub fn seal_request(
    home: &Home,
    request: compose::SealRequest,
    imported: Option<&mtos_import::Imported>,
) -> Result<compose::Sealed, ClientError> {
    let keychain = if request.needs_keychain() {
        Some(open_keychain(home)?)
    } else {
        None
    };
    home.ensure()?;
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    let sealed = match imported {
        Some(i) => compose::seal_with(&store, keychain.as_ref(), request, Some(i), now())?,
        None => compose::seal_into(&store, keychain.as_ref(), request, now())?,
    };
    eprintln!("{}", sealed.summary);
    Ok(sealed)
}

fn open_store(home: &Home) -> Result<ChunkStore, ClientError> {
    let path = home.dir().join(STORE_DIR);
    if !path.exists() {
        return Err(ClientError::Open(mtos_crypto::OpenError::ChunkMissing(
            format!("(no item store at {} yet)", path.display()),
        )));
    }
    ChunkStore::open_for_reading(&path)
}

fn describe(out: &mut String, item: &Item, keychain: Option<&Keychain>) {
    let author = item.author();
    let whose = match keychain.and_then(|k| k.by_key(author)) {
        Some(i) => format!(" = your identity \"{}\"", i.label()),
        None => String::new(),
    };
    let _ = writeln!(out, "type:     {}", item.content_type());
    let _ = writeln!(out, "author:   {} ({}){whose}", author.id(), author);
    let _ = writeln!(out, "created:  {}", date(item.created_ms() / 1000));
    let _ = writeln!(
        out,
        "verified: signature and all {} part(s)",
        item.parts().len()
    );
    if !item.tags().is_empty() {
        let _ = writeln!(out, "tags:     {}", printable(&item.tags().join(" ")));
    }
    if let Some(feed) = item.feed() {
        let _ = writeln!(
            out,
            "feed:     {} #{}",
            data_encoding::HEXLOWER.encode(&feed.feed[..8]),
            feed.seq
        );
    }
    for r in item.refs() {
        let _ = writeln!(out, "{:<9} {}", format!("{}:", r.kind), r.target.to_uri());
    }
    for (i, (p, d)) in item.parts().iter().zip(item.part_digests()).enumerate() {
        let _ = writeln!(
            out,
            "part {i}:   {} {}, {} bytes, blake3 {}",
            match p.kind() {
                PartKind::Text => "text",
                PartKind::Binary => "binary",
            },
            p.mime(),
            p.data().len(),
            data_encoding::HEXLOWER.encode(&d[..8])
        );
    }
}

/// Text from an item is untrusted: terminal control sequences (which can
/// rewrite the screen, spoof the `verified:` line or write the clipboard)
/// and bidirectional overrides are shown escaped instead of obeyed.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn open_cmd(
    home: &Home,
    reference: &str,
    output: Option<&Path>,
) -> Result<String, ClientError> {
    let mut out = String::new();
    let reference = ItemRef::from_uri(reference)?;
    let store = open_store(home)?;
    let (keychain, secrets) = match reference.audience() {
        Audience::Public => (None, Vec::new()),
        Audience::Private => {
            let keychain = open_keychain(home)?;
            let secrets: Vec<Zeroizing<[u8; 32]>> = keychain
                .identities()
                .iter()
                .map(|i| Zeroizing::new(i.x25519_secret_bytes()))
                .collect();
            (Some(keychain), secrets)
        }
    };
    let item = seal::open(&mut &store, &reference, &secrets, MAX_SEALED_LEN)?;
    describe(&mut out, &item, keychain.as_ref());
    match output {
        Some(path) => write_parts(&mut out, &item, path)?,
        None => {
            for (i, p) in item.parts().iter().enumerate() {
                match p.as_text() {
                    Some(text) => {
                        let _ = writeln!(out, "\n{}", printable(text));
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "\n[part {i}: {} bytes of {}; write it with -o]",
                            p.data().len(),
                            p.mime()
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}

fn extension(mime: &str) -> &'static str {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    // mime_guess lists extensions alphabetically (text/plain first gives
    // "asm"): the usual one for the common types.
    for (m, ext) in [
        ("text/plain", "txt"),
        ("application/octet-stream", "bin"),
        ("image/jpeg", "jpg"),
        ("text/html", "html"),
        ("video/mp4", "mp4"),
        ("audio/mpeg", "mp3"),
    ] {
        if essence.eq_ignore_ascii_case(m) {
            return ext;
        }
    }
    mime_guess::get_mime_extensions_str(essence)
        .and_then(|e| e.first())
        .copied()
        .unwrap_or("bin")
}

fn write_parts(out: &mut String, item: &Item, path: &Path) -> Result<(), ClientError> {
    if let [only] = item.parts() {
        // The reader's own plaintext: owner-only, never replacing a file.
        write_new_private_file(path, only.data())?;
        let _ = writeln!(
            out,
            "wrote {} bytes to {}",
            only.data().len(),
            path.display()
        );
        return Ok(());
    }
    fs::create_dir(path).map_err(|source| no_overwrite(path, source))?;
    for (i, p) in item.parts().iter().enumerate() {
        let file = path.join(format!("part-{i}.{}", extension(p.mime())));
        write_new_private_file(&file, p.data())?;
        let _ = writeln!(out, "wrote {} bytes to {}", p.data().len(), file.display());
    }
    Ok(())
}

fn inspect_cmd(
    home: &Home,
    reference: &str,
    export_sealed: Option<&Path>,
) -> Result<String, ClientError> {
    let mut out = String::new();
    let reference = ItemRef::from_uri(reference)?;
    let store = open_store(home)?;
    let tree = seal::inspect(&mut &store, &reference, MAX_SEALED_LEN)?;
    let shape = tree.shape;
    let _ = writeln!(
        out,
        "audience: {}",
        match reference.audience() {
            Audience::Public => "public",
            Audience::Private => "private",
        }
    );
    let _ = writeln!(out, "root:     {}", reference.root());
    let _ = writeln!(out, "sealed:   {} bytes (an age file)", shape.sealed_len);
    let _ = writeln!(
        out,
        "chunks:   {} ({} data, {} manifest; {} level{})",
        shape.total_chunks(),
        shape.data_chunks,
        tree.nodes.len(),
        shape.levels,
        if shape.levels == 1 { "" } else { "s" }
    );
    for node in &tree.nodes {
        let _ = writeln!(
            out,
            "  node level {} #{:<4} {}  covers {} bytes{}",
            node.level,
            node.index,
            node.locator,
            node.covered,
            if node.level == 0 {
                " inline".to_owned()
            } else {
                format!(", {} children", node.children.len())
            }
        );
    }
    let sealed = seal::fetch_sealed(&mut &store, &reference, MAX_SEALED_LEN)?;
    if let Some(path) = export_sealed {
        write_new_private_file(path, &sealed)?;
        let _ = writeln!(out, "wrote the sealed item to {}", path.display());
    }
    match reference.audience() {
        Audience::Public => {
            let item = seal::open_sealed(&sealed, &reference, &[])?;
            describe(&mut out, &item, None);
        }
        Audience::Private => {
            let _ = writeln!(
                out,
                "metadata: encrypted to its recipients (`mtos item open` decrypts it)"
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_drive_the_terminal() {
        assert_eq!(printable("plain\ttext\nline"), "plain\ttext\nline");
        let hostile = "ok\u{1b}]52;c;ZXZpbA==\u{7}\u{202e}gnp.exe";
        let shown = printable(hostile);
        assert!(!shown.contains('\u{1b}'));
        assert!(!shown.contains('\u{202e}'));
        assert!(shown.contains("\\u{1b}"));
    }

    #[test]
    fn dates_from_untrusted_items_never_panic() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert!(date(u64::MAX).contains("after 1970"));
        assert!(date(253_402_300_800).contains("after 1970"));
    }
}
