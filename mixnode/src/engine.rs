//! The mix engine: frames in, frames and deliveries out, after the
//! network's mixing delay. Sans-IO (after quinn-proto): every input takes
//! `now` and the caller's RNG, outputs are polled, and the engine never
//! reads a clock, spawns a task or touches a socket, so `mtos-node` (tokio)
//! and `mtos-sim` (virtual time) run this same code. Normative behaviour:
//! `specs/mixing.md`.

use std::collections::VecDeque;
use std::time::Duration;

use mtos_crypto::sphinx::{Destination, NodeAddress, Processed, sample_exponential};
use rand::{Rng, RngExt};

use crate::format::{CheckError, PacketFormat, Sphinx};
use crate::keys::KeyRing;
use crate::replay::ReplayChecked;
use crate::time::Instant;

mod delayed;
use delayed::Delayed;

/// How every node of the network mixes. One value for the whole network
/// (from the network document), so the anonymity set is not split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixingMode {
    /// Continuous-time (Loopix) mixing: each packet is held for the delay
    /// its sender put in its header for this hop.
    Poisson,
    /// A timed dynamic pool: every `interval`, if more than `min_pool`
    /// packets are held, send a random `fraction` of them (at least one),
    /// never leaving fewer than `min_pool`. Header delays are ignored.
    Pool {
        /// Time between flushes.
        interval: Duration,
        /// Packets always kept back.
        min_pool: usize,
        /// Share of the pool sent per flush, in (0, 1].
        fraction: f64,
    },
}

/// Engine parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// The network's mixing mode.
    pub mode: MixingMode,
    /// The network's mean per-hop delay: the final hop waits an
    /// exponential delay with this mean itself (Sphinx carries no delay
    /// for the last hop).
    pub mean_delay: Duration,
    /// Packets whose header asks for a longer hold are dropped.
    pub max_delay: Duration,
    /// Most packets held at once.
    pub queue_limit: usize,
    /// Most outputs (transmits and events) waiting to be polled.
    pub output_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            mode: MixingMode::Poisson,
            mean_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(10),
            queue_limit: 100_000,
            output_limit: 100_000,
        }
    }
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not exactly one frame long (checked before any crypto).
    WrongSize,
    /// The key tag names no key this node holds.
    UnknownKey,
    /// The header MAC does not verify.
    HeaderMac,
    /// The packet verified but does not process (bad routing data, bad
    /// payload).
    Malformed,
    /// The replay filter has seen this packet.
    Replay,
    /// The header asks for a hold longer than the network's cap.
    DelayTooLong,
    /// The mixing queue is full.
    QueueFull,
    /// The driver is not polling outputs fast enough.
    OutputFull,
    /// The packet's key admitted all its replay filter may hold, or all
    /// it may admit this second (`KeySlot::admit`).
    KeyCap,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 9] = [
        DropReason::WrongSize,
        DropReason::UnknownKey,
        DropReason::HeaderMac,
        DropReason::Malformed,
        DropReason::Replay,
        DropReason::DelayTooLong,
        DropReason::QueueFull,
        DropReason::OutputFull,
        DropReason::KeyCap,
    ];

    /// A stable name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::WrongSize => "wrong_size",
            DropReason::UnknownKey => "unknown_key",
            DropReason::HeaderMac => "header_mac",
            DropReason::Malformed => "malformed",
            DropReason::Replay => "replay",
            DropReason::DelayTooLong => "delay_too_long",
            DropReason::QueueFull => "queue_full",
            DropReason::OutputFull => "output_full",
            DropReason::KeyCap => "key_cap",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of what the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed in.
    pub received: u64,
    /// Frames sent on to a next hop.
    pub forwarded: u64,
    /// Payloads delivered at this final hop.
    pub delivered: u64,
    /// Drops by reason, indexed as [`DropReason::ALL`].
    pub dropped: [u64; 9],
}

impl Counters {
    /// Drops for one reason.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// A frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The next hop.
    pub next: NodeAddress,
    /// The frame (key tag copied from the incoming frame).
    pub frame: Vec<u8>,
}

/// A payload for which this node is the final hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient.
    pub destination: Destination,
    /// The payload as the recipient receives it.
    pub payload: Vec<u8>,
}

/// Something the driver should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A payload arrived at its final hop (after this node's delay).
    Delivered(Delivery),
    /// A frame was dropped.
    Dropped(DropReason),
}

/// The pool interval, at least 1 µs: a zero interval would make
/// `handle_timeout` loop forever.
fn pool_interval(interval: Duration) -> Duration {
    interval.max(Duration::from_micros(1))
}

/// The first tick `tick + k·interval` (k ≥ 1) strictly after `now`.
fn first_tick_after(tick: Instant, interval: Duration, now: Instant) -> Instant {
    let behind = (now - tick).as_nanos() / interval.as_nanos().max(1) + 1;
    tick + interval.saturating_mul(u32::try_from(behind).unwrap_or(u32::MAX))
}

/// A packet that passed the replay check, waiting to leave.
#[derive(Debug)]
enum Held {
    Forward(Transmit),
    Deliver(Delivery),
}

impl Held {
    /// Only a replay-checked packet can be held, and so only such a
    /// packet can ever leave the engine.
    fn new(output: Processed, key_tag: u8, _proof: ReplayChecked) -> Self {
        match output {
            Processed::Forward { next, packet, .. } => {
                // The packet's own buffer becomes the frame where the
                // format left room for the key tag (the simulator's does),
                // so a hop costs no second allocation; otherwise (Sphinx's
                // exact-sized buffer) a fresh one, as a reallocation would
                // copy it anyway.
                let frame = if packet.capacity() > packet.len() {
                    let mut frame = packet;
                    frame.insert(0, key_tag);
                    frame
                } else {
                    let mut frame = Vec::with_capacity(1 + packet.len());
                    frame.push(key_tag);
                    frame.extend_from_slice(&packet);
                    frame
                };
                Held::Forward(Transmit { next, frame })
            }
            Processed::Final {
                destination,
                payload,
            } => Held::Deliver(Delivery {
                destination,
                payload,
            }),
        }
    }
}

/// The keys a worker unwraps frames with: `(key tag, epoch, secret)` of
/// each key the engine holds ([`MixEngine::worker_keys`]).
#[derive(Debug, Clone)]
pub struct WorkerKeys<K>(Vec<(u8, u32, K)>);

/// A frame's cryptography, done (by [`unwrap_frame`]): its key's tag and
/// epoch, its replay tag and what unwrapping gave, or why it was dropped
/// before (size, key, MAC). Nothing in it has passed the replay check:
/// only [`MixEngine::accept`] can let it out.
#[derive(Debug)]
pub struct Unwrapped(UnwrapResult);

type UnwrapResult = Result<(u8, u32, [u8; 32], Result<Processed, CheckError>), DropReason>;

impl Unwrapped {
    /// A frame dropped for `reason` before the engine saw it (a worker
    /// that could not finish it).
    pub fn dropped(reason: DropReason) -> Self {
        Unwrapped(Err(reason))
    }
}

/// The work a frame costs before the engine's state is touched: the size
/// check, the key, the header MAC (the public-key operation), the replay
/// tag and the unwrap of one layer (the header's re-encryption and the
/// body's Lioness). Pure: any thread may run it, so a node spreads it over
/// its cores (`specs/mixing.md` §4).
pub fn unwrap_frame<F: PacketFormat>(keys: &WorkerKeys<F::Key>, bytes: &[u8]) -> Unwrapped {
    unwrap_with::<F, _>(
        |tag| {
            keys.0
                .iter()
                .find(|(t, _, _)| *t == tag)
                .map(|(_, e, k)| (*e, k))
        },
        bytes,
    )
}

fn unwrap_with<'k, F: PacketFormat, L>(key: L, bytes: &[u8]) -> Unwrapped
where
    L: Fn(u8) -> Option<(u32, &'k F::Key)>,
    F::Key: 'k,
{
    Unwrapped((|| {
        // The size is checked before anything else, crypto included.
        let (&key_tag, packet) = bytes
            .split_first()
            .filter(|_| bytes.len() == 1 + F::PACKET_SIZE)
            .ok_or(DropReason::WrongSize)?;
        let (epoch, secret) = key(key_tag).ok_or(DropReason::UnknownKey)?;
        let checked = F::check(packet, secret).map_err(|e| match e {
            CheckError::Mac => DropReason::HeaderMac,
            CheckError::Malformed => DropReason::Malformed,
        })?;
        let tag = F::replay_tag(&checked);
        Ok((key_tag, epoch, tag, F::process(checked)))
    })())
}

/// The mix engine of one node, generic over the packet format (real
/// Sphinx by default).
pub struct MixEngine<F: PacketFormat = Sphinx> {
    config: EngineConfig,
    keys: KeyRing<F::Key>,
    delayed: Delayed,
    pool: Vec<(Instant, Held)>,
    /// How many of the held packets are to be delivered here.
    delivering: usize,
    next_flush: Option<Instant>,
    seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    journal: Option<Journal>,
}

/// What a driver persists and measures: the replay tags accepted (to make
/// them durable before the packets leave) and the hold times of released
/// packets. Off unless [`MixEngine::enable_journal`] is called; the driver
/// drains it after every input.
#[derive(Debug, Default)]
pub struct Journal {
    /// Accepted replay tags, with their key's epoch, in acceptance order.
    pub tags: Vec<(u32, [u8; 32])>,
    /// How long each released packet was held.
    pub holds: Vec<Duration>,
}

impl<F: PacketFormat> std::fmt::Debug for MixEngine<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixEngine")
            .field("mode", &self.config.mode)
            .field("held", &self.held())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<F: PacketFormat> MixEngine<F> {
    /// An engine with these keys.
    pub fn new(mut config: EngineConfig, keys: KeyRing<F::Key>) -> Self {
        if let MixingMode::Pool { interval, .. } = &mut config.mode {
            *interval = pool_interval(*interval);
        }
        Self {
            config,
            keys,
            delayed: Delayed::default(),
            pool: Vec::new(),
            delivering: 0,
            next_flush: None,
            seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            journal: None,
        }
    }

    /// Starts keeping a [`Journal`] (the node does; the simulator does not).
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// Takes the journal kept since the last call (empty if not enabled).
    pub fn take_journal(&mut self) -> Journal {
        match &mut self.journal {
            Some(j) => std::mem::take(j),
            None => Journal::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Follows a network document whose delays changed: the mean a final
    /// hop draws its own delay with, and the longest delay a packet may
    /// ask for. Packets already held keep their release times.
    pub fn set_delays(&mut self, mean: Duration, max: Duration) {
        self.config.mean_delay = mean;
        self.config.max_delay = max;
    }

    /// Follows a network document whose mixing mode changed, at `now`, so
    /// that every node mixes alike (a node left in the old mode would
    /// release packets on another pattern than its peers, and tell them
    /// apart). Packets held under a delay keep their release times (they
    /// are released in any mode); packets waiting in a pool that the new
    /// mode does not flush each get a fresh delay of the network's mean,
    /// capped at its maximum, as a final hop's own wait is drawn.
    pub fn set_mode<R: Rng + ?Sized>(&mut self, now: Instant, mut mode: MixingMode, rng: &mut R) {
        if let MixingMode::Pool { interval, .. } = &mut mode {
            *interval = pool_interval(*interval);
        }
        if mode == self.config.mode {
            return;
        }
        self.config.mode = mode;
        match mode {
            MixingMode::Poisson => {
                self.next_flush = None;
                for (arrived, held) in std::mem::take(&mut self.pool) {
                    let delay =
                        sample_exponential(rng, self.config.mean_delay).min(self.config.max_delay);
                    self.seq += 1;
                    self.delayed.push(now + delay, self.seq, arrived, held);
                }
            }
            MixingMode::Pool { interval, .. } => {
                // A pool already holding packets flushes on the new
                // interval from now.
                self.next_flush = (!self.pool.is_empty()).then_some(now + interval);
            }
        }
    }

    /// The keys, for rotation and snapshots.
    pub fn keys_mut(&mut self) -> &mut KeyRing<F::Key> {
        &mut self.keys
    }

    /// The keys.
    pub fn keys(&self) -> &KeyRing<F::Key> {
        &self.keys
    }

    /// What the engine has counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Packets currently held for mixing.
    pub fn held(&self) -> usize {
        self.delayed.len() + self.pool.len()
    }

    /// How many of the held packets are to be delivered here (the rest
    /// are to be forwarded): a simulator keeps the two apart, as a link
    /// observer can (`specs/simulation.md` §2).
    pub fn held_to_deliver(&self) -> usize {
        self.delivering
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.counters.dropped[reason.index()] += 1;
        if self.outputs() < self.config.output_limit {
            self.events.push_back(Event::Dropped(reason));
        }
    }

    fn outputs(&self) -> usize {
        self.transmits.len() + self.events.len()
    }

    /// Handles one frame from a link. Every byte string is either taken in
    /// or dropped with a counted reason. The engine never learns which
    /// link or peer a frame came from, so it cannot log one.
    pub fn handle_frame<R: Rng + ?Sized>(&mut self, now: Instant, bytes: &[u8], rng: &mut R) {
        // A full engine drops before any cryptography.
        if bytes.len() == 1 + F::PACKET_SIZE && self.held() >= self.config.queue_limit {
            self.counters.received += 1;
            return self.drop_frame(DropReason::QueueFull);
        }
        let keys = &self.keys;
        let unwrapped = unwrap_with::<F, _>(
            |tag| {
                keys.slots()
                    .find(|s| s.tag() == tag)
                    .map(|s| (s.epoch, &s.secret))
            },
            bytes,
        );
        self.accept(now, unwrapped, rng);
    }

    /// The keys [`unwrap_frame`] needs, by key tag: a snapshot for the
    /// workers of a pool, taken again after each rotation.
    pub fn worker_keys(&self) -> WorkerKeys<F::Key> {
        WorkerKeys(
            self.keys
                .slots()
                .map(|s| (s.tag(), s.epoch, s.secret.clone()))
                .collect(),
        )
    }

    /// Takes in a frame [`unwrap_frame`] worked on (here or on a worker
    /// thread): counted, then the replay check (after the MAC, which the
    /// worker checked), the key's budget, the delay bound, and the hold.
    /// A driver with workers calls this in the frames' arrival order, so
    /// the engine's state is its alone and what it does is what one
    /// thread would have done.
    pub fn accept<R: Rng + ?Sized>(&mut self, now: Instant, unwrapped: Unwrapped, rng: &mut R) {
        self.counters.received += 1;
        let (key_tag, epoch, tag, processed) = match unwrapped.0 {
            Ok(u) => u,
            Err(reason) => return self.drop_frame(reason),
        };
        if self.held() >= self.config.queue_limit {
            return self.drop_frame(DropReason::QueueFull);
        }
        // The key may have rotated out since the worker used it.
        let Some(slot) = self.keys.by_tag(key_tag).filter(|s| s.epoch == epoch) else {
            return self.drop_frame(DropReason::UnknownKey);
        };
        // Only now, with the MAC verified, does the tag enter the filter:
        // a replay is a replay whatever the key's budget, and a new tag
        // enters only within it.
        let Ok(fresh) = slot.filter.check(&tag) else {
            return self.drop_frame(DropReason::Replay);
        };
        if !slot.admit(now) {
            return self.drop_frame(DropReason::KeyCap);
        }
        let proof = slot.filter.insert(fresh);
        if let Some(r) = &mut self.journal {
            r.tags.push((slot.epoch, tag));
        }
        let processed = match processed {
            Ok(p) => p,
            Err(_) => return self.drop_frame(DropReason::Malformed),
        };
        let header_delay = match &processed {
            Processed::Forward { delay, .. } => Some(*delay),
            Processed::Final { .. } => None,
        };
        if header_delay.is_some_and(|d| d > self.config.max_delay) {
            return self.drop_frame(DropReason::DelayTooLong);
        }
        let held = Held::new(processed, key_tag, proof);
        if matches!(held, Held::Deliver(_)) {
            self.delivering += 1;
        }
        match self.config.mode {
            MixingMode::Poisson => {
                let delay = header_delay.unwrap_or_else(|| {
                    sample_exponential(rng, self.config.mean_delay).min(self.config.max_delay)
                });
                self.seq += 1;
                self.delayed.push(now + delay, self.seq, now, held);
            }
            MixingMode::Pool {
                interval, min_pool, ..
            } => {
                let was_idle = self.pool.len() <= min_pool;
                self.pool.push((now, held));
                let next = self.next_flush.get_or_insert(now + interval);
                // A schedule left behind while the pool had nothing to send
                // resumes at its next tick (keeping its phase). A flush that
                // is merely due but not yet run is left alone: the next
                // `handle_timeout` runs it.
                if was_idle && *next < now {
                    *next = first_tick_after(*next, interval, now);
                }
            }
        }
    }

    fn release(&mut self, now: Instant, arrived: Instant, held: Held) {
        if matches!(held, Held::Deliver(_)) {
            self.delivering = self.delivering.saturating_sub(1);
        }
        if self.outputs() >= self.config.output_limit {
            self.counters.dropped[DropReason::OutputFull.index()] += 1;
            return;
        }
        if let Some(r) = &mut self.journal {
            r.holds.push(now.saturating_since(arrived));
        }
        match held {
            Held::Forward(t) => {
                self.counters.forwarded += 1;
                self.transmits.push_back(t);
            }
            Held::Deliver(d) => {
                self.counters.delivered += 1;
                self.events.push_back(Event::Delivered(d));
            }
        }
    }

    /// Releases everything due at `now`.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        while let Some((arrived, held)) = self.delayed.pop_due(now) {
            self.release(now, arrived, held);
        }
        if let MixingMode::Pool {
            interval,
            min_pool,
            fraction,
        } = self.config.mode
        {
            while let Some(at) = self.next_flush.filter(|at| *at <= now) {
                self.flush_pool(now, min_pool, fraction, rng);
                // Missed ticks with nothing to send are skipped in one step.
                let next = if self.pool.len() <= min_pool {
                    first_tick_after(at, interval, now)
                } else {
                    at + interval
                };
                self.next_flush = Some(next);
            }
        }
    }

    fn flush_pool<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        min_pool: usize,
        fraction: f64,
        rng: &mut R,
    ) {
        let n = self.pool.len();
        if n <= min_pool {
            return;
        }
        let share = ((n as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
        let k = share.max(1).min(n - min_pool);
        for _ in 0..k {
            let i = rng.random_range(0..self.pool.len());
            let (arrived, held) = self.pool.swap_remove(i);
            self.release(now, arrived, held);
        }
    }

    /// The next instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let delayed = self.delayed.next_release();
        let flush = match self.config.mode {
            MixingMode::Pool { min_pool, .. } if self.pool.len() > min_pool => self.next_flush,
            _ => None,
        };
        match (delayed, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
