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

/// Locators in every poll probe: as many as one probe request carries.
pub const PROBE_LOCATORS: usize = MAX_PROBE;
/// Slots a poll looks ahead per feed at most.
pub const MAX_WINDOW: usize = 8;
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

/// The slots one poll round asks about, as `(locator, feed index, slot)`:
/// each followed feed's next slots (a window of `PROBE_LOCATORS / feeds`,
/// at most [`MAX_WINDOW`], at least 1; with more feeds than locators, a
/// rotating share of them each round), at most [`PROBE_LOCATORS`].
pub fn window(follows: &[Followed], round: u64) -> Vec<(Locator, usize, u64)> {
    let mut real: Vec<(Locator, usize, u64)> = Vec::new();
    if !follows.is_empty() {
        let window = (PROBE_LOCATORS / follows.len()).clamp(1, MAX_WINDOW);
        let start = (round as usize).wrapping_mul(PROBE_LOCATORS) % follows.len();
        for k in 0..follows.len().min(PROBE_LOCATORS) {
            let i = (start + k) % follows.len();
            for d in 0..window as u64 {
                let n = follows[i].next.saturating_add(d);
                if let Ok(l) = follows[i].follow.slot_locator(n)
                    && real.len() < PROBE_LOCATORS
                {
                    real.push((l, i, n));
                }
            }
        }
    }
    real
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
}

/// One poll round: one probe request of [`PROBE_LOCATORS`] locators to a
/// random service node ([`window`], [`held`]), then a get for each slot
/// found, in slot order; a feed's `next` moves past the entries read.
pub async fn poll<R: rand::Rng + ?Sized>(
    session: &Session,
    follows: &mut [Followed],
    round: u64,
    rng: &mut R,
    options: TransferOptions,
) -> Result<PollReport, ClientError> {
    let slots = window(follows, round);
    let locators: Vec<Locator> = slots.iter().map(|(l, _, _)| *l).collect();
    let mut report = PollReport {
        requests: 1,
        ..PollReport::default()
    };
    let taken = held(session, &locators, rng, options).await?;
    let mut found: Vec<(usize, u64, Locator)> = slots
        .iter()
        .zip(&taken)
        .filter(|(_, t)| **t == Held::Held)
        .map(|(&(l, i, n), _)| (i, n, l))
        .collect();
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
/// locators up to exactly [`PROBE_LOCATORS`], all shuffled, like a poll
/// round. While any locator of the set is [`Held::Unknown`] (a replica
/// did not answer, or a service node withheld its answer), the same
/// padded set is asked again through another service node (one not asked yet,
/// while there is one), up to `options.attempts` times: asking only the
/// unknown ones would tell the second service node which locators are
/// real.
pub async fn held<R: rand::Rng + ?Sized>(
    session: &Session,
    wanted: &[Locator],
    rng: &mut R,
    options: TransferOptions,
) -> Result<Vec<Held>, ClientError> {
    let all = pad(wanted, rng);
    let locators: Vec<Locator> = all.iter().map(|(l, _)| *l).collect();
    let mut out = vec![Held::Unknown; wanted.len().min(PROBE_LOCATORS)];
    let mut tried = Vec::new();
    for attempt in 0..options.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let answers = session
            .probe(&locators, options.timeout, &mut tried)
            .await?;
        // Whether to ask again depends on every locator of the set, the
        // padding's too: a replica that stays silent must not learn from
        // a second ask that it held a real one.
        let unknown = answers.contains(&Held::Unknown);
        for ((_, i), h) in all.iter().zip(answers) {
            if let Some(i) = i
                && out[*i] == Held::Unknown
            {
                out[*i] = h;
            }
        }
        if !unknown {
            break;
        }
    }
    Ok(out)
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
    let taken = held(session, &wanted, &mut rand::rng(), options).await?;
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
    let taken = held(session, &wanted, &mut rand::rng(), options).await?;
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
        let tmp = home.dir().join(format!("{FEEDS_FILE}.tmp"));
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
mod tests {
    use super::*;
    use mtos_crypto::identity::{Identity, Label, Visibility};
    use rand::SeedableRng;

    fn followed(seed: u8, next: u64) -> Followed {
        let id = Identity::from_secrets(
            Label::new("f").unwrap(),
            Visibility::Public,
            0,
            &[seed; 32],
            &[seed; 32],
        );
        Followed {
            follow: FeedKeys::of(&id).follow(),
            next,
        }
    }

    #[test]
    fn every_probe_has_the_same_size_whatever_is_followed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for count in [0usize, 1, 3, 50, 200] {
            let follows: Vec<Followed> = (0..count).map(|i| followed(i as u8, 5)).collect();
            for round in 0..3 {
                let slots = window(&follows, round);
                let wanted: Vec<Locator> = slots.iter().map(|(l, _, _)| *l).collect();
                let p = pad(&wanted, &mut rng);
                assert_eq!(p.len(), PROBE_LOCATORS, "{count} feeds");
                let mut unique: Vec<Locator> = p.iter().map(|(l, _)| *l).collect();
                unique.sort_by_key(|l| *l.as_bytes());
                unique.dedup();
                assert_eq!(unique.len(), PROBE_LOCATORS);
                // Every wanted locator is the feed's slot it names, and
                // every one of them is in the probe.
                assert_eq!(p.iter().filter(|(_, w)| w.is_some()).count(), wanted.len());
                for (l, w) in &p {
                    if let Some(k) = w {
                        let (_, i, n) = slots[*k];
                        assert_eq!(*l, follows[i].follow.slot_locator(n).unwrap());
                        assert!(n >= follows[i].next);
                    }
                }
                let expected = match count {
                    0 => 0,
                    1 => MAX_WINDOW,
                    3 => 3 * MAX_WINDOW,
                    50 => 50 * 2,
                    _ => PROBE_LOCATORS,
                };
                assert_eq!(slots.len(), expected, "{count} feeds");
            }
        }
    }

    #[test]
    fn with_more_feeds_than_locators_every_feed_gets_its_turn() {
        let follows: Vec<Followed> = (0..200).map(|i| followed(i as u8, 0)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..2 {
            for (_, i, _) in window(&follows, round) {
                seen.insert(i);
            }
        }
        assert_eq!(seen.len(), 200);
    }
}
