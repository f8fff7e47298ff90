//! `mtos contact ...`: other people's identities in the keychain, with how
//! each was obtained and whether its safety number was compared
//! (`specs/identity.md` §9).

use std::fmt::Write as _;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mtos_client::contacts::{self, Added};
use mtos_client::{ClientError, Home};
use mtos_crypto::keychain::{Contact, Source};
use mtos_crypto::{Identity, Keychain, Label, PublicIdentity, SafetyNumber};

use crate::common::{confirm, date, modify, now, open};

/// A file holding a URI is no larger than this.
const MAX_URI_FILE: u64 = 16 * 1024;

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Add a contact from its mtos:id: URI, a file holding one, a photo of
    /// its QR code, or its fingerprint (its card looked up on the network).
    ///
    /// A new contact is unverified: compare the safety number that `mtos
    /// contact show` prints with the one your contact sees, then run `mtos
    /// contact verify`. Adding someone who is already a contact with other
    /// keys flags that contact instead of replacing its keys.
    ///
    /// Example: mtos contact add mtos:id:... --label bob
    Add {
        /// The contact's mtos:id: URI.
        #[arg(required_unless_present_any = ["file", "fingerprint", "qr_image"], conflicts_with_all = ["file", "fingerprint", "qr_image"])]
        uri: Option<String>,
        /// Read the URI from this file (- for stdin).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["fingerprint", "qr_image"])]
        file: Option<PathBuf>,
        /// Read the URI from a photo or screenshot of its QR code (PNG or JPEG).
        #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
        qr_image: Option<PathBuf>,
        /// Look the card up on the network by its 30-digit fingerprint.
        #[arg(long, value_name = "DIGITS")]
        fingerprint: Option<String>,
        /// What to call the contact [default: the label they chose].
        #[arg(long, short)]
        label: Option<String>,
    },
    /// List the contacts.
    ///
    /// Example: mtos contact list
    List,
    /// Show a contact: keys, fingerprint, URI, how it was obtained, and the
    /// safety number to compare with it.
    ///
    /// Example: mtos contact show bob --as alice
    Show {
        /// Label or id prefix.
        contact: String,
        /// Your identity for the safety number [default: your only one].
        #[arg(long = "as", value_name = "ID")]
        as_id: Option<String>,
    },
    /// Mark a contact verified once its safety number matched.
    ///
    /// Prints the safety number and asks whether the 60 digits match the
    /// ones your contact sees (--yes answers for scripts). With
    /// --accept-change, takes a flagged contact's new keys.
    ///
    /// Example: mtos contact verify bob --as alice
    Verify {
        /// Label or id prefix.
        contact: String,
        /// Your identity for the safety number [default: your only one].
        #[arg(long = "as", value_name = "ID")]
        as_id: Option<String>,
        /// Take the new keys a flagged contact was seen with.
        #[arg(long)]
        accept_change: bool,
        /// The numbers were compared: do not ask.
        #[arg(long, short)]
        yes: bool,
    },
    /// Invite someone to exchange identities by short code, through the mixnet.
    ///
    /// Prints a code such as `7-guitar-orbit` once the invitation is on the
    /// network; read it to the other person (in person, by phone), who runs
    /// `mtos contact accept CODE`. Both of you then hold each other's keys,
    /// verified: only someone with the code could have answered. A wrong
    /// code, or anyone else answering, fails the exchange for both. Runs
    /// through the screen (`mtos screen start`).
    ///
    /// Example: mtos contact invite --as alice
    Invite {
        /// Your identity to hand over [default: your only one].
        #[arg(long = "as", value_name = "ID")]
        as_id: Option<String>,
        /// Seconds the invitation stays open (30 to 3600).
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
    /// Accept a short code someone read to you, and exchange identities.
    ///
    /// One try: a mistyped word is refused before anything is sent, but a
    /// wrong code that parses spends the invitation (ask for a new one).
    /// Without CODE it is asked for, so other users of this machine do not
    /// see it among the running commands.
    ///
    /// Example: mtos contact accept 7-guitar-orbit --label alice
    Accept {
        /// The code, e.g. 7-guitar-orbit (spaces or dashes) [default: asked for].
        code: Vec<String>,
        /// Your identity to hand over [default: your only one].
        #[arg(long = "as", value_name = "ID")]
        as_id: Option<String>,
        /// What to call the new contact [default: the label they chose].
        #[arg(long, short)]
        label: Option<String>,
    },
    /// Give a contact another label.
    ///
    /// Example: mtos contact rename bob "bob (work)"
    Rename {
        /// Label or id prefix.
        contact: String,
        /// The new label.
        label: String,
    },
    /// Remove a contact.
    ///
    /// Example: mtos contact rm bob --yes
    Rm {
        /// Label or id prefix.
        contact: String,
        /// Do not ask for confirmation (required when not on a terminal).
        #[arg(long, short)]
        yes: bool,
    },
}

impl ContactCommand {
    /// Whether it reaches the network.
    pub fn uses_network(&self) -> bool {
        matches!(
            self,
            ContactCommand::Add {
                fingerprint: Some(_),
                ..
            }
        )
    }

    /// Whether it runs only through the screen.
    fn needs_screen(&self) -> bool {
        matches!(
            self,
            ContactCommand::Invite { .. } | ContactCommand::Accept { .. }
        )
    }
}

pub fn run(home: &Home, cmd: ContactCommand, via_screen: bool) -> Result<String, ClientError> {
    if cmd.needs_screen() && !via_screen {
        return Err(ClientError::Refused(
            "short-code exchanges run through the screen's session: drop --no-screen".into(),
        ));
    }
    match cmd {
        ContactCommand::Invite { as_id, wait } => {
            exchanged(crate::via::contact_invite(home, as_id, Some(wait))?)
        }
        ContactCommand::Accept { code, as_id, label } => {
            let code = if code.is_empty() {
                ask_code()?
            } else {
                code.join(" ")
            };
            exchanged(crate::via::contact_accept(home, code, as_id, label)?)
        }
        ContactCommand::Add {
            uri,
            file,
            qr_image,
            fingerprint,
            label,
        } => {
            let (record, source) = match (uri, file, qr_image, fingerprint) {
                (Some(uri), ..) => (PublicIdentity::from_uri(&uri)?, Source::Uri),
                (_, Some(file), ..) => (read_uri_file(&file)?, Source::File),
                (_, _, Some(image), _) => (read_qr_image(&image)?, Source::QrCode),
                (_, _, _, Some(digits)) => {
                    let card = if via_screen {
                        crate::via::card_info(home, &digits)?
                    } else {
                        crate::net::card_info(home, &digits)?
                    };
                    (
                        PublicIdentity::from_uri(&card.uri)?,
                        Source::FingerprintLookup,
                    )
                }
                _ => {
                    return Err(ClientError::Refused(
                        "give the contact's URI, --file or --fingerprint".into(),
                    ));
                }
            };
            add(home, record, source, label)
        }
        ContactCommand::List => list(&open(home)?),
        ContactCommand::Show { contact, as_id } => {
            let keychain = open(home)?;
            let mut out = String::new();
            describe(
                &mut out,
                keychain.find_contact(&contact)?,
                me(&keychain, as_id.as_deref()),
            );
            Ok(out)
        }
        ContactCommand::Verify {
            contact,
            as_id,
            accept_change,
            yes,
        } => verify(home, &contact, as_id.as_deref(), accept_change, yes),
        ContactCommand::Rename { contact, label } => {
            let label = Label::new(label)?;
            modify(home, false, |k| {
                Ok(k.relabel_contact(&contact, label.clone())?)
            })?;
            Ok(format!("contact \"{contact}\" is now \"{label}\"\n"))
        }
        ContactCommand::Rm { contact, yes } => {
            let removed = modify(home, false, |keychain| {
                let c = keychain.find_contact(&contact)?;
                if !yes {
                    confirm(
                        &format!(
                            "remove contact \"{}\" ({})? [y/N] ",
                            c.label(),
                            c.identity().id()
                        ),
                        "remove a contact",
                    )?;
                }
                Ok(keychain.remove_contact(&contact)?)
            })?;
            Ok(format!(
                "removed contact \"{}\" ({})\n",
                removed.label(),
                removed.identity().id()
            ))
        }
    }
}

/// The code, read from standard input (asked for on a terminal).
pub(crate) fn ask_code() -> Result<String, ClientError> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprint!("code: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(1024)
        .read_line(&mut line)
        .map_err(|source| ClientError::Io {
            path: "stdin".into(),
            source,
        })?;
    Ok(line.trim().to_owned())
}

/// What an exchange's end says.
fn exchanged(info: mtos_client::screen::api::ExchangeInfo) -> Result<String, ClientError> {
    match info.outcome.as_str() {
        "changed" => Err(ClientError::ContactChanged(info.label)),
        outcome => Ok(format!(
            "{} contact \"{}\", verified by the code\nid:          {}\nfingerprint: {}\nuri:         {}\nfeed:        {}\n",
            if outcome == "added" {
                "added"
            } else {
                "verified"
            },
            info.label,
            info.card.id,
            info.card.fingerprint,
            info.card.uri,
            info.card.feed,
        )),
    }
}

/// Adds `record`, or checks it against the contact with its verify key:
/// the same keys say so, other keys flag the contact (saved) and fail.
pub(crate) fn add(
    home: &Home,
    record: PublicIdentity,
    source: Source,
    label: Option<String>,
) -> Result<String, ClientError> {
    let label = label.map(Label::new).transpose()?;
    // The keychain is saved in every case: a flag must not be lost.
    modify(home, false, |keychain| {
        let (label, added) = contacts::add(keychain, &record, source, label.clone(), now())?;
        Ok(match added {
            Added::New => {
                let contact = keychain.find_contact(label.as_str())?;
                let mut out = format!("added contact \"{label}\" (unverified)\n");
                describe(&mut out, contact, me(keychain, None));
                Ok(out)
            }
            Added::Known => Ok(format!(
                "\"{label}\" is already your contact, with these keys (nothing changed)\n"
            )),
            Added::Changed => Err(ClientError::ContactChanged(label.to_string())),
        })
    })?
}

fn read_uri_file(path: &Path) -> Result<PublicIdentity, ClientError> {
    let name = path.display().to_string();
    let mut raw = Vec::new();
    let read = if name == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_URI_FILE + 1)
            .read_to_end(&mut raw)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_URI_FILE + 1).read_to_end(&mut raw))
    };
    read.map_err(|source| ClientError::Io {
        path: path.to_owned(),
        source,
    })?;
    if raw.len() as u64 > MAX_URI_FILE {
        return Err(ClientError::TooLarge {
            path: name,
            limit: MAX_URI_FILE,
        });
    }
    let text = String::from_utf8_lossy(&raw);
    let line = text
        .split_whitespace()
        .find(|w| w.to_ascii_lowercase().starts_with("mtos:id:"))
        .ok_or_else(|| ClientError::Refused(format!("{name} holds no mtos:id: URI")))?;
    Ok(PublicIdentity::from_uri(line)?)
}

fn read_qr_image(path: &Path) -> Result<PublicIdentity, ClientError> {
    let name = path.display().to_string();
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(mtos_client::qr::MAX_IMAGE_FILE + 1)
                .read_to_end(&mut raw)
        })
        .map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?;
    if raw.len() as u64 > mtos_client::qr::MAX_IMAGE_FILE {
        return Err(ClientError::TooLarge {
            path: name,
            limit: mtos_client::qr::MAX_IMAGE_FILE,
        });
    }
    let texts = mtos_client::qr::decode(&raw)?;
    let uri = mtos_client::qr::identity_uri(&texts)?;
    Ok(PublicIdentity::from_uri(&uri)?)
}

/// The identity a safety number is computed with: the one named, or the
/// only one.
fn me<'a>(keychain: &'a Keychain, as_id: Option<&str>) -> Option<&'a Identity> {
    match (as_id, keychain.identities()) {
        (Some(q), _) => keychain.find(q).ok(),
        (None, [only]) => Some(only),
        _ => None,
    }
}

fn list(keychain: &Keychain) -> Result<String, ClientError> {
    let mut out = String::new();
    if keychain.contacts().is_empty() {
        out.push_str("no contacts (add one with `mtos contact add`)\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<20}  {:<18}  {:<35}  LABEL",
        "ID", "VERIFIED", "SOURCE", "FINGERPRINT"
    );
    for c in keychain.contacts() {
        let verified = match (c.changed(), c.verified()) {
            (Some(_), _) => "KEYS CHANGED".to_owned(),
            (None, Some(t)) => date(t),
            (None, None) => "no".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<20}  {:<18}  {:<35}  {}",
            c.identity().id(),
            verified,
            c.source().to_string(),
            c.identity().fingerprint().to_string(),
            c.label()
        );
    }
    Ok(out)
}

fn describe(out: &mut String, c: &Contact, me: Option<&Identity>) {
    let id = c.identity();
    let _ = writeln!(out, "label:         {}", c.label());
    let _ = writeln!(out, "their label:   {}", id.label());
    let _ = writeln!(out, "id:            {}", id.id());
    let _ = writeln!(out, "source:        {}", c.source());
    let _ = writeln!(out, "added:         {}", date(c.added()));
    match c.verified() {
        Some(t) => {
            let _ = writeln!(out, "verified:      {}", date(t));
        }
        None => {
            let _ = writeln!(out, "verified:      no");
        }
    }
    let _ = writeln!(out, "verify key:    {}", id.verify_key());
    let _ = writeln!(out, "age key:       {}", id.age_recipient());
    let _ = writeln!(out, "fingerprint:   {}", id.fingerprint());
    let _ = writeln!(out, "uri:           {}", id.to_uri());
    if let Some(me) = me {
        let _ = writeln!(out, "safety number with \"{}\":", me.label());
        let _ = writeln!(
            out,
            "{}",
            SafetyNumber::between(&me.fingerprint(), &id.fingerprint())
        );
    }
    if let Some(new) = c.changed() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "KEYS CHANGED: this contact was seen with another encryption key. Nothing is sealed to it until you compare the new safety number and accept the change (mtos contact verify {} --accept-change), or remove it.",
            c.label()
        );
        let _ = writeln!(out, "new age key:     {}", new.age_recipient());
        let _ = writeln!(out, "new fingerprint: {}", new.fingerprint());
        if let Some(me) = me {
            let _ = writeln!(out, "new safety number with \"{}\":", me.label());
            let _ = writeln!(
                out,
                "{}",
                SafetyNumber::between(&me.fingerprint(), &new.fingerprint())
            );
        }
    }
}

fn verify(
    home: &Home,
    query: &str,
    as_id: Option<&str>,
    accept_change: bool,
    yes: bool,
) -> Result<String, ClientError> {
    let label = modify(home, false, |keychain| {
        let me = me(keychain, as_id).ok_or_else(|| {
            ClientError::Refused(
                "choose the identity whose safety number you compared: --as ID".into(),
            )
        })?;
        let contact = keychain.find_contact(query)?;
        let keys = contacts::keys_to_verify(contact, accept_change)?;
        let number = SafetyNumber::between(&me.fingerprint(), &keys.fingerprint());
        if !yes {
            confirm(
                &format!(
                    "safety number of \"{}\" and \"{}\":\n{number}\ndo all 60 digits match the ones your contact sees? [y/N] ",
                    me.label(),
                    contact.label()
                ),
                "mark a contact verified",
            )?;
        }
        let label = contact.label().to_string();
        contacts::mark_verified(keychain.find_contact_mut(query)?, accept_change, now());
        Ok(label)
    })?;
    Ok(format!(
        "contact \"{label}\" is verified{}\n",
        if accept_change {
            ", with its new keys"
        } else {
            ""
        }
    ))
}
