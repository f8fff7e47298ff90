#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(last: u8) -> Option<AddressPrefix> {
    Some(AddressPrefix::of(IpAddr::V4(Ipv4Addr::new(
        192, 0, 2, last,
    ))))
}

#[test]
fn one_party_minting_identities_shares_its_addresss_allowance() {
    // 1,024 permits, 4 a connection, 16 an address: one address opening
    // sessions under fresh identities gets 16, and every other address
    // still gets its own.
    let mut l: SessionLimits<u32> = SessionLimits::new(4, 16);
    let mut got = 0;
    for identity in 0..1_000u32 {
        if l.open(&identity, v4(66)).is_ok() {
            got += 1;
        }
    }
    assert_eq!(got, 16);
    assert_eq!(l.open(&5_000, v4(66)), Err(SessionRefusal::Address));
    for honest in 1..=50u8 {
        assert_eq!(l.open(&(10_000 + u32::from(honest)), v4(honest)), Ok(()));
    }
    // A connection holds at most 4, whatever its address.
    for _ in 0..4 {
        assert_eq!(l.open(&70_000, v4(200)), Ok(()));
    }
    assert_eq!(l.open(&70_000, v4(201)), Err(SessionRefusal::Connection));
    // Closing gives the share back.
    l.close(&0, v4(66));
    assert_eq!(l.open(&6_000, v4(66)), Ok(()));
    assert_eq!(l.open_sessions(), 16 + 50 + 4);
}

#[test]
fn an_ipv6_slash_64_is_one_address_and_zero_means_no_bound() {
    let a = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1);
    let b = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9);
    let c = Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1);
    assert_eq!(
        AddressPrefix::of(IpAddr::V6(a)),
        AddressPrefix::of(IpAddr::V6(b))
    );
    assert_ne!(
        AddressPrefix::of(IpAddr::V6(a)),
        AddressPrefix::of(IpAddr::V6(c))
    );
    let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
    assert_eq!(AddressPrefix::of(IpAddr::V6(mapped)), v4(7).unwrap());
    let mut l: SessionLimits<u32> = SessionLimits::new(1, 1);
    assert!(l.open(&1, Some(AddressPrefix::of(IpAddr::V6(a)))).is_ok());
    assert_eq!(
        l.open(&2, Some(AddressPrefix::of(IpAddr::V6(b)))),
        Err(SessionRefusal::Address)
    );
    let mut open: SessionLimits<u32> = SessionLimits::new(1, 0);
    for p in 0..100 {
        assert!(open.open(&p, v4(1)).is_ok());
    }
}

#[test]
fn a_gateway_serves_as_many_clients_as_its_key_admits() {
    use crate::directory::Rates;
    // λP 2, λL 1, λD 1: a client may send 8 a second and gets 4 back
    // (its delivery rate), 12 through the key.
    let rates = Rates {
        payload: 2.0,
        loops: 1.0,
        drops: 1.0,
        node_loops: 1.0,
        bulk: None,
    };
    assert_eq!(rates.delivery(), 4.0);
    assert_eq!(sessions_for_capacity(120.0, &rates), 10);
    assert_eq!(sessions_for_capacity(131.9, &rates), 10);
    assert_eq!(sessions_for_capacity(5.0, &rates), 1);
    // The default replay capacity over an hour's epoch (4,000,000 over
    // 3,610 s, 1,108 a second): 92 clients.
    assert_eq!(sessions_for_capacity(4_000_000.0 / 3_610.0, &rates), 92);
    assert_eq!(sessions_for_capacity(f64::INFINITY, &rates), usize::MAX);
}

#[test]
fn with_bulk_windows_a_gateway_serves_what_its_key_admits_in_any_cohorts_window() {
    use crate::directory::{BulkRates, Rates};
    let rates = Rates {
        payload: 2.0,
        loops: 1.0,
        drops: 1.0,
        node_loops: 1.0,
        bulk: Some(BulkRates {
            payload: 50.0,
            loops: 1.0,
            drops: 1.0,
            window_secs: 30,
            cohorts: 20,
        }),
    };
    // Idle a client costs 12 a second; in its window 2 × 52 + 63.75.
    let (idle, bulk) = (12.0, 2.0 * 52.0 + 63.75);
    let key_rate = 4_000_000.0 / 3_610.0;
    let n = sessions_for_capacity(key_rate, &rates);
    let share = cohort_share(n, &rates);
    // In any cohort's window: the clients granted windows in it at the
    // bulk cost, the rest idle, within what the key admits; one more
    // client would not be.
    let peak = |n: usize| {
        let share = cohort_share(n, &rates) as f64;
        (n as f64 - share) * idle + share * bulk
    };
    assert!(peak(n) <= key_rate, "{n} clients: {}", peak(n));
    assert!(peak(n + 1) > key_rate);
    assert_eq!((n, share), (53, 3));
    // Without windows, the bound is the idle one (92), and every client
    // is its own cohort's.
    let flat = Rates {
        bulk: None,
        ..rates
    };
    assert_eq!(sessions_for_capacity(key_rate, &flat), 92);
    assert_eq!(cohort_share(92, &flat), 92);
    assert_eq!(sessions_for_capacity(f64::INFINITY, &rates), usize::MAX);
}
