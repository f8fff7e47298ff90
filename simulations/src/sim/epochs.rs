//! Key rotation (`[epochs]`): each epoch's keys, the previous one's
//! grace period (`Simulation`'s fields are the parent module's).

use super::*;

impl<M: Mode> Simulation<M> {
    /// A new epoch: every node moves to its key (the previous one kept
    /// for the grace period), clients build packets under it from now on
    /// (`mixing.md`, key rotation), and the next epoch is scheduled.
    pub(super) fn on_epoch(&mut self) {
        let Some((length, grace)) = self.scenario.epochs else {
            return;
        };
        self.metrics.epochs += 1;
        let epoch = self.epoch();
        for n in 0..self.nodes.len() {
            let secret = self.mode.key(n as u32);
            self.nodes[n]
                .engine
                .keys_mut()
                .advance_to(EpochKey { epoch, secret });
        }
        let now = self.now;
        if grace.is_zero() {
            self.on_grace();
        } else {
            self.push(now + grace, Ev::Grace);
        }
        self.push(now + length, Ev::Epoch);
    }

    /// The current epoch: `EPOCH`, and one more for each rotation.
    pub(super) fn epoch(&self) -> u32 {
        EPOCH + self.metrics.epochs
    }

    /// The grace period ends: every node drops the previous epoch's key;
    /// frames still under it are refused (`unknown_key`).
    pub(super) fn on_grace(&mut self) {
        for node in &mut self.nodes {
            node.engine.keys_mut().retire_previous();
        }
    }
}
