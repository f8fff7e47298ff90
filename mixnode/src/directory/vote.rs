//! An authority's vote (`specs/directory.md` §6.2): the document it would
//! publish for one round, signed by it alone, and its part in the shared
//! random value (a commitment to its next secret, the reveal of this
//! epoch's). The consensus rule (`consensus`) turns the votes of a round
//! into the document.

use mtos_crypto::{Identity, VerifyKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::consensus::SharedRandom;
use super::signed::{Signed, decode_signed, encode_signed, parse_body, signing_message};
use super::*;

/// The first bytes of a signed vote.
pub const VOTE_MAGIC: &[u8; 8] = b"MTOSVOT1";
const VOTE_CONTEXT: &[u8] = b"mtos-directory-vote-v1";
const COMMIT_CONTEXT: &[u8] = b"mtos-directory-commit-v1";

/// The settings a vote proposes besides the nodes: a document is made only
/// when a majority of the authorities propose the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteParams {
    /// Epoch schedule (and round length).
    pub schedule: EpochSchedule,
    /// Packet geometry.
    pub geometry: Geometry,
    /// Mixing.
    pub mixing: Mixing,
    /// Rates.
    pub rates: Rates,
    /// Mix layers.
    pub layers: u8,
    /// Storage rules.
    pub storage: StorageRules,
    /// The largest share (percent, 1 to 100) of one mix layer, of the
    /// gateways or of the service nodes that one family may hold.
    pub family_cap_percent: u8,
}

/// One authority's commitment to its secret for an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// The authority.
    #[serde(with = "hex32")]
    pub authority: [u8; 32],
    /// [`commit_digest`] of its secret.
    #[serde(with = "hex32")]
    pub digest: [u8; 32],
}

/// An authority's part in the shared random value (§6.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomVote {
    /// Its commitment to its secret for `epoch + 1`.
    #[serde(with = "hex32")]
    pub commit: [u8; 32],
    /// Its secret for `epoch`, which it committed to in the epoch before.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub reveal: Option<[u8; 32]>,
    /// The commitments to `epoch`'s secrets, as the latest document of
    /// `epoch − 1` it holds lists them.
    #[serde(default)]
    pub commits: Vec<Commit>,
    /// The shared random value of `epoch − 1`, as it holds it.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub previous: Option<[u8; 32]>,
    /// The shared random value of `epoch`, once a document of `epoch` it
    /// holds carries it (later rounds keep it, not compute it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<SharedRandom>,
}

/// A node in a vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteEntry {
    /// The node's key.
    #[serde(with = "hex32")]
    pub key: [u8; 32],
    /// The node's signed descriptor (§1), hex.
    pub descriptor: String,
    /// The epoch it was first listed in, as this authority remembers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u32>,
    /// Its salt, as this authority remembers.
    #[serde(default, with = "hex32_opt", skip_serializing_if = "Option::is_none")]
    pub salt: Option<[u8; 32]>,
    /// Its family, as this authority's operator approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The layer this authority proposes (mixes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Whether that layer is this authority's operator's pin (`approve
    /// --layer`): rebalancing moves no pinned mix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

/// The longest descriptor a vote carries, hex digits.
const MAX_DESCRIPTOR_HEX: usize = 2 * (MAX_DESCRIPTOR_BODY + 8 + 4 + 1 + 96);

/// What one authority proposes for the document of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// [`DOCUMENT_VERSION`].
    pub version: u32,
    /// The network.
    pub network: String,
    /// The authority voting (its ed25519 key; the vote's one signature).
    #[serde(with = "hex32")]
    pub authority: [u8; 32],
    /// The epoch of the document voted on.
    pub epoch: u32,
    /// Its round in that epoch (the document's serial).
    pub serial: u64,
    /// The settings it proposes.
    pub params: VoteParams,
    /// The nodes it would list, sorted by key: each node's own signed
    /// descriptor as it holds it (so no authority can change a node's
    /// keys or addresses), with the layer, family, `since` and salt it
    /// proposes.
    pub nodes: Vec<VoteEntry>,
    /// Its part in the shared random value.
    pub random: RandomVote,
}

/// The commitment to an authority's secret for `epoch`:
/// SHA-256("mtos-directory-commit-v1" ‖ u8 len ‖ network ‖ authority ‖
/// u32 epoch ‖ secret).
pub fn commit_digest(
    network: &str,
    authority: &[u8; 32],
    epoch: u32,
    secret: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMIT_CONTEXT);
    h.update([network.len() as u8]);
    h.update(network.as_bytes());
    h.update(authority);
    h.update(epoch.to_be_bytes());
    h.update(secret);
    h.finalize().into()
}

/// SHA-256 of a signed vote's bytes: how documents name the votes they
/// were made from.
pub fn vote_digest(signed: &[u8]) -> [u8; 32] {
    Sha256::digest(signed).into()
}

impl Vote {
    /// Encodes and signs with the authority's key (which must be
    /// `self.authority`).
    pub fn sign(&self, authority: &Identity) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let sig = authority.sign(&signing_message(VOTE_CONTEXT, &body));
        encode_signed(
            VOTE_MAGIC,
            &Signed {
                body,
                signatures: vec![(*authority.verify_key().as_bytes(), sig)],
            },
        )
    }

    /// Checks a signed vote: framing, one signature by the authority it
    /// names, which must be one of `authorities`, the network, the version
    /// and every node entry. Returns the vote and its digest.
    pub fn verify(
        bytes: &[u8],
        network: &str,
        authorities: &[[u8; 32]],
        addresses: AddressCheck,
    ) -> Result<(Self, [u8; 32]), DirectoryError> {
        let signed = decode_signed(VOTE_MAGIC, bytes, MAX_DOCUMENT_BODY)?;
        let [(key, sig)] = signed.signatures.as_slice() else {
            return Err(DirectoryError::Signature("a vote has one signature"));
        };
        if !authorities.contains(key) {
            return Err(DirectoryError::Signature(
                "a vote by an authority not configured",
            ));
        }
        let vk = VerifyKey::from_bytes(*key)
            .map_err(|_| DirectoryError::Signature("not an ed25519 key"))?;
        if !vk.verify(&signing_message(VOTE_CONTEXT, &signed.body), sig) {
            return Err(DirectoryError::Signature("vote signature does not verify"));
        }
        let vote: Vote = parse_body(&signed.body)?;
        if vote.version != DOCUMENT_VERSION {
            return Err(body_error(format!(
                "vote version {} (expected {DOCUMENT_VERSION})",
                vote.version
            )));
        }
        if vote.authority != *key {
            return Err(DirectoryError::Signature(
                "vote not signed by the authority it names",
            ));
        }
        if vote.network != network {
            return Err(DirectoryError::WrongNetwork {
                got: vote.network,
                expected: network.to_owned(),
            });
        }
        let _ = addresses;
        let mut previous: Option<[u8; 32]> = None;
        for node in &vote.nodes {
            if previous.is_some_and(|p| p >= node.key) {
                return Err(body_error("vote nodes not sorted by key, or one twice"));
            }
            previous = Some(node.key);
            if node.descriptor.len() > MAX_DESCRIPTOR_HEX {
                return Err(body_error("a vote's descriptor is too long"));
            }
            if let Some(f) = &node.family
                && (f.is_empty() || f.len() > MAX_FAMILY || f.chars().any(char::is_control))
            {
                return Err(body_error("a vote's family is not 1 to 64 plain bytes"));
            }
            if node.layer.is_some_and(|l| l == 0 || l > vote.params.layers) {
                return Err(body_error("a vote's layer is not one of the network's"));
            }
        }
        Ok((vote, vote_digest(bytes)))
    }
}

/// Votes as a `get votes` answer carries them: u16 count, then each as
/// u32 length and bytes.
pub fn encode_votes(votes: &[Vec<u8>]) -> Vec<u8> {
    let count = votes.len().min(usize::from(u16::MAX));
    let mut out = Vec::new();
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for v in &votes[..count] {
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Reads a `get votes` answer; `None` if it is malformed.
pub fn decode_votes(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (count, rest) = bytes.split_first_chunk::<2>()?;
    let count = u16::from_be_bytes(*count);
    bytes = rest;
    let mut votes = Vec::new();
    for _ in 0..count {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (vote, rest) = rest.split_at(len);
        votes.push(vote.to_vec());
        bytes = rest;
    }
    bytes.is_empty().then_some(votes)
}
