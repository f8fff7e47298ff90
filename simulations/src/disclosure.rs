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
}

/// The attack over what was seen from `from_s` on, with the latency
/// window `window` (seconds after a send), on `clients` clients.
pub fn attack(
    obs: &Observations,
    config: &DisclosureConfig,
    friends: &[u32],
    clients: u32,
    from_s: f64,
    window: (f64, f64),
) -> Value {
    let n = clients as usize;
    let m = friends.len();
    let truth: BTreeSet<u32> = friends.iter().copied().collect();
    let deposits: Vec<(f64, u32)> = obs
        .deposits
        .iter()
        .copied()
        .filter(|(t, r)| *t >= from_s && (*r as usize) < n)
        .collect();
    let mut observed = vec![0.0f64; n]; // Σ over sends of window shares
    let mut background = vec![0u64; n]; // deposits counted so far
    let mut counted = 0usize; // deposits[..counted] are in the background
    let mut start = 0usize; // first deposit not before the current window
    let mut rounds = 0u64;
    // The last round after which the top m were not Alice's friends.
    let mut last_wrong: Option<u64> = None;
    let mut identified_at: Option<(u64, f64)> = None;
    let mut ranking = Vec::with_capacity(n);
    let sends: Vec<f64> = obs.sends.iter().copied().filter(|t| *t >= from_s).collect();
    for &t in &sends {
        let (lo, hi) = (t + window.0, t + window.1);
        // Only what the adversary has seen by the window's end.
        while counted < deposits.len() && deposits[counted].0 <= hi {
            background[deposits[counted].1 as usize] += 1;
            counted += 1;
        }
        while start < deposits.len() && deposits[start].0 < lo {
            start += 1;
        }
        if counted == deposits.len() {
            break; // the run may have ended inside this window
        }
        // deposits[start..counted]: those from lo to hi.
        let in_window = counted - start;
        if in_window == 0 {
            continue;
        }
        let share = 1.0 / in_window as f64;
        for (_, r) in &deposits[start..counted] {
            observed[*r as usize] += share;
        }
        rounds += 1;
        // Every deposit counted is in the background once.
        let total = counted.max(1) as f64;
        ranking.clear();
        ranking.extend((0..clients).filter(|c| *c != config.sender).map(|c| {
            let u = background[c as usize] as f64 / total;
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
        "window_s": [window.0, window.1],
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
