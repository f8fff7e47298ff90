#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mtos_mixnode::Instant;
use mtos_mixnode::cover::{CoverRates, CoverSchedule};
use rand_chacha::ChaCha20Rng;

use super::*;

const CLIENTS: usize = 10;
/// The authority template's rates (`client.md` §4).
const RATES: CoverRates = CoverRates {
    payload: 2.0,
    loop_cover: 1.0,
    drop_cover: 1.0,
    node_loop: 0.0,
};
const RUN_SECS: f64 = 600.0;
/// The sender's messages arrive at this rate over the first 500 s: about
/// 150, three and a half standard deviations of a client's count.
const MESSAGE_RATE: f64 = 0.3;

/// One run: `CLIENTS` sessions on the cover schedule, `sender` messaging
/// `recipient`; returns each client's deliveries over the run, as its
/// gateway counts them (round trips are left out: they shift a count by
/// the few packets in flight at the end). Without `balance`, the former
/// sessions: a message's slot brings nothing back, a received message is
/// one more.
fn deliveries(seed: u64, sender: usize, recipient: usize, balance: bool) -> Vec<u64> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let start = Instant::ZERO;
    let mut schedules: Vec<CoverSchedule<Real>> = (0..CLIENTS)
        .map(|_| CoverSchedule::new(start, RATES, SEND_QUEUE, &mut rng))
        .collect();
    let balances: Vec<DeliveryBalance> = (0..CLIENTS).map(|_| DeliveryBalance::default()).collect();
    let mut counts = vec![0u64; CLIENTS];
    let end = start + Duration::from_secs_f64(RUN_SECS);
    let gap = |rng: &mut ChaCha20Rng| {
        Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() / MESSAGE_RATE)
    };
    let mut next_message = start + gap(&mut rng);
    let last_message = start + Duration::from_secs(500);
    loop {
        let (i, at) = schedules
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.poll_timeout().map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)
            .unwrap();
        if next_message <= at && next_message <= last_message {
            let real = Real {
                frame: Vec::new(),
                returns: false,
            };
            assert!(schedules[sender].push_real(real).is_ok());
            next_message = next_message + gap(&mut rng);
            continue;
        }
        if at > end {
            return counts;
        }
        let Some(send) = schedules[i].poll_send(at, &mut rng) else {
            continue;
        };
        let unused = DeliveryBalance::default();
        let (_, sends, _) = plan_slot(send, if balance { &balances[i] } else { &unused });
        match sends {
            Sends::Cover | Sends::Loop => counts[i] += 1,
            Sends::Drop => {}
            Sends::Real => {
                counts[recipient] += 1;
                if balance {
                    balances[recipient].received_unasked();
                }
            }
        }
    }
}

/// Two gateways comparing their clients' delivery counts name the one
/// with the fewest as the sender and the one with the most as the
/// recipient; how often each is right over `trials` runs.
fn attack(trials: u64, balance: bool) -> (f64, f64) {
    let mut pick = ChaCha20Rng::seed_from_u64(99);
    let (mut senders, mut recipients) = (0, 0);
    for t in 0..trials {
        let sender = pick.random_range(0..CLIENTS);
        let recipient = (sender + pick.random_range(1..CLIENTS)) % CLIENTS;
        let counts = deliveries(t, sender, recipient, balance);
        let fewest = (0..CLIENTS).min_by_key(|&c| counts[c]).unwrap();
        let most = (0..CLIENTS).max_by_key(|&c| counts[c]).unwrap();
        senders += usize::from(fewest == sender);
        recipients += usize::from(most == recipient);
    }
    (
        senders as f64 / trials as f64,
        recipients as f64 / trials as f64,
    )
}

#[test]
fn two_gateways_counting_deliveries_cannot_tell_who_messages_whom() {
    let trials = 60;
    let chance = 1.0 / CLIENTS as f64;
    let bound = chance + 3.0 * (chance * (1.0 - chance) / trials as f64).sqrt();
    let (sender, recipient) = attack(trials, true);
    eprintln!(
        "with the balance: sender named {sender:.3}, recipient {recipient:.3} (chance {chance}, bound {bound:.3})"
    );
    assert!(sender <= bound, "sender named {sender}");
    assert!(recipient <= bound, "recipient named {recipient}");
    // The control: without the balance the counts name both.
    let (sender, recipient) = attack(trials, false);
    eprintln!("without: sender named {sender:.3}, recipient {recipient:.3}");
    assert!(sender >= 0.8 && recipient >= 0.8, "{sender} {recipient}");
}

#[test]
fn the_balance_pays_what_is_owed_and_held_and_stays_bounded() {
    let b = DeliveryBalance::default();
    assert!(!b.drop_slot_pays() && !b.cover_slot_pays());
    b.sent_one_way();
    b.sent_one_way();
    // Owed: a cover slot stays cover, drop slots pay, twice.
    assert!(!b.cover_slot_pays());
    assert!(b.drop_slot_pays() && b.drop_slot_pays());
    assert!(!b.drop_slot_pays());
    b.received_unasked();
    assert!(!b.drop_slot_pays());
    assert!(b.cover_slot_pays());
    assert_eq!(b.get(), 0);
    // A message sent and one received cancel out.
    b.sent_one_way();
    b.received_unasked();
    assert_eq!(b.get(), 0);
    for _ in 0..5_000 {
        b.received_unasked();
    }
    assert_eq!(b.get(), -MAX_BALANCE);
    // A request's frame owes nothing: its answer comes back.
    let real = |returns| {
        Send::Real(Real {
            frame: vec![1],
            returns,
        })
    };
    let b = DeliveryBalance::default();
    assert_eq!(plan_slot(real(true), &b).1, Sends::Real);
    assert_eq!(b.get(), 0);
    assert_eq!(plan_slot(real(false), &b).1, Sends::Real);
    assert_eq!(b.get(), 1);
    assert_eq!(
        plan_slot(Send::Drop, &b),
        (SentKind::Drop, Sends::Cover, None)
    );
    assert_eq!(
        plan_slot(Send::Drop, &b),
        (SentKind::Drop, Sends::Drop, None)
    );
}
