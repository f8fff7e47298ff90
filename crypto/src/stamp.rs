//! Storage stamps (`specs/storage.md` §2): the proof of work every put
//! carries, so that filling a replica costs memory and time per byte
//! held. The puzzle is Equi-X (the `equix` crate, the Tor Project's
//! onion-service defence): finding a solution takes a solver a few
//! milliseconds and a couple of MiB of memory, checking one takes a
//! verifier microseconds. A stamp is one Equi-X solution for a challenge
//! bound to the record, its kind and locator, a document epoch, the
//! claimed effort and a nonce, whose effort hash passes the claimed
//! effort: a stamp of effort `E` takes `E` solutions on average.
//!
//! ```text
//! stamp     = effort (4, BE) || epoch (4, BE) || nonce (8) || solution (16)
//! challenge = BLAKE3 derive_key "mtos-storage-stamp-v1" of
//!             kind (1) || locator (32) || BLAKE3(record) (32)
//!             || epoch (4, BE) || effort (4, BE) || nonce (8)
//! valid     = effort >= 1, Equi-X accepts the solution for the challenge,
//!             and u32_BE(first 4 bytes of BLAKE3 derive_key
//!             "mtos-storage-stamp-effort-v1" of challenge || solution)
//!             * effort <= 2^32 - 1
//! ```

/// Bytes of an encoded stamp.
pub const STAMP_LEN: usize = 32;

const CHALLENGE: &str = "mtos-storage-stamp-v1";
const EFFORT: &str = "mtos-storage-stamp-effort-v1";

/// What a stamp is bound to.
#[derive(Debug, Clone, Copy)]
pub struct StampFor<'a> {
    /// The record's kind byte (`storage.md` §2).
    pub kind: u8,
    /// The record's locator.
    pub locator: &'a [u8; 32],
    /// The record.
    pub record: &'a [u8],
}

/// A storage stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Solutions it took on average: what it claims.
    pub effort: u32,
    /// The document epoch it was made for.
    pub epoch: u32,
    /// The solver's nonce.
    pub nonce: [u8; 8],
    /// The Equi-X solution.
    pub solution: [u8; 16],
}

/// Why a stamp does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampError {
    /// Effort zero: a stamp claims at least one solution.
    #[error("a stamp of effort zero")]
    ZeroEffort,
    /// Equi-X refused the solution (or the challenge has none).
    #[error("the stamp's solution does not solve its challenge")]
    Solution,
    /// The solution is genuine but its effort hash does not pass the
    /// effort it claims.
    #[error("the stamp does not reach the effort it claims")]
    Effort,
}

impl Stamp {
    /// `effort || epoch || nonce || solution`.
    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut out = [0u8; STAMP_LEN];
        out[..4].copy_from_slice(&self.effort.to_be_bytes());
        out[4..8].copy_from_slice(&self.epoch.to_be_bytes());
        out[8..16].copy_from_slice(&self.nonce);
        out[16..].copy_from_slice(&self.solution);
        out
    }

    /// Reads [`STAMP_LEN`] bytes (any bytes make a stamp; [`Stamp::check`]
    /// says whether it holds).
    pub fn decode(bytes: &[u8; STAMP_LEN]) -> Self {
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[8..16]);
        let mut solution = [0u8; 16];
        solution.copy_from_slice(&bytes[16..]);
        Self {
            effort: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            epoch: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            nonce,
            solution,
        }
    }

    /// Checks the stamp for `what`: its effort is at least one, Equi-X
    /// accepts its solution and the effort hash passes its effort. The
    /// caller compares [`Stamp::effort`] and [`Stamp::epoch`] with what it
    /// requires.
    pub fn check(&self, what: StampFor<'_>) -> Result<(), StampError> {
        if self.effort == 0 {
            return Err(StampError::ZeroEffort);
        }
        let c = challenge(what, self.epoch, self.effort, &self.nonce);
        equix::verify_bytes(&c, &self.solution).map_err(|_| StampError::Solution)?;
        if passes(&c, &self.solution, self.effort) {
            Ok(())
        } else {
            Err(StampError::Effort)
        }
    }

    /// Finds a stamp of `effort` (at least one) for `what` and `epoch`,
    /// trying nonces from `start` on: about `effort` Equi-X solutions,
    /// each a few milliseconds and about 2 MiB. Run it off any thread
    /// that serves a network (`spawn_blocking`).
    pub fn solve(what: StampFor<'_>, epoch: u32, effort: u32, start: u64) -> Self {
        let effort = effort.max(1);
        let mut memory = equix::SolverMemory::new();
        let mut nonce = start;
        loop {
            let n = nonce.to_be_bytes();
            let c = challenge(what, epoch, effort, &n);
            // A small share of challenges has no valid program: skipped,
            // as verifiers refuse them.
            if let Ok(equix) = equix::EquiX::new(&c) {
                for solution in equix.solve_with_memory(&mut memory) {
                    let bytes = solution.to_bytes();
                    if passes(&c, &bytes, effort) {
                        return Self {
                            effort,
                            epoch,
                            nonce: n,
                            solution: bytes,
                        };
                    }
                }
            }
            nonce = nonce.wrapping_add(1);
        }
    }
}

/// The Equi-X challenge of a stamp (the module's `challenge`).
pub fn challenge(what: StampFor<'_>, epoch: u32, effort: u32, nonce: &[u8; 8]) -> [u8; 32] {
    let mut material = Vec::with_capacity(1 + 32 + 32 + 4 + 4 + 8);
    material.push(what.kind);
    material.extend_from_slice(what.locator);
    material.extend_from_slice(blake3::hash(what.record).as_bytes());
    material.extend_from_slice(&epoch.to_be_bytes());
    material.extend_from_slice(&effort.to_be_bytes());
    material.extend_from_slice(nonce);
    blake3::derive_key(CHALLENGE, &material)
}

/// The effort hash's 32-bit value for a challenge and solution.
pub fn effort_value(challenge: &[u8; 32], solution: &[u8; 16]) -> u32 {
    let mut material = [0u8; 48];
    material[..32].copy_from_slice(challenge);
    material[32..].copy_from_slice(solution);
    let h = blake3::derive_key(EFFORT, &material);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

fn passes(challenge: &[u8; 32], solution: &[u8; 16], effort: u32) -> bool {
    u64::from(effort_value(challenge, solution)) * u64::from(effort) <= u64::from(u32::MAX)
}

#[cfg(test)]
mod tests;
