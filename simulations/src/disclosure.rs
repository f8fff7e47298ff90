//! The statistical disclosure attack over a long trace (`[disclosure]`,
//! `specs/simulation.md` §9): one sender (Alice) writes only to a fixed
//! set of friends, every other client to anyone. The adversary sees every
//! packet Alice hands her gateway (it cannot tell her real messages from
//! her cover) and every deposit into a client's mailbox, and knows the
//! network's latency. For each of Alice's packets it takes the
//! recipients of the deposits in the latency window after it, as shares;
//! their mean, less the background share of each recipient, ranks the
//! recipients (Danezis, "Statistical disclosure attacks", 2003, in
//! continuous time). It has found her friends once the top of the
//! ranking is exactly them.

use std::collections::BTreeSet;

use rand::{Rng, RngExt};
use serde::Deserialize;
use serde_json::{Value, json};

/// `[disclosure]`: who is Alice and how many friends she has.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DisclosureConfig {
    /// Alice (a client).
    #[serde(default)]
    pub sender: u32,
    /// Her friends: the recipients of all her real messages, drawn
    /// from the other clients by the seed.
    pub friends: u32,
}

impl DisclosureConfig {
    /// Checks it against `clients` clients: (field, reason) when wrong.
    pub fn check(&self, clients: u32) -> Result<(), (&'static str, String)> {
        if self.sender >= clients {
            return Err((
                "disclosure.sender",
                format!(
                    "the scenario has clients 0 to {}",
                    clients.saturating_sub(1)
                ),
            ));
        }
        if self.friends == 0 || self.friends >= clients.saturating_sub(1) {
            return Err((
                "disclosure.friends",
                format!(
                    "from 1 to {} (fewer than the other clients, or nothing is disclosed)",
                    clients.saturating_sub(2)
                ),
            ));
        }
        Ok(())
    }

    /// Alice's friends, drawn from `rng`: distinct clients other than
    /// her, sorted.
    pub fn draw_friends<R: Rng + ?Sized>(&self, clients: u32, rng: &mut R) -> Vec<u32> {
        let mut chosen = BTreeSet::new();
        while chosen.len() < self.friends as usize {
            let c = rng.random_range(0..clients);
            if c != self.sender {
                chosen.insert(c);
            }
        }
        chosen.into_iter().collect()
    }
}

/// What the adversary saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// When Alice handed her gateway a packet (any kind), seconds.
    pub sends: Vec<f64>,
    /// When she sent a real message, seconds (not seen: to report the
    /// messages it took).
    pub real_sends: Vec<f64>,
    /// Mailbox deposits: when, and whose mailbox, in time order.
    pub deposits: Vec<(f64, u32)>,
    /// Every client's packets into its gateway: when, and whose, in time
    /// order (the estimator that discounts own returns).
    pub client_sends: Vec<(f64, u32)>,
}

/// What the adversary knows of clients' own returns, for the estimator
/// that discounts them: the network latency's density (a histogram of
/// the run's latencies), the share of a client's packets that come back
/// to its own mailbox (its payload cover and loops: (λP − λ + λL) over
/// λP + λL + λD), and the rate of real messages a mailbox receives (λ,
/// the clients' mean sending rate): an adversary that knows how much
/// real traffic the network carries, as the statistical disclosure
/// attack knows its background.
#[derive(Debug, Clone)]
pub struct OwnReturns {
    /// Bin width, seconds.
    width: f64,
    /// Density in each bin, per second.
    density: Vec<f64>,
    /// Share of a client's packets that return to it.
    share: f64,
    /// Real messages a mailbox receives a second.
    foreign: f64,
}

impl OwnReturns {
    /// From the run's network latencies (any order), the share and the
    /// real rate.
    pub fn new(latencies: &[f64], share: f64, foreign: f64) -> Self {
        let mut sorted = latencies.to_vec();
        sorted.sort_by(f64::total_cmp);
        let top = crate::metrics::quantile(&sorted, 0.999).unwrap_or(0.0);
        let bins = 200;
        let width = (top / bins as f64).max(1e-6);
        let mut density = vec![0.0; bins];
        for x in &sorted {
            if let Some(b) = density.get_mut((x / width) as usize) {
                *b += 1.0;
            }
        }
        let n = sorted.len().max(1) as f64;
        for b in &mut density {
            *b /= n * width;
        }
        Self {
            width,
            density,
            share,
            foreign: foreign.max(1e-6),
        }
    }

    fn reach(&self) -> f64 {
        self.width * self.density.len() as f64
    }

    fn at(&self, x: f64) -> f64 {
        match x >= 0.0 {
            true => self
                .density
                .get((x / self.width) as usize)
                .copied()
                .unwrap_or(0.0),
            false => 0.0,
        }
    }
}

/// The attack over what was seen from `from_s` on, with the latency
/// window `window` (seconds after a send), on `clients` clients: the
/// plain estimator, and (`own_sends`) one that weighs each deposit by
/// the chance it is not its recipient's own packet coming back, from
/// that recipient's sends and the latency (`own`).
pub fn attack(
    obs: &Observations,
    config: &DisclosureConfig,
    friends: &[u32],
    clients: u32,
    from_s: f64,
    window: (f64, f64),
    own: &OwnReturns,
) -> Value {
    let n = clients as usize;
    let deposits: Vec<(f64, u32)> = obs
        .deposits
        .iter()
        .copied()
        .filter(|(t, r)| *t >= from_s && (*r as usize) < n)
        .collect();
    let attack = Attack {
        obs,
        config,
        friends,
        clients,
        from_s,
        window,
        sends: obs.sends.iter().copied().filter(|t| *t >= from_s).collect(),
    };
    let plain = attack.rank(&deposits, &vec![1.0; deposits.len()]);
    let weights = foreign_weights(obs, clients, &deposits, own);
    let corrected = attack.rank(&deposits, &weights);
    let mut report = plain;
    report["window_s"] = json!([window.0, window.1]);
    report["own_sends"] = corrected;
    report
}

/// For each deposit, the chance that it is not its recipient's own
/// packet coming back: the foreign rate over the foreign rate and the
/// own returns' intensity then (the recipient's earlier sends, each
/// returning with `own.share`, after the latency's density).
fn foreign_weights(
    obs: &Observations,
    clients: u32,
    deposits: &[(f64, u32)],
    own: &OwnReturns,
) -> Vec<f64> {
    let n = clients as usize;
    let mut sends: Vec<Vec<f64>> = vec![Vec::new(); n];
    for (t, c) in &obs.client_sends {
        if let Some(s) = sends.get_mut(*c as usize) {
            s.push(*t);
        }
    }
    let foreign = own.foreign;
    deposits
        .iter()
        .map(|(t, r)| {
            let mine = sends.get(*r as usize).map_or(0.0, |s| {
                let from = s.partition_point(|x| *x < t - own.reach());
                let to = s.partition_point(|x| x < t);
                s[from..to].iter().map(|x| own.at(t - x)).sum::<f64>()
            });
            foreign / (foreign + own.share * mine)
        })
        .collect()
}

/// What the attacker knows: what it saw, whom it watches, and the
/// latency window it counts each of Alice's sends over.
struct Attack<'a> {
    obs: &'a Observations,
    config: &'a DisclosureConfig,
    friends: &'a [u32],
    clients: u32,
    from_s: f64,
    window: (f64, f64),
    /// Alice's sends from `from_s` on.
    sends: Vec<f64>,
}

impl Attack<'_> {
    /// The ranking over Alice's rounds, each deposit counting its weight.
    fn rank(&self, deposits: &[(f64, u32)], weights: &[f64]) -> Value {
        let Self {
            obs,
            config,
            friends,
            clients,
            from_s,
            window,
            ..
        } = *self;
        let n = clients as usize;
        let m = friends.len();
        let truth: BTreeSet<u32> = friends.iter().copied().collect();
        let mut observed = vec![0.0f64; n]; // Σ over sends of window shares
        let mut background = vec![0.0f64; n]; // weight of deposits so far
        let mut total = 0.0f64;
        let mut counted = 0usize; // deposits[..counted] are in the background
        let mut start = 0usize; // first deposit not before the current window
        let mut rounds = 0u64;
        // The last round after which the top m were not Alice's friends.
        let mut last_wrong: Option<u64> = None;
        let mut identified_at: Option<(u64, f64)> = None;
        let mut ranking = Vec::with_capacity(n);
        for &t in &self.sends {
            let (lo, hi) = (t + window.0, t + window.1);
            // Only what the adversary has seen by the window's end.
            while counted < deposits.len() && deposits[counted].0 <= hi {
                background[deposits[counted].1 as usize] += weights[counted];
                total += weights[counted];
                counted += 1;
            }
            while start < deposits.len() && deposits[start].0 < lo {
                start += 1;
            }
            if counted == deposits.len() {
                break; // the run may have ended inside this window
            }
            // deposits[start..counted]: those from lo to hi.
            let in_window: f64 = weights[start..counted].iter().sum();
            if counted == start || in_window <= 0.0 {
                continue;
            }
            for ((_, r), w) in deposits[start..counted]
                .iter()
                .zip(&weights[start..counted])
            {
                observed[*r as usize] += w / in_window;
            }
            rounds += 1;
            // Every deposit counted is in the background once.
            let total = total.max(f64::MIN_POSITIVE);
            ranking.clear();
            ranking.extend((0..clients).filter(|c| *c != config.sender).map(|c| {
                let u = background[c as usize] / total;
                (observed[c as usize] / rounds as f64 - u, c)
            }));
            ranking.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let top: BTreeSet<u32> = ranking.iter().take(m).map(|x| x.1).collect();
            if top == truth {
                if identified_at.is_none() {
                    identified_at = Some((rounds, t));
                }
            } else {
                last_wrong = Some(rounds);
                identified_at = None;
            }
        }
        let rank_of = |f: u32| ranking.iter().position(|x| x.1 == f).map_or(n, |p| p + 1);
        let mean_rank = friends.iter().map(|f| rank_of(*f) as f64).sum::<f64>() / m.max(1) as f64;
        let in_top = friends.iter().filter(|f| rank_of(**f) <= m).count();
        let real_by = |t: f64| {
            obs.real_sends
                .iter()
                .filter(|s| **s >= from_s && **s <= t)
                .count()
        };
        json!({
            "sender": config.sender,
            "friends": friends,
            "rounds": rounds,
            "real_messages": real_by(f64::INFINITY),
            "identified": identified_at.is_some(),
            "rounds_to_identify": identified_at.map(|x| x.0),
            "real_messages_to_identify": identified_at.map(|x| real_by(x.1)),
            "seconds_to_identify": identified_at.map(|x| x.1 - from_s),
            "last_round_wrong": last_wrong,
            "friends_in_top": in_top,
            "friends_mean_rank": mean_rank,
        })
    }
}
