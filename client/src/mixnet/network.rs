//! Which network a session joins (the authority, its key, the network
//! id) and the document fetch.

use super::*;

/// How to reach and trust a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The network id.
    pub network: String,
    /// Its directory authorities (1 to 16).
    pub authorities: Vec<AuthorityAddr>,
    /// Authority signatures a document needs: more than half of them
    /// unless set higher.
    pub threshold: usize,
}

impl NetworkConfig {
    /// From its text form: the network id, each authority's key (64 hex
    /// digits) and multiaddr, and the threshold (0: more than half);
    /// errors name `what` (the file) and the field.
    pub fn parse(
        network: &str,
        authorities: &[(String, String)],
        threshold: usize,
        what: &str,
    ) -> Result<Self, ClientError> {
        let bad = |field: &str, why: String| {
            ClientError::from(NetError::Config(format!("{what}: {field}: {why}")))
        };
        if network.trim().is_empty() || network.len() > 64 {
            return Err(bad("network", "must be 1 to 64 characters".into()));
        }
        let n = authorities.len();
        if !(1..=mtos_mixnode::directory::MAX_SIGNATURES).contains(&n) {
            return Err(bad("authorities", "1 to 16 authorities".into()));
        }
        let mut parsed: Vec<AuthorityAddr> = Vec::with_capacity(n);
        for (i, (key, addr)) in authorities.iter().enumerate() {
            let a = AuthorityAddr::parse(key, addr)
                .map_err(|e| bad(&format!("authorities[{i}]"), e))?;
            if parsed.iter().any(|p| p.key == a.key) {
                return Err(bad(&format!("authorities[{i}]"), "listed twice".into()));
            }
            parsed.push(a);
        }
        let threshold = match threshold {
            0 => mtos_mixnode::directory::AuthoritySet::majority_of(n),
            t if n / 2 < t && t <= n => t,
            _ => {
                return Err(bad(
                    "threshold",
                    format!("must be more than half of the {n} authorities and at most {n}"),
                ));
            }
        };
        Ok(Self {
            network: network.trim().to_owned(),
            authorities: parsed,
            threshold,
        })
    }

    /// One authority, signing alone.
    pub fn single(network: &str, key: [u8; 32], addr: Multiaddr) -> Result<Self, ClientError> {
        Self::parse(
            network,
            &[(data_encoding::HEXLOWER.encode(&key), addr.to_string())],
            1,
            "network",
        )
    }

    /// The authorities as text pairs (key hex, address), as files hold them.
    pub fn authority_pairs(&self) -> Vec<(String, String)> {
        self.authorities
            .iter()
            .map(|a| (data_encoding::HEXLOWER.encode(&a.key), a.addr.to_string()))
            .collect()
    }

    /// The trust documents of this network are verified with.
    pub(crate) fn trust(&self) -> Result<Trust, ClientError> {
        let keys = self
            .authorities
            .iter()
            .map(|a| {
                VerifyKey::from_bytes(a.key)
                    .map_err(|_| NetError::Config("an authority key is not an ed25519 key".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust {
            network: self.network.clone(),
            authorities: keys,
            threshold: self.threshold,
            addresses: mtos_net::check_multiaddr,
        })
    }
}

/// The document from the authorities in turn, starting at a random one.
pub(super) async fn fetch(
    control: &mut libp2p_stream::Control,
    authorities: &[AuthorityAddr],
    trust: &Trust,
) -> Result<NetworkDocument, ClientError> {
    let start = rand::random_range(0..authorities.len().max(1));
    mtos_net::fetch_document_any(control, authorities, trust, start)
        .await
        .map(|(doc, _, _)| doc)
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
    /// The ticket to ask the gateway for bulk windows under (`client.md`
    /// §4.1): `None` draws one (from the schedule's seed when one is
    /// given); [`Ticket::NONE`](mtos_mixnode::directory::Ticket::NONE)
    /// asks for none. A screen keeps its own, so its windows come round
    /// at the same times.
    pub ticket: Option<mtos_mixnode::directory::Ticket>,
}
