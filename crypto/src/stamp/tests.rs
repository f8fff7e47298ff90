#![allow(clippy::unwrap_used)]

use super::*;

fn what<'a>(locator: &'a [u8; 32], record: &'a [u8]) -> StampFor<'a> {
    StampFor {
        kind: 1,
        locator,
        record,
    }
}

#[test]
fn a_stamp_holds_only_for_its_record_kind_locator_epoch_and_effort() {
    let (l, record) = ([4u8; 32], b"a record".to_vec());
    let stamp = Stamp::solve(what(&l, &record), 9, 4, 0);
    assert_eq!((stamp.effort, stamp.epoch), (4, 9));
    stamp.check(what(&l, &record)).unwrap();
    assert_eq!(Stamp::decode(&stamp.encode()), stamp);
    // Moved to another record, kind or locator, or claimed for another
    // epoch or a higher effort, the solution no longer solves.
    let refused = [
        stamp.check(what(&l, b"another record")),
        stamp.check(StampFor {
            kind: 2,
            ..what(&l, &record)
        }),
        stamp.check(what(&[5; 32], &record)),
        Stamp { epoch: 10, ..stamp }.check(what(&l, &record)),
        Stamp { effort: 8, ..stamp }.check(what(&l, &record)),
        Stamp {
            nonce: [9; 8],
            ..stamp
        }
        .check(what(&l, &record)),
    ];
    for r in refused {
        assert_eq!(r, Err(StampError::Solution));
    }
    assert_eq!(
        Stamp { effort: 0, ..stamp }.check(what(&l, &record)),
        Err(StampError::ZeroEffort)
    );
    let mut flipped = stamp;
    flipped.solution[3] ^= 1;
    assert!(flipped.check(what(&l, &record)).is_err());
}

#[test]
fn a_solution_that_misses_its_effort_is_refused_as_such() {
    // Find a genuine Equi-X solution whose effort hash fails effort 64,
    // claim effort 64 for it: refused for effort, not as a bad solution.
    let (l, record) = ([6u8; 32], vec![1u8; 100]);
    let w = what(&l, &record);
    let mut nonce = 0u64;
    let claimed = 64;
    let (n, solution) = loop {
        let n = nonce.to_be_bytes();
        let c = challenge(w, 1, claimed, &n);
        if let Ok(e) = equix::EquiX::new(&c)
            && let Some(s) = e
                .solve()
                .into_iter()
                .map(|s| s.to_bytes())
                .find(|s| !passes(&c, s, claimed))
        {
            break (n, s);
        }
        nonce += 1;
    };
    let stamp = Stamp {
        effort: claimed,
        epoch: 1,
        nonce: n,
        solution,
    };
    assert_eq!(stamp.check(w), Err(StampError::Effort));
}

#[test]
fn effort_sets_the_mean_number_of_solutions() {
    // The effort hash is uniform, so a stamp of effort E passes one
    // solution in E: over 40 stamps of effort 16 the solutions tried
    // average 16 (a geometric mean over 40 draws: within 9 and 26 with
    // overwhelming probability).
    let (l, record) = ([8u8; 32], vec![2u8; 10]);
    let w = what(&l, &record);
    let (mut tried, stamps) = (0u64, 40u64);
    for s in 0..stamps {
        let mut nonce = s << 32;
        'stamp: loop {
            let n = nonce.to_be_bytes();
            let c = challenge(w, 0, 16, &n);
            if let Ok(e) = equix::EquiX::new(&c) {
                for solution in e.solve() {
                    tried += 1;
                    if passes(&c, &solution.to_bytes(), 16) {
                        break 'stamp;
                    }
                }
            }
            nonce += 1;
        }
    }
    let mean = tried as f64 / stamps as f64;
    assert!((9.0..26.0).contains(&mean), "mean {mean}");
}

#[test]
fn stamp_vectors_match_the_spec() {
    let text = include_str!("../../../specs/vectors/stamps.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let hex = |s: &serde_json::Value| {
        data_encoding::HEXLOWER
            .decode(s.as_str().unwrap().as_bytes())
            .unwrap()
    };
    for case in v["cases"].as_array().unwrap() {
        let locator: [u8; 32] = hex(&case["locator"]).try_into().unwrap();
        let record = hex(&case["record"]);
        let w = StampFor {
            kind: case["kind"].as_u64().unwrap() as u8,
            locator: &locator,
            record: &record,
        };
        let bytes: [u8; STAMP_LEN] = hex(&case["stamp"]).try_into().unwrap();
        let stamp = Stamp::decode(&bytes);
        assert_eq!(
            hex(&case["challenge"]),
            challenge(w, stamp.epoch, stamp.effort, &stamp.nonce)
        );
        assert_eq!(
            case["effort_value"].as_u64().unwrap(),
            u64::from(effort_value(
                &challenge(w, stamp.epoch, stamp.effort, &stamp.nonce),
                &stamp.solution
            ))
        );
        let valid = case["valid"].as_bool().unwrap();
        assert_eq!(stamp.check(w).is_ok(), valid, "{}", case["name"]);
    }
}

/// Prints vector cases (run with `--ignored --nocapture` to regenerate
/// `specs/vectors/stamps.json`'s stamps; `check_storage.py` re-derives
/// the challenges and effort values).
#[test]
#[ignore = "generator"]
fn print_stamp_vectors() {
    let h = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    for (name, kind, locator, record, epoch, effort) in [
        (
            "chunk, effort 1",
            1u8,
            [0x11u8; 32],
            b"chunk bytes".to_vec(),
            7u32,
            1u32,
        ),
        ("slot, effort 8", 2, [0x22; 32], vec![0x33; 200], 12, 8),
    ] {
        let w = StampFor {
            kind,
            locator: &locator,
            record: &record,
        };
        let s = Stamp::solve(w, epoch, effort, 0);
        let c = challenge(w, epoch, effort, &s.nonce);
        println!(
            "{name}: kind {kind} locator {} record {} stamp {} challenge {} effort_value {}",
            h(&locator),
            h(&record),
            h(&s.encode()),
            h(&c),
            effort_value(&c, &s.solution)
        );
    }
}
