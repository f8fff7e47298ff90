//! The proof of work a client shows to open a session at a gateway
//! (`specs/client.md` §3). A libp2p identity costs nothing to make, so
//! bounds per connection hold no party back; this makes each session,
//! and the mailbox registration it brings, cost a client
//! `2^SESSION_WORK_BITS` hashes on average (about 10 ms at 16 bits) and
//! a gateway one hash to check. The work is bound to the gateway, the key
//! epoch and the mailbox, so it cannot be spent at another gateway, kept
//! beyond an epoch or two, or reused for another mailbox.
//!
//! Written here rather than taken from a crate: a hashcash over BLAKE3
//! (already a dependency) is a few lines; the memory-hard puzzles (Equi-X)
//! that issue 18 asks for storage stamps are a different job.

/// Leading zero bits a session's work must have.
pub const SESSION_WORK_BITS: u32 = 16;

const CONTEXT: &str = "mtos-session-work-v1";

/// The work hash: BLAKE3 in key-derivation mode under
/// `mtos-session-work-v1` of `gateway || epoch (4, BE) || mailbox ||
/// nonce (8, BE)`.
pub fn session_work(gateway: &[u8; 32], epoch: u32, mailbox: &[u8; 32], nonce: u64) -> [u8; 32] {
    let mut material = [0u8; 76];
    material[..32].copy_from_slice(gateway);
    material[32..36].copy_from_slice(&epoch.to_be_bytes());
    material[36..68].copy_from_slice(mailbox);
    material[68..].copy_from_slice(&nonce.to_be_bytes());
    blake3::derive_key(CONTEXT, &material)
}

/// Leading zero bits of a hash, first byte first, most significant bit
/// first.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for b in hash {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// Whether `nonce` is work of at least `bits` for this session.
pub fn session_work_ok(
    gateway: &[u8; 32],
    epoch: u32,
    mailbox: &[u8; 32],
    nonce: u64,
    bits: u32,
) -> bool {
    leading_zero_bits(&session_work(gateway, epoch, mailbox, nonce)) >= bits
}

/// The first nonce from `start` on (wrapping) that is work of `bits` for
/// this session. A caller starts from a random nonce.
pub fn solve_session_work(
    gateway: &[u8; 32],
    epoch: u32,
    mailbox: &[u8; 32],
    bits: u32,
    start: u64,
) -> u64 {
    let mut nonce = start;
    while !session_work_ok(gateway, epoch, mailbox, nonce, bits) {
        nonce = nonce.wrapping_add(1);
    }
    nonce
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn work_is_bound_to_its_gateway_epoch_and_mailbox() {
        let (g, m) = ([1; 32], [2; 32]);
        let nonce = solve_session_work(&g, 7, &m, 12, 0);
        assert!(session_work_ok(&g, 7, &m, nonce, 12));
        // Almost surely not work for another gateway, epoch or mailbox.
        let elsewhere = [
            session_work_ok(&[3; 32], 7, &m, nonce, 12),
            session_work_ok(&g, 8, &m, nonce, 12),
            session_work_ok(&g, 7, &[4; 32], nonce, 12),
        ];
        assert!(elsewhere.iter().filter(|ok| **ok).count() <= 1);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
        let mut h = [0u8; 32];
        h[1] = 0x10;
        assert_eq!(leading_zero_bits(&h), 11);
    }

    #[test]
    fn sixteen_bits_take_about_sixty_five_thousand_tries() {
        // The mean over a few solutions from spread-out starts, within a
        // wide band (a geometric variable's mean over 8 draws).
        let (g, m) = ([5; 32], [6; 32]);
        let mut tries = 0u64;
        let mut start = 0u64;
        for _ in 0..8 {
            let n = solve_session_work(&g, 1, &m, SESSION_WORK_BITS, start);
            tries += n - start + 1;
            start = n + 1;
        }
        let mean = tries as f64 / 8.0;
        assert!((10_000.0..300_000.0).contains(&mean), "{mean}");
    }
}
