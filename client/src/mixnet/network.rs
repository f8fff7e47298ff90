//! Which network a session joins (the authority, its key, the network
//! id) and the document fetch.

use super::*;

/// How to reach and trust a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The network id.
    pub network: String,
    /// The authority's ed25519 key.
    pub authority_key: [u8; 32],
    /// The authority's libp2p address.
    pub authority_addr: Multiaddr,
}

impl NetworkConfig {
    /// From its text form: the network id, the authority's key (64 hex
    /// digits) and its multiaddr; errors name `what` (the file) and the
    /// field.
    pub fn parse(
        network: &str,
        authority_key: &str,
        authority_addr: &str,
        what: &str,
    ) -> Result<Self, ClientError> {
        let bad = |field: &str, why: String| {
            ClientError::from(NetError::Config(format!("{what}: {field}: {why}")))
        };
        if network.trim().is_empty() || network.len() > 64 {
            return Err(bad("network", "must be 1 to 64 characters".into()));
        }
        let authority_key = data_encoding::HEXLOWER_PERMISSIVE
            .decode(authority_key.trim().as_bytes())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .filter(|k| VerifyKey::from_bytes(*k).is_ok())
            .ok_or_else(|| {
                bad(
                    "authority_key",
                    "must be an ed25519 key, 64 hex digits".into(),
                )
            })?;
        let authority_addr = authority_addr
            .trim()
            .parse()
            .map_err(|e| bad("authority_addr", format!("not a multiaddr: {e}")))?;
        Ok(Self {
            network: network.trim().to_owned(),
            authority_key,
            authority_addr,
        })
    }

    pub(super) fn trust(&self) -> Result<Trust, ClientError> {
        let key = VerifyKey::from_bytes(self.authority_key)
            .map_err(|_| NetError::Config("the authority key is not an ed25519 key".into()))?;
        Ok(Trust {
            network: self.network.clone(),
            authorities: vec![key],
            threshold: 1,
            addresses: mtos_net::check_multiaddr,
        })
    }
}

pub(super) async fn fetch(
    control: &mut libp2p_stream::Control,
    authority: PeerId,
    trust: &Trust,
) -> Result<NetworkDocument, ClientError> {
    mtos_net::fetch_document(control, authority, trust)
        .await
        .map_err(ClientError::from)
}

/// How a session is opened ([`super::Session::connect_with`]).
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The gateway to use while the document lists it (a screen keeps one
    /// as Tor keeps its guards); `None` or unlisted: one drawn at random.
    pub gateway: Option<[u8; 32]>,
    /// The seed of the cover schedule's own generator: `None` draws one.
    /// Given, the instants of every send follow from it alone (tests
    /// check the schedule against it); a seed used twice would make two
    /// sessions' gaps the same sequence, which links them.
    pub schedule_seed: Option<[u8; 32]>,
}
