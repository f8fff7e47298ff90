//! The soak run's load: the clients' loops and what they count.

use super::*;

/// A record whose put was acknowledged with K receipts.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    pub(crate) locator: Locator,
    pub(crate) bytes: Vec<u8>,
}

/// The load's counters.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) put_attempts: u64,
    pub(crate) puts_acked: u64,
    pub(crate) puts_given_up: u64,
    pub(crate) puts_short: u64,
    pub(crate) put_errors: u64,
    pub(crate) gets_ok: u64,
    pub(crate) gets_unanswered: u64,
    pub(crate) last_unanswered: Option<String>,
    pub(crate) gets_not_found_then_ok: u64,
    pub(crate) polls: u64,
    pub(crate) poll_errors: u64,
    pub(crate) probed_unknown: u64,
    pub(crate) slots_seen: u64,
    pub(crate) slot_reads: u64,
    pub(crate) questions: u64,
    pub(crate) answers: u64,
    pub(crate) messages_sent: u64,
    pub(crate) messages_delivered: u64,
    pub(crate) sends_refused: u64,
    pub(crate) replies_failed: u64,
    pub(crate) rtt_ms: Vec<f64>,
    pub(crate) one_way_ms: Vec<f64>,
}

/// What the load loops share.
#[derive(Debug, Default)]
pub(crate) struct Books {
    pub(crate) acked: Vec<Record>,
    /// Acknowledged feed slots: number, when acknowledged, index in
    /// `acked`.
    pub(crate) slots: BTreeMap<u64, (Instant, usize)>,
    pub(crate) f: Figures,
    /// Broken promises: each fails the run.
    pub(crate) violations: Vec<String>,
}

impl Books {
    /// A line of progress.
    pub(crate) fn progress(&self) -> String {
        let f = &self.f;
        format!(
            "puts acknowledged {} (given up {}), gets ok {} (unanswered {}), polls {}, questions {} answered {}, messages {} delivered {}, violations {}",
            f.puts_acked,
            f.puts_given_up,
            f.gets_ok,
            f.gets_unanswered,
            f.polls,
            f.questions,
            f.answers,
            f.messages_sent,
            f.messages_delivered,
            self.violations.len()
        )
    }
}

/// Prints progress every 30 s while the load runs.
pub(crate) async fn reporter(b: &Shared, t0: Instant, until: Instant, stop: &AtomicBool) {
    while running(until, stop) {
        tokio::time::sleep(
            Duration::from_secs(30).min(until.saturating_duration_since(Instant::now())),
        )
        .await;
        eprintln!(
            "soak: {:.0} s: {}",
            t0.elapsed().as_secs_f64(),
            books(b).progress()
        );
    }
}

pub(crate) type Shared = Mutex<Books>;

pub(crate) fn books(b: &Shared) -> std::sync::MutexGuard<'_, Books> {
    b.lock().unwrap()
}

/// Ends the load early when the controller fails (set as it unwinds).
pub(crate) struct StopOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

pub(crate) fn running(until: Instant, stop: &AtomicBool) -> bool {
    Instant::now() < until && !stop.load(Ordering::SeqCst)
}

pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// Puts `record` until K replicas signed receipts for it; returns the
/// index of the acknowledged record.
pub(crate) async fn put_acknowledged(
    s: &Session,
    b: &Shared,
    kind: Kind,
    locator: Locator,
    record: Vec<u8>,
) -> Option<usize> {
    for _ in 0..PUT_ATTEMPTS {
        books(b).f.put_attempts += 1;
        match s.put(kind, locator, record.clone(), REQUEST_WAIT).await {
            Ok(PutOutcome::Stored { receipts, .. }) if receipts >= DEFAULT_REPLICAS => {
                let mut bk = books(b);
                bk.f.puts_acked += 1;
                bk.acked.push(Record {
                    kind,
                    locator,
                    bytes: record,
                });
                return Some(bk.acked.len() - 1);
            }
            Ok(PutOutcome::Stored { .. }) | Ok(PutOutcome::Unproven(_)) => {
                books(b).f.puts_short += 1;
            }
            Ok(PutOutcome::Refused(r)) if r == "quota" || r == "full" => {
                books(b).f.puts_short += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(PutOutcome::Refused(r)) => {
                books(b)
                    .violations
                    .push(format!("a valid {kind:?} put refused: {r}"));
                return None;
            }
            Ok(PutOutcome::Lied(lie)) => {
                books(b)
                    .violations
                    .push(format!("a service node lied about a put: {lie:?}"));
            }
            Err(_) => {
                books(b).f.put_errors += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    books(b).f.puts_given_up += 1;
    None
}

/// Why a get of an acknowledged record failed.
#[derive(Debug)]
pub(crate) enum Miss {
    /// Answered with other bytes.
    Mismatch,
    /// Every attempt answered that no replica holds it.
    NotFound,
    /// No usable answer (timeouts, unavailable), maybe some not-founds.
    Unanswered(String),
}

/// Gets `r` through the mixnet, asking again on no answer or a
/// not-found (a replica set in flux); `Ok(true)` when it took a
/// not-found before the record came.
pub(crate) async fn fetch(s: &Session, r: &Record) -> Result<bool, Miss> {
    let (mut not_found, mut last) = (0, String::new());
    for _ in 0..GET_ATTEMPTS {
        match s.request(Op::Get(r.kind), r.locator, REQUEST_WAIT).await {
            Ok(a) if a.status == Status::Ok => {
                return if a.body == r.bytes {
                    Ok(not_found > 0)
                } else {
                    Err(Miss::Mismatch)
                };
            }
            Ok(a) if a.status == Status::NotFound => not_found += 1,
            Ok(a) => last = format!("{:?}", a.status),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if not_found == GET_ATTEMPTS {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Unanswered(format!(
            "{not_found} not found, last {last}"
        )))
    }
}

/// Counts a get's outcome; a mismatch or a record no replica holds is a
/// violation.
pub(crate) fn count_get(b: &Shared, r: &Record, got: Result<bool, Miss>, when: &str) {
    let mut bk = books(b);
    match got {
        Ok(retried) => {
            bk.f.gets_ok += 1;
            bk.f.gets_not_found_then_ok += u64::from(retried);
        }
        Err(Miss::Unanswered(why)) if when == "mid-run" => {
            bk.f.gets_unanswered += 1;
            bk.f.last_unanswered = Some(why);
        }
        Err(m) => {
            let at = r.locator;
            bk.violations
                .push(format!("{when}: acknowledged {:?} {at:?}: {m:?}", r.kind));
        }
    }
}

pub(crate) async fn chunk_writer(s: &Session, b: &Shared, until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(CHUNK_PUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running(until, stop) {
        tick.tick().await;
        let chunk = random_bytes(200 + rand::random::<u64>() as usize % 3400);
        put_acknowledged(s, b, Kind::Chunk, Locator::of(&chunk), chunk).await;
    }
}

pub(crate) async fn slot_writer(
    s: &Session,
    b: &Shared,
    feed: [u8; 32],
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(SLOT_PUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while running(until, stop) {
        tick.tick().await;
        let body = random_bytes(100 + rand::random::<u64>() as usize % 1000);
        let slot = SlotRecord::sign(&feed, n, &body).unwrap();
        let at = slot_locator(&slot.key);
        if let Some(i) = put_acknowledged(s, b, Kind::Slot, at, slot.encode()).await {
            books(b).slots.insert(n, (Instant::now(), i));
        }
        n += 1;
    }
}

/// Gets a random acknowledged record every second.
pub(crate) async fn reader(s: &Session, b: &Shared, until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(GET_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running(until, stop) {
        tick.tick().await;
        let pick = {
            let bk = books(b);
            (!bk.acked.is_empty())
                .then(|| bk.acked[rand::random::<u64>() as usize % bk.acked.len()].clone())
        };
        if let Some(r) = pick {
            let got = fetch(s, &r).await;
            count_get(b, &r, got, "mid-run");
        }
    }
}

/// Follows the feed as a reader does: probes a window of slots from the
/// first not seen yet, and reads each slot newly seen. An acknowledged
/// slot that every replica signs empty is lost.
pub(crate) async fn poller(
    s: &Session,
    b: &Shared,
    feed: [u8; 32],
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    while running(until, stop) {
        tick.tick().await;
        let window: Vec<u64> = (next..next + POLL_WINDOW).collect();
        let locators: Vec<Locator> = window
            .iter()
            .map(|&n| slot_locator(&SlotRecord::sign(&feed, n, b"").unwrap().key))
            .collect();
        let asked = Instant::now();
        let held = match s.probe(&locators, REQUEST_WAIT, &mut Vec::new()).await {
            Ok(h) => h,
            Err(_) => {
                books(b).f.poll_errors += 1;
                continue;
            }
        };
        let mut seen = Vec::new();
        {
            let mut bk = books(b);
            bk.f.polls += 1;
            for (&n, h) in window.iter().zip(&held) {
                match h {
                    Held::Held => seen.push(n),
                    Held::Unknown => bk.f.probed_unknown += 1,
                    Held::Empty => {
                        if bk.slots.get(&n).is_some_and(|(at, _)| *at < asked) {
                            bk.violations
                                .push(format!("acknowledged slot {n} probed empty"));
                        }
                    }
                }
            }
            bk.f.slots_seen += seen.len() as u64;
        }
        for &n in &seen {
            let acked = {
                let bk = books(b);
                bk.slots.get(&n).map(|(_, i)| bk.acked[*i].clone())
            };
            // A slot whose put was not acknowledged may be held too;
            // only acknowledged ones are checked.
            if let Some(r) = acked {
                let got = fetch(s, &r).await;
                books(b).f.slot_reads += 1;
                count_get(b, &r, got, "mid-run");
            }
        }
        if let Some(&last) = seen.last() {
            next = last + 1;
        }
    }
}

/// "kind seq micros" as a message body.
pub(crate) fn stamp(kind: &str, seq: u64, t0: Instant) -> Vec<u8> {
    format!("{kind} {seq} {}", t0.elapsed().as_micros()).into_bytes()
}

/// The kind, sequence number and age in ms of a stamped body.
pub(crate) fn read_stamp(body: &[u8], t0: Instant) -> Option<(String, u64, f64)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split(' ');
    let kind = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    let micros: u128 = parts.next()?.parse().ok()?;
    let age = t0.elapsed().as_micros().checked_sub(micros)? as f64 / 1000.0;
    Some((kind, seq, age))
}

/// Asks `bob` a question every second, each carrying a reply block, and
/// times the answers; counts `bob`'s plain messages.
pub(crate) async fn asker(
    me: &mut Session,
    bob: ClientAddress,
    b: &Shared,
    t0: Instant,
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(MESSAGE_EVERY);
    let drained = tokio::time::sleep_until((until + DRAIN).into());
    tokio::pin!(drained);
    let (mut seq, mut answered, mut delivered) = (0u64, HashSet::new(), HashSet::new());
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A failed controller ends the run at once.
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if Instant::now() >= until {
                    continue;
                }
                let sent = me.send_answerable(&bob, &stamp("q", seq, t0), 1);
                let mut bk = books(b);
                match sent {
                    Ok(_) => bk.f.questions += 1,
                    Err(_) => bk.f.sends_refused += 1,
                }
                seq += 1;
            }
            m = me.recv() => {
                let Some(m) = m else { break };
                let mut bk = books(b);
                match (&m, read_stamp(m.body(), t0)) {
                    (Received::Reply { .. }, Some((k, seq, age))) if k == "a" => {
                        if answered.insert(seq) {
                            bk.f.answers += 1;
                            bk.f.rtt_ms.push(age);
                        }
                    }
                    (Received::Message(_), Some((k, seq, age))) if k == "m" => {
                        if delivered.insert(seq) {
                            bk.f.messages_delivered += 1;
                            bk.f.one_way_ms.push(age);
                        }
                    }
                    _ => bk.violations.push(format!("an unexpected message: {m:?}")),
                }
            }
            _ = &mut drained => break,
        }
    }
}

/// Sends `alice` a plain message every second and answers her questions
/// through their reply blocks, carrying the question's time back.
pub(crate) async fn responder(
    me: &mut Session,
    alice: ClientAddress,
    b: &Shared,
    t0: Instant,
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(MESSAGE_EVERY);
    let drained = tokio::time::sleep_until((until + DRAIN).into());
    tokio::pin!(drained);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A failed controller ends the run at once.
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if Instant::now() >= until {
                    continue;
                }
                let sent = me.send(&alice, &stamp("m", seq, t0));
                let mut bk = books(b);
                match sent {
                    Ok(()) => bk.f.messages_sent += 1,
                    Err(_) => bk.f.sends_refused += 1,
                }
                seq += 1;
            }
            m = me.recv() => {
                let Some(m) = m else { break };
                if let Received::Answerable { from, body } = m {
                    let answer = [b"a", &body[1..]].concat();
                    if me.reply(&from, &answer).is_err() {
                        books(b).f.replies_failed += 1;
                    }
                } else {
                    books(b).violations.push(format!("an unexpected message: {m:?}"));
                }
            }
            _ = &mut drained => break,
        }
    }
}
