//! The intersection attack on bulk windows (`specs/client.md` §4.1,
//! `specs/simulation.md` §4): a global passive adversary sees, on every
//! client's link, when it sends at the bulk rate, and learns when each of
//! one publisher's posts was stored (its storage nodes, or a follower
//! timing the new entry). At each post it keeps the clients whose
//! traffic fits and intersects over posts; the figure is how many posts
//! leave only the publisher.
//!
//! Three ways of deciding when a client is in bulk:
//!
//! * **cohorts** (what mtos does): window `k` of `window` seconds belongs
//!   to cohort `k mod cohorts`, and each client is in one cohort for
//!   good. The adversary keeps the clients in bulk when the post was
//!   stored: the publisher's cohort, every time;
//! * **independent**: each client is in bulk in each window with
//!   probability `1/cohorts`, drawn apart per client and window (a
//!   schedule of its own, still blind to its queue). The adversary keeps
//!   the clients in bulk then, a new draw each post;
//! * **follow the queue**: a client enters a window of `window` seconds
//!   when it has work (other clients' work comes as a Poisson process
//!   putting them in bulk `1/cohorts` of the time), the publisher when it
//!   posts, and stores the post within `transfer` seconds of the window's
//!   start. The adversary keeps the clients whose window began within
//!   `transfer` seconds before the post was stored.
//!
//! The model is the adversary's view only (who is in bulk when), not the
//! packets: what it measures holds whatever the mixing does, since the
//! rate of a link is seen before any mix.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// How clients' windows are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPolicy {
    /// Fixed cohorts taking windows in turn (mtos).
    Cohorts,
    /// A draw per client and window.
    Independent,
    /// A window when there is work.
    FollowQueue,
}

impl WindowPolicy {
    /// Every policy, in the order reports list them.
    pub const ALL: [WindowPolicy; 3] = [Self::Cohorts, Self::Independent, Self::FollowQueue];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cohorts => "cohorts",
            Self::Independent => "independent",
            Self::FollowQueue => "follow the queue",
        }
    }
}

/// One study.
#[derive(Debug, Clone, Copy)]
pub struct IntersectionConfig {
    /// Clients online (the publisher among them).
    pub clients: usize,
    /// Windows per cycle: each client is in bulk `1/cohorts` of the time.
    pub cohorts: u32,
    /// A window's length, seconds.
    pub window_secs: f64,
    /// How long after its window starts a post is stored, at most
    /// (following the queue), seconds.
    pub transfer_secs: f64,
    /// Posts the publisher makes, one a day.
    pub posts: usize,
    /// Independent runs (a new publisher and new schedules each).
    pub runs: usize,
    /// The seed of the first run.
    pub seed: u64,
}

/// What one policy gave.
#[derive(Debug, Clone)]
pub struct IntersectionResult {
    /// The policy.
    pub policy: WindowPolicy,
    /// Per run: the post after which only the publisher was left (1 for
    /// the first), if any.
    pub singled_out: Vec<Option<usize>>,
    /// The mean number of candidates left after each post.
    pub mean_left: Vec<f64>,
}

impl IntersectionResult {
    /// The median posts to single the publisher out (`None` when at
    /// least half the runs never did).
    pub fn median_posts(&self) -> Option<usize> {
        let mut v: Vec<usize> = self
            .singled_out
            .iter()
            .map(|p| p.unwrap_or(usize::MAX))
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().filter(|p| *p != usize::MAX)
    }

    /// The share of runs that singled the publisher out.
    pub fn share_singled_out(&self) -> f64 {
        let n = self.singled_out.iter().filter(|p| p.is_some()).count();
        n as f64 / self.singled_out.len().max(1) as f64
    }
}

const DAY: f64 = 86_400.0;

/// Runs the study for `policy`.
pub fn intersection_attack(cfg: &IntersectionConfig, policy: WindowPolicy) -> IntersectionResult {
    let mut singled_out = Vec::with_capacity(cfg.runs);
    let mut left_sum = vec![0.0; cfg.posts];
    for run in 0..cfg.runs {
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed.wrapping_add(run as u64));
        let (first, left) = one_run(cfg, policy, &mut rng);
        singled_out.push(first);
        for (sum, l) in left_sum.iter_mut().zip(left) {
            *sum += l as f64;
        }
    }
    IntersectionResult {
        policy,
        singled_out,
        mean_left: left_sum
            .into_iter()
            .map(|s| s / cfg.runs.max(1) as f64)
            .collect(),
    }
}

/// One publisher's posts: the candidates left after each, and the post
/// that left only it.
fn one_run<R: Rng>(
    cfg: &IntersectionConfig,
    policy: WindowPolicy,
    rng: &mut R,
) -> (Option<usize>, Vec<usize>) {
    let n = cfg.clients.max(1);
    let cohorts = cfg.cohorts.max(1);
    let w = cfg.window_secs.max(1e-3);
    let publisher = rng.random_range(0..n);
    let cohort: Vec<u32> = (0..n).map(|_| rng.random_range(0..cohorts)).collect();
    let mut candidate = vec![true; n];
    let mut left = Vec::with_capacity(cfg.posts);
    let mut first = None;
    for post in 0..cfg.posts {
        // One post a day, at a time of its own; stored within `transfer`
        // of the start of the window it goes out in.
        let day = post as f64 * DAY;
        let queued = day + rng.random::<f64>() * DAY;
        let stored = match policy {
            WindowPolicy::Cohorts => {
                // The publisher's next window of its cohort.
                let k = (queued / w).floor() as u64;
                let c = u64::from(cohorts);
                let mine = u64::from(cohort[publisher]);
                let next = k + (mine + c - k % c) % c;
                next as f64 * w + rng.random::<f64>() * cfg.transfer_secs.min(w)
            }
            WindowPolicy::Independent => {
                // Its next window: each one its with probability 1/c.
                let mut k = (queued / w).floor() as u64;
                while !rng.random_bool(1.0 / f64::from(cohorts)) {
                    k += 1;
                }
                k as f64 * w + rng.random::<f64>() * cfg.transfer_secs.min(w)
            }
            WindowPolicy::FollowQueue => queued + rng.random::<f64>() * cfg.transfer_secs,
        };
        let slot = (stored / w).floor() as u64;
        for (i, keep) in candidate.iter_mut().enumerate() {
            if !*keep || i == publisher {
                continue;
            }
            *keep = match policy {
                WindowPolicy::Cohorts => u64::from(cohort[i]) == slot % u64::from(cohorts),
                WindowPolicy::Independent => rng.random_bool(1.0 / f64::from(cohorts)),
                WindowPolicy::FollowQueue => {
                    // Its windows start as a Poisson process putting it
                    // in bulk 1/c of the time (each window w long); the
                    // adversary keeps it when one began within
                    // `transfer` before the store.
                    let starts = 1.0 / (f64::from(cohorts) * w);
                    let p = 1.0 - (-starts * cfg.transfer_secs).exp();
                    rng.random_bool(p.clamp(0.0, 1.0))
                }
            };
        }
        let n_left = candidate.iter().filter(|c| **c).count();
        left.push(n_left);
        if n_left == 1 && first.is_none() {
            first = Some(post + 1);
        }
    }
    (first, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IntersectionConfig {
        IntersectionConfig {
            clients: 2_000,
            cohorts: 20,
            window_secs: 30.0,
            transfer_secs: 10.0,
            posts: 15,
            runs: 40,
            seed: 3,
        }
    }

    #[test]
    fn cohorts_keep_a_publisher_among_its_cohort_however_many_posts() {
        let r = intersection_attack(&cfg(), WindowPolicy::Cohorts);
        assert_eq!(r.share_singled_out(), 0.0);
        // About 2,000 / 20 = 100 left, after the first post and the last.
        let (after_first, after_last) = (r.mean_left[0], r.mean_left[14]);
        assert!((80.0..120.0).contains(&after_first), "{after_first}");
        assert_eq!(after_first, after_last);
    }

    #[test]
    fn windows_drawn_apart_or_following_the_queue_single_the_publisher_out() {
        let c = cfg();
        let independent = intersection_attack(&c, WindowPolicy::Independent);
        let queue = intersection_attack(&c, WindowPolicy::FollowQueue);
        assert_eq!(independent.share_singled_out(), 1.0);
        assert_eq!(queue.share_singled_out(), 1.0);
        // ln 2,000 / ln 20 ≈ 2.5 posts drawn apart; following the queue a
        // post keeps 1 − e^(−10/600) ≈ 1.7% of the clients: 2 posts.
        let (i, q) = (
            independent.median_posts().unwrap(),
            queue.median_posts().unwrap(),
        );
        assert!((2..=4).contains(&i), "independent: {i}");
        assert!((1..=3).contains(&q) && q <= i, "follow the queue: {q}");
    }
}
