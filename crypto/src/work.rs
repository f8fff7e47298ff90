//! The proof of work a client shows to open a session at a gateway
//! (`specs/client.md` §3). A libp2p identity costs nothing to make, so
//! bounds per connection hold no party back; this makes each session,
//! and the mailbox registration it brings, cost a client
//! `2^SESSION_WORK_BITS` hashes on average (about 10 ms at 16 bits) and
//! a gateway one hash to check. The work is bound to the gateway, the key
//! epoch, the mailbox and the client's libp2p identity, so it cannot be
//! spent at another gateway, kept beyond an epoch or two, reused for
//! another mailbox, or replayed by other identities (each of which would
//! then get its own rate allowance for free).
//!
//! Written here rather than taken from a crate: a hashcash over BLAKE3
//! (already a dependency) is a few lines; the memory-hard puzzles (Equi-X)
//! that issue 18 asks for storage stamps are a different job.

/// Leading zero bits a session's work must have.
pub const SESSION_WORK_BITS: u32 = 16;

const CONTEXT: &str = "mtos-session-work-v1";

/// What a session's work is bound to: the gateway's node key, the key
/// epoch, the mailbox id and the client's libp2p identity (its PeerId in
/// binary form, at most 255 bytes).
#[derive(Debug, Clone, Copy)]
pub struct WorkFor<'a> {
    /// The gateway's node key.
    pub gateway: &'a [u8; 32],
    /// The key epoch of the client's document.
    pub epoch: u32,
    /// The mailbox id.
    pub mailbox: &'a [u8; 32],
    /// The client's PeerId, in binary form.
    pub client: &'a [u8],
}

/// The work hash: BLAKE3 in key-derivation mode under
/// `mtos-session-work-v1` of `gateway || epoch (4, BE) || mailbox ||
/// len(client) (1) || client || nonce (8, BE)`; a client identity over
/// 255 bytes is cut to 255 (no PeerId is that long).
pub fn session_work(w: WorkFor<'_>, nonce: u64) -> [u8; 32] {
    let client = &w.client[..w.client.len().min(255)];
    let mut material = Vec::with_capacity(32 + 4 + 32 + 1 + client.len() + 8);
    material.extend_from_slice(w.gateway);
    material.extend_from_slice(&w.epoch.to_be_bytes());
    material.extend_from_slice(w.mailbox);
    material.push(client.len() as u8);
    material.extend_from_slice(client);
    material.extend_from_slice(&nonce.to_be_bytes());
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
pub fn session_work_ok(w: WorkFor<'_>, nonce: u64, bits: u32) -> bool {
    leading_zero_bits(&session_work(w, nonce)) >= bits
}

/// The first nonce from `start` on (wrapping) that is work of `bits` for
/// this session. A caller starts from a random nonce.
pub fn solve_session_work(w: WorkFor<'_>, bits: u32, start: u64) -> u64 {
    let mut nonce = start;
    while !session_work_ok(w, nonce, bits) {
        nonce = nonce.wrapping_add(1);
    }
    nonce
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn w<'a>(g: &'a [u8; 32], e: u32, m: &'a [u8; 32], c: &'a [u8]) -> WorkFor<'a> {
        WorkFor {
            gateway: g,
            epoch: e,
            mailbox: m,
            client: c,
        }
    }

    #[test]
    fn work_is_bound_to_its_gateway_epoch_mailbox_and_client() {
        let (g, m, c) = ([1; 32], [2; 32], [9u8; 38]);
        let nonce = solve_session_work(w(&g, 7, &m, &c), 12, 0);
        assert!(session_work_ok(w(&g, 7, &m, &c), nonce, 12));
        // Almost surely not work for another gateway, epoch, mailbox or
        // client.
        let elsewhere = [
            session_work_ok(w(&[3; 32], 7, &m, &c), nonce, 12),
            session_work_ok(w(&g, 8, &m, &c), nonce, 12),
            session_work_ok(w(&g, 7, &[4; 32], &c), nonce, 12),
            session_work_ok(w(&g, 7, &m, &[8u8; 38]), nonce, 12),
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
        let (g, m, c) = ([5; 32], [6; 32], [7u8; 38]);
        let mut tries = 0u64;
        let mut start = 0u64;
        for _ in 0..8 {
            let n = solve_session_work(w(&g, 1, &m, &c), SESSION_WORK_BITS, start);
            tries += n - start + 1;
            start = n + 1;
        }
        let mean = tries as f64 / 8.0;
        assert!((10_000.0..300_000.0).contains(&mean), "{mean}");
    }
}
