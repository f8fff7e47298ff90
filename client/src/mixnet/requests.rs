//! Storage requests through the mixnet (`specs/storage.md` §4, §6), and
//! the checks that make a service node's answer worth something: a put
//! counts the receipts its replicas signed, a refusal counts only when a
//! replica signed it and the client's own check of the record agrees (or
//! the slot is taken), and a probe's slot is empty only when every
//! replica signed so (`mtos_mixnode::receipts`). A service node whose
//! answer is a lie is avoided for the rest of the session, and the work
//! goes on through the others.

use rand::seq::IteratorRandom;

use mtos_crypto::stamp::Stamp;
use mtos_mixnode::placement::{DEFAULT_REPLICAS, StorageNode, replicas, storage_nodes};
use mtos_mixnode::receipts::{
    Held, Lie, MAX_SIGNED_ANSWERS, PutOf, View, check_probe, check_put, decode_list,
};
use mtos_mixnode::records::{Kind, STAMP_RISE_MAX, make_stamp, validate};
use mtos_mixnode::service::Status;

use super::*;

/// How long a session keeps paying the effort replicas last asked for.
const EFFORT_MEMORY: Duration = Duration::from_secs(600);

/// Chunk stamps a session keeps made ahead of their puts (a few hundred
/// bytes each; 16,384 cover 56 MiB of chunks).
pub const STAMPS_AHEAD: usize = 16_384;

/// The effort a signed `low_effort N` refusal names (`storage.md` §2).
fn asked_effort(reason: &str) -> Option<u32> {
    reason.strip_prefix("low_effort ")?.parse().ok()
}

/// A service node's answer, and which service node gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// The service node's key.
    pub service: [u8; 32],
}

/// What one put proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// `receipts` of the record's replicas signed that they hold it
    /// (`expected` is K, or the storage nodes when fewer).
    Stored {
        /// Valid receipts.
        receipts: usize,
        /// Receipts a complete put has.
        expected: usize,
    },
    /// A replica signed a refusal that the client's own check of the
    /// record supports (or the slot is taken): asking again will not help,
    /// except for `quota` and `full`.
    Refused(String),
    /// No proof either way (unavailable, busy, a refusal the record's own
    /// check contradicts): ask again.
    Unproven(String),
    /// The service node lied; it is avoided from now on.
    Lied(Lie),
}

impl Session {
    /// Sends `op` on `locator` to a random service node through the
    /// mixnet, with a reply block for the answer, and waits for it at most
    /// `timeout` (`specs/storage.md` §4). The service node learns the
    /// locator, never this session's address.
    pub async fn request(
        &self,
        op: Op,
        locator: Locator,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        Ok(self.ask(op, locator, timeout).await?.response)
    }

    /// [`Session::request`], saying which service node answered, so that
    /// one caught lying can be avoided ([`Session::avoid`]). Service nodes
    /// avoided already are never picked.
    pub async fn ask(
        &self,
        op: Op,
        locator: Locator,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        self.ask_preferring(op, locator, timeout, &[]).await
    }

    /// [`Session::ask`] through a service node not in `tried` while there
    /// is one (so that asking again reaches another).
    async fn ask_preferring(
        &self,
        op: Op,
        locator: Locator,
        timeout: Duration,
        tried: &[[u8; 32]],
    ) -> Result<Answer, ClientError> {
        let doc = self.document();
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let missing = |what: &str| ClientError::from(NetError::NoRoute(what.to_owned()));
        let avoided = self.avoided.lock().map_err(|_| poisoned())?.clone();
        let usable: Vec<[u8; 32]> = doc
            .nodes
            .iter()
            .filter(|n| n.position() == Position::Service && !avoided.contains(&n.key))
            .map(|n| n.key)
            .collect();
        let service = pick_service(&mut rng, &usable, tried)
            .and_then(|key| doc.node(&key))
            .ok_or_else(|| missing("a service node not caught lying"))?;
        let (reply, block_id, recovery) = block_to_me(&mut rng, &doc, &self.address, None)
            .ok_or_else(|| missing("nodes and keys for the reply block"))?;
        let mut id = [0u8; 16];
        rng.fill(&mut id[..]);
        let request = Request {
            id,
            locator,
            op,
            reply,
        };
        let bytes = request
            .encode()
            .map_err(|e| ClientError::Invalid(format!("request: {e}")))?;
        let forward = doc
            .client_route(&mut rng, &self.address.gateway, service)
            .ok_or_else(|| missing("this session's gateway and a node in every layer"))?;
        let destination = Destination {
            address: service.key,
            surb_id: [0; SURB_ID_LEN],
        };
        let frame = doc
            .forward_frame(&mut rng, &forward, &destination, &bytes)
            .ok_or_else(|| missing("keys for the request"))?;
        let permit = self.outgoing.try_reserve().map_err(send_error)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut r = self.replies.lock().map_err(|_| poisoned())?;
            if r.requests.len() >= MAX_PENDING_REQUESTS {
                return Err(NetError::QueueFull(format!(
                    "the request table ({MAX_PENDING_REQUESTS} requests)"
                ))
                .into());
            }
            r.requests.insert(block_id, (recovery, tx));
        }
        permit.send(Outgoing::Frame {
            frame,
            returns: true,
        });
        let answer = tokio::time::timeout(timeout, rx).await;
        if let Ok(mut r) = self.replies.lock() {
            r.requests.remove(&block_id);
        }
        let body = answer
            .map_err(|_| NetError::Timeout(format!("the service node ({} s)", timeout.as_secs())))?
            .map_err(|_| NetError::Closed("the session ended".into()))??;
        let response = Response::decode(&body)
            .map_err(|e| NetError::BadAnswer(format!("service response: {e}")))?;
        if response.id != id {
            return Err(NetError::BadAnswer("a response to another request".into()).into());
        }
        Ok(Answer {
            response,
            service: service.key,
        })
    }

    /// The storage nodes and epoch of this session's document: what its
    /// checks of signed answers place records by.
    fn placement(&self) -> (Vec<StorageNode>, u32) {
        let doc = self.document();
        (storage_nodes(&doc), doc.epoch)
    }

    /// Never asks `service` again in this session (it was caught lying).
    pub fn avoid(&self, service: [u8; 32]) {
        if let Ok(mut a) = self.avoided.lock() {
            a.insert(service);
        }
    }

    /// Service nodes this session avoids.
    pub fn avoided(&self) -> Vec<[u8; 32]> {
        self.avoided
            .lock()
            .map(|a| a.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Puts `record` of `kind` at `locator` through one service node and
    /// checks the receipts (`specs/storage.md` §4): one attempt, with a
    /// stamp of the document's floor effort (or what replicas asked for
    /// in the last ten minutes). When a replica signs that it needs more
    /// (`low_effort N`), the put is made again with the effort it named
    /// (at least twice the last), up to what replicas may ask under this
    /// document (1,024 × its floor); a replica asking more is not paid.
    /// A service node that refuses for effort a stamp at the document's
    /// floor is avoided (it lies, or its document differs).
    pub async fn put(
        &self,
        kind: Kind,
        locator: Locator,
        record: Vec<u8>,
        timeout: Duration,
    ) -> Result<PutOutcome, ClientError> {
        // A record that fails its own check is refused here, sending
        // nothing (a put's locator is the one its record names).
        if let Err(e) = validate(kind, &locator, &record) {
            return Ok(PutOutcome::Refused(e.name().into()));
        }
        let (mut effort, most) = self.put_effort();
        loop {
            let outcome = self
                .put_with(kind, locator, record.clone(), effort, timeout)
                .await?;
            let PutOutcome::Refused(reason) = &outcome else {
                return Ok(outcome);
            };
            let Some(need) = asked_effort(reason) else {
                return Ok(outcome);
            };
            let next = need.max(effort.saturating_mul(2));
            if next > most || effort >= most {
                return Ok(outcome);
            }
            effort = next;
            if let Ok(mut e) = self.stamp_effort.lock() {
                *e = Some((effort, std::time::Instant::now()));
            }
        }
    }

    /// The effort a put starts at (the document's floor, or what replicas
    /// asked for in the last ten minutes), and the most it may rise to.
    fn put_effort(&self) -> (u32, u32) {
        let floor = self.document().storage.stamp_floor;
        let most = floor.saturating_mul(1 << STAMP_RISE_MAX);
        let remembered = self
            .stamp_effort
            .lock()
            .ok()
            .and_then(|e| *e)
            .filter(|(_, at)| at.elapsed() < EFFORT_MEMORY)
            .map_or(0, |(e, _)| e);
        (floor.max(remembered).min(most), most)
    }

    /// Makes the stamp a put of `chunk` at `locator` will carry, ahead of
    /// it: stamping is a core's work (about 50 ms at the default floor),
    /// which a transfer does before its puts, on every core, so that the
    /// puts go at the rate of the payload slots (in a bulk window, faster
    /// than one core stamps; `client.md` §4.1). Kept until the put takes
    /// it, [`STAMPS_AHEAD`] at most (more are not kept).
    pub async fn prepare_stamp(&self, locator: Locator, chunk: Vec<u8>) -> Result<(), ClientError> {
        let (effort, _) = self.put_effort();
        let epoch = self.document().epoch;
        let skip = self.stamps.lock().map_or(true, |mut s| {
            if s.len() >= STAMPS_AHEAD {
                // Stamps of another epoch or effort will not be taken.
                s.retain(|(_, e, f), _| *e == epoch && *f == effort);
            }
            s.len() >= STAMPS_AHEAD || s.contains_key(&(locator, epoch, effort))
        });
        if skip {
            return Ok(());
        }
        let stamp = self
            .make_stamp(Kind::Chunk, locator, chunk, effort, epoch)
            .await?;
        if let Ok(mut s) = self.stamps.lock()
            && s.len() < STAMPS_AHEAD
        {
            s.insert((locator, epoch, effort), stamp);
        }
        Ok(())
    }

    /// A stamp of `effort` for the record: one made ahead
    /// ([`Session::prepare_stamp`]), or one made now off the runtime's
    /// workers (about `effort` × 3 ms of one core).
    async fn stamp(
        &self,
        kind: Kind,
        locator: Locator,
        record: Vec<u8>,
        effort: u32,
    ) -> Result<Stamp, ClientError> {
        let epoch = self.document().epoch;
        if kind == Kind::Chunk
            && let Some(stamp) = self
                .stamps
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&(locator, epoch, effort)))
        {
            return Ok(stamp);
        }
        self.make_stamp(kind, locator, record, effort, epoch).await
    }

    async fn make_stamp(
        &self,
        kind: Kind,
        locator: Locator,
        record: Vec<u8>,
        effort: u32,
        epoch: u32,
    ) -> Result<Stamp, ClientError> {
        let start: u64 = rand::random();
        tokio::task::spawn_blocking(move || {
            make_stamp(kind, &locator, &record, epoch, effort, start)
        })
        .await
        .map_err(|e| ClientError::Stamp(e.to_string()))
    }

    /// One put with a stamp of `effort`.
    async fn put_with(
        &self,
        kind: Kind,
        locator: Locator,
        record: Vec<u8>,
        effort: u32,
        timeout: Duration,
    ) -> Result<PutOutcome, ClientError> {
        let stamp = self.stamp(kind, locator, record.clone(), effort).await?;
        let answer = self
            .ask(Op::Put(kind, record.clone(), stamp), locator, timeout)
            .await?;
        let (storage, epoch) = self.placement();
        let view = View {
            storage: &storage,
            k: DEFAULT_REPLICAS,
            epoch,
        };
        let r = &answer.response;
        // A service node refuses a bad record itself, asking no replica
        // (`storage.md` §4): the client's own check is the proof.
        // So does a stamp below the document's floor, which this client
        // never sends below its document's floor: a service node that
        // refuses one at the floor or above for effort lies, or holds
        // another document; either way it is avoided, and the put is
        // unproven (asked again elsewhere), never paid for more.
        if r.status == Status::Refused && r.body.starts_with(b"low_effort") {
            self.avoid(answer.service);
            return Ok(PutOutcome::Unproven(
                "a service node asked more than the document's stamp floor".into(),
            ));
        }
        if r.status == Status::Refused && validate(kind, &locator, &record).is_err() {
            let reason = match decode_list(&r.body) {
                Ok(list) => list
                    .iter()
                    .find(|a| a.detail.is_ascii() && !a.detail.is_empty())
                    .map_or_else(String::new, |a| {
                        String::from_utf8_lossy(&a.detail).into_owned()
                    }),
                Err(_) => String::from_utf8_lossy(&r.body).into_owned(),
            };
            return Ok(PutOutcome::Refused(reason));
        }
        let proof = match check_put(
            r.status,
            &r.body,
            &r.id,
            PutOf {
                kind,
                locator: &locator,
                record: &record,
                stamp: &stamp,
            },
            view,
        ) {
            Ok(proof) => proof,
            Err(lie) => {
                self.avoid(answer.service);
                return Ok(PutOutcome::Lied(lie));
            }
        };
        let expected = storage.len().min(DEFAULT_REPLICAS);
        if proof.stored >= expected {
            return Ok(PutOutcome::Stored {
                receipts: proof.stored,
                expected,
            });
        }
        if let Some(reason) = proof.refused {
            // A replica may refuse what it must not (a bad replica): a
            // reason about the record itself counts only when the
            // record fails the client's own check too.
            let replicas_say = matches!(reason.as_str(), "quota" | "full")
                || asked_effort(&reason).is_some()
                || (reason == "slot_taken" && kind == Kind::Slot);
            let about_record = !replicas_say;
            if !about_record || validate(kind, &locator, &record).is_err() {
                return Ok(PutOutcome::Refused(reason));
            }
            return Ok(PutOutcome::Unproven(format!(
                "a replica refused a valid record ({reason})"
            )));
        }
        Ok(PutOutcome::Unproven(match r.status {
            Status::Ok => format!("{} of {expected} receipts", proof.stored),
            other => format!("{other:?}"),
        }))
    }

    /// Which of `locators` hold a slot, by the replicas' signed answers:
    /// the locators go in as few probes as fit [`MAX_SIGNED_ANSWERS`]
    /// replicas each, every probe through a service node not caught
    /// lying and, while there is one, not in `tried` (to which the
    /// service nodes asked are added, so that asking again goes
    /// elsewhere). One attempt: a locator whose replicas did not all
    /// answer is [`Held::Unknown`].
    pub async fn probe(
        &self,
        locators: &[Locator],
        timeout: Duration,
        tried: &mut Vec<[u8; 32]>,
    ) -> Result<Vec<Held>, ClientError> {
        let (storage, epoch) = self.placement();
        let view = View {
            storage: &storage,
            k: DEFAULT_REPLICAS,
            epoch,
        };
        let mut out = vec![Held::Unknown; locators.len()];
        for group in probe_groups(locators, &storage, mtos_mixnode::service::MAX_PROBE) {
            let asked: Vec<Locator> = group.iter().map(|&i| locators[i]).collect();
            let Some((first, more)) = asked.split_first() else {
                continue;
            };
            let answer = match self
                .ask_preferring(Op::Probe(more.to_vec()), *first, timeout, tried)
                .await
            {
                Ok(a) => {
                    tried.push(a.service);
                    a
                }
                Err(ClientError::Network(NetError::Closed(why))) => {
                    return Err(NetError::Closed(why).into());
                }
                Err(ClientError::Network(NetError::NoRoute(why))) => {
                    return Err(NetError::NoRoute(why).into());
                }
                // Unanswered: these stay unknown.
                Err(_) => continue,
            };
            let r = &answer.response;
            if r.status != Status::Ok {
                continue;
            }
            match check_probe(&r.body, &r.id, &asked, view) {
                Ok(held) => {
                    for (&i, h) in group.iter().zip(held) {
                        out[i] = h;
                    }
                }
                Err(_) => self.avoid(answer.service),
            }
        }
        Ok(out)
    }
}

/// `locators` (indices) in probes of at most `max` locators whose
/// replicas number at most [`MAX_SIGNED_ANSWERS`] between them, in order.
pub fn probe_groups(locators: &[Locator], storage: &[StorageNode], max: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut nodes: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
    let mut current: Vec<usize> = Vec::new();
    for (i, l) in locators.iter().enumerate() {
        let mine = replicas(l, storage, DEFAULT_REPLICAS);
        let grown = mine.iter().filter(|n| !nodes.contains(*n)).count();
        if !current.is_empty() && (current.len() >= max || nodes.len() + grown > MAX_SIGNED_ANSWERS)
        {
            groups.push(std::mem::take(&mut current));
            nodes.clear();
        }
        nodes.extend(mine);
        current.push(i);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The service node a request goes through: uniformly among `usable`
/// ones not in `tried`, or among all `usable` when every one was tried.
/// Each request draws its own, so the probes of one poll round land on
/// service nodes independently: spreading them over distinct nodes would
/// tell a node that two windows it sees in one round are never one
/// follower's (`specs/feeds.md` §5).
pub fn pick_service<R: rand::Rng + ?Sized>(
    rng: &mut R,
    usable: &[[u8; 32]],
    tried: &[[u8; 32]],
) -> Option<[u8; 32]> {
    usable
        .iter()
        .filter(|k| !tried.contains(k))
        .choose(rng)
        .or_else(|| usable.iter().choose(rng))
        .copied()
}
