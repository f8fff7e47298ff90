//! Short-code exchanges through the screen's session
//! (`specs/transfer.md`): contacts (purpose 1) and a keychain moved from
//! one screen to another (purpose 2). The invitation's code goes out as
//! an event, the exchange runs until the other side finished or the
//! client left, and the keychain is saved with the passphrase the screen
//! holds.

use std::sync::Arc;
use std::time::Duration;

use mtos_crypto::keychain::bundle::Bundle;
use mtos_crypto::transfer::{Code, MAX_FRAMES, Purpose, Role};
use mtos_crypto::{Keychain, Label};

use super::api::{
    ApiError, CardInfo, ErrorKind, Event, ExchangeInfo, MAX_WAIT_SECS, Reply, SecretText,
};
use super::connection::Out;
use super::state::Screen;
use crate::ClientError;
use crate::contacts::{self, Outcome};
use crate::feeds::FeedBook;
use crate::shortcode::{self, Received, ShortCodeOptions};
use zeroize::Zeroizing;

/// The shortest wait an invitation may ask for.
const MIN_WAIT_SECS: u64 = 30;

fn api_err(e: ClientError) -> ApiError {
    ApiError::from(&e)
}

fn left() -> ApiError {
    ApiError::new(
        ErrorKind::Cancelled,
        "the client left: the exchange was stopped",
    )
}

/// Puts an invitation of `purpose` on the network through the screen's
/// session, open `wait_secs` (clamped; `None`: the default), and sends
/// its code to the client.
async fn open_invitation(
    screen: &Arc<Screen>,
    purpose: Purpose,
    wait_secs: Option<u64>,
    out: &mut impl Out,
) -> Result<
    (
        Arc<crate::mixnet::Session>,
        shortcode::Invitation,
        ShortCodeOptions,
    ),
    ApiError,
> {
    let wait = wait_secs
        .unwrap_or(shortcode::DEFAULT_WAIT.as_secs())
        .clamp(MIN_WAIT_SECS, MAX_WAIT_SECS);
    let options = ShortCodeOptions {
        wait: Duration::from_secs(wait),
        ..ShortCodeOptions::default()
    };
    let session = screen.session();
    let invitation = shortcode::invite(&session, purpose, &options)
        .await
        .map_err(api_err)?;
    out.event(Event::Code {
        code: invitation.code().to_string(),
        expires_secs: wait,
    })
    .await?;
    Ok((session, invitation, options))
}

/// [`super::api::Request::ContactInvite`].
pub(super) async fn invite(
    screen: &Arc<Screen>,
    id: Option<String>,
    wait_secs: Option<u64>,
    out: &mut impl Out,
) -> Result<Reply, ApiError> {
    let identity = screen.identity(id.as_deref()).await.map_err(api_err)?;
    screen.keychain_writable(false).map_err(api_err)?;
    let time_ms = crate::work::unix_ms();
    let make = move |t: &[u8]| Zeroizing::new(contacts::own_payload(&identity, time_ms, t));
    let (session, invitation, options) =
        open_invitation(screen, Purpose::Contact, wait_secs, out).await?;
    let theirs = tokio::select! {
        r = shortcode::complete_invitation(&session, invitation, make, &options) => r.map_err(api_err)?,
        () = out.gone() => return Err(left()),
    };
    save(screen, theirs, None).await
}

/// [`super::api::Request::ContactAccept`].
pub(super) async fn accept(
    screen: &Arc<Screen>,
    code: &str,
    id: Option<String>,
    label: Option<String>,
    out: &mut impl Out,
) -> Result<Reply, ApiError> {
    // A mistyped code is refused here, before the one try is spent.
    let code = Code::parse(Purpose::Contact, code).map_err(|e| api_err(e.into()))?;
    let label = label
        .map(Label::new)
        .transpose()
        .map_err(|e| api_err(e.into()))?;
    let identity = screen.identity(id.as_deref()).await.map_err(api_err)?;
    screen.keychain_writable(false).map_err(api_err)?;
    let session = screen.session();
    let time_ms = crate::work::unix_ms();
    let make = move |t: &[u8]| Zeroizing::new(contacts::own_payload(&identity, time_ms, t));
    let options = ShortCodeOptions::default();
    let theirs = tokio::select! {
        r = shortcode::accept(&session, &code, make, &options) => r.map_err(api_err)?,
        () = out.gone() => return Err(left()),
    };
    save(screen, theirs, label).await
}

/// Records the other side's card in the keychain.
async fn save(
    screen: &Arc<Screen>,
    theirs: Received,
    label: Option<Label>,
) -> Result<Reply, ApiError> {
    let now = mtos_net::unix_now();
    let done = screen
        .edit_keychain(move |keychain| {
            contacts::record(keychain, &theirs.payload, &theirs.transcript, label, now)
        })
        .await
        .map_err(api_err)?;
    Ok(Reply::Exchanged(ExchangeInfo {
        label: done.label,
        card: CardInfo::of(&done.card),
        outcome: match done.outcome {
            Outcome::Added => "added",
            Outcome::Verified => "verified",
            Outcome::Changed => "changed",
        }
        .into(),
    }))
}

/// [`super::api::Request::PairKeys`]: this screen invites; the other
/// screen's `send_keys` answers with a bundle, imported here.
pub(super) async fn pair(
    screen: &Arc<Screen>,
    wait_secs: Option<u64>,
    new_passphrase: Option<SecretText>,
    out: &mut impl Out,
) -> Result<Reply, ApiError> {
    if new_passphrase
        .as_ref()
        .is_some_and(|p| p.expose().chars().count() < 8)
    {
        return Err(ApiError::new(
            ErrorKind::BadInput,
            "a new keychain's passphrase has at least 8 characters",
        ));
    }
    // What arrives must be saved: refused now, not after the exchange.
    screen
        .keychain_writable(new_passphrase.is_some())
        .map_err(api_err)?;
    let (session, invitation, options) =
        open_invitation(screen, Purpose::Keys, wait_secs, out).await?;
    let answered = tokio::select! {
        r = shortcode::await_answer(&session, invitation, &options) => r.map_err(api_err)?,
        () = out.gone() => return Err(left()),
    };
    // Saved first, then acknowledged: the other screen reports success
    // only for keys this screen has written to its keychain.
    let saved = save_bundle(screen, answered.payload(), new_passphrase).await;
    let reply = match &saved {
        Ok(_) => vec![ACK_SAVED],
        Err(e) => {
            let mut r = vec![ACK_REFUSED];
            r.extend_from_slice(e.to_string().as_bytes());
            r.truncate(512);
            r
        }
    };
    answered
        .reply(&session, &reply, &options)
        .await
        .map_err(api_err)?;
    let (identities, contacts, skipped) = saved.map_err(api_err)?;
    Ok(Reply::Paired {
        identities,
        contacts,
        skipped,
    })
}

/// The acknowledgement of a pairing (`specs/transfer.md` §6): saved, or
/// refused followed by why.
const ACK_SAVED: u8 = 1;
const ACK_REFUSED: u8 = 0;
/// The furthest feed position a bundle may set: past any feed's real
/// length, short of overflowing the next slot's number.
const MAX_NEXT_SLOT: u64 = 1 << 40;

type Imported = (Vec<String>, u64, Vec<String>);

/// Decodes a bundle, adds it to the keychain and sets the feed positions
/// of the identities added.
async fn save_bundle(
    screen: &Arc<Screen>,
    payload: &[u8],
    new_passphrase: Option<SecretText>,
) -> Result<Imported, ClientError> {
    let bundle =
        Bundle::decode(payload).map_err(|e| ClientError::Invalid(format!("the keys sent: {e}")))?;
    let pass = new_passphrase.map(|p| mtos_crypto::SecretString::from(p.expose().to_owned()));
    let (imported, positions) = screen
        .edit_keychain_with(pass, move |keychain| Ok(import(keychain, bundle)))
        .await?;
    // Each identity's feed goes on from the furthest slot either screen
    // knows; a slot the other screen writes meanwhile is taken, and the
    // writer moves past it (`specs/feeds.md`).
    let _book = screen.book.lock().await;
    let mut book = FeedBook::load(&screen.home)?;
    for (id, next) in positions {
        let own = book.own.entry(id).or_insert(0);
        *own = (*own).max(next.min(MAX_NEXT_SLOT));
    }
    book.save(&screen.home)?;
    Ok(imported)
}

/// Adds a bundle's identities and contacts; what the keychain has
/// already (the same key, or a label in use) is skipped, one line each.
/// Returns what was added (each identity with its fingerprint, to compare
/// with the sending screen's) and the feed positions of the identities
/// added.
fn import(keychain: &mut Keychain, bundle: Bundle) -> (Imported, Vec<(String, u64)>) {
    let (mut added, mut contacts, mut skipped) = (Vec::new(), 0, Vec::new());
    let mut positions = Vec::new();
    for (identity, next) in bundle.identities {
        let label = identity.label().to_string();
        let (id, fingerprint) = (identity.id().to_string(), identity.fingerprint());
        match keychain.add(identity) {
            Ok(()) => {
                added.push(format!("{label} ({fingerprint})"));
                positions.push((id, next));
            }
            Err(e) => skipped.push(format!("identity \"{label}\": {e}")),
        }
    }
    for contact in bundle.contacts {
        let key = *contact.identity().verify_key();
        let label = contact.label().to_string();
        if keychain.contact_by_key(&key).is_some() || keychain.by_key(&key).is_some() {
            skipped.push(format!("contact \"{label}\": already in the keychain"));
            continue;
        }
        match keychain.add_contact(contact) {
            Ok(()) => contacts += 1,
            Err(e) => skipped.push(format!("contact \"{label}\": {e}")),
        }
    }
    ((added, contacts, skipped), positions)
}

/// [`super::api::Request::SendKeys`]: this screen answers another's
/// pairing code with the identities asked for and all contacts.
pub(super) async fn send_keys(
    screen: &Arc<Screen>,
    code: &str,
    ids: &[String],
    out: &mut impl Out,
) -> Result<Reply, ApiError> {
    let code = Code::parse(Purpose::Keys, code).map_err(|e| api_err(e.into()))?;
    let keychain = screen
        .keychain()
        .await
        .map_err(api_err)?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "no keychain in this home"))?;
    let chosen: Vec<mtos_crypto::Identity> = if ids.is_empty() {
        keychain.identities().to_vec()
    } else {
        ids.iter()
            .map(|q| keychain.find(q).cloned())
            .collect::<Result<_, _>>()
            .map_err(|e| api_err(e.into()))?
    };
    if chosen.is_empty() {
        return Err(ApiError::new(ErrorKind::NotFound, "no identity to send"));
    }
    let book = {
        let _book = screen.book.lock().await;
        FeedBook::load(&screen.home).map_err(api_err)?
    };
    let bundle = Bundle {
        identities: chosen
            .iter()
            .map(|i| {
                let next = book.own.get(&i.id().to_string()).copied().unwrap_or(0);
                (i.clone(), next)
            })
            .collect(),
        contacts: keychain.contacts().to_vec(),
    };
    let payload = bundle.encode();
    // Too large is refused before the code is spent.
    let frames = mtos_crypto::transfer::frames_for(Role::Accepter, payload.len());
    if frames > MAX_FRAMES {
        return Err(ApiError::new(
            ErrorKind::BadInput,
            format!(
                "{} identities and {} contacts are more than one pairing carries ({frames} frames of {MAX_FRAMES}): send fewer identities",
                bundle.identities.len(),
                bundle.contacts.len()
            ),
        ));
    }
    let session = screen.session();
    let options = ShortCodeOptions::default();
    let got = tokio::select! {
        r = shortcode::accept(&session, &code, move |_| payload, &options) => r.map_err(api_err)?,
        () = out.gone() => return Err(left()),
    };
    match got.payload.split_first() {
        Some((&ACK_SAVED, [])) => {}
        Some((&ACK_REFUSED, why)) => {
            return Err(ApiError::new(
                ErrorKind::Failure,
                format!(
                    "the other screen received the keys but could not save them: {}",
                    String::from_utf8_lossy(why)
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                ),
            ));
        }
        _ => {
            return Err(ApiError::new(
                ErrorKind::Failure,
                "the other screen answered with something other than an acknowledgement",
            ));
        }
    }
    Ok(Reply::KeysSent {
        identities: chosen
            .iter()
            .map(|i| format!("{} ({})", i.label(), i.fingerprint()))
            .collect(),
        contacts: bundle.contacts.len() as u64,
    })
}
