//! A gateway's client sessions, bounded per connection and per source
//! address (`specs/client.md` §3). A client mints a libp2p identity for
//! free, so a bound per connection alone lets one party open sessions
//! until the gateway's permits are gone; a bound per source address (a
//! whole IPv4 address, an IPv6 /64, which one subscriber usually holds)
//! makes that party's sessions share one allowance. Clients that share an
//! address (behind NAT, or through one Tor exit) share it too, so it is
//! the operator's setting (`0`: no bound per address). Sans-IO.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// The part of a source address one party is assumed to hold: an IPv4
/// address, or the /64 of an IPv6 one (IPv4-mapped IPv6 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressPrefix {
    /// A whole IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl AddressPrefix {
    /// The prefix `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&v6.octets()[..8]);
                    Self::V6(p)
                }
            },
        }
    }
}

/// What one client may cost a gateway's key a second in `class`: it may
/// send up to [`CLIENT_RATE_FACTOR`](crate::admission::CLIENT_RATE_FACTOR)
/// times its send rate `λP + λL + λD` before it is throttled, and
/// packets come back to it at its delivery rate, all through the key.
fn cost(class: crate::directory::ClassRates) -> f64 {
    crate::admission::CLIENT_RATE_FACTOR * class.send() + class.delivery()
}

/// How many clients a gateway can serve at once when each of its Sphinx
/// keys admits `key_rate` packets a second (`ReplaySizing::per_second`;
/// beyond it packets are refused as `key_cap`, whoever sent them).
/// Admitting no more clients than this keeps what they may send within
/// what the key admits, so a flood from many identities is refused as
/// sessions (counted) instead of as packets, honest ones among them.
///
/// With bulk windows (`specs/client.md` §4.1) one cohort is in bulk at a
/// time, and a gateway grants windows to at most [`cohort_share`] of its
/// clients per cohort, so the bound is the largest `n` with
/// `n · idle + ⌈n / cohorts⌉ · (bulk − idle) ≤ key_rate`. At least 1.
pub fn sessions_for_capacity(key_rate: f64, rates: &crate::directory::Rates) -> usize {
    let idle = cost(rates.idle());
    let extra = (cost(rates.peak()) - idle).max(0.0);
    let cohorts = rates.bulk.map_or(1, |b| b.cohorts.max(1)) as f64;
    let per_client = idle + extra / cohorts;
    let bounded = key_rate.is_finite() && per_client.is_finite() && per_client > 0.0;
    if !bounded {
        return usize::MAX;
    }
    let mut n = ((key_rate / per_client).floor() as usize).max(1);
    // The rounding up of a cohort's share can take a few off.
    while n > 1 && (n as f64) * idle + (n as f64 / cohorts).ceil() * extra > key_rate {
        n -= 1;
    }
    n
}

/// How many of a gateway's `clients` it grants bulk windows to in one
/// cohort: `⌈clients / cohorts⌉` (all of them without bulk windows). A
/// session beyond it is served in the idle class only, and told so, so a
/// party opening sessions in one cohort cannot put more traffic through
/// the gateway's key in that cohort's windows than
/// [`sessions_for_capacity`] allows for.
pub fn cohort_share(clients: usize, rates: &crate::directory::Rates) -> usize {
    match rates.bulk {
        Some(b) => clients.div_ceil(usize::from(b.cohorts.max(1))),
        None => clients,
    }
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The connection holds its share already.
    Connection,
    /// The source address holds its share already.
    Address,
}

/// Open sessions by connection and by source address, within their
/// bounds.
#[derive(Debug)]
pub struct SessionLimits<P> {
    per_peer: usize,
    per_address: usize,
    peers: HashMap<P, usize>,
    addresses: HashMap<AddressPrefix, usize>,
}

impl<P: Hash + Eq + Clone> SessionLimits<P> {
    /// At most `per_peer` sessions per connection (at least 1) and
    /// `per_address` per source address (`0`: no bound).
    pub fn new(per_peer: usize, per_address: usize) -> Self {
        Self {
            per_peer: per_peer.max(1),
            per_address,
            peers: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// Opens a session of `peer` from `address` (if known), or says why
    /// not. Every `Ok` must be matched by one [`SessionLimits::close`]
    /// with the same arguments.
    pub fn open(&mut self, peer: &P, address: Option<AddressPrefix>) -> Result<(), SessionRefusal> {
        if self.peers.get(peer).copied().unwrap_or(0) >= self.per_peer {
            return Err(SessionRefusal::Connection);
        }
        if let Some(a) = address
            && self.per_address > 0
            && self.addresses.get(&a).copied().unwrap_or(0) >= self.per_address
        {
            return Err(SessionRefusal::Address);
        }
        *self.peers.entry(peer.clone()).or_insert(0) += 1;
        if let Some(a) = address {
            *self.addresses.entry(a).or_insert(0) += 1;
        }
        Ok(())
    }

    /// A session opened by [`SessionLimits::open`] ended.
    pub fn close(&mut self, peer: &P, address: Option<AddressPrefix>) {
        if let Some(n) = self.peers.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.peers.remove(peer);
            }
        }
        if let Some(a) = address
            && let Some(n) = self.addresses.get_mut(&a)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.addresses.remove(&a);
            }
        }
    }

    /// Sessions open in all.
    pub fn open_sessions(&self) -> usize {
        self.peers.values().sum()
    }
}

#[cfg(test)]
mod tests;
