//! The cover schedule's streams are Poisson processes, idle or busy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{exp_cdf, ks_critical_1pct, ks_statistic};
use mtos_mixnode::Instant;
use mtos_mixnode::cover::{CoverRates, CoverSchedule, Send, Stream};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const RATES: CoverRates = CoverRates {
    payload: 5.0,
    loop_cover: 1.0,
    drop_cover: 2.0,
    node_loop: 0.0,
};

/// Runs the schedule for `sends` sends and returns the payload stream's
/// inter-send gaps (seconds) and how many real packets went out.
fn run(queued: usize, sends: usize, seed: u8) -> (Vec<f64>, Vec<f64>, usize) {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let mut s: CoverSchedule<u32> = CoverSchedule::new(Instant::ZERO, RATES, 10_000, &mut rng);
    for i in 0..queued {
        s.push_real(i as u32).unwrap();
    }
    let (mut last_p, mut last_l) = (None::<Instant>, None::<Instant>);
    let (mut gaps_p, mut gaps_l) = (Vec::new(), Vec::new());
    let mut real = 0;
    let mut next_real = 0;
    let mut count = 0;
    while count < sends {
        let now = s.poll_timeout().unwrap();
        while let Some(send) = s.poll_send(now, &mut rng) {
            count += 1;
            match send.stream() {
                Stream::Payload => {
                    if let Some(l) = last_p {
                        gaps_p.push((now - l).as_secs_f64());
                    }
                    last_p = Some(now);
                }
                Stream::Loop => {
                    if let Some(l) = last_l {
                        gaps_l.push((now - l).as_secs_f64());
                    }
                    last_l = Some(now);
                }
                Stream::NodeLoop => panic!("disabled stream sent"),
                Stream::Drop => {}
            }
            if let Send::Real(i) = send {
                assert_eq!(i, next_real, "real packets leave in order");
                next_real += 1;
                real += 1;
            }
        }
    }
    (gaps_p, gaps_l, real)
}

#[test]
fn idle_streams_are_exponential() {
    let (mut p, mut l, real) = run(0, 40_000, 1);
    assert_eq!(real, 0);
    let dp = ks_statistic(&mut p, exp_cdf(RATES.payload));
    assert!(dp < ks_critical_1pct(p.len()), "payload KS {dp}");
    let dl = ks_statistic(&mut l, exp_cdf(RATES.loop_cover));
    assert!(dl < ks_critical_1pct(l.len()), "loop KS {dl}");
}

#[test]
fn busy_payload_stream_keeps_its_rate() {
    // 1,000 real packets queued: they replace payload-stream cover, and the
    // payload stream's timing is unchanged.
    let (mut p, _, real) = run(1_000, 20_000, 2);
    assert_eq!(real, 1_000);
    // (ks_statistic sorts its input: take the draining period first.)
    let mut first: Vec<f64> = p[..999].to_vec();
    let dp = ks_statistic(&mut p, exp_cdf(RATES.payload));
    assert!(dp < ks_critical_1pct(p.len()), "payload KS {dp}");
    // While the queue drained (the first 1000 payload sends), too.
    let d = ks_statistic(&mut first, exp_cdf(RATES.payload));
    assert!(d < ks_critical_1pct(first.len()), "draining KS {d}");
}

#[test]
fn the_real_queue_is_bounded() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let mut s: CoverSchedule<u8> = CoverSchedule::new(Instant::ZERO, RATES, 2, &mut rng);
    s.push_real(1).unwrap();
    s.push_real(2).unwrap();
    assert_eq!(s.push_real(3).unwrap_err().0, 3);
    assert_eq!(s.queued(), 2);
}

#[test]
fn new_rates_are_followed_from_the_change_and_the_queue_is_kept() {
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let mut s: CoverSchedule<u32> = CoverSchedule::new(Instant::ZERO, RATES, 10_000, &mut rng);
    for i in 0..10 {
        s.push_real(i).unwrap();
    }
    // Two seconds at the first rates, then a new document: λP 5 → 20,
    // drops off, loops unchanged.
    let change = Instant::ZERO + std::time::Duration::from_secs(2);
    let (mut before, mut real_before) = (0, 0);
    while s.poll_timeout().unwrap() <= change {
        let now = s.poll_timeout().unwrap();
        while let Some(send) = s.poll_send(now, &mut rng) {
            before += 1;
            real_before += usize::from(matches!(send, Send::Real(_)));
        }
    }
    assert!(before < 40, "{before}");
    assert!(real_before < 10, "the queue ran dry before the change");
    let loop_next = s.poll_timeout().unwrap();
    let new = CoverRates {
        payload: 20.0,
        drop_cover: 0.0,
        ..RATES
    };
    s.set_rates(change, new, &mut rng);
    assert_eq!(s.rates(), new);
    // The same rates again change nothing.
    s.set_rates(change, new, &mut rng);
    let (mut gaps, mut last, mut real, mut loops) = (Vec::new(), change, 0, 0);
    let mut payload = 0;
    while payload < 4_000 {
        let now = s.poll_timeout().unwrap();
        assert!(now >= change);
        while let Some(send) = s.poll_send(now, &mut rng) {
            match send.stream() {
                Stream::Payload => {
                    gaps.push((now - last).as_secs_f64());
                    last = now;
                    payload += 1;
                }
                Stream::Loop => loops += 1,
                Stream::Drop | Stream::NodeLoop => panic!("a stream turned off sent"),
            }
            real += usize::from(matches!(send, Send::Real(_)));
        }
    }
    // The payload stream is Poisson at the new rate from the change on
    // (the first gap counted from the change), the loops at the old one,
    // and the real packets not sent before the change went out after it.
    let d = ks_statistic(&mut gaps, exp_cdf(20.0));
    assert!(d < ks_critical_1pct(gaps.len()), "KS {d}");
    let secs = (last - change).as_secs_f64();
    let expected = secs * RATES.loop_cover;
    assert!(
        (f64::from(loops) - expected).abs() < 5.0 * expected.sqrt(),
        "{loops} loops in {secs} s"
    );
    assert_eq!(real + real_before, 10);
    assert!(loop_next >= change);
}
