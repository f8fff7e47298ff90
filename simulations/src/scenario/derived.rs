//! What a scenario implies: its clients' mean rates, where its tags
//! go, its network's shape and weights (`Scenario`'s fields are the
//! parent module's).

use std::time::Duration;

use mtos_mixnode::MixingMode;

use super::Scenario;

impl Scenario {
    /// A client's mean packets a second over a run: its idle streams,
    /// and the bulk class's in `1/cohorts` of the time.
    pub fn mean_client_rate(&self) -> f64 {
        let c = &self.cover;
        let idle = c.payload + c.loop_cover + c.drop_cover;
        match &self.bulk {
            None => idle,
            Some(b) => idle + (b.payload + b.loops + b.drops - idle) / f64::from(b.cohorts),
        }
    }

    /// The rate at which a gateway writes delivery frames to a client,
    /// averaged over its classes as `mean_client_rate` is (production's
    /// `ClassRates::delivery`, `client.md` §3).
    pub fn mean_delivery_rate(&self) -> f64 {
        let c = &self.cover;
        let delivery = |payload: f64, loops: f64, drops: f64| {
            mtos_mixnode::directory::ClassRates {
                payload,
                loops,
                drops,
            }
            .delivery()
        };
        let idle = delivery(c.payload, c.loop_cover, c.drop_cover);
        match &self.bulk {
            None => idle,
            Some(b) => idle + (delivery(b.payload, b.loops, b.drops) - idle) / f64::from(b.cohorts),
        }
    }

    /// How long before the end of the run the last tag is placed, so
    /// that its mass can leave the network: 50 routes' worth of mixing
    /// (`route_len` hops each, a hop a mean delay, or in pool mode
    /// `interval / fraction`), at least 10 s, and at most half the run
    /// after the warm-up.
    pub fn tag_tail(&self) -> Duration {
        let per_hop = match self.mixing {
            MixingMode::Pool {
                interval, fraction, ..
            } => interval
                .mul_f64(1.0 / fraction.clamp(1e-3, 1.0))
                .max(self.mean_delay),
            MixingMode::Poisson => self.mean_delay,
        };
        let hops = u32::try_from(self.route_len()).unwrap_or(u32::MAX);
        let tail = per_hop
            .saturating_mul(50)
            .saturating_mul(hops)
            .max(Duration::from_secs(10));
        tail.min(self.duration.saturating_sub(self.warmup) / 2)
    }

    /// The instant of the `k`-th tag: the tags go in pairs (tags `2j`
    /// and `2j + 1`, from two senders, for the unlinkability of §2),
    /// spread evenly over the warm-up's end to [`Self::tag_tail`] before
    /// the end, pair `j` at the middle of its share (`specs/simulation.md`
    /// §2).
    pub fn tag_instant(&self, k: u32) -> mtos_mixnode::time::Instant {
        let span = self
            .duration
            .saturating_sub(self.warmup)
            .saturating_sub(self.tag_tail());
        let pairs = self.tagged_messages.div_ceil(2).max(1);
        let share = span.as_secs_f64() / f64::from(pairs);
        mtos_mixnode::time::Instant::from_duration(
            self.warmup + Duration::from_secs_f64(share * (f64::from(k / 2) + 0.5)),
        )
    }

    /// Hops of every route: gateway, the mix layers, exit provider.
    pub fn route_len(&self) -> usize {
        self.layers as usize + 2
    }

    /// The network's shape (layers, mixes per layer, providers).
    pub fn shape(&self) -> crate::adversary::Shape {
        crate::adversary::Shape {
            layers: self.layers,
            per_layer: self.nodes_per_layer,
            providers: self.providers,
            weighted: self.bandwidth.is_some(),
        }
    }

    /// Mix nodes plus providers.
    pub fn node_count(&self) -> u32 {
        self.layers * self.nodes_per_layer + self.providers
    }

    /// The mixes' bandwidth weights, when `[topology] bandwidth` gives
    /// them (checked when the scenario was read).
    pub fn mix_weights(&self) -> Option<Vec<f64>> {
        self.bandwidth
            .as_ref()
            .and_then(|b| b.weights(self.layers, self.nodes_per_layer).ok())
    }
}
