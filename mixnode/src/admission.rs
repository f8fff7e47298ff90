//! Who may send mix frames to whom, and how fast: the stratified topology's
//! link rule and a per-peer token bucket. Sans-IO: the driver asks before
//! handing a frame to the engine, passing `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::time::Instant;

/// Where a peer sits in the stratified topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// A client (not in the network document).
    Client,
    /// A gateway: clients enter and replies leave here.
    Gateway,
    /// Mix layer `n`, from 1.
    Layer(u8),
    /// A service node: the final hop that answers requests.
    Service,
}

/// Whether `receiver` accepts frames from `sender` in a network of
/// `layers` mix layers (`specs/sphinx.md` §2): layer 1 from gateways and
/// service nodes (requests enter, replies start back), layer k from layer
/// k−1, gateways and service nodes from the last layer, gateways from
/// clients. Anything else is a frame that skipped or reversed a layer.
pub fn accepts(receiver: Position, sender: Position, layers: u8) -> bool {
    use Position::*;
    match (receiver, sender) {
        (Layer(1), Gateway | Service) => true,
        (Layer(k), Layer(j)) => k >= 2 && k <= layers && j + 1 == k,
        (Gateway | Service, Layer(j)) => layers >= 1 && j == layers,
        (Gateway, Client) => true,
        _ => false,
    }
}

/// A gateway lets each client send at this multiple of the network's
/// client send rate (λP + λL + λD): a Poisson sender at rate λ exceeds a
/// bucket of rate 2λ and depth 100 with negligible probability, while a
/// client that floods is throttled to twice its share.
pub const CLIENT_RATE_FACTOR: f64 = 2.0;

/// Why a frame was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender's position may not send to this node ([`accepts`]): the
    /// driver closes the stream.
    WrongLayer,
    /// A node sent above the per-peer rate.
    RateLimited,
    /// A client sent above [`CLIENT_RATE_FACTOR`] times its cover rate.
    ClientThrottled,
}

/// One node's admission settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionConfig {
    /// Where this node stands.
    pub me: Position,
    /// Frames per second one node may send here.
    pub peer_rate: f64,
    /// Frames a client may send at once above its rate.
    pub client_burst: f64,
}

/// The admission rule of one node (`specs/sphinx.md` §2, `client.md` §6):
/// the link rule by position, then one token bucket per peer (a node's at
/// the operator's rate, a client's at [`CLIENT_RATE_FACTOR`] times the
/// document's client send rate). A peer's bucket follows its current
/// position: a node not yet in this node's document counts as a client,
/// and gets a node's bucket once it is. `P` names peers (a libp2p PeerId
/// in the node); buckets live until [`Admission::forget`] (the driver
/// calls it when the peer's last connection closes, so they are bounded by
/// the connections).
#[derive(Debug)]
pub struct Admission<P> {
    config: AdmissionConfig,
    buckets: HashMap<P, (bool, TokenBucket)>,
}

impl<P: Eq + Hash + Clone> Admission<P> {
    /// No peer known yet.
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Where this node stands now: the document's word once it lists the
    /// node (authorities place mixes in layers, whatever a node's config
    /// asked), the config's before.
    pub fn set_position(&mut self, me: Position) {
        self.config.me = me;
    }

    /// Whether a frame from `peer`, at `sender`'s position in a network of
    /// `layers` layers, is taken at `now`; a client sends
    /// `client_send_rate` frames per second (λP + λL + λD of its class at
    /// `now`).
    pub fn admit(
        &mut self,
        now: Instant,
        peer: &P,
        sender: Position,
        layers: u8,
        client_send_rate: f64,
    ) -> Result<(), Refusal> {
        if !accepts(self.config.me, sender, layers) {
            return Err(Refusal::WrongLayer);
        }
        let as_client = sender == Position::Client;
        let (rate, burst, refusal) = if as_client {
            (
                CLIENT_RATE_FACTOR * client_send_rate,
                self.config.client_burst,
                Refusal::ClientThrottled,
            )
        } else {
            let rate = self.config.peer_rate;
            (rate, (rate / 4.0).max(64.0), Refusal::RateLimited)
        };
        let entry = self
            .buckets
            .entry(peer.clone())
            .or_insert_with(|| (as_client, TokenBucket::new(now, rate, burst)));
        if entry.0 != as_client {
            *entry = (as_client, TokenBucket::new(now, rate, burst));
        }
        // The rate of now: a client's changes with its class (bulk
        // windows, `client.md` §4.1) and with the document.
        entry.1.set_rate(now, rate);
        if entry.1.try_take(now) {
            Ok(())
        } else {
            Err(refusal)
        }
    }

    /// Drops `peer`'s bucket (its last connection closed).
    pub fn forget(&mut self, peer: &P) {
        self.buckets.remove(peer);
    }

    /// Peers with a bucket.
    pub fn peers(&self) -> usize {
        self.buckets.len()
    }
}

/// A token bucket: `rate` frames per second on average, bursts up to
/// `burst`. Bounds what one peer can make a node do.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(now: Instant, rate_per_s: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate_per_s.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Fills the bucket up to `now` at its old rate.
    fn refill(&mut self, now: Instant) {
        let elapsed: Duration = now - self.last;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
    }

    /// Fills at `rate_per_s` from `now` on (what came before at the old
    /// rate).
    pub fn set_rate(&mut self, now: Instant, rate_per_s: f64) {
        let rate = rate_per_s.max(0.0);
        if rate.to_bits() != self.rate.to_bits() {
            self.refill(now);
            self.rate = rate;
        }
    }

    /// Takes one token if there is one; `false` means drop the frame.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Position::*;
    use super::*;

    #[test]
    fn frames_flow_one_layer_at_a_time() {
        let all = [Client, Gateway, Layer(1), Layer(2), Layer(3), Service];
        let allowed: Vec<(Position, Position)> = all
            .iter()
            .flat_map(|r| all.iter().map(move |s| (*r, *s)))
            .filter(|(r, s)| accepts(*r, *s, 3))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Gateway, Client),
                (Gateway, Layer(3)),
                (Layer(1), Gateway),
                (Layer(1), Service),
                (Layer(2), Layer(1)),
                (Layer(3), Layer(2)),
                (Service, Layer(3)),
            ]
        );
        // Skipping a layer, going backwards, or clients reaching mixes: no.
        assert!(!accepts(Layer(3), Layer(1), 3));
        assert!(!accepts(Layer(1), Layer(2), 3));
        assert!(!accepts(Layer(1), Client, 3));
        assert!(!accepts(Service, Gateway, 3));
        assert!(!accepts(Layer(4), Layer(3), 3));
    }

    #[test]
    fn admission_applies_the_link_rule_then_the_senders_bucket() {
        let t0 = Instant::ZERO;
        let mut gateway = Admission::new(AdmissionConfig {
            me: Gateway,
            peer_rate: 1_000.0,
            client_burst: 5.0,
        });
        // A client sending λP + λL + λD = 4/s may send 2 × 4 = 8/s after
        // a burst of 5.
        let client = 1u32;
        let sent = (0..20)
            .filter(|_| gateway.admit(t0, &client, Client, 3, 4.0).is_ok())
            .count();
        assert_eq!(sent, 5);
        assert_eq!(
            gateway.admit(t0, &client, Client, 3, 4.0),
            Err(Refusal::ClientThrottled)
        );
        let t1 = t0 + Duration::from_secs(1);
        let sent = (0..20)
            .filter(|_| gateway.admit(t1, &client, Client, 3, 4.0).is_ok())
            .count();
        assert_eq!(sent, 5, "8 tokens earned, capped at the burst of 5");
        // The same peer listed as the last layer gets a node's bucket.
        let node_sent = (0..100)
            .filter(|_| gateway.admit(t1, &client, Layer(3), 3, 4.0).is_ok())
            .count();
        assert_eq!(node_sent, 100);
        // Wrong positions are refused whatever the bucket.
        assert_eq!(
            gateway.admit(t1, &2, Layer(1), 3, 4.0),
            Err(Refusal::WrongLayer)
        );
        let mut mix = Admission::new(AdmissionConfig {
            me: Layer(2),
            peer_rate: 100.0,
            client_burst: 5.0,
        });
        assert_eq!(mix.admit(t0, &3, Client, 3, 4.0), Err(Refusal::WrongLayer));
        // A node's burst is max(rate / 4, 64).
        let passed = (0..200)
            .filter(|_| mix.admit(t0, &4, Layer(1), 3, 4.0).is_ok())
            .count();
        assert_eq!(passed, 64);
        assert_eq!(
            mix.admit(t0, &4, Layer(1), 3, 4.0),
            Err(Refusal::RateLimited)
        );
        // Forgetting a peer frees its bucket.
        assert_eq!(mix.peers(), 1);
        mix.forget(&4);
        assert_eq!(mix.peers(), 0);
        assert!(mix.admit(t0, &4, Layer(1), 3, 4.0).is_ok());
    }

    #[test]
    fn token_bucket_bounds_rate_and_burst() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(t0, 100.0, 10.0);
        let burst = (0..50).filter(|_| b.try_take(t0)).count();
        assert_eq!(burst, 10);
        // One second later: 100 more tokens, capped at the burst of 10.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..50).filter(|_| b.try_take(t1)).count(), 10);
        // A steady 100 frames/s stream over 10 s all passes.
        let mut b = TokenBucket::new(t0, 100.0, 10.0);
        let passed = (1..=1000)
            .filter(|i| b.try_take(t0 + Duration::from_millis(10 * i)))
            .count();
        assert_eq!(passed, 1000);
        // Time going backwards gives nothing extra.
        let mut b = TokenBucket::new(t1, 1.0, 1.0);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t0));
    }

    #[test]
    fn a_clients_bucket_follows_the_rate_of_its_class() {
        let mut a: Admission<u8> = Admission::new(AdmissionConfig {
            me: Gateway,
            peer_rate: 1_000.0,
            client_burst: 1.0,
        });
        let t0 = Instant::ZERO;
        let passed = |a: &mut Admission<u8>, from: u64, rate: f64| {
            (0..100)
                .filter(|i| {
                    let at = t0 + Duration::from_millis(from + 10 * i);
                    a.admit(at, &7, Client, 3, rate).is_ok()
                })
                .count()
        };
        // At 4 a second (8 allowed), frames every 10 ms mostly bounce.
        assert!(passed(&mut a, 0, 4.0) <= 10);
        // In a window of 60 a second (120 allowed), all pass but the
        // first (the bucket was empty when the window began).
        assert!(passed(&mut a, 1_000, 60.0) >= 99);
        // Back in the idle class, the bound is the idle one again.
        assert!(passed(&mut a, 2_000, 4.0) <= 10);
    }
}
