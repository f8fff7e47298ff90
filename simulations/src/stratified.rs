//! A stratified network of exponential mixes, driven by the production
//! engine and measured by the entropy tracker, against its closed form
//! (`specs/simulation.md` §2, Closed forms): the check that the metric
//! gives what theory says where theory has an answer.
//!
//! Messages arrive at rate Λ = `width · load · μ` in all, each at a
//! uniformly chosen Poisson mix of layer 1, and go on to a uniformly
//! chosen mix of every next layer, held Exp(mean 1/μ) at each; they leave
//! after the last layer. There is no cover, no link delay and no loss:
//! nothing but mixing, so the figure is the metric's alone.

use std::time::Duration;

use mtos_crypto::sphinx::sample_exponential;
use mtos_mixnode::{EngineConfig, EpochKey, Instant, KeyRing, MixEngine, MixingMode, ReplaySizing};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::entropy::{EntropyTracker, ExitPoint, Role};
use crate::metrics::mean_and_stderr;
use crate::packet::{Abstract, AbstractPacket, node_address, node_index};
use crate::replicate::mean_ci95;

/// One stratified network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stratified {
    /// Mix layers (1 to 4: a route has a hop past the last).
    pub layers: u32,
    /// Mixes per layer.
    pub width: u32,
    /// Each mix's load: its arrival rate over μ, the packets it holds on
    /// average.
    pub load: f64,
    /// Mean hold 1/μ.
    pub mean_delay: Duration,
    /// Tagged messages per run.
    pub tags: u32,
}

/// The closed form against the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Each run's mean entropy over its tags, bits.
    pub runs: Vec<f64>,
    /// Their mean.
    pub mean_bits: f64,
    /// The half-width of its 95% interval.
    pub ci95_bits: f64,
    /// Its standard error (`s/√R`).
    pub stderr_bits: f64,
    /// The closed form, bits.
    pub closed_form_bits: f64,
}

/// The entropy, in bits, of a message's exit event in a stratified
/// network of exponential mixes (`specs/simulation.md` §2): a message
/// held Exp(mean `mean_delay_s`) at each of `stages` nodes leaves among
/// exit events at `exit_rate` a second in all, spread evenly over the
/// exit nodes. It is the differential entropy of its Erlang(`stages`, μ)
/// delay plus `log2 exit_rate`; for one stage `log2(e·λ/μ)`. The limit
/// for many packets held at every stage (each node's λ/μ large). Random
/// link latencies between stages: [`exit_time_entropy_bits`].
pub fn closed_form_bits(stages: u32, mean_delay_s: f64, exit_rate: f64) -> f64 {
    exit_time_entropy_bits(stages, mean_delay_s, LinkSpread::None, 0) + exit_rate.log2()
}

/// How each link between two stages spreads a message's time (a
/// constant latency only shifts it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkSpread {
    /// Constant latency: no spread.
    None,
    /// Uniform over a range this wide, seconds.
    Uniform(f64),
    /// Exponential with this mean, seconds.
    Exponential(f64),
}

/// The differential entropy, in bits, of a message's exit time
/// `T = Erlang(stages, μ) + ` `links` independent link delays (the ones
/// between stages: after the first stage the mass is on many packets, and
/// each took its own). With no spread it is the Erlang's, in closed
/// form; otherwise it is computed on a grid (the Erlang density at bin
/// midpoints, convolved with each link's by a running box sum or an
/// exponential filter, both O(bins); at most 400,000 bins, at least 100
/// to the narrower of a mean hold and a link's scale). Written here
/// because it is twenty lines and no numerical crate in the tree offers
/// it.
pub fn exit_time_entropy_bits(stages: u32, mean_delay_s: f64, link: LinkSpread, links: u32) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    let stages = stages.max(1);
    let k = f64::from(stages);
    let ln_gamma: f64 = (1..stages).map(|j| f64::from(j).ln()).sum();
    let scale = match link {
        LinkSpread::Uniform(w) if w > 0.0 && links > 0 => w,
        LinkSpread::Exponential(m) if m > 0.0 && links > 0 => m,
        _ => {
            let digamma = -EULER_GAMMA + (1..stages).map(|j| 1.0 / f64::from(j)).sum::<f64>();
            let nats = k + mean_delay_s.ln() + ln_gamma + (1.0 - k) * digamma;
            return nats / std::f64::consts::LN_2;
        }
    };
    let mu = 1.0 / mean_delay_s;
    let links_f = f64::from(links);
    let horizon = k * mean_delay_s
        + 15.0 * k.sqrt() * mean_delay_s
        + match link {
            LinkSpread::Exponential(m) => links_f * m + 15.0 * links_f.sqrt() * m,
            _ => links_f * scale,
        };
    let bins =
        ((horizon / (mean_delay_s.min(scale) / 100.0)).ceil() as usize).clamp(1_000, 400_000);
    let dt = horizon / bins as f64;
    // The Erlang's probability per bin, from its log-density at the
    // bin's midpoint.
    let mut p: Vec<f64> = (0..bins)
        .map(|i| {
            let t = (i as f64 + 0.5) * dt;
            (k * mu.ln() + (k - 1.0) * t.ln() - mu * t - ln_gamma).exp() * dt
        })
        .collect();
    for _ in 0..links {
        match link {
            LinkSpread::Uniform(w) => {
                let m = ((w / dt).round() as usize).max(1);
                let mut out = vec![0.0; bins];
                let mut run = 0.0;
                for i in 0..bins {
                    run += p[i];
                    if i >= m {
                        run -= p[i - m];
                    }
                    out[i] = run / m as f64;
                }
                p = out;
            }
            LinkSpread::Exponential(m) => {
                let a = (-dt / m).exp();
                let mut y = 0.0;
                for x in p.iter_mut() {
                    y = a * y + (1.0 - a) * *x;
                    *x = y;
                }
            }
            LinkSpread::None => {}
        }
    }
    let total: f64 = p.iter().sum();
    let nats: f64 = p
        .iter()
        .filter(|q| **q > 0.0)
        .map(|q| {
            let q = q / total;
            -q * (q / dt).ln()
        })
        .sum();
    nats / std::f64::consts::LN_2
}

impl Stratified {
    /// Messages a second into the network.
    pub fn total_rate(&self) -> f64 {
        self.load * f64::from(self.width) / self.mean_delay.as_secs_f64()
    }

    /// The closed form for this network. The adversary sees which mix
    /// of layer 1 a message enters, so with one layer it leaves among
    /// that mix's exits only; with more, among the last layer's.
    pub fn closed_form_bits(&self) -> f64 {
        let spread = if self.layers > 1 { self.width } else { 1 };
        let exit_rate = self.total_rate() * f64::from(spread) / f64::from(self.width);
        closed_form_bits(self.layers, self.mean_delay.as_secs_f64(), exit_rate)
    }

    /// Runs under `seeds` seeds from `first_seed` and compares.
    pub fn compare(&self, first_seed: u64, seeds: usize) -> Comparison {
        let runs: Vec<f64> = (0..seeds as u64)
            .map(|i| {
                let h = self.run(first_seed + i);
                h.iter().sum::<f64>() / h.len().max(1) as f64
            })
            .collect();
        let (mean_bits, ci95_bits) = mean_ci95(&runs);
        let stderr_bits = mean_and_stderr(runs.iter().copied()).map_or(f64::NAN, |(_, se)| se);
        Comparison {
            runs,
            mean_bits,
            ci95_bits,
            stderr_bits,
            closed_form_bits: self.closed_form_bits(),
        }
    }

    /// One run: the entropy of each tag, bits. After a warm-up of 20
    /// mean delays a layer, each arrival is tagged with the probability
    /// that spreads the tags over 15 routes' worth of mixing (at most one
    /// in ten), so they see many states of the pools and overlap as other
    /// messages do.
    pub fn run(&self, seed: u64) -> Vec<f64> {
        let (layers, width, mean) = (self.layers, self.width, self.mean_delay);
        let nodes = layers * width;
        let sink = nodes; // not an engine: where the last layer sends
        let mut engines: Vec<MixEngine<Abstract>> = (0..nodes)
            .map(|i| {
                MixEngine::new(
                    EngineConfig {
                        mode: MixingMode::Poisson,
                        mean_delay: mean,
                        max_delay: Duration::from_secs(3600),
                        queue_limit: usize::MAX,
                        output_limit: usize::MAX,
                    },
                    KeyRing::new(
                        EpochKey {
                            epoch: 1,
                            secret: node_address(i),
                        },
                        ReplaySizing {
                            expected_per_key: 1_000_000,
                            per_second: None,
                            fp_rate: 1e-9,
                        },
                    ),
                )
            })
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut tracker = EntropyTracker::new();
        let warmup = 20.0 * mean.as_secs_f64() * f64::from(layers);
        let mut tagged = 0;
        let mut id = 0u64;
        let gap = Duration::from_secs_f64(1.0 / self.total_rate());
        let span = 15.0 * f64::from(layers) * mean.as_secs_f64();
        let tag_share = (f64::from(self.tags) / (span * self.total_rate())).min(0.1);
        let mut next_arrival = Instant::ZERO + sample_exponential(&mut rng, gap);
        let mut out = Vec::new();
        loop {
            let next_release = engines
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.poll_timeout().map(|t| (t, i)))
                .min();
            if let Some((now, i)) = next_release.filter(|(t, _)| *t <= next_arrival) {
                let node = i as u32;
                let mut n = engines[i].held();
                engines[i].handle_timeout(now, &mut rng);
                out.extend(std::iter::from_fn(|| engines[i].poll_transmit()));
                for t in out.drain(..) {
                    let masses = tracker.depart(node, Role::Forward, n);
                    n = n.saturating_sub(1);
                    match node_index(&t.next) {
                        Some(next) if next < sink => {
                            engines[next as usize].handle_frame(now, &t.frame, &mut rng);
                            tracker.arrive(next, Role::Forward, &masses);
                        }
                        _ => tracker.exit(
                            &masses,
                            ExitPoint {
                                recipient: Some(0),
                                node,
                            },
                        ),
                    }
                }
            } else {
                if tagged == self.tags && tracker.active() == 0 {
                    break;
                }
                let now = next_arrival;
                let mut route: Vec<u32> = (0..layers)
                    .map(|l| l * width + rng.random_range(0..width))
                    .collect();
                route.push(sink);
                let mut delays: Vec<Duration> = (0..layers)
                    .map(|_| sample_exponential(&mut rng, mean))
                    .collect();
                delays.push(Duration::ZERO);
                let first = route[0];
                let packet = AbstractPacket {
                    id,
                    hop: 0,
                    route,
                    delays,
                    destination: 0,
                    surb_id: [0; 16],
                };
                id += 1;
                let mut frame = vec![1u8];
                frame.extend_from_slice(&packet.encode());
                engines[first as usize].handle_frame(now, &frame, &mut rng);
                if now.since_origin().as_secs_f64() > warmup
                    && tagged < self.tags
                    && rng.random::<f64>() < tag_share
                {
                    let m = tracker.tag(tagged);
                    tracker.arrive(first, Role::Forward, &m);
                    tagged += 1;
                }
                next_arrival = now + sample_exponential(&mut rng, gap);
            }
        }
        tracker
            .finish()
            .tags
            .iter()
            .map(|r| r.entropy_bits)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_gives_the_erlang_entropy_and_its_sums() {
        // A link of next to no spread leaves the Erlang's closed form.
        let erlang = exit_time_entropy_bits(5, 0.05, LinkSpread::None, 4);
        let grid = exit_time_entropy_bits(5, 0.05, LinkSpread::Uniform(1e-7), 4);
        assert!((grid - erlang).abs() < 1e-3, "{grid} {erlang}");
        // Erlang(k, μ) plus k − 1 links Exp(μ) is Erlang(2k − 1, μ).
        let sum = exit_time_entropy_bits(3, 0.05, LinkSpread::Exponential(0.05), 2);
        let erlang5 = exit_time_entropy_bits(5, 0.05, LinkSpread::None, 0);
        assert!((sum - erlang5).abs() < 1e-3, "{sum} {erlang5}");
        // Uniform links spread it more, and matter less as the holds grow.
        let short = exit_time_entropy_bits(5, 0.005, LinkSpread::Uniform(0.025), 4)
            - exit_time_entropy_bits(5, 0.005, LinkSpread::None, 4);
        let long = exit_time_entropy_bits(5, 0.05, LinkSpread::Uniform(0.025), 4)
            - exit_time_entropy_bits(5, 0.05, LinkSpread::None, 4);
        assert!(short > 0.5 && long > 0.0 && long < 0.05, "{short} {long}");
        // One stage: ln(e·λ/μ).
        let single = closed_form_bits(1, 0.1, 500.0);
        assert!((single - (std::f64::consts::E * 50.0).log2()).abs() < 1e-12);
    }
}
