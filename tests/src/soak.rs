//! What the soak run (`tests/tests/soak.rs`, `scripts/soak.sh`) measures
//! and judges, kept apart from the run so the rules can be tested on
//! their own: durations as the script takes them, each node process's
//! resident memory over its lifetime and the rule that calls it flat,
//! and latency percentiles.

use std::time::Duration;

/// A duration as `scripts/soak.sh` takes it: `240s`, `30m`, `1h`, or
/// plain seconds (`90`). `None` when it does not parse or is zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// One process's resident set size, sampled over its lifetime (a node
/// restarted begins a new lifetime: its memory starts over).
#[derive(Debug, Clone)]
pub struct Lifetime {
    /// Which process (a node's name, `authority`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Samples in bytes, evenly spaced in time.
    pub samples: Vec<u64>,
}

/// When memory counts as flat. A lifetime's warm-up is its first
/// quarter, or its first `warm_up_samples` when longer (what a node
/// fills once and then holds, such as one replay filter per Sphinx key,
/// takes a number of key epochs, not a share of the run); after it, the
/// mean of the last quarter of what remains is at most `ratio` times the
/// mean of the first quarter of what remains, plus `slack_bytes`. A
/// lifetime with fewer than `min_samples` after its warm-up is not
/// judged.
#[derive(Debug, Clone, Copy)]
pub struct FlatRule {
    /// Growth allowed, as a factor.
    pub ratio: f64,
    /// Growth allowed on top, in bytes (allocator and RocksDB memtable
    /// steps are a few MiB whatever the load).
    pub slack_bytes: u64,
    /// The shortest warm-up, in samples.
    pub warm_up_samples: usize,
    /// The fewest samples after warm-up a lifetime is judged on.
    pub min_samples: usize,
}

/// A lifetime's memory after warm-up and at its end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatness {
    /// Mean of the first quarter after warm-up, bytes.
    pub after_warm_up: f64,
    /// Mean of the last quarter, bytes.
    pub end: f64,
    /// Whether the rule was applied (enough samples).
    pub judged: bool,
    /// Whether it held (true when not judged).
    pub flat: bool,
}

impl FlatRule {
    /// The rule applied to `samples`; `None` when there are none.
    pub fn judge(&self, samples: &[u64]) -> Option<Flatness> {
        if samples.is_empty() {
            return None;
        }
        let n = samples.len();
        let warm_up = (n / 4).max(self.warm_up_samples).min(n - 1);
        let rest = &samples[warm_up..];
        let quarter = (rest.len() / 4).max(1);
        let mean = |s: &[u64]| s.iter().map(|&b| b as f64).sum::<f64>() / s.len().max(1) as f64;
        let after_warm_up = mean(&rest[..quarter]);
        let end = mean(&rest[rest.len() - quarter..]);
        let judged = rest.len() >= self.min_samples;
        let flat = !judged || end <= self.ratio * after_warm_up + self.slack_bytes as f64;
        Some(Flatness {
            after_warm_up,
            end,
            judged,
            flat,
        })
    }
}

/// The `p`-th percentile (0 to 100, nearest rank) of `values`, which it
/// sorts; `None` when empty.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

/// Bytes as MiB with one decimal, for tables.
pub fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_the_script_writes_them() {
        assert_eq!(parse_duration("240s"), Some(Duration::from_secs(240)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        for bad in ["", "0s", "m", "5d", "-3s", "1.5m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn flat_memory_passes_and_a_leak_fails() {
        let rule = FlatRule {
            ratio: 1.25,
            slack_bytes: 1000,
            warm_up_samples: 0,
            min_samples: 6,
        };
        // Warm-up growth, then flat with noise.
        let flat = [100, 5000, 9000, 10_000, 10_200, 9_900, 10_100, 10_050];
        let f = rule.judge(&flat).unwrap();
        assert!(f.judged && f.flat, "{f:?}");
        assert_eq!((f.after_warm_up, f.end), (9_000.0, 10_050.0));
        // Growing all along: a leak.
        let leak: Vec<u64> = (1..=16).map(|i| i * 10_000).collect();
        let f = rule.judge(&leak).unwrap();
        assert!(f.judged && !f.flat, "{f:?}");
        // Too short to judge.
        let f = rule.judge(&leak[..4]).unwrap();
        assert!(!f.judged && f.flat);
        assert_eq!(rule.judge(&[]), None);
    }

    #[test]
    fn a_long_warm_up_is_not_judged_as_growth() {
        // Filling for ten samples, then a plateau: the quarter rule
        // alone takes the filling for a leak, a warm-up of ten does not.
        let filling: Vec<u64> = (1..=10).map(|i| i * 10_000).chain([100_000; 10]).collect();
        let quarter = FlatRule {
            ratio: 1.25,
            slack_bytes: 0,
            warm_up_samples: 0,
            min_samples: 4,
        };
        assert!(!quarter.judge(&filling).unwrap().flat);
        let epochs = FlatRule {
            warm_up_samples: 10,
            ..quarter
        };
        let f = epochs.judge(&filling).unwrap();
        assert!(f.judged && f.flat, "{f:?}");
        // A lifetime no longer than its warm-up is not judged.
        assert!(!epochs.judge(&filling[..12]).unwrap().judged);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 95.0), Some(95.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
