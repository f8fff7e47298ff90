//! The replay filter: a Bloom filter over Sphinx replay tags, one per
//! Sphinx key, covering the key's whole lifetime (announced, active,
//! grace). A tag is recorded only after the packet's header MAC verified,
//! so garbage cannot fill it.
//!
//! Written here rather than taken from a Bloom-filter crate because the
//! input is already a uniformly random 256-bit tag (no need to rehash), and
//! the node must snapshot and restore the exact bit array across restarts.
//!
//! The filter is *blocked* (Putze, Sanders, Singler 2007): all k bits of a
//! tag fall in one 512-bit block, one cache line, so a check costs one
//! cache miss instead of k. Blocking raises the false-positive rate at
//! equal size (blocks are unevenly loaded), so the filter is sized by
//! growing the classic m = −n ln p / (ln 2)^2 until the blocked filter's
//! predicted rate at n tags meets p (`blocked_fp_rate`); the bits per tag
//! this takes are stated in `specs/mixing.md`.

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

const SNAPSHOT_MAGIC: &[u8; 8] = b"MTOSRPF2";
/// Bits per block: one 64-byte cache line.
const BLOCK_BITS: u64 = 512;
const BLOCK_WORDS: usize = 8;
/// Positions per tag: the 192 bits after the block index, 9 bits each.
const MAX_K: usize = 21;

/// A tag [`ReplayFilter::check`] found not recorded, and its place in
/// that filter.
#[derive(Debug)]
pub struct Fresh {
    block: usize,
    mask: [u64; BLOCK_WORDS],
}

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
        let n = expected.clamp(1, 1 << 40);
        // NaN would give k = 0, a filter that calls everything a replay.
        let p = if fp_rate.is_finite() {
            fp_rate.clamp(1e-12, 0.5)
        } else {
            1e-6
        };
        let (blocks, k) = shape(n, p);
        Self {
            bits: vec![0; blocks as usize * BLOCK_WORDS],
            m: blocks * BLOCK_BITS,
            k,
            inserted: 0,
        }
    }

    /// A filter that keeps nothing and finds every tag fresh, for a
    /// simulation whose packets no party copies ([`crate::KeyRing::unfiltered`]):
    /// there each check is a cache miss into a large bit array that can
    /// only ever report a false positive, and a third of a large run's
    /// time. A node never has one, and a snapshot of one does not restore.
    pub fn off() -> Self {
        Self {
            bits: Vec::new(),
            m: 0,
            k: 0,
            inserted: 0,
        }
    }

    /// Whether this filter keeps tags (not [`ReplayFilter::off`]).
    pub fn is_on(&self) -> bool {
        !self.bits.is_empty()
    }

    /// Bytes of memory the bit array takes.
    pub fn memory_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// Tags recorded.
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// The expected false-positive rate at the current fill.
    pub fn current_fp_rate(&self) -> f64 {
        if !self.is_on() {
            return 0.0;
        }
        blocked_fp_rate(self.inserted, self.m, self.k)
    }

    /// The tag's block (first word index) and its k bit positions within
    /// the block, as a mask of the block's 8 words. The tag is already
    /// uniformly random: its first 64 bits pick the block and each
    /// following 9-bit chunk one position. (Double hashing would be
    /// cheaper but, in a 512-bit block, gives correlated positions and
    /// twice the predicted false-positive rate.)
    fn locate(&self, tag: &[u8; 32]) -> (usize, [u64; BLOCK_WORDS]) {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&tag[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        // (At least one block: a filter that is off has none.)
        let blocks = (self.m / BLOCK_BITS).max(1);
        let block = (word(0) % blocks) as usize * BLOCK_WORDS;
        // Chunk i is bits 9i..9i+9 of the tag's last 192 bits read as one
        // little-endian number: the first 14 chunks lie in its low 128
        // bits, the other 7 in the 64 bits from bit 126 (the hot path of
        // every packet: no byte-by-byte reads, no branch per chunk).
        let low = u128::from(word(1)) | u128::from(word(2)) << 64;
        let high = word(2) >> 62 | word(3) << 2;
        let k = self.k as usize;
        let mut mask = [0u64; BLOCK_WORDS];
        let mut set = |b: usize| mask[b / 64] |= 1 << (b % 64);
        for i in 0..k.min(14) {
            set((low >> (9 * i)) as usize & 0x1ff);
        }
        for i in 14..k {
            set((high >> (9 * (i - 14))) as usize & 0x1ff);
        }
        (block, mask)
    }

    fn is_set(&self, block: usize, mask: &[u64; BLOCK_WORDS]) -> bool {
        self.bits
            .get(block..block + BLOCK_WORDS)
            .is_some_and(|words| words.iter().zip(mask).all(|(w, m)| w & m == *m))
    }

    /// Whether a tag is (probably) recorded, without recording it.
    pub fn contains(&self, tag: &[u8; 32]) -> bool {
        let (block, mask) = self.locate(tag);
        self.is_set(block, &mask)
    }

    /// Checks and records a tag: `Err(Replayed)` if it (probably) was seen
    /// before, otherwise the proof that it now is recorded.
    pub fn check_and_insert(&mut self, tag: &[u8; 32]) -> Result<ReplayChecked, Replayed> {
        let fresh = self.check(tag)?;
        Ok(self.insert(fresh))
    }

    /// Checks a tag without recording it: `Err(Replayed)` if it (probably)
    /// was seen before, otherwise where it goes, for
    /// [`ReplayFilter::insert`] (so a caller that decides in between, as
    /// the engine does with a key's budget, locates the tag once).
    pub fn check(&self, tag: &[u8; 32]) -> Result<Fresh, Replayed> {
        let (block, mask) = self.locate(tag);
        if self.is_set(block, &mask) {
            return Err(Replayed);
        }
        Ok(Fresh { block, mask })
    }

    /// Records a tag [`ReplayFilter::check`] of this filter found fresh,
    /// with nothing inserted in between; the proof that it is recorded.
    pub fn insert(&mut self, fresh: Fresh) -> ReplayChecked {
        // A `Fresh` of another, larger filter would be recorded nowhere.
        debug_assert!(
            !self.is_on() || fresh.block + BLOCK_WORDS <= self.bits.len(),
            "a tag located in another filter"
        );
        if let Some(words) = self.bits.get_mut(fresh.block..fresh.block + BLOCK_WORDS) {
            for (w, m) in words.iter_mut().zip(fresh.mask) {
                *w |= m;
            }
        }
        self.inserted += 1;
        ReplayChecked {
            _only_the_filter_makes_these: (),
        }
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
        if m == 0
            || m % BLOCK_BITS != 0
            || body.len() as u64 != m / 8
            || !(1..=MAX_K as u32).contains(&k)
        {
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

/// The blocks and k of a filter for `n` tags at rate `p`, remembered:
/// the search evaluates the predicted rate a hundred times (about 1.8
/// million instructions), and a simulator builds a thousand filters of
/// one shape at each epoch.
fn shape(n: u64, p: f64) -> (u64, u32) {
    /// Tags, and the rate's bits.
    type ShapeKey = (u64, u64);
    thread_local! {
        static SHAPES: std::cell::RefCell<Vec<(ShapeKey, (u64, u32))>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let key = (n, p.to_bits());
    if let Some(found) = SHAPES.with_borrow(|s| s.iter().find(|(k, _)| *k == key).map(|e| e.1)) {
        return found;
    }
    let found = search_shape(n, p);
    SHAPES.with_borrow_mut(|s| {
        // A few shapes are in use at a time (one per epoch's sizing).
        if s.len() >= 16 {
            s.remove(0);
        }
        s.push((key, found));
    });
    found
}

/// Starts from the classic size and grows until the blocked filter's
/// predicted rate at `n` tags meets `p`, trying the k values around the
/// classic optimum (blocked filters prefer a smaller k).
fn search_shape(n: u64, p: f64) -> (u64, u32) {
    let ln2 = std::f64::consts::LN_2;
    let classic = -(n as f64 * p.ln()) / (ln2 * ln2);
    let k_classic = ((classic / n as f64) * ln2)
        .round()
        .clamp(1.0, MAX_K as f64) as u32;
    let start = (classic / BLOCK_BITS as f64).ceil().max(1.0) as u64;
    let mut blocks = start;
    loop {
        let m = blocks * BLOCK_BITS;
        let (k, rate) = (k_classic.saturating_sub(4).max(1)..=k_classic)
            .map(|k| (k, blocked_fp_rate(n, m, k)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((k_classic, 0.0));
        // Never more than twice the classic size.
        if rate <= p || blocks >= start * 2 {
            return (blocks, k);
        }
        blocks += blocks.div_ceil(32);
    }
}

/// The false-positive rate of a blocked filter of `m` bits and `k` hashes
/// holding `n` tags: blocks hold a Poisson-distributed number of tags, and
/// each block is a small classic filter.
fn blocked_fp_rate(n: u64, m: u64, k: u32) -> f64 {
    let lambda = n as f64 * BLOCK_BITS as f64 / m.max(1) as f64;
    if lambda <= 0.0 {
        return 0.0;
    }
    let k = f64::from(k);
    let per_bit = 1.0 - 1.0 / BLOCK_BITS as f64;
    let upper = (lambda + 12.0 * lambda.sqrt() + 30.0).ceil() as u32;
    // Poisson weights in log space (no underflow for large λ).
    let mut rate = 0.0;
    let mut log_fact = 0.0;
    for j in 0..=upper {
        if j > 0 {
            log_fact += f64::from(j).ln();
        }
        let weight = (f64::from(j) * lambda.ln() - lambda - log_fact).exp();
        rate += weight * (1.0 - per_bit.powf(f64::from(j) * k)).powf(k);
    }
    rate
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
        let bits_per_tag = f.memory_bytes() as f64 * 8.0 / 10_000.0;
        eprintln!("p = 1e-6: {bits_per_tag:.1} bits per tag, k = {}", f.k);
        assert!(
            (28.7..40.0).contains(&bits_per_tag),
            "{bits_per_tag} bits per tag"
        );
        assert!(f.current_fp_rate() == 0.0);
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
        // At most about 1e-3 (binomial sd ~1e-4 at this many trials), and
        // what the filter predicts for itself.
        let measured = fps as f64 / trials as f64;
        assert!(measured < 1.3e-3, "fp rate {fps}/{trials}");
        let predicted = f.current_fp_rate();
        assert!(predicted < 1.2e-3, "predicted {predicted}");
        assert!(
            (measured - predicted).abs() < 4e-4,
            "{measured} vs {predicted}"
        );
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

    /// The positions are the tag's bits as `specs/mixing.md` states them
    /// (a snapshot written by an earlier version keeps its meaning):
    /// position i is bits 64 + 9i .. 64 + 9i + 9 of the tag read as a
    /// little-endian number, computed here bit by bit, for every k.
    #[test]
    fn positions_are_the_tags_bits_as_specified() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let sized = ReplayFilter::new(1_000_000, 1e-12);
        let bit = |t: &[u8; 32], i: usize| usize::from(t[i / 8] >> (i % 8) & 1);
        for k in 1..=MAX_K as u32 {
            let f = ReplayFilter { k, ..sized.clone() };
            for _ in 0..200 {
                let t = tag(&mut rng);
                let (block, mask) = f.locate(&t);
                let first = u64::from_le_bytes(t[..8].try_into().unwrap());
                assert_eq!(
                    block as u64,
                    first % (f.m / BLOCK_BITS) * BLOCK_WORDS as u64
                );
                let mut want = [0u64; BLOCK_WORDS];
                for i in 0..k as usize {
                    let b: usize = (0..9).map(|j| bit(&t, 64 + 9 * i + j) << j).sum();
                    want[b / 64] |= 1 << (b % 64);
                }
                assert_eq!(mask, want, "k = {k}");
            }
        }
    }

    /// A filter that is off finds every tag fresh, records nothing and
    /// never reports a false positive; its snapshot does not restore.
    #[test]
    fn a_filter_that_is_off_keeps_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut f = ReplayFilter::off();
        let t = tag(&mut rng);
        for _ in 0..3 {
            assert!(f.check_and_insert(&t).is_ok());
        }
        assert!(!f.contains(&t));
        assert!(!f.is_on());
        assert_eq!((f.memory_bytes(), f.current_fp_rate()), (0, 0.0));
        assert!(ReplayFilter::restore(&f.snapshot()).is_err());
        assert!(ReplayFilter::new(10, 1e-6).is_on());
    }
}
