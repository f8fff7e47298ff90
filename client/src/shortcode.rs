//! Short-code transfer through the mixnet (`specs/transfer.md` §3): the
//! inviter's and the accepter's steps, each a sequence of slot puts and
//! gets on the session. The cryptography is `mtos_crypto::transfer`.

use std::time::Duration;

use mtos_crypto::slot::SlotRecord;
use mtos_crypto::transfer::{
    BODY_LEN, Code, ELEMENT_LEN, Keys, MAX_CHANNEL, Pake, Purpose, Reassembly, Rendezvous, Role,
    TransferError, element_of, invite_body,
};
use mtos_mixnode::records::Kind;
use mtos_mixnode::service::{Op, Status};
use mtos_net::NetError;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::mixnet::{PutOutcome, Session};
use crate::transfer::TransferOptions;

/// How long an invitation stays open, and how long either side waits.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest an invitation may be asked to stay open.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The channel ranges an inviter draws from, shortest first: a range
/// whose channels it finds taken twice gives way to the next.
const CHANNEL_RANGES: [(u32, u32); 4] = [(1, 99), (100, 999), (1000, 9999), (10_000, MAX_CHANNEL)];
/// Channels tried in one range before the next, longer one.
const TRIES_PER_RANGE: usize = 3;
/// Epochs an accepter looks through, newest first.
const MAX_EPOCHS: usize = 8;

/// How a transfer runs.
#[derive(Debug, Clone, Copy)]
pub struct ShortCodeOptions {
    /// How long the invitation stays open and each side waits.
    pub wait: Duration,
    /// Time between two looks at a slot the other side has not written.
    pub poll: Duration,
    /// Each request's timeout and attempts.
    pub requests: TransferOptions,
}

impl Default for ShortCodeOptions {
    fn default() -> Self {
        Self {
            wait: DEFAULT_WAIT,
            poll: Duration::from_secs(3),
            requests: TransferOptions::default(),
        }
    }
}

/// Whether asking again through this session cannot help.
fn fatal(e: &NetError) -> bool {
    matches!(e, NetError::Closed(_) | NetError::NoRoute(_))
}

/// A put's end.
#[derive(Debug, PartialEq, Eq)]
enum Put {
    Stored,
    /// The slot holds another record.
    Taken,
}

/// Puts `record` at its slot until its replicas receipt it or say the
/// slot is taken by something else.
async fn put(
    session: &Session,
    at: &Rendezvous,
    role: Role,
    n: u64,
    body: &[u8],
    options: &ShortCodeOptions,
) -> Result<Put, ClientError> {
    let record = at.record(role, n, body)?;
    let locator = at.locator(role, n)?;
    let mut last = String::new();
    for attempt in 0..options.requests.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match session
            .put(
                Kind::Slot,
                locator,
                record.encode(),
                options.requests.timeout,
            )
            .await
        {
            Ok(PutOutcome::Stored { .. }) => return Ok(Put::Stored),
            Ok(PutOutcome::Refused(reason)) if reason == "slot_taken" => {
                // An earlier attempt of ours whose answer was lost, or
                // someone else's record: read it back to tell.
                return match get(session, at, role, n, options).await? {
                    Some(held) if held == body => continue_put(session, &record, options).await,
                    Some(_) => Ok(Put::Taken),
                    None => {
                        last = "the slot is taken, but no replica showed by what".into();
                        continue;
                    }
                };
            }
            Ok(PutOutcome::Refused(reason)) => last = format!("refused ({reason})"),
            Ok(PutOutcome::Unproven(why)) => last = why,
            Ok(PutOutcome::Lied(lie)) => last = format!("a service node lied ({lie})"),
            Err(ClientError::Network(e)) if fatal(&e) => return Err(e.into()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(NetError::GaveUp(format!("a transfer slot was not stored: {last}")).into())
}

/// Our own record is in the slot on some replicas: put it again until
/// all of them receipt it.
async fn continue_put(
    session: &Session,
    record: &SlotRecord,
    options: &ShortCodeOptions,
) -> Result<Put, ClientError> {
    let locator = mtos_crypto::slot::slot_locator(&record.key);
    for _ in 0..options.requests.attempts.max(1) {
        if let Ok(PutOutcome::Stored { .. }) = session
            .put(
                Kind::Slot,
                locator,
                record.encode(),
                options.requests.timeout,
            )
            .await
        {
            return Ok(Put::Stored);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(NetError::GaveUp("a transfer slot was not stored on every replica".into()).into())
}

/// The body of slot `n` of `role`, if a replica shows a record that
/// belongs there (any record: the seeds are public, so who wrote it is
/// what the frames' keys tell).
async fn get(
    session: &Session,
    at: &Rendezvous,
    role: Role,
    n: u64,
    options: &ShortCodeOptions,
) -> Result<Option<Vec<u8>>, ClientError> {
    let locator = at.locator(role, n)?;
    match session
        .request(Op::Get(Kind::Slot), locator, options.requests.timeout)
        .await
    {
        // Any record that belongs at the slot counts as the slot's, of
        // whatever length: a body that is not a transfer's is someone
        // else's write (the seeds are public), which the steps refuse.
        Ok(r) if r.status == Status::Ok => Ok(SlotRecord::decode(&r.body)
            .ok()
            .filter(|record| record.verify(&locator).is_ok())
            .map(|record| record.body)),
        Ok(_) => Ok(None),
        Err(ClientError::Network(e)) if fatal(&e) => Err(e.into()),
        Err(_) => Ok(None),
    }
}

/// Waits for slot `n` of `role` until `deadline`.
async fn wait_for(
    session: &Session,
    at: &Rendezvous,
    role: Role,
    n: u64,
    deadline: tokio::time::Instant,
    options: &ShortCodeOptions,
) -> Result<Option<Vec<u8>>, ClientError> {
    loop {
        if let Some(body) = get(session, at, role, n, options).await? {
            return Ok(Some(body));
        }
        if tokio::time::Instant::now() + options.poll > deadline {
            return Ok(None);
        }
        tokio::time::sleep(options.poll).await;
    }
}

fn random_body(rng: &mut impl Rng) -> Vec<u8> {
    let mut b = vec![0u8; BODY_LEN];
    rng.fill_bytes(&mut b);
    b
}

fn entropy(rng: &mut impl Rng) -> [u8; 64] {
    let mut e = [0u8; 64];
    rng.fill_bytes(&mut e);
    e
}

/// The epoch the network's clock is in.
fn epoch_now(session: &Session) -> u64 {
    u64::from(session.document().schedule.epoch_at(mtos_net::unix_now()))
}

/// An invitation on the network, its code ready to show.
#[derive(Debug)]
pub struct Invitation {
    code: Code,
    at: Rendezvous,
    pake: Pake,
}

impl Invitation {
    /// The code to read to the other side.
    pub fn code(&self) -> &Code {
        &self.code
    }
}

/// Draws a channel and puts the invitation (step 1); it is on the
/// network once this returns.
pub async fn invite(
    session: &Session,
    purpose: Purpose,
    options: &ShortCodeOptions,
) -> Result<Invitation, ClientError> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut last = String::new();
    for (low, high) in CHANNEL_RANGES {
        for _ in 0..TRIES_PER_RANGE {
            let channel = rng.random_range(low..=high);
            let code = Code::random(purpose, channel, &mut rng)?;
            let at = Rendezvous {
                purpose,
                epoch: epoch_now(session),
                channel,
            };
            let pake = Pake::start(&code, at, Role::Inviter, &entropy(&mut rng));
            let mut fill = [0u8; BODY_LEN - ELEMENT_LEN];
            rng.fill_bytes(&mut fill);
            let body = invite_body(&pake.element(), &fill);
            // A channel taken, or one whose slot could not be proven
            // (someone's write of another length, a replica that does
            // not answer): another channel.
            match put(session, &at, Role::Inviter, 0, &body, options).await {
                Ok(Put::Stored) => return Ok(Invitation { code, at, pake }),
                Ok(Put::Taken) => last = format!("channel {channel} was taken"),
                Err(ClientError::Network(e)) if fatal(&e) => return Err(e.into()),
                Err(e) => last = e.to_string(),
            }
        }
    }
    Err(ClientError::Conflict(format!(
        "no channel could be used ({last}): the network may be under a flood of invitations; try again later"
    )))
}

/// What an exchange brought: the other side's payload and the
/// transcript both sides' payloads may sign ([`Keys::transcript`]).
#[derive(Debug)]
pub struct Received {
    /// The other side's payload.
    pub payload: Zeroizing<Vec<u8>>,
    /// The exchange's transcript.
    pub transcript: Vec<u8>,
}

/// Waits for the accepter, checks its frames, then sends the payload
/// `make` builds over the transcript (steps 3 and 4).
pub async fn complete_invitation(
    session: &Session,
    invitation: Invitation,
    make: impl FnOnce(&[u8]) -> Zeroizing<Vec<u8>>,
    options: &ShortCodeOptions,
) -> Result<Received, ClientError> {
    let answered = await_answer(session, invitation, options).await?;
    let transcript = answered.keys.transcript();
    let payload = make(&transcript);
    answered.reply(session, &payload, options).await
}

/// An invitation answered: the accepter's payload, opened, before this
/// side's own goes out ([`Answered::reply`]), so that what the reply says
/// may depend on what was done with it (a keychain saved).
#[derive(Debug)]
pub struct Answered {
    keys: Keys,
    at: Rendezvous,
    payload: Zeroizing<Vec<u8>>,
}

impl Answered {
    /// The accepter's payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The exchange's transcript ([`Keys::transcript`]).
    pub fn transcript(&self) -> Vec<u8> {
        self.keys.transcript()
    }

    /// Sends this side's payload (step 4's other half).
    pub async fn reply(
        self,
        session: &Session,
        payload: &[u8],
        options: &ShortCodeOptions,
    ) -> Result<Received, ClientError> {
        send(session, &self.keys, &self.at, payload, options).await?;
        Ok(Received {
            transcript: self.keys.transcript(),
            payload: self.payload,
        })
    }
}

/// Waits for the accepter and opens its frames (step 3); the inviter's
/// own payload is not sent yet.
pub async fn await_answer(
    session: &Session,
    invitation: Invitation,
    options: &ShortCodeOptions,
) -> Result<Answered, ClientError> {
    let Invitation { at, pake, .. } = invitation;
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let deadline = tokio::time::Instant::now() + options.wait;
    let first = match wait_for(session, &at, Role::Accepter, 0, deadline, options).await? {
        Some(body) => body,
        None => {
            // Close the channel, so a late accept fails at once.
            match put(
                session,
                &at,
                Role::Accepter,
                0,
                &random_body(&mut rng),
                options,
            )
            .await
            {
                Ok(Put::Stored) | Err(_) => {
                    return Err(ClientError::NotFound(format!(
                        "nobody accepted the invitation within {} s; it is closed",
                        options.wait.as_secs()
                    )));
                }
                // Answered just now: go on with it.
                Ok(Put::Taken) => get(session, &at, Role::Accepter, 0, options)
                    .await?
                    .ok_or_else(|| ClientError::NotFound("the invitation expired".into()))?,
            }
        }
    };
    let keys = match element_of(&first).and_then(|e| pake.finish(&e)) {
        Ok(k) => k,
        Err(_) => return Err(abort(session, &at, options, TransferError::WrongCode.into()).await),
    };
    match receive(session, &keys, &at, Some(first), deadline, options).await {
        Ok(payload) => Ok(Answered { keys, at, payload }),
        Err(e) => Err(abort(session, &at, options, e).await),
    }
}

/// Tells the accepter the exchange failed: a random slot 1 of the
/// inviter, which it fails to open at once rather than waiting. Returns
/// `e`.
async fn abort(
    session: &Session,
    at: &Rendezvous,
    options: &ShortCodeOptions,
    e: ClientError,
) -> ClientError {
    let body = random_body(&mut StdRng::from_rng(&mut rand::rng()));
    let _ = put(session, at, Role::Inviter, 1, &body, options).await;
    e
}

/// Accepts `code` (step 2): sends the payload `make` builds over the
/// transcript, then returns the inviter's. One try: whatever fails, the
/// code is spent.
pub async fn accept(
    session: &Session,
    code: &Code,
    make: impl FnOnce(&[u8]) -> Zeroizing<Vec<u8>>,
    options: &ShortCodeOptions,
) -> Result<Received, ClientError> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let deadline = tokio::time::Instant::now() + options.wait;
    let schedule = session.document().schedule;
    let now = mtos_net::unix_now();
    let newest = schedule.epoch_at(now);
    // Every epoch an invitation still open may have been made in.
    let oldest = schedule.epoch_at(now.saturating_sub(MAX_WAIT.as_secs()));
    let mut found = Vec::new();
    for look in 0..2 {
        if look > 0 {
            tokio::time::sleep(options.poll).await;
        }
        for epoch in (oldest..=newest).rev().take(MAX_EPOCHS) {
            let at = Rendezvous {
                purpose: code.purpose(),
                epoch: u64::from(epoch),
                channel: code.channel(),
            };
            if let Some(body) = get(session, &at, Role::Inviter, 0, options).await? {
                found.push((at, body));
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    let (at, invite) = match found.len() {
        0 => {
            return Err(ClientError::NotFound(format!(
                "no invitation on channel {}: it expired, or the number was mistyped",
                code.channel()
            )));
        }
        1 => found.remove(0),
        _ => {
            // Invitations on this channel in two epochs: one is not the
            // person's (someone writes channels ahead to answer in their
            // place). Answering neither spends no guess; each is closed,
            // so its inviter fails at once too.
            for (at, _) in &found {
                let _ = put(
                    session,
                    at,
                    Role::Accepter,
                    0,
                    &random_body(&mut rng),
                    options,
                )
                .await;
            }
            return Err(ClientError::Conflict(format!(
                "channel {} holds invitations of {} epochs: someone may be interfering; nothing was sent: ask for a new code",
                code.channel(),
                found.len()
            )));
        }
    };
    let pake = Pake::start(code, at, Role::Accepter, &entropy(&mut rng));
    let keys = pake.finish(&element_of(&invite).map_err(|_| {
        ClientError::Conflict(format!(
            "channel {} holds something that is not an invitation (someone wrote over it): ask for a new code",
            code.channel()
        ))
    })?)?;
    let transcript = keys.transcript();
    send(session, &keys, &at, &make(&transcript), options).await?;
    let payload = receive(session, &keys, &at, None, deadline, options).await?;
    Ok(Received {
        payload,
        transcript,
    })
}

/// Puts this side's frames in order; a taken slot is someone else's
/// answer to the same invitation.
async fn send(
    session: &Session,
    keys: &Keys,
    at: &Rendezvous,
    payload: &[u8],
    options: &ShortCodeOptions,
) -> Result<(), ClientError> {
    let role = keys.role();
    for (slot, body) in keys.seal(payload)? {
        if put(session, at, role, slot, &body, options).await? == Put::Taken {
            return Err(ClientError::Conflict(match role {
                Role::Accepter => "someone else answered this invitation first: the exchange failed; ask for a new code".into(),
                Role::Inviter => "someone else wrote into this exchange: it failed here, and may have completed on the other side: check with them, then make a new code".into(),
            }));
        }
    }
    Ok(())
}

/// Reads and opens the other side's frames (the first may be in hand).
async fn receive(
    session: &Session,
    keys: &Keys,
    at: &Rendezvous,
    mut first: Option<Vec<u8>>,
    deadline: tokio::time::Instant,
    options: &ShortCodeOptions,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let peer = keys.role().peer();
    let mut re = Reassembly::new(peer);
    loop {
        let i = re.next();
        let body = match first.take() {
            Some(b) => b,
            None => wait_for(session, at, peer, peer.frame_slot(i), deadline, options)
                .await?
                .ok_or_else(|| {
                    ClientError::NotFound(
                        "the other side stopped answering before the exchange was complete".into(),
                    )
                })?,
        };
        if let Some(done) = re.push(&keys.open(i, &body)?)? {
            return Ok(done);
        }
    }
}
