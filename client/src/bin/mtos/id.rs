//! `mtos id ...`: identities in the keychain.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mtos_client::{ClientError, Home, passphrase};
use mtos_crypto::{Identity, KeychainError, Label, PublicIdentity, SafetyNumber, Visibility};
use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

use crate::common::{confirm, date, modify, now, open, write_new_private_file};

/// An import file larger than this is not a secret identity.
const MAX_IMPORT_FILE: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Create a new identity (and the keychain, on first use).
    ///
    /// A public identity may be published on the network; a private one is
    /// only ever shared out of band (its URI handed over in person or by QR code).
    ///
    /// Example: mtos id new --label "alice at work" --private
    New {
        /// A name for the identity, unique in this keychain [default: identity-N]
        #[arg(long, short)]
        label: Option<String>,
        /// Never publish this identity; share it out of band only.
        #[arg(long)]
        private: bool,
    },
    /// List the identities in the keychain.
    ///
    /// Example: mtos id list
    List,
    /// Show an identity: its keys, fingerprint and shareable URI.
    ///
    /// ID is the label or at least 4 leading hex digits of the id.
    ///
    /// Example: mtos id show alice --qr
    Show {
        /// Label or id prefix.
        id: String,
        /// Also print the URI as a QR code for another device to scan.
        #[arg(long)]
        qr: bool,
        /// Write the QR code as a PNG image to this new file (to print,
        /// or to show on another screen).
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
    },
    /// Print the follow URI of an identity's feed, for the people who may follow it.
    ///
    /// Every item you publish as this identity (public, not --anonymous) is
    /// added to its feed; whoever holds this URI can find and read the feed.
    ///
    /// Example: mtos id feed alice
    Feed {
        /// Label or id prefix [default: your only identity].
        id: Option<String>,
    },
    /// Publish a public identity's card (label, keys, feed) on the network.
    ///
    /// Anyone can then find it through the mixnet from its URI or its
    /// fingerprint alone (`mtos id lookup`), and follow its feed. Private
    /// identities are never published.
    ///
    /// Example: mtos id publish alice
    Publish {
        /// Label or id prefix.
        id: String,
    },
    /// Find a public identity's card on the network, by fingerprint or URI.
    ///
    /// Prints the identity and its feed's follow URI. A card is accepted only
    /// if it is signed by the identity it describes and matches what was
    /// asked for.
    ///
    /// Example: mtos id lookup "12345 67890 ..."
    Lookup {
        /// The 30-digit fingerprint (spaces allowed) or the mtos:id: URI.
        query: String,
    },
    /// Print the safety number shared with a contact, to compare out of band.
    ///
    /// Both of you run this with your own identity and the other's URI; if the
    /// 60 digits match, each holds the other's real keys.
    ///
    /// Example: mtos id compare alice mtos:id:...
    Compare {
        /// Your identity (label or id prefix).
        id: String,
        /// The contact's `mtos:id:` URI.
        uri: String,
    },
    /// Export an identity's secret keys (to move it to another device), or
    /// its public OpenPGP certificate.
    ///
    /// Without --age the whole identity is written in mtos's own format, for
    /// `mtos id import`. With --age only the X25519 key is written, as a
    /// standard AGE-SECRET-KEY-1... identity that the age and rage tools use
    /// to decrypt items sealed to this identity. Anyone holding the output
    /// can act as this identity: keep it private.
    ///
    /// Example: mtos id export alice -o alice.mtos-id
    Export {
        /// Label or id prefix.
        id: String,
        /// Export only the age (X25519) identity.
        #[arg(long, conflicts_with = "openpgp")]
        age: bool,
        /// Export the public OpenPGP certificate (armored; no secret): the
        /// ed25519 key as the primary, the X25519 key as a cv25519 subkey,
        /// the label as user id. GnuPG imports it (`gpg --import`), then
        /// verifies `mtos id sign` signatures and encrypts to it. The same
        /// bytes, and fingerprint, on every export.
        #[arg(long)]
        openpgp: bool,
        /// Write to this file (created owner-only; never overwritten) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Import an identity exported with `mtos id export`, or an OpenPGP
    /// secret key (`gpg --export-secret-keys --armor`).
    ///
    /// An OpenPGP key needs an ed25519 primary key; its cv25519 encryption
    /// subkey becomes the identity's X25519 key (a key without one imports
    /// as sign-only in OpenPGP: mtos makes the identity a new encryption
    /// key, and says so). Its creation time is kept, so `mtos id export
    /// --openpgp` gives back the same OpenPGP fingerprint. A protected key
    /// asks for its passphrase (scripts set MTOS_OPENPGP_PASSPHRASE).
    ///
    /// Example: mtos id import alice.mtos-id      (or key.asc, or - for stdin)
    Import {
        /// The exported file, or - for stdin.
        file: PathBuf,
        /// The label of an imported OpenPGP key [default: its user id].
        #[arg(long, short)]
        label: Option<String>,
    },
    /// Sign a file: an armored OpenPGP detached signature that GnuPG
    /// verifies (`gpg --verify FILE.asc FILE`, with `mtos id export
    /// --openpgp` imported).
    ///
    /// Example: mtos id sign alice report.pdf      (writes report.pdf.asc)
    Sign {
        /// Label or id prefix.
        id: String,
        /// The file to sign.
        file: PathBuf,
        /// Write the signature here [default: FILE.asc; never overwritten].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify an OpenPGP detached signature over a file (by `mtos id sign`
    /// or GnuPG), by one of your identities or by an OpenPGP certificate.
    ///
    /// Example: mtos id verify report.pdf report.pdf.asc --cert alice.asc
    Verify {
        /// The signed file.
        file: PathBuf,
        /// The armored signature [default: FILE.asc].
        signature: Option<PathBuf>,
        /// The signer: one of your identities (label or id prefix).
        #[arg(long = "by", value_name = "ID", required_unless_present = "cert")]
        by: Option<String>,
        /// The signer's armored OpenPGP certificate.
        #[arg(long, value_name = "FILE", conflicts_with = "by")]
        cert: Option<PathBuf>,
    },
    /// Change the keychain's passphrase.
    ///
    /// Asks for the current passphrase, then the new one twice (scripts set
    /// MTOS_PASSPHRASE and MTOS_NEW_PASSPHRASE). The keychain is replaced
    /// atomically: a failure leaves the old file and passphrase in place.
    ///
    /// Example: mtos id passwd
    Passwd,
    /// Remove an identity from the keychain. Its keys are gone for good
    /// unless you exported them.
    ///
    /// Example: mtos id rm alice --yes
    Rm {
        /// Label or id prefix.
        id: String,
        /// Do not ask for confirmation (required when not on a terminal).
        #[arg(long, short)]
        yes: bool,
    },
}

/// Runs the command; returns what goes to stdout.
impl IdCommand {
    /// Whether it reaches the network.
    pub fn uses_network(&self) -> bool {
        matches!(self, IdCommand::Publish { .. } | IdCommand::Lookup { .. })
    }
}

pub fn run(home: &Home, cmd: IdCommand, via_screen: bool) -> Result<String, ClientError> {
    match cmd {
        IdCommand::Publish { id } if via_screen => crate::via::publish_card(home, &id),
        IdCommand::Lookup { query } if via_screen => crate::via::lookup_card(home, &query),
        IdCommand::New { label, private } => new(home, label, private),
        IdCommand::List => list(home),
        IdCommand::Show { id, qr, png } => show(home, &id, qr, png.as_deref()),
        IdCommand::Publish { id } => {
            let keychain = open(home)?;
            let identity = keychain.find(&id)?;
            if identity.visibility() == Visibility::Private {
                return Err(ClientError::Refused(format!(
                    "\"{}\" is a private identity: private identities are never published",
                    identity.label()
                )));
            }
            crate::net::publish_card(home, identity)
        }
        IdCommand::Lookup { query } => crate::net::lookup_card(home, &query),
        IdCommand::Feed { id } => {
            let keychain = open(home)?;
            let identity = match (&id, keychain.identities()) {
                (Some(q), _) => keychain.find(q)?,
                (None, [only]) => only,
                (None, _) => {
                    return Err(ClientError::Refused(
                        "choose the identity: mtos id feed ID".into(),
                    ));
                }
            };
            Ok(format!(
                "{}\n",
                mtos_crypto::feed::FeedKeys::of(identity).follow().to_uri()
            ))
        }
        IdCommand::Compare { id, uri } => compare(home, &id, &uri),
        IdCommand::Export {
            id,
            openpgp: true,
            output,
            ..
        } => crate::pgp::export(home, &id, output.as_deref()),
        IdCommand::Export {
            id, age, output, ..
        } => export(home, &id, age, output.as_deref()),
        IdCommand::Import { file, label } => import(home, &file, label),
        IdCommand::Sign { id, file, output } => {
            crate::pgp::sign(home, &id, &file, output.as_deref())
        }
        IdCommand::Verify {
            file,
            signature,
            by,
            cert,
        } => crate::pgp::verify(
            home,
            &file,
            signature.as_deref(),
            by.as_deref(),
            cert.as_deref(),
        ),
        IdCommand::Rm { id, yes } => rm(home, &id, yes),
        IdCommand::Passwd => passwd(home),
    }
}

pub(crate) fn describe(out: &mut String, identity: &Identity) {
    let _ = writeln!(out, "id:          {}", identity.id());
    let _ = writeln!(out, "label:       {}", identity.label());
    let _ = writeln!(out, "visibility:  {}", identity.visibility());
    let _ = writeln!(out, "created:     {}", date(identity.created()));
    let _ = writeln!(out, "verify key:  {}", identity.verify_key());
    let _ = writeln!(out, "age key:     {}", identity.age_recipient());
    let _ = writeln!(out, "fingerprint: {}", identity.fingerprint());
    let _ = writeln!(out, "uri:         {}", identity.public().to_uri());
    if let Ok(f) = mtos_client::openpgp::fingerprint(identity) {
        let _ = writeln!(out, "openpgp:     {f}");
    }
}

fn new(home: &Home, label: Option<String>, private: bool) -> Result<String, ClientError> {
    let mut out = String::new();
    let visibility = if private {
        Visibility::Private
    } else {
        Visibility::Public
    };
    let label = label.map(Label::new).transpose()?;
    let identity = modify(home, true, |keychain| {
        let label = match label {
            Some(l) => l,
            None => keychain.free_label()?,
        };
        let identity = Identity::generate(&mut rand::rng(), label, visibility, now());
        keychain.add(identity.clone())?;
        Ok(identity)
    })?;
    let _ = writeln!(
        out,
        "created {} identity \"{}\"",
        visibility,
        identity.label()
    );
    describe(&mut out, &identity);
    Ok(out)
}

fn list(home: &Home) -> Result<String, ClientError> {
    let mut out = String::new();
    let keychain = open(home)?;
    if keychain.is_empty() {
        let _ = writeln!(out, "no identities (create one with `mtos id new`)");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<10}  {:<20}  {:<35}  LABEL",
        "ID", "VISIBILITY", "CREATED", "FINGERPRINT"
    );
    for identity in keychain.identities() {
        let _ = writeln!(
            out,
            "{:<16}  {:<10}  {:<20}  {:<35}  {}",
            identity.id(),
            identity.visibility().to_string(),
            date(identity.created()),
            identity.fingerprint().to_string(),
            identity.label()
        );
    }
    Ok(out)
}

fn show(home: &Home, query: &str, qr: bool, png: Option<&Path>) -> Result<String, ClientError> {
    let mut out = String::new();
    let keychain = open(home)?;
    let identity = keychain.find(query)?;
    describe(&mut out, identity);
    if identity.visibility() == Visibility::Private {
        let _ = writeln!(out, "(private: share the URI out of band only)");
    }
    if qr {
        // Uppercase: the same URI, encoded in the QR alphanumeric mode.
        let uri = identity.public().to_uri().to_ascii_uppercase();
        let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
            .map_err(|e| ClientError::Refused(format!("cannot draw the QR code: {e}")))?;
        let art = code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build();
        let _ = writeln!(out, "{art}");
    }
    if let Some(path) = png {
        let uri = identity.public().to_uri().to_ascii_uppercase();
        crate::common::write_new_file(path, &mtos_client::qr::png(&uri, 8)?)?;
        eprintln!(
            "wrote the QR code of \"{}\" to {}",
            identity.label(),
            path.display()
        );
    }
    Ok(out)
}

fn compare(home: &Home, query: &str, uri: &str) -> Result<String, ClientError> {
    let mut out = String::new();
    let contact = PublicIdentity::from_uri(uri)?;
    let keychain = open(home)?;
    let me = keychain.find(query)?;
    let number = SafetyNumber::between(&me.fingerprint(), &contact.fingerprint());
    let _ = writeln!(
        out,
        "safety number of \"{}\" and \"{}\" ({}):",
        me.label(),
        contact.label(),
        contact.id()
    );
    let _ = writeln!(out, "{number}");
    let _ = writeln!(
        out,
        "compare it with the one your contact sees; if all 60 digits match, you hold each other's real keys"
    );
    Ok(out)
}

fn export(
    home: &Home,
    query: &str,
    age: bool,
    output: Option<&Path>,
) -> Result<String, ClientError> {
    let mut out = String::new();
    let keychain = open(home)?;
    let identity = keychain.find(query)?;
    let text = if age {
        zeroize::Zeroizing::new(format!(
            "# mtos identity \"{}\" ({}), X25519 part\n# public key: {}\n{}\n",
            identity.label(),
            identity.id(),
            identity.age_recipient(),
            identity.age_secret_key().as_str()
        ))
    } else {
        identity.export_secret()
    };
    match output {
        Some(path) => {
            write_new_private_file(path, text.as_bytes())?;
            eprintln!(
                "wrote the secret keys of \"{}\" to {}",
                identity.label(),
                path.display()
            );
        }
        None => out.push_str(&text),
    }
    Ok(out)
}

fn import(home: &Home, path: &Path, label: Option<String>) -> Result<String, ClientError> {
    let mut out = String::new();
    let name = path.display().to_string();
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    let read = if name == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_IMPORT_FILE + 1)
            .read_to_end(&mut raw)
    } else {
        fs::File::open(path).and_then(|f| f.take(MAX_IMPORT_FILE + 1).read_to_end(&mut raw))
    };
    read.map_err(|source| ClientError::Io {
        path: path.to_owned(),
        source,
    })?;
    if raw.len() as u64 > MAX_IMPORT_FILE {
        return Err(ClientError::TooLarge {
            path: name,
            limit: MAX_IMPORT_FILE,
        });
    }
    let text = std::str::from_utf8(&raw).map_err(|_| ClientError::Import {
        path: name.clone(),
        source: mtos_crypto::ExportError::NotAnExport,
    })?;
    if mtos_client::openpgp::is_secret_key(text) {
        return crate::pgp::import(home, text, label);
    }
    let identity = Identity::import_secret(text).map_err(|source| ClientError::Import {
        path: name.clone(),
        source,
    })?;
    let identity = modify(home, true, |keychain| {
        keychain.add(identity.clone())?;
        Ok(identity)
    })?;
    let _ = writeln!(
        out,
        "imported {} identity \"{}\"",
        identity.visibility(),
        identity.label()
    );
    describe(&mut out, &identity);
    Ok(out)
}

fn passwd(home: &Home) -> Result<String, ClientError> {
    let mut out = String::new();
    let file = home.keychain();
    if !file.exists() {
        return Err(KeychainError::Missing(file.path().to_owned()).into());
    }
    let cost = passphrase::kdf_cost()?;
    let _lock = file.lock()?;
    let keychain = file.load(&passphrase::existing()?)?;
    let new = passphrase::replacement()?;
    file.save(&keychain, &new, cost)?;
    let _ = writeln!(
        out,
        "passphrase changed for the keychain of {} identit{}",
        keychain.len(),
        if keychain.len() == 1 { "y" } else { "ies" }
    );
    Ok(out)
}

fn rm(home: &Home, query: &str, yes: bool) -> Result<String, ClientError> {
    let mut out = String::new();
    let removed = modify(home, false, |keychain| {
        let identity = keychain.find(query)?;
        if !yes {
            confirm(
                &format!(
                    "remove identity \"{}\" ({})? its keys are lost unless exported [y/N] ",
                    identity.label(),
                    identity.id()
                ),
                "remove",
            )?;
        }
        Ok(keychain.remove(query)?)
    })?;
    let _ = writeln!(
        out,
        "removed identity \"{}\" ({})",
        removed.label(),
        removed.id()
    );
    Ok(out)
}
