//! A session's bulk windows (`specs/client.md` §4.1): the ticket it asks
//! its gateway for, whether the gateway granted it, and the session's
//! clock in Unix time, from which its send loop and its gateway compute
//! the same windows.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mtos_mixnode::directory::{NetworkDocument, Ticket};
use mtos_mixnode::windows::ClassTimeline;
use mtos_net::unix_now_ms as unix_ms;

/// How far the session's clock may drift from the wall clock before its
/// windows are anchored again, ms (a machine suspended, a clock stepped).
pub(super) const DRIFT_MS: u64 = 500;

/// The windows of one session. The gateway is told only the cohort
/// (`ticket mod cohorts`), never the ticket, which would tell gateways
/// apart from the cohort a client kept across sessions and guards.
#[derive(Debug)]
pub(super) struct SessionWindows {
    /// The ticket asked for ([`Ticket::NONE`]: no windows); changed by
    /// [`super::Session::window_now`].
    asked: AtomicU32,
    /// The gateway's grant: the cohort it granted, under how many
    /// cohorts (`None`: none granted).
    granted: Mutex<Option<(Ticket, u16)>>,
    /// Unix ms at the session's schedule's zero; anchored again when the
    /// session's clock drifts from the wall clock.
    origin_unix_ms: AtomicU64,
    /// Woken when the grant changes (the delivery stream reopened).
    pub(super) regranted: tokio::sync::Notify,
}

impl SessionWindows {
    pub(super) fn new(asked: Ticket, origin_unix_ms: u64) -> Self {
        Self {
            asked: AtomicU32::new(u32::from(asked.0)),
            granted: Mutex::new(None),
            origin_unix_ms: AtomicU64::new(origin_unix_ms),
            regranted: tokio::sync::Notify::new(),
        }
    }

    /// The ticket asked for.
    pub(super) fn asked(&self) -> Ticket {
        Ticket(u16::try_from(self.asked.load(Ordering::Relaxed)).unwrap_or(u16::MAX))
    }

    /// Asks for `ticket` from the next opening of the session on; until
    /// the gateway answers, the session sends at the idle rates (its
    /// gateway holds it to them).
    pub(super) fn set_asked(&self, ticket: Ticket) {
        if let Ok(mut g) = self.granted.lock() {
            *g = None;
        }
        self.asked.store(u32::from(ticket.0), Ordering::Relaxed);
    }

    /// What the session asks its gateway for under `doc`: its cohort
    /// ([`Ticket::NONE`] without bulk windows or a ticket), and the
    /// number of cohorts it counts under (0: none).
    pub(super) fn wire(&self, doc: &NetworkDocument) -> (Ticket, u16) {
        match doc.rates.bulk {
            Some(b) => (
                self.asked().cohort(b.cohorts).map_or(Ticket::NONE, Ticket),
                b.cohorts,
            ),
            None => (Ticket::NONE, 0),
        }
    }

    /// The gateway's answer to `wire` (a session opened or opened again;
    /// the send loop follows it at once).
    pub(super) fn set_grant(&self, (wire, cohorts): (Ticket, u16), granted: bool) {
        if let Ok(mut g) = self.granted.lock() {
            *g = (granted && wire != Ticket::NONE).then_some((wire, cohorts));
        }
        self.regranted.notify_one();
    }

    /// The cohort the session's windows follow under `doc`: the one
    /// granted, while the document has as many cohorts as when it was.
    pub(super) fn ticket(&self, doc: &NetworkDocument) -> Ticket {
        let granted = self.granted.lock().ok().and_then(|g| *g);
        match (granted, doc.rates.bulk) {
            (Some((t, c)), Some(b)) if b.cohorts == c => t,
            _ => Ticket::NONE,
        }
    }

    /// Whether the gateway granted windows.
    pub(super) fn granted(&self) -> bool {
        self.granted.lock().is_ok_and(|g| g.is_some())
    }

    /// Whether the session must ask again: the document's cohorts are not
    /// the ones it asked under (windows turned on or off, or regrouped).
    pub(super) fn stale(&self, doc: &NetworkDocument, asked_under: u16) -> bool {
        self.asked() != Ticket::NONE && self.wire(doc).1 != asked_under
    }

    /// Unix ms at the session's schedule's zero.
    pub(super) fn origin(&self) -> u64 {
        self.origin_unix_ms.load(Ordering::Relaxed)
    }

    /// Anchors the windows again when the session's clock (`elapsed`
    /// since its zero) has drifted from the wall clock by more than
    /// [`DRIFT_MS`]; whether it did.
    pub(super) fn anchor(&self, elapsed: std::time::Duration) -> bool {
        let elapsed = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let origin = unix_ms().saturating_sub(elapsed);
        if origin.abs_diff(self.origin()) > DRIFT_MS {
            self.origin_unix_ms.store(origin, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// The classes of the session's clock under `doc`.
    pub(super) fn timeline(&self, doc: &NetworkDocument) -> ClassTimeline {
        ClassTimeline {
            rates: doc.rates,
            schedule: doc.schedule,
            ticket: self.ticket(doc),
            origin_unix_ms: self.origin(),
        }
    }
}

/// The ticket a session asks for when none is given: drawn from the
/// schedule's seed when one is (so a test reproduces the windows with the
/// instants), from `rng` otherwise.
pub(super) fn ticket_for(seed: Option<[u8; 32]>, rng: &mut impl rand::Rng) -> Ticket {
    match seed {
        Some(seed) => {
            let d = blake3::derive_key("mtos-bulk-ticket-v1", &seed);
            Ticket(u16::from_be_bytes([d[0], d[1]]) % u16::MAX)
        }
        None => Ticket::draw(rng),
    }
}

/// A ticket whose cohort holds the window running at `unix_ms` (or the
/// next one, before genesis), with the rest of the ticket drawn from
/// `rng`: what [`super::Session::window_now`] asks for.
pub(super) fn ticket_for_now(
    rates: &mtos_mixnode::directory::Rates,
    schedule: &mtos_mixnode::directory::EpochSchedule,
    unix_ms: u64,
    rng: &mut impl rand::Rng,
) -> Option<Ticket> {
    let bulk = rates.bulk?;
    let cohorts = u32::from(bulk.cohorts.max(1));
    let cohort = u32::from(bulk.cohort_at(schedule, unix_ms));
    // Tickets below 65535 in that cohort: cohort + cohorts·r.
    let most = (u32::from(u16::MAX) - 1 - cohort) / cohorts;
    let r = rand::RngExt::random_range(rng, 0..=most);
    u16::try_from(cohort + cohorts * r).ok().map(Ticket)
}

#[cfg(test)]
mod tests {
    use mtos_mixnode::directory::{BulkRates, EpochSchedule, Rates};
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_window_now_is_the_running_window_of_its_cohort() {
        let schedule = EpochSchedule {
            genesis: 1_000,
            epoch_secs: 3_600,
            heartbeat_secs: 20,
            round_secs: 30,
        };
        let mut rates = Rates {
            payload: 2.0,
            loops: 1.0,
            drops: 1.0,
            node_loops: 1.0,
            bulk: None,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(ticket_for_now(&rates, &schedule, 5_000_000, &mut rng), None);
        for cohorts in [1, 3, 20, 4_096] {
            let b = BulkRates {
                payload: 50.0,
                loops: 1.0,
                drops: 1.0,
                window_secs: 30,
                cohorts,
            };
            rates.bulk = Some(b);
            for t in [1_000_000, 1_000_001, 1_029_999, 7_777_777, 9_000_000_000] {
                let ticket = ticket_for_now(&rates, &schedule, t, &mut rng).unwrap();
                assert_ne!(ticket, Ticket::NONE);
                assert!(
                    b.in_window(&schedule, ticket, t),
                    "{cohorts} cohorts at {t}"
                );
            }
        }
    }
}
