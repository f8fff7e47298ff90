//! Statistics the simulator's tests share: the Kolmogorov–Smirnov
//! distance to a law, the Erlang and exponential laws, means and
//! variances.

// Each test file uses some of these.
#![allow(dead_code)]

/// The KS distance between `samples` (sorted here) and `cdf`.
pub fn ks(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let f = cdf(*x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// The CDF of Erlang(`k`, `rate`): the sum of `k` Exp(`rate`) holds.
pub fn erlang_cdf(k: u32, rate: f64) -> impl Fn(f64) -> f64 {
    move |x| {
        if x <= 0.0 {
            return 0.0;
        }
        let (mut term, mut sum) = (1.0, 1.0);
        for i in 1..k {
            term *= rate * x / f64::from(i);
            sum += term;
        }
        1.0 - (-rate * x).exp() * sum
    }
}

/// The CDF of Exp(`rate`).
pub fn exponential_cdf(rate: f64) -> impl Fn(f64) -> f64 {
    move |x| 1.0 - (-rate * x).exp()
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The sample variance.
pub fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() as f64 - 1.0)
}
