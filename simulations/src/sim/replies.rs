//! Answers through reply blocks (`[replies]`, `crate::replies`): a
//! sender hands a block with a message, built over the route and with
//! the delays it draws; the recipient answers through it a thinking time
//! after the message reaches it, in its payload stream (`Simulation`'s
//! fields are the parent module's).

use super::*;
use crate::replies::{RepliesConfig, RepliesReport};

/// A reply block handed with a message, and then its answer's.
#[derive(Debug)]
pub(super) struct Block {
    /// The message's sender: who built the block, and the answer's
    /// recipient.
    asker: u32,
    /// The message's recipient, who answers.
    answerer: u32,
    /// The block's route (the answerer's gateway, one mix per layer, the
    /// asker's gateway) and the delays the asker drew.
    route: Vec<u32>,
    delays: Vec<Duration>,
    /// The epoch whose keys it is built under.
    epoch: u32,
    /// When the message was generated.
    asked: Instant,
    /// Whether the answer has left (the block is used).
    used: bool,
}

/// The answers' state over a run.
#[derive(Debug, Default)]
pub(super) struct State {
    config: Option<RepliesConfig>,
    /// Blocks handed and not yet done with, by slot.
    blocks: Vec<Option<Block>>,
    free: Vec<u32>,
    rng: Option<ChaCha20Rng>,
    /// What the answers did.
    pub(super) report: RepliesReport,
}

impl State {
    /// Answers for `scenario` (none without `[replies]`).
    pub(super) fn new(scenario: &Scenario, seed: u64) -> Self {
        let Some(config) = scenario.replies else {
            return Self::default();
        };
        Self {
            config: Some(config),
            // Their own RNG for whether and when to answer; routes and
            // delays are drawn as the sender's other packets' are.
            rng: Some(component_rng(seed, "replies", 0)),
            ..Self::default()
        }
    }

    fn insert(&mut self, block: Block) -> u32 {
        match self.free.pop() {
            Some(b) => {
                self.blocks[b as usize] = Some(block);
                b
            }
            None => {
                self.blocks.push(Some(block));
                u32::try_from(self.blocks.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn remove(&mut self, b: u32) -> Option<Block> {
        let block = self.blocks.get_mut(b as usize)?.take()?;
        self.free.push(b);
        Some(block)
    }
}

impl<M: Mode> Simulation<M> {
    /// Client `c` sends a message generated at `created` to `recipient`:
    /// whether it hands a block for an answer (`[replies]`, the share
    /// `answer`), and the block's slot if so.
    pub(super) fn hand_block(&mut self, c: u32, recipient: u32, created: Instant) -> Option<u32> {
        let answer = self.replies.config?.answer;
        let rng = self.replies.rng.as_mut()?;
        if rng.random::<f64>() >= answer {
            return None;
        }
        let (route, delays) = self.draw_block(c, recipient);
        self.replies.report.answerable += 1;
        let block = Block {
            asker: c,
            answerer: recipient,
            route,
            delays,
            epoch: self.epoch(),
            asked: created,
            used: false,
        };
        Some(self.replies.insert(block))
    }

    /// A real message travelling with block `b` reached its client at
    /// `at`: a message is answered a thinking time later; an answer
    /// (queued at `created`, `network` in the network) closes its round
    /// trip.
    pub(super) fn reached_client(
        &mut self,
        b: u32,
        at: Instant,
        created: Instant,
        network: Duration,
    ) {
        let Some(config) = self.replies.config else {
            return;
        };
        let used = match self.replies.blocks.get(b as usize) {
            Some(Some(block)) => block.used,
            _ => return,
        };
        if used {
            let Some(block) = self.replies.remove(b) else {
                return;
            };
            let report = &mut self.replies.report;
            report.received += 1;
            if block.asked >= Instant::from_duration(self.scenario.warmup) {
                report.round_trip_s.push((at - block.asked).as_secs_f64());
                report.network_latency_s.push(network.as_secs_f64());
                report.end_to_end_s.push((at - created).as_secs_f64());
            }
            return;
        }
        let think = match (config.think_s > 0.0, self.replies.rng.as_mut()) {
            (true, Some(rng)) => sample_exponential(rng, Duration::from_secs_f64(config.think_s)),
            _ => Duration::ZERO,
        };
        self.push(at + think, Ev::Answer(b));
    }

    /// The answer through block `b` joins its answerer's queue.
    pub(super) fn on_answer(&mut self, b: u32) {
        let Some(Some(block)) = self.replies.blocks.get(b as usize) else {
            return;
        };
        let (answerer, asker) = (block.answerer, block.asker);
        let id = self.next_message_slot();
        let out = Outgoing {
            id,
            recipient: asker,
            block: Some(b),
        };
        if !self.queue_real(answerer, out) {
            return;
        }
        self.replies.report.answered += 1;
        self.reschedule_client(answerer);
    }

    /// Puts real message `out` in client `c`'s queue; whether there was
    /// room (a message refused is counted, and an answer's block freed).
    pub(super) fn queue_real(&mut self, c: u32, out: Outgoing) -> bool {
        if self.clients[c as usize].schedule.push_real(out).is_ok() {
            return true;
        }
        self.sent.remove(&out.id);
        self.metrics.client_queue_drops += 1;
        if let Some(b) = out.block
            && self.replies.remove(b).is_some()
        {
            self.replies.report.queue_drops += 1;
        }
        false
    }

    /// The answer through block `b` leaves its client, whose gateway is
    /// node `gateway`: once the block's epoch has ended, the route and
    /// delays of a block of this epoch the asker draws now, to both
    /// clients' gateways of the moment; else the block's own, or `None`
    /// (the block void) when it starts at another gateway than the
    /// answerer's (it moved since the block was handed: its gateway
    /// cannot open the packet and drops it).
    pub(super) fn use_block(&mut self, b: u32, gateway: u32) -> Option<(Vec<u32>, Vec<Duration>)> {
        let epoch = self.epoch();
        let block = self.replies.blocks.get_mut(b as usize)?.as_mut()?;
        if block.epoch == epoch && block.route.first() != Some(&gateway) {
            self.replies.report.void += 1;
            self.replies.remove(b);
            return None;
        }
        block.used = true;
        self.replies.report.sent += 1;
        if block.epoch == epoch {
            return Some((block.route.clone(), block.delays.clone()));
        }
        let (asker, answerer) = (block.asker, block.answerer);
        self.replies.report.replenished += 1;
        Some(self.draw_block(asker, answerer))
    }

    /// A block's route and delays as `asker` draws them now: from
    /// `answerer`'s gateway, one mix per layer, to its own gateway.
    fn draw_block(&mut self, asker: u32, answerer: u32) -> (Vec<u32>, Vec<Duration>) {
        let first = self.provider(self.clients[answerer as usize].gateway);
        let last = self.provider(self.clients[asker as usize].gateway);
        let route = self.route(first, last);
        let delays = self.draw_delays(route.len(), RngOf::Client(asker));
        (route, delays)
    }

    /// The answers' report at the end of a run: with the blocks still
    /// held, unused (the message lost or on its way, or its answer still
    /// to leave) and used (the answer lost or on its way). Blocks are
    /// kept to the end: no loss is reported to the simulator's parties
    /// (a few hundred bytes each).
    pub(super) fn finish_replies(&mut self) {
        if self.replies.config.is_none() {
            return;
        }
        let mut report = std::mem::take(&mut self.replies.report);
        for block in self.replies.blocks.iter().flatten() {
            match block.used {
                true => report.open_used += 1,
                false => report.open_unused += 1,
            }
        }
        self.metrics.replies = Some(report);
    }
}
