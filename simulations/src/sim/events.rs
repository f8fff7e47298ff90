//! The event queue: what can happen, and the heaps that order it by
//! time and then insertion (`Simulation`'s fields are the parent
//! module's).

use super::*;

/// What can happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ev {
    /// A client's cover schedule or message generator is due.
    Client(u32),
    /// A node's engine (or its node-loop schedule) is due.
    Node(u32),
    /// A frame arrives at a node (index into the in-flight table).
    Arrive(u32, usize),
    /// The next trace rows are due.
    Trace,
    /// A new epoch begins (`[epochs]`).
    Epoch,
    /// The previous epoch's grace period ends.
    Grace,
    /// Node `n` (a mix, or a gateway with `gateways`) leaves or comes
    /// back by the churn rate (`[mix_churn]`).
    Churn(u32),
    /// The next churn trace rows are due.
    ChurnTrace,
    /// The routes' document catches up with node `n` being away (false)
    /// or back (true), for its change number (the third field).
    Listing(u32, bool, u32),
    /// Client `c`'s next delivery frame is due (`[mailbox]`).
    Frame(u32),
    /// The answer through reply block `b` joins its answerer's queue
    /// (`[replies]`).
    Answer(u32),
    /// Client `c` checks that the document still lists its gateway
    /// (`[mix_churn] gateways`).
    Move(u32),
}

/// An event in the queue. The key packs the time (nanoseconds) and the
/// insertion number into one u128, so the heap compares one integer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scheduled {
    pub(super) key: u128,
    pub(super) ev: Ev,
}

impl Scheduled {
    pub(super) fn at(&self) -> Instant {
        Instant::from_duration(Duration::from_nanos((self.key >> 64) as u64))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl<M: Mode> Simulation<M> {
    pub(super) fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        let nanos = u64::try_from(at.since_origin().as_nanos()).unwrap_or(u64::MAX);
        let scheduled = Reverse(Scheduled {
            key: (u128::from(nanos) << 64) | u128::from(self.seq),
            ev,
        });
        match ev {
            Ev::Client(_) => self.client_queue.push(scheduled),
            _ => self.queue.push(scheduled),
        }
    }

    /// The next event of either heap.
    pub(super) fn pop(&mut self) -> Option<Reverse<Scheduled>> {
        match (self.queue.peek(), self.client_queue.peek()) {
            (Some(a), Some(c)) if c.0.key < a.0.key => self.client_queue.pop(),
            (None, Some(_)) => self.client_queue.pop(),
            _ => self.queue.pop(),
        }
    }
}
