//! The replay filter: a Bloom filter over Sphinx replay tags, one per
//! Sphinx key, covering the key's whole lifetime (announced, active,
//! grace). A tag is recorded only after the packet's header MAC verified,
//! so garbage cannot fill it.
//!
//! Written here rather than taken from a Bloom-filter crate because the
//! input is already a uniformly random 256-bit tag (no need to rehash), and
//! the node must snapshot and restore the exact bit array across restarts.
//!
//! Memory: m = -n ln(p) / (ln 2)^2 bits for n expected tags at false
//! positive rate p, i.e. 1.44 log2(1/p) bits per tag: 10^7 packets per key
//! lifetime at p = 10^-6 take 36 MB.

/// Proof that a packet's replay tag was checked and recorded. Only the
/// filter creates it, and forwarding requires it, so no code path can
/// forward a packet that skipped the check.
#[derive(Debug)]
#[must_use]
pub struct ReplayChecked {
    _only_the_filter_makes_these: (),
}

/// The tag was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

/// A snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay filter snapshot is invalid: {0}")]
pub struct SnapshotError(&'static str);

const SNAPSHOT_MAGIC: &[u8; 8] = b"MTOSRPF1";

/// A Bloom filter over 32-byte replay tags.
#[derive(Clone)]
pub struct ReplayFilter {
    bits: Vec<u64>,
    m: u64,
    k: u32,
    inserted: u64,
}

impl std::fmt::Debug for ReplayFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayFilter")
            .field("bits", &self.m)
            .field("hashes", &self.k)
            .field("inserted", &self.inserted)
            .finish()
    }
}

impl ReplayFilter {
    /// A filter for `expected` tags at false-positive rate `fp_rate`
    /// (clamped to [1e-12, 0.5]; `expected` at least 1).
    pub fn new(expected: u64, fp_rate: f64) -> Self {
        let n = expected.max(1) as f64;
        let p = fp_rate.clamp(1e-12, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let m = (-(n * p.ln()) / (ln2 * ln2)).ceil().max(64.0);
        let k = ((m / n) * ln2).round().clamp(1.0, 30.0) as u32;
        let words = (m / 64.0).ceil() as usize;
        Self {
            bits: vec![0; words],
            m: words as u64 * 64,
            k,
            inserted: 0,
        }
    }

    /// Bytes of memory the bit array takes.
    pub fn memory_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// Tags recorded.
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// The false-positive rate at the current fill.
    pub fn current_fp_rate(&self) -> f64 {
        let fill = (-(self.k as f64) * self.inserted as f64 / self.m as f64).exp();
        (1.0 - fill).powi(self.k as i32)
    }

    /// Bit positions by double hashing: the tag is already uniformly random,
    /// so two 64-bit words of it serve as the two hashes.
    fn positions(&self, tag: &[u8; 32]) -> impl Iterator<Item = u64> + '_ {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&tag[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let h1 = word(0);
        let h2 = word(8) | 1;
        (0..u64::from(self.k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % self.m)
    }

    /// Whether a tag is (probably) recorded, without recording it.
    pub fn contains(&self, tag: &[u8; 32]) -> bool {
        self.positions(tag)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Checks and records a tag: `Err(Replayed)` if it (probably) was seen
    /// before, otherwise the proof that it now is recorded.
    pub fn check_and_insert(&mut self, tag: &[u8; 32]) -> Result<ReplayChecked, Replayed> {
        if self.contains(tag) {
            return Err(Replayed);
        }
        let positions: Vec<u64> = self.positions(tag).collect();
        for p in positions {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.inserted += 1;
        Ok(ReplayChecked {
            _only_the_filter_makes_these: (),
        })
    }

    /// The filter's state, for the node to persist.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.bits.len() * 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.m.to_be_bytes());
        out.extend_from_slice(&self.k.to_be_bytes());
        out.extend_from_slice(&self.inserted.to_be_bytes());
        for w in &self.bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Restores a snapshot.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let header = 8 + 8 + 4 + 8;
        if bytes.len() < header || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError("bad magic or truncated"));
        }
        let mut m = [0u8; 8];
        m.copy_from_slice(&bytes[8..16]);
        let m = u64::from_be_bytes(m);
        let mut k = [0u8; 4];
        k.copy_from_slice(&bytes[16..20]);
        let k = u32::from_be_bytes(k);
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[20..28]);
        let inserted = u64::from_be_bytes(n);
        let body = &bytes[header..];
        if m == 0 || m % 64 != 0 || body.len() as u64 != m / 8 || !(1..=30).contains(&k) {
            return Err(SnapshotError("inconsistent size"));
        }
        let bits = body
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        Ok(Self {
            bits,
            m,
            k,
            inserted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn tag(rng: &mut ChaCha20Rng) -> [u8; 32] {
        let mut t = [0u8; 32];
        rng.fill_bytes(&mut t);
        t
    }

    #[test]
    fn detects_replays_and_sizes_by_rate() {
        let mut f = ReplayFilter::new(10_000, 1e-6);
        // 1.44 log2(1e6) ~ 28.7 bits per tag
        assert!((f.memory_bytes() as f64) < 10_000.0 * 29.0 / 8.0 * 1.05);
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let t = tag(&mut rng);
        let _proof = f.check_and_insert(&t).unwrap();
        assert_eq!(f.check_and_insert(&t).unwrap_err(), Replayed);
    }

    #[test]
    fn false_positive_rate_holds_at_capacity() {
        let n = 20_000;
        let mut f = ReplayFilter::new(n, 1e-3);
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        for _ in 0..n {
            let _ = f.check_and_insert(&tag(&mut rng));
        }
        let trials = 100_000;
        let fps = (0..trials).filter(|_| f.contains(&tag(&mut rng))).count();
        // Expect about 1e-3 (binomial sd ~1e-4 at this many trials).
        assert!(
            (fps as f64 / trials as f64) < 1.5e-3,
            "fp rate {fps}/{trials}"
        );
        assert!((f.current_fp_rate() - 1e-3).abs() < 3e-4);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut f = ReplayFilter::new(1000, 1e-6);
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let tags: Vec<[u8; 32]> = (0..100).map(|_| tag(&mut rng)).collect();
        for t in &tags {
            let _ = f.check_and_insert(t);
        }
        let mut g = ReplayFilter::restore(&f.snapshot()).unwrap();
        for t in &tags {
            assert!(g.check_and_insert(t).is_err());
        }
        assert!(ReplayFilter::restore(b"garbage").is_err());
        let mut s = f.snapshot();
        s.pop();
        assert!(ReplayFilter::restore(&s).is_err());
    }
}
