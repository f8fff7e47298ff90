//! Single-use reply blocks (`specs/sphinx.md` §4): sphinx-packet's
//! version-260 recoverable SURB, carrying a payload key seed of the
//! creator's own choosing instead of the last hop's, and the recovery
//! material that reads the reply.

use std::fmt;
use std::time::Duration;

use rand::CryptoRng;
use sphinx_packet::constants::PAYLOAD_KEY_SEED_SIZE;
use sphinx_packet::payload::Payload;
use sphinx_packet::payload::key::derive_payload_key;
use sphinx_packet::route::{Destination as SphinxDestination, DestinationAddressBytes};
use sphinx_packet::version::SINGLE_SEED_SURB_VERSION;
use sphinx_packet::{SURB, SURBMaterial, SurbReplyRecovery};
use zeroize::Zeroizing;

use super::{
    Hop, MAX_MESSAGE, NodeAddress, SURB_ID_LEN, SphinxError, SphinxSecret, map_err, route_nodes,
    sphinx_delays,
};
use crate::geometry::{MAX_PATH_LENGTH, SPHINX_PAYLOAD_SIZE, SURB_SIZE};

/// Bytes of a payload key seed.
pub const SEED_LEN: usize = PAYLOAD_KEY_SEED_SIZE;
/// The version byte of [`SurbRecovery::to_bytes`].
const RECOVERY_VERSION: u8 = 2;

/// What the creator of a SURB keeps to read the reply (`specs/client.md`
/// §5): every hop's payload key seed, and the seed the creator put in the
/// block in place of the last hop's, which no relay can derive.
pub struct SurbRecovery {
    id: [u8; SURB_ID_LEN],
    creator_seed: Zeroizing<[u8; SEED_LEN]>,
    hop_seeds: Zeroizing<Vec<[u8; SEED_LEN]>>,
}

impl fmt::Debug for SurbRecovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SurbRecovery")
            .field("id", &data_encoding::HEXLOWER.encode(&self.id))
            .finish_non_exhaustive()
    }
}

impl SurbRecovery {
    /// The SURB's identifier, as the reply's final hop reports it.
    pub fn id(&self) -> [u8; SURB_ID_LEN] {
        self.id
    }

    /// Decrypts a reply that arrived on this SURB: each hop removed one
    /// layer with its own key, first hop first, so they are re-added last
    /// hop first; then the one layer the block's user added, under the
    /// creator's seed, is removed.
    // The keys are passed by reference so that no unzeroed copy is made.
    #[allow(clippy::needless_borrows_for_generic_args)]
    pub fn recover(&self, payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
        let mut payload = Payload::from_bytes(payload).map_err(map_err)?;
        for seed in self.hop_seeds.iter().rev() {
            let key = Zeroizing::new(derive_payload_key(seed));
            payload = payload.add_encryption_layer(&*key).map_err(map_err)?;
        }
        let key = Zeroizing::new(derive_payload_key(&self.creator_seed));
        payload
            .unwrap(&*key)
            .and_then(Payload::recover_plaintext)
            .map_err(map_err)
    }

    /// Serialised, to survive a client restart: `2 || id (16) ||
    /// creator seed (16) || hop seeds (16 each, route order)`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Vec::with_capacity(1 + SURB_ID_LEN + SEED_LEN * (1 + self.hop_seeds.len()));
        out.push(RECOVERY_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&*self.creator_seed);
        for seed in self.hop_seeds.iter() {
            out.extend_from_slice(seed);
        }
        Zeroizing::new(out)
    }

    /// From [`SurbRecovery::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SphinxError> {
        let bad = || SphinxError::Route("malformed reply recovery material".into());
        let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
        if version != RECOVERY_VERSION {
            return Err(bad());
        }
        let (id, rest) = rest.split_at_checked(SURB_ID_LEN).ok_or_else(bad)?;
        let (creator, hops) = rest.split_at_checked(SEED_LEN).ok_or_else(bad)?;
        if hops.is_empty()
            || !hops.len().is_multiple_of(SEED_LEN)
            || hops.len() / SEED_LEN > MAX_PATH_LENGTH
        {
            return Err(bad());
        }
        let seed = |b: &[u8]| <[u8; SEED_LEN]>::try_from(b).map_err(|_| bad());
        // Filled in place: a growing vector would leave seeds in the
        // buffers it frees.
        let mut hop_seeds = Zeroizing::new(Vec::with_capacity(hops.len() / SEED_LEN));
        for chunk in hops.chunks_exact(SEED_LEN) {
            hop_seeds.push(seed(chunk)?);
        }
        Ok(Self {
            id: id.try_into().map_err(|_| bad())?,
            creator_seed: Zeroizing::new(seed(creator)?),
            hop_seeds,
        })
    }

    /// From the sphinx-packet recovery material (identifier and every
    /// hop's seed) and the creator's seed.
    fn new(library: &SurbReplyRecovery, creator_seed: [u8; SEED_LEN]) -> Result<Self, SphinxError> {
        // The library keeps the hop seeds private; its serialisation
        // (`identifier || seeds`) is how they are read.
        let bytes = Zeroizing::new(library.to_bytes());
        let seeds = bytes
            .get(SURB_ID_LEN..)
            .ok_or_else(|| SphinxError::Route("malformed reply recovery material".into()))?;
        let mut v = Vec::with_capacity(1 + bytes.len() + SEED_LEN);
        v.push(RECOVERY_VERSION);
        v.extend_from_slice(library.identifier());
        v.extend_from_slice(&creator_seed);
        v.extend_from_slice(seeds);
        let v = Zeroizing::new(v);
        Self::from_bytes(&v)
    }
}

/// Builds a single-use reply block: whoever holds the returned bytes can
/// send one packet back along `route` to `destination`, without learning
/// who or where that is. `surb_id` must not be all zero.
pub fn build_surb<R: CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[Hop],
    destination: &[u8; 32],
    surb_id: [u8; SURB_ID_LEN],
    delays: &[Duration],
) -> Result<(Vec<u8>, SurbRecovery), SphinxError> {
    let nodes = route_nodes(route)?;
    let delays = sphinx_delays(delays, nodes.len())?;
    let material = SURBMaterial::new(
        nodes,
        delays,
        SphinxDestination::new(DestinationAddressBytes::from_bytes(*destination), surb_id),
        SINGLE_SEED_SURB_VERSION,
    );
    let secret = SphinxSecret::generate(rng);
    let (surb, recovery) = SURB::new_recoverable(secret.0, material).map_err(map_err)?;
    // The block carries the last hop's payload key seed, which that hop
    // (the creator's own gateway) derives when it processes the reply: the
    // block's user and that hop could match the reply to its creator. The
    // creator puts a fresh seed of its own there instead (still a valid
    // version-260 block); only it can remove that layer (`client.md` §5).
    let mut creator_seed = Zeroizing::new([0u8; SEED_LEN]);
    rng.fill_bytes(&mut *creator_seed);
    let mut bytes = surb.to_bytes();
    if bytes.len() != SURB_SIZE {
        return Err(SphinxError::Route(format!(
            "a reply block of {} bytes, expected {SURB_SIZE}",
            bytes.len()
        )));
    }
    let at = bytes
        .len()
        .checked_sub(SEED_LEN)
        .ok_or_else(|| SphinxError::Route("a reply block without a payload key seed".into()))?;
    bytes[at..].copy_from_slice(&*creator_seed);
    let recovery = SurbRecovery::new(&recovery, *creator_seed)?;
    Ok((bytes, recovery))
}

/// Uses a SURB to send `message` back: returns the packet and the first
/// hop to hand it to.
pub fn use_surb(surb: &[u8], message: &[u8]) -> Result<(Vec<u8>, NodeAddress), SphinxError> {
    if message.len() > MAX_MESSAGE {
        return Err(SphinxError::MessageTooLong {
            got: message.len(),
            max: MAX_MESSAGE,
        });
    }
    let surb = SURB::from_bytes(surb).map_err(map_err)?;
    let (packet, first) = surb
        .use_surb(message, SPHINX_PAYLOAD_SIZE)
        .map_err(map_err)?;
    Ok((packet.to_bytes(), NodeAddress(*first.as_bytes())))
}
