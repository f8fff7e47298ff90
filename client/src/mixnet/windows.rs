//! A session's bulk windows (`specs/client.md` §4.1): the ticket it asks
//! its gateway for, whether the gateway granted it, and the session's
//! clock in Unix time, from which its send loop and its gateway compute
//! the same windows.

use std::sync::atomic::{AtomicBool, Ordering};

use mtos_mixnode::directory::{NetworkDocument, Ticket};
use mtos_mixnode::windows::ClassTimeline;

/// The windows of one session.
#[derive(Debug)]
pub(super) struct SessionWindows {
    /// The ticket asked for ([`Ticket::NONE`]: no windows).
    pub(super) asked: Ticket,
    /// Whether the gateway granted it (it may not, when enough of its
    /// clients hold windows in that cohort: `client.md` §4.1).
    granted: AtomicBool,
    /// Unix ms at the session's start (its schedule's zero).
    pub(super) origin_unix_ms: u64,
    /// Woken when the grant changes (the delivery stream reopened).
    pub(super) regranted: tokio::sync::Notify,
}

impl SessionWindows {
    pub(super) fn new(asked: Ticket, granted: bool, origin_unix_ms: u64) -> Self {
        Self {
            asked,
            granted: AtomicBool::new(granted),
            origin_unix_ms,
            regranted: tokio::sync::Notify::new(),
        }
    }

    /// The ticket the session's windows follow: the one asked for, if
    /// granted.
    pub(super) fn ticket(&self) -> Ticket {
        if self.granted.load(Ordering::Relaxed) {
            self.asked
        } else {
            Ticket::NONE
        }
    }

    /// Whether the gateway granted the windows.
    pub(super) fn granted(&self) -> bool {
        self.granted.load(Ordering::Relaxed)
    }

    /// The gateway's answer on a reopened session.
    pub(super) fn set_granted(&self, granted: bool) {
        if self.granted.swap(granted, Ordering::Relaxed) != granted {
            self.regranted.notify_one();
        }
    }

    /// The classes of the session's clock under `doc`.
    pub(super) fn timeline(&self, doc: &NetworkDocument) -> ClassTimeline {
        ClassTimeline {
            rates: doc.rates,
            schedule: doc.schedule,
            ticket: self.ticket(),
            origin_unix_ms: self.origin_unix_ms,
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

/// Unix time, ms.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
