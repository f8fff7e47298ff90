//! The bulk class and its windows (`specs/client.md` §4.1): the schedule
//! every client, gateway and simulator computes alike, and the document's
//! checks of it.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::tests::{params, signed_document};
use super::*;

fn bulk(window_secs: u64, cohorts: u16) -> BulkRates {
    BulkRates {
        payload: 50.0,
        loops: 1.0,
        drops: 1.0,
        window_secs,
        cohorts,
    }
}

#[test]
fn a_ticket_is_in_bulk_one_window_in_cohorts_and_next_change_finds_every_switch() {
    let schedule = params().schedule;
    let genesis_ms = schedule.genesis * 1000;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for (window_secs, cohorts) in [(30, 20), (7, 3), (1, 2), (600, 7)] {
        let b = bulk(window_secs, cohorts);
        let w = window_secs * 1000;
        for _ in 0..20 {
            let ticket = Ticket::draw(&mut rng);
            let cohort = u64::from(ticket.cohort(cohorts).unwrap());
            // Walk the switches over ten cycles from before genesis: each
            // is where the class flips, nothing flips in between, and the
            // time in bulk is one window per cycle, the cohort's own.
            let mut t = genesis_ms - 5_000;
            let end = genesis_ms + 10 * u64::from(cohorts) * w;
            let mut in_bulk = 0;
            while t < end {
                let next = b.next_change(&schedule, ticket, t).unwrap();
                assert!(next > t);
                let here = b.in_window(&schedule, ticket, t);
                for probe in [t + 1, (t + next) / 2, next - 1] {
                    assert_eq!(b.in_window(&schedule, ticket, probe), here);
                }
                assert_ne!(b.in_window(&schedule, ticket, next), here);
                if here {
                    assert_eq!(next - t, w, "a whole window from its start");
                    assert_eq!(((t - genesis_ms) / w) % u64::from(cohorts), cohort);
                    in_bulk += next.min(end) - t;
                }
                t = next;
            }
            assert_eq!(in_bulk, 10 * w, "ten windows in ten cycles");
        }
    }
    // One cohort: always in bulk after genesis, never a change.
    let b = bulk(30, 1);
    assert!(b.in_window(&schedule, Ticket(9), genesis_ms + 12_345_678));
    assert_eq!(b.next_change(&schedule, Ticket(9), genesis_ms), None);
    // No windows asked for: never in bulk, never a change.
    let b = bulk(30, 20);
    for t in [0, genesis_ms, genesis_ms + 30_000 * 19] {
        assert!(!b.in_window(&schedule, Ticket::NONE, t));
    }
    assert_eq!(b.next_change(&schedule, Ticket::NONE, genesis_ms), None);
}

#[test]
fn the_class_a_client_is_in_gives_its_rates_and_delivery() {
    let schedule = params().schedule;
    let mut rates = params().rates;
    let idle = rates.idle();
    assert_eq!(rates.class_at(&schedule, Ticket(0), 2_000_000), idle);
    rates.bulk = Some(bulk(30, 20));
    // Cohort 3's window is the 4th of each cycle of 20.
    let genesis_ms = schedule.genesis * 1000;
    let in_window = genesis_ms + 3 * 30_000 + 10;
    let class = rates.class_at(&schedule, Ticket(23), in_window);
    assert_eq!((class.payload, class.loops, class.drops), (50.0, 1.0, 1.0));
    // What comes back (λP + λL = 51) is paid for at 1.25 times it.
    assert_eq!(class.delivery(), 63.75);
    assert_eq!(rates.class_at(&schedule, Ticket(22), in_window), idle);
    assert_eq!(rates.class_at(&schedule, Ticket::NONE, in_window), idle);
    assert_eq!(rates.peak(), class);
}

#[test]
fn a_document_without_bulk_windows_is_written_as_before_and_one_with_them_round_trips() {
    let (auth, t, good) = signed_document(&[]);
    let body = serde_json::to_value(&good).unwrap();
    assert!(body["rates"].get("bulk").is_none());
    let mut doc = good.clone();
    doc.rates.bulk = Some(bulk(30, 20));
    let back = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).unwrap();
    assert_eq!(back, doc);
}

#[test]
fn bulk_settings_out_of_range_are_refused_naming_the_field() {
    let (auth, t, good) = signed_document(&[]);
    let refused = |b: BulkRates, name: &str| {
        let mut doc = good.clone();
        doc.rates.bulk = Some(b);
        let e = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).unwrap_err();
        assert!(
            matches!(&e, DirectoryError::Field { field, .. } if field == name),
            "{name}: {e}"
        );
    };
    let ok = bulk(30, 20);
    for bad in [f64::NAN, -1.0, 0.0, 1e-320, 10_000.5] {
        refused(BulkRates { payload: bad, ..ok }, "rates.bulk.payload");
    }
    refused(
        BulkRates {
            loops: f64::INFINITY,
            ..ok
        },
        "rates.bulk.loops",
    );
    // Slower than the idle class in any stream: a window would show less
    // traffic, not more.
    refused(BulkRates { payload: 1.5, ..ok }, "rates.bulk.payload");
    refused(BulkRates { loops: 0.5, ..ok }, "rates.bulk.loops");
    refused(BulkRates { drops: 0.0, ..ok }, "rates.bulk.drops");
    for bad in [0, MAX_WINDOW_SECS + 1] {
        refused(
            BulkRates {
                window_secs: bad,
                ..ok
            },
            "rates.bulk.window_secs",
        );
    }
    for bad in [0, MAX_COHORTS + 1] {
        refused(BulkRates { cohorts: bad, ..ok }, "rates.bulk.cohorts");
    }
    // A field unknown in the closed object is refused too.
    let mut body = serde_json::to_value(&good).unwrap();
    body["rates"]["bulk"] = serde_json::json!({
        "payload": 50.0, "loops": 1.0, "drops": 1.0, "window_secs": 30, "cohorts": 20,
        "share": 0.05
    });
    let e = NetworkDocument::verify(
        &signed::sign_document_body(serde_json::to_vec(&body).unwrap(), &auth),
        &t,
        1_010,
    )
    .unwrap_err();
    assert!(e.to_string().contains("rates.bulk"), "{e}");
}

#[test]
fn a_ticket_keeps_its_cohort_across_documents_up_to_the_number_of_cohorts() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for _ in 0..1000 {
        let t = Ticket::draw(&mut rng);
        assert_ne!(t, Ticket::NONE);
        assert_eq!(t.cohort(20), Some(t.0 % 20));
        assert!(t.cohort(1) == Some(0));
    }
    assert_eq!(Ticket::NONE.cohort(20), None);
}
