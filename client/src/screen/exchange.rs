//! Short-code contact exchange through the screen's session
//! (`specs/transfer.md`): the invitation's code goes out as an event, the
//! exchange runs until the other side finished or the client left, and
//! the contact is saved with the passphrase the screen holds.

use std::sync::Arc;
use std::time::Duration;

use mtos_crypto::Label;
use mtos_crypto::transfer::{Code, Purpose};

use super::api::{ApiError, CardInfo, ErrorKind, Event, ExchangeInfo, MAX_WAIT_SECS, Reply};
use super::connection::Out;
use super::state::Screen;
use crate::ClientError;
use crate::contacts::{self, Outcome};
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

/// [`super::api::Request::ContactInvite`].
pub(super) async fn invite(
    screen: &Arc<Screen>,
    id: Option<String>,
    wait_secs: Option<u64>,
    out: &mut impl Out,
) -> Result<Reply, ApiError> {
    let identity = screen.identity(id.as_deref()).await.map_err(api_err)?;
    let wait = wait_secs
        .unwrap_or(shortcode::DEFAULT_WAIT.as_secs())
        .clamp(MIN_WAIT_SECS, MAX_WAIT_SECS);
    let options = ShortCodeOptions {
        wait: Duration::from_secs(wait),
        ..ShortCodeOptions::default()
    };
    let session = screen.session();
    let time_ms = crate::work::unix_ms();
    let make = move |t: &[u8]| Zeroizing::new(contacts::own_payload(&identity, time_ms, t));
    let invitation = shortcode::invite(&session, Purpose::Contact, &options)
        .await
        .map_err(api_err)?;
    out.event(Event::Code {
        code: invitation.code().to_string(),
        expires_secs: wait,
    })
    .await?;
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
