use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::directory::BulkRates;

fn timeline(ticket: Ticket) -> ClassTimeline {
    ClassTimeline {
        rates: Rates {
            payload: 2.0,
            loops: 1.0,
            drops: 1.0,
            node_loops: 0.0,
            bulk: Some(BulkRates {
                payload: 50.0,
                loops: 2.0,
                drops: 1.0,
                window_secs: 10,
                cohorts: 4,
            }),
        },
        schedule: EpochSchedule {
            genesis: 1_000,
            epoch_secs: 3_600,
            heartbeat_secs: 20,
            round_secs: 30,
        },
        ticket,
        // Mid-window: the session starts at any time.
        origin_unix_ms: 1_000_000 + 12_345,
    }
}

/// Every send of `secs` of the schedule seeded `seed`: its instant and
/// whether it carried a real packet. With `work`, a real packet is
/// queued at random times (from another generator) throughout.
fn run(seed: u64, secs: u64, work: bool) -> Vec<(Instant, bool)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut work_rng = ChaCha20Rng::seed_from_u64(seed ^ 0xabcd);
    let mut s: WindowedSchedule<u32> =
        WindowedSchedule::new(Instant::ZERO, timeline(Ticket(5)), 1_000, &mut rng);
    let end = Instant::ZERO + Duration::from_secs(secs);
    let mut next_work = Instant::ZERO;
    let mut sent = Vec::new();
    while let Some(t) = s.poll_timeout() {
        if t > end {
            break;
        }
        if work && next_work <= t {
            for i in 0..rand::RngExt::random_range(&mut work_rng, 0..40u32) {
                let _ = s.push_real(i);
            }
            next_work =
                t + Duration::from_millis(rand::RngExt::random_range(&mut work_rng, 0..60_000));
        }
        while let Some((at, send)) = s.poll_send(t, &mut rng) {
            sent.push((at, matches!(send, Send::Real(_))));
        }
    }
    sent
}

#[test]
fn the_sends_follow_the_seed_and_the_windows_alone_whatever_is_queued() {
    let idle = run(7, 3_000, false);
    let busy = run(7, 3_000, true);
    let instants = |v: &[(Instant, bool)]| v.iter().map(|(t, _)| *t).collect::<Vec<_>>();
    assert_eq!(instants(&idle), instants(&busy));
    assert!(busy.iter().filter(|(_, real)| *real).count() > 1_000);
    assert!(idle.iter().all(|(_, real)| !real));
    // Another seed, other instants.
    assert_ne!(instants(&run(8, 3_000, false)), instants(&idle));
}

/// The KS critical value at α = 0.001 for `n` samples.
fn ks_critical(n: usize) -> f64 {
    1.9495 / (n as f64).sqrt()
}

fn ks_exp(gaps: &mut [f64], rate: f64) -> f64 {
    gaps.sort_by(f64::total_cmp);
    let n = gaps.len() as f64;
    gaps.iter()
        .enumerate()
        .map(|(i, x)| {
            let f = 1.0 - (-rate * x).exp();
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn in_each_class_the_gaps_are_exponential_at_that_class_rate() {
    let tl = timeline(Ticket(5));
    let sent = run(11, 8_000, true);
    // Each class's own time, its stretches laid end to end: the sends in
    // it are then a Poisson process at the class's rate (a gap cut by a
    // switch continues in the class's next stretch).
    let mut clock = [0.0f64; 2];
    let mut last: [Option<f64>; 2] = [None, None];
    let mut gaps: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut t = Instant::ZERO;
    let mut in_window = tl.in_window(t);
    let mut i = 0;
    let step = |clock: &mut [f64; 2], from: Instant, to: Instant, w: bool| {
        clock[usize::from(w)] += to.saturating_since(from).as_secs_f64();
    };
    while i < sent.len() {
        let (at, _) = sent[i];
        match tl.next_change(t) {
            Some(c) if c <= at => {
                step(&mut clock, t, c, in_window);
                t = c;
                in_window = tl.in_window(c);
            }
            _ => {
                step(&mut clock, t, at, in_window);
                t = at;
                let k = usize::from(in_window);
                if let Some(l) = last[k] {
                    gaps[k].push(clock[k] - l);
                }
                last[k] = Some(clock[k]);
                i += 1;
            }
        }
    }
    // Idle 2 + 1 + 1, bulk 50 + 2 + 1; a quarter of the time in bulk.
    for (k, rate) in [(0, 4.0), (1, 53.0)] {
        let g = &mut gaps[k];
        let n = g.len();
        let d = ks_exp(g, rate);
        assert!(n > 20_000, "class {k}: {n} gaps");
        assert!(d < ks_critical(n), "class {k}: KS {d:.4} over {n} gaps");
        // And the wrong rate is told apart.
        assert!(ks_exp(g, rate * 1.1) > ks_critical(n));
    }
    let share = clock[1] / (clock[0] + clock[1]);
    assert!((share - 0.25).abs() < 0.01, "{share}");
}

#[test]
fn without_windows_or_a_ticket_the_schedule_is_the_plain_one() {
    let mut tl = timeline(Ticket::NONE);
    let mut a = ChaCha20Rng::seed_from_u64(3);
    let mut b = ChaCha20Rng::seed_from_u64(3);
    let mut w: WindowedSchedule<()> = WindowedSchedule::new(Instant::ZERO, tl, 10, &mut a);
    let mut plain: CoverSchedule<()> =
        CoverSchedule::new(Instant::ZERO, tl.rates_at(Instant::ZERO), 10, &mut b);
    for _ in 0..2_000 {
        let t = w.poll_timeout().unwrap();
        assert_eq!(plain.poll_timeout(), Some(t));
        assert!(w.poll_send(t, &mut a).is_some());
        assert!(plain.poll_send(t, &mut b).is_some());
    }
    // A ticket granted later takes effect from then on: in its cohort's
    // next window the schedule sends at the bulk rate (53 a second, where
    // the plain schedule sends 4).
    let now = w.poll_timeout().unwrap();
    tl.ticket = Ticket(5);
    w.set_timeline(now, tl, &mut a);
    assert_eq!(w.timeline().ticket, Ticket(5));
    let start = tl.next_change(now).unwrap();
    let start = if tl.in_window(start) {
        start
    } else {
        tl.next_change(start).unwrap()
    };
    let end = start + Duration::from_secs(10);
    let mut in_window = 0;
    while let Some(t) = w.poll_timeout() {
        if t >= end {
            break;
        }
        if w.poll_send(t, &mut a).is_some_and(|(at, _)| at >= start) {
            in_window += 1;
        }
    }
    assert!(
        (400..700).contains(&in_window),
        "{in_window} sends in a 10 s window"
    );
}
