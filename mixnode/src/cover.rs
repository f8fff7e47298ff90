//! The cover-traffic schedule (Loopix): independent Poisson streams whose
//! sends an observer cannot tell apart.
//!
//! * **payload** (λP): each tick sends the oldest queued real packet, or a
//!   drop-cover packet if none is queued, so real traffic does not change
//!   the sending pattern;
//! * **loop** (λL): a packet that returns to the sender through the mixnet
//!   (detects active attacks);
//! * **drop** (λD): a packet to a random node, which discards it;
//! * **node loop** (λM): mix nodes' own loops.
//!
//! Sans-IO like the engine: the caller passes `now` and its RNG, asks
//! [`CoverSchedule::poll_timeout`] when to come back, and builds the
//! packets [`CoverSchedule::poll_send`] asks for.

use std::collections::VecDeque;
use std::time::Duration;

use mtos_crypto::sphinx::sample_exponential;
use rand::Rng;

use crate::time::Instant;

/// Rates of the streams, in packets per second (0 disables a stream).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CoverRates {
    /// λP: the payload stream.
    pub payload: f64,
    /// λL: loop cover.
    pub loop_cover: f64,
    /// λD: drop cover.
    pub drop_cover: f64,
    /// λM: node loop cover.
    pub node_loop: f64,
}

/// The streams, in [`CoverRates`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// λP.
    Payload,
    /// λL.
    Loop,
    /// λD.
    Drop,
    /// λM.
    NodeLoop,
}

const STREAMS: [Stream; 4] = [
    Stream::Payload,
    Stream::Loop,
    Stream::Drop,
    Stream::NodeLoop,
];

/// What to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send<T> {
    /// A real packet from the queue (on the payload stream).
    Real(T),
    /// The payload stream ticked with nothing queued: send drop cover.
    PayloadCover,
    /// A loop cover packet.
    Loop,
    /// A drop cover packet.
    Drop,
    /// A node loop cover packet.
    NodeLoop,
}

impl<T> Send<T> {
    /// The stream this send belongs to.
    pub fn stream(&self) -> Stream {
        match self {
            Send::Real(_) | Send::PayloadCover => Stream::Payload,
            Send::Loop => Stream::Loop,
            Send::Drop => Stream::Drop,
            Send::NodeLoop => Stream::NodeLoop,
        }
    }
}

/// The real packet queue is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

/// The schedule of one client or node.
#[derive(Debug)]
pub struct CoverSchedule<T> {
    rates: [f64; 4],
    next: [Option<Instant>; 4],
    queue: VecDeque<T>,
    queue_limit: usize,
}

fn mean_gap(rate: f64) -> Option<Duration> {
    (rate.is_finite() && rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate))
}

impl<T> CoverSchedule<T> {
    /// Starts every enabled stream at `now` plus an exponential gap.
    pub fn new<R: Rng + ?Sized>(
        now: Instant,
        rates: CoverRates,
        queue_limit: usize,
        rng: &mut R,
    ) -> Self {
        let rates = [
            rates.payload,
            rates.loop_cover,
            rates.drop_cover,
            rates.node_loop,
        ];
        let next = rates.map(|r| mean_gap(r).map(|m| now + sample_exponential(rng, m)));
        Self {
            rates,
            next,
            queue: VecDeque::new(),
            queue_limit,
        }
    }

    /// Follows new rates from `now` (a new network document): a stream
    /// whose rate changed draws its next send afresh from `now` at the
    /// new rate (the exponential gap is memoryless, so each stream stays
    /// a Poisson process, at its old rate before `now` and its new rate
    /// after), a stream turned off stops, and an unchanged one keeps its
    /// next send. Queued real packets stay queued.
    pub fn set_rates<R: Rng + ?Sized>(&mut self, now: Instant, rates: CoverRates, rng: &mut R) {
        let new = [
            rates.payload,
            rates.loop_cover,
            rates.drop_cover,
            rates.node_loop,
        ];
        for (i, rate) in new.into_iter().enumerate() {
            if rate.to_bits() != self.rates[i].to_bits() {
                self.rates[i] = rate;
                self.next[i] = mean_gap(rate).map(|m| now + sample_exponential(rng, m));
            }
        }
    }

    /// The rates the schedule follows.
    pub fn rates(&self) -> CoverRates {
        CoverRates {
            payload: self.rates[0],
            loop_cover: self.rates[1],
            drop_cover: self.rates[2],
            node_loop: self.rates[3],
        }
    }

    /// Queues a real packet for the payload stream.
    pub fn push_real(&mut self, item: T) -> Result<(), QueueFull<T>> {
        if self.queue.len() >= self.queue_limit {
            return Err(QueueFull(item));
        }
        self.queue.push_back(item);
        Ok(())
    }

    /// Real packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// When the next send is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.iter().flatten().min().copied()
    }

    /// The send due at `now`, if any (call until `None`). Each stream's
    /// next time is its last scheduled time plus a fresh exponential gap,
    /// not `now` plus a gap, so a late poll does not bend the process.
    pub fn poll_send<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Option<Send<T>> {
        let (i, at) = self
            .next
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .filter(|(_, t)| *t <= now)
            .min_by_key(|(_, t)| *t)?;
        self.next[i] = mean_gap(self.rates[i]).map(|m| at + sample_exponential(rng, m));
        Some(match STREAMS[i] {
            Stream::Payload => match self.queue.pop_front() {
                Some(item) => Send::Real(item),
                None => Send::PayloadCover,
            },
            Stream::Loop => Send::Loop,
            Stream::Drop => Send::Drop,
            Stream::NodeLoop => Send::NodeLoop,
        })
    }
}
