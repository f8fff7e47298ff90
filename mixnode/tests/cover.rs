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
