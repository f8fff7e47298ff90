//! The authorities of a network, as every node and client is configured
//! with them: their keys and how many must sign a document.

use super::*;

/// The authorities of a network and how many must sign a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthoritySet {
    /// The network id.
    pub network: String,
    /// The authorities' ed25519 keys (distinct).
    pub authorities: Vec<[u8; 32]>,
    /// Signatures a document needs: more than half by default.
    pub threshold: usize,
}

impl AuthoritySet {
    /// More than half of `n`: the default threshold, and the votes a node
    /// needs to be listed.
    pub fn majority_of(n: usize) -> usize {
        n / 2 + 1
    }

    /// The trust nodes and clients of this network configure.
    pub fn trust(&self, addresses: AddressCheck) -> Result<Trust, DirectoryError> {
        let authorities = self
            .authorities
            .iter()
            .map(|k| {
                mtos_crypto::VerifyKey::from_bytes(*k)
                    .map_err(|_| DirectoryError::Signature("an authority key is not ed25519"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Trust {
            network: self.network.clone(),
            authorities,
            threshold: self.threshold,
            addresses,
        })
    }
}
