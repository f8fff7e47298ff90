//! Who may send mix frames to whom, and how fast: the stratified topology's
//! link rule and a per-peer token bucket. Sans-IO: the driver asks before
//! handing a frame to the engine, passing `now`.

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

    /// Takes one token if there is one; `false` means drop the frame.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed: Duration = now - self.last;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
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
}
