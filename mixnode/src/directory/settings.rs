//! The settings every node and client of a network obeys alike
//! (`specs/directory.md` §2): the epoch schedule, the packet geometry,
//! mixing, rates and storage rules. Closed objects: a field unknown here
//! is refused, naming it.

use mtos_crypto::geometry::{MAX_PATH_LENGTH, SPHINX_PAYLOAD_SIZE};
use serde::{Deserialize, Serialize};

use super::DirectoryError;
use crate::engine::{EngineConfig, MixingMode};
/// How the network mixes (one setting for every node).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mixing {
    /// `poisson` or `pool`.
    pub mode: MixingKind,
    /// Mean per-hop delay, ms (Poisson; also the final hop's own wait).
    pub mean_delay_ms: u64,
    /// Longest hold a header may ask for, ms.
    pub max_delay_ms: u64,
    /// Pool mode: flush interval, ms.
    #[serde(default)]
    pub pool_interval_ms: u64,
    /// Pool mode: packets always kept.
    #[serde(default)]
    pub pool_min: u32,
    /// Pool mode: share sent per flush.
    #[serde(default)]
    pub pool_fraction: f64,
}

/// The mixing modes of `specs/mixing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixingKind {
    /// Continuous-time mixing.
    Poisson,
    /// Timed dynamic pool.
    Pool,
}

impl Mixing {
    /// The engine configuration these settings give, with the node's own
    /// queue limit.
    pub fn engine_config(&self, queue_limit: usize) -> EngineConfig {
        let ms = std::time::Duration::from_millis;
        EngineConfig {
            mode: match self.mode {
                MixingKind::Poisson => MixingMode::Poisson,
                MixingKind::Pool => MixingMode::Pool {
                    interval: ms(self.pool_interval_ms),
                    min_pool: self.pool_min as usize,
                    fraction: self.pool_fraction,
                },
            },
            mean_delay: ms(self.mean_delay_ms),
            max_delay: ms(self.max_delay_ms),
            queue_limit,
            output_limit: queue_limit,
        }
    }

    /// Checks the ranges every node enforces; the error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let field = |field: &str, problem: String| DirectoryError::Field {
            field: format!("mixing.{field}"),
            problem,
        };
        if self.max_delay_ms == 0 || self.max_delay_ms > MAX_MIXING_MS {
            return Err(field(
                "max_delay_ms",
                format!("{}: must be 1 to {MAX_MIXING_MS}", self.max_delay_ms),
            ));
        }
        if self.mean_delay_ms > self.max_delay_ms {
            return Err(field(
                "mean_delay_ms",
                format!("{} exceeds max_delay_ms", self.mean_delay_ms),
            ));
        }
        if self.mode == MixingKind::Pool {
            // Nodes follow a new document's mode at once: a pool that
            // never flushes, or flushes once an hour, would hold every
            // packet.
            if self.pool_interval_ms == 0 || self.pool_interval_ms > MAX_MIXING_MS {
                return Err(field(
                    "pool_interval_ms",
                    format!(
                        "{}: pool mixing needs 1 to {MAX_MIXING_MS}",
                        self.pool_interval_ms
                    ),
                ));
            }
            if !(self.pool_fraction > 0.0 && self.pool_fraction <= 1.0) {
                return Err(field(
                    "pool_fraction",
                    format!("{}: pool mixing needs (0, 1]", self.pool_fraction),
                ));
            }
            if self.pool_min > MAX_POOL_MIN {
                return Err(field(
                    "pool_min",
                    format!("{}: at most {MAX_POOL_MIN}", self.pool_min),
                ));
            }
        }
        Ok(())
    }
}

/// The longest a mixing delay or pool interval may be, ms (an hour).
pub const MAX_MIXING_MS: u64 = 3_600_000;
/// The most packets a pool may keep back: a node holds at least this
/// many (its default queue limit is 100,000).
pub const MAX_POOL_MIN: u32 = 10_000;

/// What storage nodes take (`specs/storage.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRules {
    /// The least effort a put's stamp carries (1 to [`MAX_STAMP_FLOOR`]);
    /// replicas ask more as they fill.
    pub stamp_floor: u32,
}

/// The stamp floor of a document that sets none: 16 Equi-X solutions,
/// about 50 ms of one core per put.
pub const DEFAULT_STAMP_FLOOR: u32 = 16;
/// The highest stamp floor a document may set (about 3 minutes of one
/// core per put).
pub const MAX_STAMP_FLOOR: u32 = 1 << 16;

impl Default for StorageRules {
    fn default() -> Self {
        Self {
            stamp_floor: DEFAULT_STAMP_FLOOR,
        }
    }
}

impl StorageRules {
    /// Checks the floor's range; the error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        if (1..=MAX_STAMP_FLOOR).contains(&self.stamp_floor) {
            Ok(())
        } else {
            Err(DirectoryError::Field {
                field: "storage.stamp_floor".to_owned(),
                problem: format!("{}; must be 1 to {MAX_STAMP_FLOOR}", self.stamp_floor),
            })
        }
    }
}

/// Cover and payload rates (per second) of `specs/mixing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// λP: a client's payload stream (real or drop cover).
    pub payload: f64,
    /// λL: a client's loops.
    pub loops: f64,
    /// λD: a client's drops.
    pub drops: f64,
    /// λM: a mix node's loops.
    pub node_loops: f64,
    /// The bulk class and its windows (`specs/client.md` §4.1); absent:
    /// every client sends at the rates above all the time. A reader of a
    /// build without it refuses a document carrying it (a closed object),
    /// as it must: it would throttle clients in their windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkRates>,
}

/// A client's rates inside its bulk windows, and the windows: time from
/// the schedule's genesis is cut into windows of `window_secs`, and window
/// `k` belongs to cohort `k mod cohorts`. Each client is in one cohort,
/// drawn from its own seed, whatever it has queued (`specs/client.md`
/// §4.1), so it is in bulk one window in `cohorts`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRates {
    /// λP in a window.
    pub payload: f64,
    /// λL in a window.
    pub loops: f64,
    /// λD in a window.
    pub drops: f64,
    /// The length of one window, seconds (1 to [`MAX_WINDOW_SECS`]).
    pub window_secs: u64,
    /// Cohorts taking turns (1 to [`MAX_COHORTS`]): each client is in
    /// bulk for `1/cohorts` of the time.
    pub cohorts: u16,
}

/// The longest a bulk window may be, seconds (a day).
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// The most cohorts a document may set (a client's ticket is 16 bits,
/// one value of which says "no windows").
pub const MAX_COHORTS: u16 = 4_096;

/// The rates a client sends at in one class, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassRates {
    /// λP.
    pub payload: f64,
    /// λL.
    pub loops: f64,
    /// λD.
    pub drops: f64,
}

impl ClassRates {
    /// What the client may send a second: `λP + λL + λD`.
    pub fn send(&self) -> f64 {
        self.payload + self.loops + self.drops
    }

    /// The rate at which a gateway writes delivery frames to a client in
    /// this class (`specs/client.md` §3): what comes back to a client is
    /// one packet per payload slot (a reply, or cover that returns as
    /// one) and its loops, `λP + λL` a second, so the stream runs at the
    /// client's whole send rate `λP + λL + λD`, and never below
    /// `1.25 (λP + λL)`: a mailbox fed as fast as it is drained would
    /// grow without bound.
    pub fn delivery(&self) -> f64 {
        let back = self.payload + self.loops;
        (back + self.drops).max(1.25 * back)
    }
}

/// The lowest rate a stream may have but zero, per second (one packet
/// every ~17 minutes): a gap of 1/λ must be a time a timer can hold, and
/// a rate like 1e-320 (subnormal) would overflow it.
pub const MIN_RATE: f64 = 0.001;
/// The highest rate of any stream, per second.
pub const MAX_RATE: f64 = 10_000.0;

impl Rates {
    /// Checks every rate: finite, and 0 (the stream is off; not for λP,
    /// the stream every real packet rides) or within [`MIN_RATE`] and
    /// [`MAX_RATE`]. The error names the field.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let mut streams = vec![
            ("rates.payload", self.payload, false),
            ("rates.loops", self.loops, true),
            ("rates.drops", self.drops, true),
            ("rates.node_loops", self.node_loops, true),
        ];
        if let Some(b) = &self.bulk {
            streams.extend([
                ("rates.bulk.payload", b.payload, false),
                ("rates.bulk.loops", b.loops, true),
                ("rates.bulk.drops", b.drops, true),
            ]);
        }
        for (field, v, may_be_off) in streams {
            let in_range = (MIN_RATE..=MAX_RATE).contains(&v);
            if !(in_range || (may_be_off && v == 0.0)) {
                let allowed = if may_be_off { "0 or " } else { "" };
                return Err(DirectoryError::Field {
                    field: field.to_owned(),
                    problem: format!("{v:e} per second; must be {allowed}{MIN_RATE} to {MAX_RATE}"),
                });
            }
        }
        if let Some(b) = &self.bulk {
            let field = |field: &str, problem: String| DirectoryError::Field {
                field: format!("rates.bulk.{field}"),
                problem,
            };
            // A bulk class slower than the idle one in any stream would
            // make a window a time of less traffic, not more: refused, so
            // a class change is always a rise the gateway allows for.
            for (name, bulk, idle) in [
                ("payload", b.payload, self.payload),
                ("loops", b.loops, self.loops),
                ("drops", b.drops, self.drops),
            ] {
                if bulk < idle {
                    return Err(field(
                        name,
                        format!("{bulk} is below rates.{name} ({idle})"),
                    ));
                }
            }
            if !(1..=MAX_WINDOW_SECS).contains(&b.window_secs) {
                return Err(field(
                    "window_secs",
                    format!("{}: must be 1 to {MAX_WINDOW_SECS}", b.window_secs),
                ));
            }
            if !(1..=MAX_COHORTS).contains(&b.cohorts) {
                return Err(field(
                    "cohorts",
                    format!("{}: must be 1 to {MAX_COHORTS}", b.cohorts),
                ));
            }
        }
        Ok(())
    }

    /// The idle class: what every client sends outside its windows.
    pub fn idle(&self) -> ClassRates {
        ClassRates {
            payload: self.payload,
            loops: self.loops,
            drops: self.drops,
        }
    }

    /// The rate at which a gateway writes delivery frames to a client in
    /// the idle class ([`ClassRates::delivery`]).
    pub fn delivery(&self) -> f64 {
        self.idle().delivery()
    }

    /// The class a client holding `ticket` is in at `unix_ms`, under
    /// `schedule` (`specs/client.md` §4.1).
    pub fn class_at(&self, schedule: &EpochSchedule, ticket: Ticket, unix_ms: u64) -> ClassRates {
        match &self.bulk {
            Some(b) if b.in_window(schedule, ticket, unix_ms) => ClassRates {
                payload: b.payload,
                loops: b.loops,
                drops: b.drops,
            },
            _ => self.idle(),
        }
    }

    /// What a gateway lets a client holding `ticket` send a second at
    /// `unix_ms` (before [`CLIENT_RATE_FACTOR`](crate::admission::CLIENT_RATE_FACTOR)):
    /// the send rate of its class, the higher one from `grace_ms` before a
    /// switch to `grace_ms` after it, so a client whose clock is a little
    /// off, or whose frames are on their way, is not throttled at the
    /// edges of its windows.
    pub fn allowance(
        &self,
        schedule: &EpochSchedule,
        ticket: Ticket,
        unix_ms: u64,
        grace_ms: u64,
    ) -> f64 {
        [
            unix_ms.saturating_sub(grace_ms),
            unix_ms,
            unix_ms.saturating_add(grace_ms),
        ]
        .into_iter()
        .map(|t| self.class_at(schedule, ticket, t).send())
        .fold(0.0, f64::max)
    }

    /// The most a client may send a second in any class: what a gateway
    /// holds a session to, with its class's own rate enforced at each
    /// instant.
    pub fn peak(&self) -> ClassRates {
        match &self.bulk {
            Some(b) => ClassRates {
                payload: b.payload,
                loops: b.loops,
                drops: b.drops,
            },
            None => self.idle(),
        }
    }
}

/// A client's place in the bulk windows' turns (`specs/client.md`
/// §4.1): drawn once from its seed and kept, so its windows come round
/// at the same times every cycle; [`Ticket::NONE`] asks for none. Its
/// cohort under a document is `ticket mod cohorts`, so a ticket outlives
/// a change of `cohorts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u16);

impl Ticket {
    /// No windows: the client stays in the idle class.
    pub const NONE: Ticket = Ticket(u16::MAX);

    /// A ticket drawn from `rng` (never [`Ticket::NONE`]).
    pub fn draw<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        Ticket(rand::RngExt::random_range(rng, 0..u16::MAX))
    }

    /// The cohort under `cohorts` turns, if the ticket asks for windows.
    pub fn cohort(self, cohorts: u16) -> Option<u16> {
        (self != Self::NONE).then(|| self.0 % cohorts.max(1))
    }
}

impl BulkRates {
    fn window_ms(&self) -> u64 {
        self.window_secs.clamp(1, MAX_WINDOW_SECS) * 1000
    }

    /// The window at `unix_ms` (its index from genesis), `None` before
    /// genesis.
    fn window_index(&self, schedule: &EpochSchedule, unix_ms: u64) -> Option<u64> {
        let genesis = schedule.genesis.saturating_mul(1000);
        (unix_ms >= genesis).then(|| (unix_ms - genesis) / self.window_ms())
    }

    /// The cohort whose window runs at `unix_ms` (the first window's
    /// before genesis).
    pub fn cohort_at(&self, schedule: &EpochSchedule, unix_ms: u64) -> u16 {
        let k = self.window_index(schedule, unix_ms).unwrap_or(0);
        u16::try_from(k % u64::from(self.cohorts.max(1))).unwrap_or(0)
    }

    /// Whether `ticket`'s holder is in a bulk window at `unix_ms`.
    pub fn in_window(&self, schedule: &EpochSchedule, ticket: Ticket, unix_ms: u64) -> bool {
        match (
            ticket.cohort(self.cohorts),
            self.window_index(schedule, unix_ms),
        ) {
            (Some(cohort), Some(k)) => k % u64::from(self.cohorts.max(1)) == u64::from(cohort),
            _ => false,
        }
    }

    /// When, after `unix_ms`, `ticket`'s holder next changes class (a
    /// window of its own starts or ends), Unix ms; `None` when it never
    /// does (no windows asked for, or every window its own).
    pub fn next_change(
        &self,
        schedule: &EpochSchedule,
        ticket: Ticket,
        unix_ms: u64,
    ) -> Option<u64> {
        let cohort = u64::from(ticket.cohort(self.cohorts)?);
        let cohorts = u64::from(self.cohorts.max(1));
        if cohorts == 1 {
            return None;
        }
        let genesis = schedule.genesis.saturating_mul(1000);
        let w = self.window_ms();
        let Some(k) = self.window_index(schedule, unix_ms) else {
            // Before genesis: the first window of its own.
            return Some(genesis.saturating_add(cohort.saturating_mul(w)));
        };
        let start_of = |k: u64| genesis.saturating_add(k.saturating_mul(w));
        if k % cohorts == cohort {
            // In its window: it ends with it.
            return Some(start_of(k + 1));
        }
        // The next window of its cohort.
        let ahead = (cohort + cohorts - k % cohorts) % cohorts;
        Some(start_of(k + ahead))
    }
}

/// When epochs start: epoch `e` runs from `genesis + e·epoch_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochSchedule {
    /// Start of epoch 0, Unix seconds.
    pub genesis: u64,
    /// Length of an epoch, seconds.
    pub epoch_secs: u64,
    /// How often a node re-uploads its descriptor, seconds: the
    /// authority lists only nodes heard from within
    /// [`LIVENESS_HEARTBEATS`] heartbeats, so a dead node leaves the
    /// document (and its records are repaired elsewhere) within minutes,
    /// not at the end of its published keys.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// How long one voting round of the authorities lasts, seconds
    /// (`specs/directory.md` §6.1): 2 to `epoch_secs`. A node joining is
    /// listed within two rounds; a round that fails keeps the document
    /// before it.
    #[serde(default = "default_round")]
    pub round_secs: u64,
}

/// The voting round of a schedule that sets none, seconds.
pub const DEFAULT_ROUND_SECS: u64 = 30;

fn default_round() -> u64 {
    DEFAULT_ROUND_SECS
}

/// Heartbeats a node may miss before the authority stops listing it.
pub const LIVENESS_HEARTBEATS: u64 = 3;

/// The heartbeat an authority config without one gets.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 20;

fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}

impl EpochSchedule {
    /// The epoch at `now` (epoch 0 before genesis).
    pub fn epoch_at(&self, now: u64) -> u32 {
        let e = now.saturating_sub(self.genesis) / self.epoch_secs.max(1);
        u32::try_from(e).unwrap_or(u32::MAX)
    }

    /// The round length, never 0 and never past the epoch.
    fn round_len(&self) -> u64 {
        self.round_secs.clamp(1, self.epoch_secs.max(1))
    }

    /// Voting rounds in one epoch (the last may be shorter).
    pub fn rounds_per_epoch(&self) -> u64 {
        self.epoch_secs.max(1).div_ceil(self.round_len())
    }

    /// The round running at `now_ms` (Unix milliseconds): its epoch, its
    /// index in the epoch, and its start and end (Unix ms).
    pub fn round_at(&self, now_ms: u64) -> (u32, u64, u64, u64) {
        let epoch = self.epoch_at(now_ms / 1000);
        let epoch_start = self.start(epoch).saturating_mul(1000);
        let epoch_end = self.start(epoch.saturating_add(1)).saturating_mul(1000);
        let len = self.round_len().saturating_mul(1000);
        let index = now_ms.saturating_sub(epoch_start) / len;
        let start = epoch_start.saturating_add(index.saturating_mul(len));
        let end = start.saturating_add(len).min(epoch_end);
        (epoch, index, start, end)
    }

    /// The document a round votes on: the next round's, which is round 0
    /// of the next epoch after an epoch's last round.
    pub fn target_of(&self, epoch: u32, index: u64) -> (u32, u64) {
        if index + 1 >= self.rounds_per_epoch() {
            (epoch.saturating_add(1), 0)
        } else {
            (epoch, index + 1)
        }
    }

    /// When the document of round `serial` of `epoch` takes over, Unix
    /// seconds.
    pub fn round_start(&self, epoch: u32, serial: u64) -> u64 {
        self.start(epoch)
            .saturating_add(serial.saturating_mul(self.round_len()))
            .min(self.start(epoch.saturating_add(1)))
    }

    /// How long the authority lists a node without hearing from it.
    pub fn liveness_secs(&self) -> u64 {
        self.heartbeat_secs
            .max(1)
            .saturating_mul(LIVENESS_HEARTBEATS)
    }

    /// The start of `epoch`, Unix seconds.
    pub fn start(&self, epoch: u32) -> u64 {
        self.genesis
            .saturating_add(u64::from(epoch).saturating_mul(self.epoch_secs.max(1)))
    }
}

/// Packet geometry, checked against the compiled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    /// Sphinx payload bytes.
    pub payload: u32,
    /// Hops per route, gateway and final hop included.
    pub max_path: u8,
}

impl Geometry {
    /// The geometry this build speaks.
    pub fn compiled() -> Self {
        Self {
            payload: SPHINX_PAYLOAD_SIZE as u32,
            max_path: MAX_PATH_LENGTH as u8,
        }
    }
}
