//! What a session sent and received, for measurements.

use super::*;

/// What a session sent, for measurements: when, and which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// A real message.
    Real,
    /// Payload-stream cover (a drop).
    PayloadCover,
    /// A loop.
    Loop,
    /// Drop cover.
    Drop,
}

/// Entries each time series of [`SessionStats`] keeps (the first ones;
/// the counters go on): about a day at λP + λL + λD = 1.2/s.
pub const STATS_SERIES_LIMIT: usize = 100_000;

pub(super) fn push_capped<T>(series: &mut Vec<T>, item: T) {
    if series.len() < STATS_SERIES_LIMIT {
        series.push(item);
    }
}

/// Counters and send times of a session.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Every packet written to the gateway, with its time since the
    /// session started (the first [`STATS_SERIES_LIMIT`]).
    pub sent: Vec<(Duration, SentKind)>,
    /// How long after its scheduled instant each packet of `sent` was
    /// written (same order): the schedule's time is `sent - sent_late`.
    pub sent_late: Vec<Duration>,
    /// Delivery frames received: real ones and dummies, with their times
    /// (the first [`STATS_SERIES_LIMIT`]).
    pub deliveries: Vec<(Duration, bool)>,
    /// When each message (of any kind: plain, answerable, reply) was
    /// received (the first [`STATS_SERIES_LIMIT`]).
    pub received_at: Vec<Duration>,
    /// Packets written carrying something real (a message, a request,
    /// a reply, reply blocks): all of them, beyond the series' cap.
    pub sent_real: u64,
    /// Packets written as cover of any kind (payload-slot cover, loops,
    /// drops): all of them.
    pub sent_cover: u64,
    /// Times the mix stream to the gateway broke and was opened again.
    pub link_breaks: u64,
    /// Slots skipped because they fell due while the link was broken
    /// (sending them all at once would show the break).
    pub slots_skipped: u64,
    /// Loops that came back.
    pub loops_returned: u64,
    /// Payload-slot cover that came back through this session's own
    /// reply blocks (`client.md` §4).
    pub cover_returned: u64,
    /// Payload slots that sent a drop because no cover reply could be
    /// built or recorded in time.
    pub cover_as_drops: u64,
    /// Drop slots that sent cover coming back, for a delivery owed after
    /// a payload slot that brought nothing back (a message sent).
    pub owed_paid: u64,
    /// Payload slots that sent a drop instead of cover, for a delivery
    /// that came unasked (a message received).
    pub surplus_paid: u64,
    /// Cover frames built in their slot because none was ready (the
    /// cover builder fell behind): each left a little late.
    pub cover_built_in_slot: u64,
    /// Real messages received.
    pub received: u64,
    /// Frames that did not open (not for us, tampered).
    pub undecodable: u64,
    /// Forward deliveries whose id came before: copies, dropped.
    pub duplicates: u64,
    /// Messages dropped because [`RECEIVE_QUEUE`] was full (the reader
    /// did not call [`Session::recv`] fast enough).
    pub dropped_unread: u64,
    /// Replies received through this session's reply blocks.
    pub replies_received: u64,
    /// Deliveries neither under an id of a block this session holds nor
    /// sealed to it (a reply on a block used already or forgotten after
    /// expiry, or anything forged): dropped.
    pub unknown_replies: u64,
    /// Replies sent through others' reply blocks.
    pub replies_sent: u64,
    /// Reply blocks this session handed out.
    pub blocks_sent: u64,
    /// Reply blocks received from others.
    pub blocks_received: u64,
    /// Reply blocks dropped to keep the pool within its bounds.
    pub blocks_dropped: u64,
    /// Messages carrying only reply blocks, sent to replenish them.
    pub top_ups_sent: u64,
    /// Times the delivery stream was reopened after the gateway went
    /// away.
    pub reconnects: u64,
    /// Network document refreshes that failed.
    pub document_refresh_failures: u64,
    /// Why the last refresh failed, while it has not succeeded since.
    pub last_document_error: Option<String>,
    /// Queued messages that could not be built (the document lacked a
    /// node for the route, or the reply table was full).
    pub unsendable: u64,
}
