//! Feeds through the mixnet (`specs/feeds.md`): writing one's own entries,
//! and polling followed feeds with probes whose number and size do not
//! depend on how many feeds one follows.

use mtos_crypto::feed::{FeedEntry, FeedError, FeedKeys, FollowRef};
use mtos_crypto::item::{ItemRef, Locator};
use mtos_crypto::slot::{SlotRecord, slot_locator};
use mtos_mixnode::records::Kind;
use mtos_mixnode::service::{MAX_PROBE, Op, Status};
use mtos_net::NetError;
use rand::RngExt;
use rand::seq::SliceRandom;

use crate::error::ClientError;
use crate::mixnet::{PutOutcome, Session};
use crate::transfer::TransferOptions;
pub use mtos_mixnode::receipts::Held;

/// Locators in a padded probe (a card lookup): as many as one probe
/// request carries.
pub const PROBE_LOCATORS: usize = MAX_PROBE;
/// Slots in every poll probe: one feed's window (`specs/feeds.md` §5);
/// mixes' loops probe windows of this size too (`specs/mixing.md` §5).
pub const WINDOW: usize = mtos_mixnode::service::PROBE_WINDOW;
/// Probes in every poll round, whatever is followed: one per feed, or a
/// decoy's, each on its own route to its own service node.
pub const POLL_PROBES: usize = 4;
/// Slots tried past a taken one when writing (entries written elsewhere).
const MAX_TAKEN: u64 = 64;

/// Writes `item` as the next entry of the feed of `keys`, at `first_free`
/// or, when that slot was written from elsewhere (another machine of the
/// same identity), the next free one; returns the slot written.
pub async fn write_entry(
    session: &Session,
    keys: &FeedKeys,
    first_free: u64,
    item: &ItemRef,
    time_ms: u64,
    options: TransferOptions,
) -> Result<u64, ClientError> {
    let mut last = String::new();
    let mut n = first_free;
    let mut attempts = 0;
    while n < first_free.saturating_add(MAX_TAKEN) && attempts < options.attempts.max(1) {
        let record = keys
            .entry(n, item, time_ms)
            .map_err(|e| ClientError::Invalid(format!("feed entry: {e}")))?;
        let locator = slot_locator(&record.key);
        attempts += 1;
        match session
            .put(Kind::Slot, locator, record.encode(), options.timeout)
            .await
        {
            Ok(PutOutcome::Stored { .. }) => return Ok(n),
            Ok(PutOutcome::Refused(reason)) if reason == "slot_taken" => {
                // Written before: by an earlier run whose answer was lost
                // (then it is this very entry), or by this identity
                // elsewhere (then the next slot). What the slot holds is
                // read back; a replica's "taken" alone proves neither.
                let held = session
                    .request(Op::Get(Kind::Slot), locator, options.timeout)
                    .await
                    .ok()
                    .filter(|r| r.status == Status::Ok)
                    .and_then(|r| SlotRecord::decode(&r.body).ok())
                    .and_then(|record| {
                        let entry = keys.follow().open(n, &record).ok()?;
                        Some((record, entry))
                    });
                match held {
                    // This very entry: it counts once K replicas sign for
                    // it, so the record held is put again (a replica that
                    // holds it answers the duplicate with a receipt, one
                    // that lacks it stores it).
                    Some((record, entry)) if entry.item == *item => {
                        match session
                            .put(Kind::Slot, locator, record.encode(), options.timeout)
                            .await
                        {
                            Ok(PutOutcome::Stored { .. }) => return Ok(n),
                            other => {
                                last = format!(
                                    "slot {n} holds this entry, not proven on every replica: {other:?}"
                                );
                            }
                        }
                    }
                    Some(_) => {
                        n += 1;
                        attempts = 0;
                        continue;
                    }
                    None => last = format!("slot {n} is taken, but no replica showed by what"),
                }
            }
            Ok(PutOutcome::Refused(reason)) => last = format!("slot {n}: refused ({reason})"),
            Ok(PutOutcome::Unproven(why)) => last = format!("slot {n}: {why}"),
            Ok(PutOutcome::Lied(lie)) => {
                last = format!("slot {n}: a service node lied ({lie}) and is avoided");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(NetError::GaveUp(format!("the feed entry was not written: {last}")).into())
}

/// A followed feed and the next slot to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The follow URI's contents.
    pub follow: FollowRef,
    /// The first slot not read yet.
    pub next: u64,
}

/// What one poll probe asks about: a followed feed's window, or a
/// decoy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollProbe {
    /// The feed's index among the follows, or `None` for a decoy.
    pub feed: Option<usize>,
    /// The window's [`WINDOW`] slots, in order, with their locators.
    pub slots: Vec<(Locator, u64)>,
}

/// The probes of one poll round (`specs/feeds.md` §5): exactly `probes`
/// of them (fewer only when there are too few decoys), each one window of
/// [`WINDOW`] slots. With at most `probes` follows, every feed's window
/// from its `next` and decoy windows for the rest; with more, a rotating
/// share of `probes` feeds, so each is asked every `ceil(follows /
/// probes)` rounds. A decoy's window is its slots 0 to 7, every round:
/// never written, it looks like a feed with no new entries. Shuffled, so
/// the order they go out says nothing.
pub fn plan<R: rand::Rng + ?Sized>(
    follows: &[Followed],
    decoys: &[[u8; 32]],
    round: u64,
    probes: usize,
    rng: &mut R,
) -> Vec<PollProbe> {
    let window = |feed: &[u8; 32], from: u64| -> Vec<(Locator, u64)> {
        (0..WINDOW as u64)
            .filter_map(|d| {
                let n = from.saturating_add(d);
                mtos_crypto::feed::feed_slot_locator(feed, n)
                    .ok()
                    .map(|l| (l, n))
            })
            .collect()
    };
    let mut out = Vec::with_capacity(probes);
    let asked = follows.len().min(probes);
    let start = if follows.is_empty() {
        0
    } else {
        (round as usize).wrapping_mul(probes) % follows.len()
    };
    for k in 0..asked {
        let i = (start + k) % follows.len();
        out.push(PollProbe {
            feed: Some(i),
            slots: window(&follows[i].follow.feed, follows[i].next),
        });
    }
    for decoy in decoys.iter().take(probes - asked) {
        out.push(PollProbe {
            feed: None,
            slots: window(decoy, 0),
        });
    }
    out.shuffle(rng);
    out
}

/// A probe's locators: `wanted` (at most [`PROBE_LOCATORS`]) with random
/// locators up to exactly [`PROBE_LOCATORS`], shuffled; each entry names
/// the index in `wanted` it stands for, if any.
pub fn pad<R: rand::Rng + ?Sized>(
    wanted: &[Locator],
    rng: &mut R,
) -> Vec<(Locator, Option<usize>)> {
    let mut all: Vec<(Locator, Option<usize>)> = wanted
        .iter()
        .take(PROBE_LOCATORS)
        .enumerate()
        .map(|(i, l)| (*l, Some(i)))
        .collect();
    while all.len() < PROBE_LOCATORS {
        let mut l = [0u8; 32];
        rng.fill(&mut l[..]);
        all.push((Locator::from_bytes(l), None));
    }
    all.shuffle(rng);
    all
}

/// What a poll round found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// New entries, by feed index.
    pub entries: Vec<(usize, FeedEntry)>,
    /// Slots that held a record this feed's keys refuse (a forgery or a
    /// record of another feed at the locator): ignored.
    pub refused: Vec<(usize, u64, FeedError)>,
    /// Requests sent: the probe, then one get per slot found.
    pub requests: u64,
    /// Probes asked again, whole, through another service node because
    /// a replica did not answer (included in `requests`): a round's
    /// first asks are always [`POLL_PROBES`].
    pub asked_again: u64,
}

/// One poll round: the probes of [`plan`], all at once, each asking its
/// window alone ([`held_exactly`]) through a service node chosen for it
/// alone; then a get for each slot found, in slot order; a feed's `next`
/// moves past the entries read.
pub async fn poll<R: rand::Rng + ?Sized>(
    session: &Session,
    follows: &mut [Followed],
    decoys: &[[u8; 32]],
    round: u64,
    rng: &mut R,
    options: TransferOptions,
) -> Result<PollReport, ClientError> {
    let probes = plan(follows, decoys, round, POLL_PROBES, rng);
    let asked = futures::future::join_all(probes.iter().map(|p| {
        let locators: Vec<Locator> = p.slots.iter().map(|(l, _)| *l).collect();
        async move { held_exactly_counted(session, &locators, options).await }
    }))
    .await;
    let mut report = PollReport {
        requests: probes.len() as u64,
        ..PollReport::default()
    };
    let mut found: Vec<(usize, u64, Locator)> = Vec::new();
    for (probe, answer) in probes.iter().zip(asked) {
        let (answer, asks) = answer?;
        let again = u64::from(asks.saturating_sub(1));
        report.asked_again += again;
        report.requests += again;
        if let Some(i) = probe.feed {
            found.extend(
                probe
                    .slots
                    .iter()
                    .zip(answer)
                    .filter(|(_, h)| *h == Held::Held)
                    .map(|(&(l, n), _)| (i, n, l)),
            );
        }
    }
    found.sort_by_key(|&(i, n, _)| (i, n));
    for (i, n, locator) in found {
        // Entries are read in order: a gap stops this feed for the round.
        if n != follows[i].next {
            continue;
        }
        report.requests += 1;
        let r = session
            .request(Op::Get(Kind::Slot), locator, options.timeout)
            .await?;
        if r.status != Status::Ok {
            continue;
        }
        let opened = SlotRecord::decode(&r.body)
            .map_err(FeedError::Slot)
            .and_then(|record| follows[i].follow.open(n, &record));
        match opened {
            Ok(entry) => {
                follows[i].next = n + 1;
                report.entries.push((i, entry));
            }
            Err(e) => report.refused.push((i, n, e)),
        }
    }
    Ok(report)
}

/// Which of `wanted` (at most [`PROBE_LOCATORS`]) are held, by their
/// replicas' signed answers (`Session::probe`): asked with random
/// locators up to exactly [`PROBE_LOCATORS`], all shuffled (a card
/// lookup's fixed size), by [`held_exactly`], which asks the whole padded
/// set again while any of it is [`Held::Unknown`].
pub async fn held<R: rand::Rng + ?Sized>(
    session: &Session,
    wanted: &[Locator],
    rng: &mut R,
    options: TransferOptions,
) -> Result<Vec<Held>, ClientError> {
    let all = pad(wanted, rng);
    let locators: Vec<Locator> = all.iter().map(|(l, _)| *l).collect();
    let answers = held_exactly(session, &locators, options).await?;
    let mut out = vec![Held::Unknown; wanted.len().min(PROBE_LOCATORS)];
    for ((_, i), h) in all.iter().zip(answers) {
        if let Some(i) = i {
            out[*i] = h;
        }
    }
    Ok(out)
}

/// Which of `locators` are held, asked exactly as given. While any is
/// [`Held::Unknown`], the whole set is asked again through another
/// service node (one not asked yet, while there is one), up to
/// `options.attempts` times: asking only the unknown ones would tell the
/// second service node which locators the first could not answer.
pub async fn held_exactly(
    session: &Session,
    locators: &[Locator],
    options: TransferOptions,
) -> Result<Vec<Held>, ClientError> {
    Ok(held_exactly_counted(session, locators, options).await?.0)
}

/// [`held_exactly`], with the number of times the set was asked.
async fn held_exactly_counted(
    session: &Session,
    locators: &[Locator],
    options: TransferOptions,
) -> Result<(Vec<Held>, u32), ClientError> {
    let mut out = vec![Held::Unknown; locators.len()];
    let mut tried = Vec::new();
    let mut asks = 0;
    for attempt in 0..options.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let answers = session.probe(locators, options.timeout, &mut tried).await?;
        asks += 1;
        for (o, h) in out.iter_mut().zip(answers) {
            if *o == Held::Unknown {
                *o = h;
            }
        }
        if !out.contains(&Held::Unknown) {
            break;
        }
    }
    Ok((out, asks))
}

/// Publishes the card of a public identity (`specs/feeds.md` §6): at the
/// first free card slot by key and the first free by fingerprint.
/// Returns the two slots written.
pub async fn publish_card(
    session: &Session,
    identity: &mtos_crypto::Identity,
    time_ms: u64,
    options: TransferOptions,
) -> Result<(u64, u64), ClientError> {
    use mtos_crypto::card::{CARD_SLOTS, Card, card_slots, locator_by_fingerprint, locator_by_key};
    let bad = |e: mtos_crypto::slot::SlotError| ClientError::Invalid(format!("card: {e}"));
    let card = Card {
        identity: identity.public(),
        follow: FeedKeys::of(identity).follow(),
        time_ms,
    }
    .sign(identity);
    let key = *identity.verify_key().as_bytes();
    let fingerprint = identity.fingerprint();
    let mut wanted = Vec::new();
    for n in 0..CARD_SLOTS {
        wanted.push(locator_by_key(&key, n).map_err(bad)?);
    }
    for n in 0..CARD_SLOTS {
        wanted.push(locator_by_fingerprint(&fingerprint, n).map_err(bad)?);
    }
    // A generator that may be held across the await (the thread's may not).
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let taken = held(session, &wanted, &mut rng, options).await?;
    let slots = CARD_SLOTS as usize;
    let free = |range: std::ops::Range<usize>| {
        range
            .clone()
            .find(|&i| taken[i] == Held::Empty)
            .map(|i| (i - range.start) as u64)
    };
    let full = |range: std::ops::Range<usize>| {
        if taken[range].contains(&Held::Unknown) {
            return ClientError::from(NetError::GaveUp(
                "no free card slot could be proven (a replica did not answer); try again".into(),
            ));
        }
        ClientError::Conflict(format!(
            "all {CARD_SLOTS} card slots are taken: the card was published {CARD_SLOTS} times already (or, by fingerprint, squatted)"
        ))
    };
    let by_key = free(0..slots).ok_or_else(|| full(0..slots))?;
    let by_fingerprint = free(slots..2 * slots).ok_or_else(|| full(slots..2 * slots))?;
    for (n, pick) in [(by_key, 0usize), (by_fingerprint, 1)] {
        let (k, f) = card_slots(identity, &card, n).map_err(bad)?;
        let record = if pick == 0 { k } else { f };
        let outcome = session
            .put(
                Kind::Slot,
                slot_locator(&record.key),
                record.encode(),
                options.timeout,
            )
            .await?;
        if !matches!(outcome, PutOutcome::Stored { .. }) {
            return Err(NetError::GaveUp(format!("the card was not stored: {outcome:?}")).into());
        }
    }
    Ok((by_key, by_fingerprint))
}

/// How a card is looked up.
#[derive(Debug, Clone)]
pub enum CardQuery {
    /// By the identity's `mtos:id:` URI (its keys).
    Identity(mtos_crypto::PublicIdentity),
    /// By its 30-digit fingerprint.
    Fingerprint(mtos_crypto::Fingerprint),
}

/// Finds the newest valid card for `query`, if the network holds one:
/// one probe of the 8 card slots, then a get for each held one; a card
/// that does not verify, or is another identity's, is ignored.
pub async fn lookup_card(
    session: &Session,
    query: &CardQuery,
    options: TransferOptions,
) -> Result<Option<mtos_crypto::card::Card>, ClientError> {
    use mtos_crypto::card::{CARD_SLOTS, Card, locator_by_fingerprint, locator_by_key};
    let bad = |e: mtos_crypto::slot::SlotError| ClientError::Invalid(format!("card: {e}"));
    let mut wanted = Vec::new();
    for n in 0..CARD_SLOTS {
        wanted.push(
            match query {
                CardQuery::Identity(id) => locator_by_key(id.verify_key().as_bytes(), n),
                CardQuery::Fingerprint(f) => locator_by_fingerprint(f, n),
            }
            .map_err(bad)?,
        );
    }
    // A generator that may be held across the await (the thread's may not).
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let taken = held(session, &wanted, &mut rng, options).await?;
    let mut best: Option<Card> = None;
    for (l, _) in wanted.iter().zip(&taken).filter(|(_, t)| **t == Held::Held) {
        let r = session
            .request(Op::Get(Kind::Slot), *l, options.timeout)
            .await?;
        if r.status != Status::Ok {
            continue;
        }
        let Some(card) = SlotRecord::decode(&r.body)
            .ok()
            .filter(|record| record.verify(l).is_ok())
            .and_then(|record| Card::decode(&record.body).ok())
        else {
            continue;
        };
        let matches = match query {
            CardQuery::Identity(id) => card.identity.verify_key() == id.verify_key(),
            CardQuery::Fingerprint(f) => card.identity.fingerprint() == *f,
        };
        if matches && best.as_ref().is_none_or(|b| card.time_ms > b.time_ms) {
            best = Some(card);
        }
    }
    Ok(best)
}

/// File of the home holding feed state (`mtos follow`, `mtos feed`).
pub const FEEDS_FILE: &str = "feeds.json";

/// The home's feed state: the next slot of each own feed, and the feeds
/// followed with what was read of them. It holds read keys and item
/// references, so it lives in the owner-only home like the item store.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBook {
    /// Next slot of each own feed, by identity id.
    #[serde(default)]
    pub own: std::collections::BTreeMap<String, u64>,
    /// Followed feeds.
    #[serde(default)]
    pub follows: Vec<FollowEntry>,
    /// Decoy feed keys (hex), polled beside the followed feeds so that a
    /// round is always [`POLL_PROBES`] probes (`specs/feeds.md` §5). Kept,
    /// so a decoy is polled as long as a real quiet feed would be.
    #[serde(default)]
    pub decoys: Vec<String>,
}

/// A followed feed in the book.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowEntry {
    /// The follow URI.
    pub uri: String,
    /// What the follower calls it.
    pub label: String,
    /// The first slot not read yet.
    pub next: u64,
    /// Entries read so far.
    #[serde(default)]
    pub entries: Vec<SeenEntry>,
}

/// An entry read from a followed feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenEntry {
    /// Its slot.
    pub n: u64,
    /// When its author published it (Unix ms).
    pub time_ms: u64,
    /// The item's reference.
    pub item: String,
}

impl FeedBook {
    /// The decoy feed keys, [`POLL_PROBES`] of them: those kept, and new
    /// ones drawn (and kept, once the book is saved) when there are fewer.
    /// A key that does not parse is replaced.
    pub fn decoys<R: rand::CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Vec<[u8; 32]> {
        let mut keys: Vec<[u8; 32]> = self
            .decoys
            .iter()
            .filter_map(|h| data_encoding::HEXLOWER.decode(h.as_bytes()).ok())
            .filter_map(|b| <[u8; 32]>::try_from(b).ok())
            .take(POLL_PROBES)
            .collect();
        while keys.len() < POLL_PROBES {
            keys.push(mtos_crypto::feed::decoy_feed_key(rng));
        }
        self.decoys = keys
            .iter()
            .map(|k| data_encoding::HEXLOWER.encode(k))
            .collect();
        keys
    }

    /// The book of `home` (empty when there is none yet).
    pub fn load(home: &crate::Home) -> Result<Self, ClientError> {
        let path = home.dir().join(FEEDS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ClientError::BadFile {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ClientError::Io { path, source }),
        }
    }

    /// Writes the book (a new file renamed over the old, owner-only).
    pub fn save(&self, home: &crate::Home) -> Result<(), ClientError> {
        home.ensure()?;
        let path = home.dir().join(FEEDS_FILE);
        let tmp = home
            .dir()
            .join(format!("{FEEDS_FILE}.{}.tmp", std::process::id()));
        let io = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| ClientError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        {
            use std::io::Write;
            let mut f = options.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests;
