//! `mtos net check`: asks every configured authority for its document and
//! the votes it was computed from, recomputes each document from its
//! votes by the consensus rule, and reports any split view: two
//! authorities serving different documents for the same round
//! (`specs/directory.md` §6). It trusts no one authority: a document is
//! judged by its signatures and by the votes it names.

use std::time::Duration;

use futures::StreamExt;
use mtos_mixnode::directory::{NetworkDocument, Vote, compute_consensus, document_signers};
use mtos_net::{self as net, DIR_GET_DOCUMENT, DIR_GET_DOCUMENT_VOTES, NetError};

use crate::ClientError;
use crate::mixnet::NetworkConfig;

/// What one authority served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// No answer.
    Unreachable(String),
    /// A document that does not verify (too few signatures, expired, …).
    Refused(String),
    /// A valid document.
    Document {
        /// Its epoch.
        epoch: u32,
        /// Its round.
        serial: u64,
        /// SHA-256 of its body.
        digest: [u8; 32],
        /// Configured authorities whose signatures verify.
        signers: usize,
        /// Whether the document is what the votes it names give.
        audit: Audit,
    },
}

/// A document recomputed from its votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audit {
    /// The rule gives the same document.
    Matches,
    /// The rule gives another document: the signers did not follow it.
    Differs,
    /// The votes could not be had or checked.
    Unchecked(String),
}

/// One authority's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The authority's key.
    pub key: [u8; 32],
    /// What it served.
    pub served: Served,
}

/// What `mtos net check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Signatures a document needs.
    pub threshold: usize,
    /// Each authority's answer, in configured order.
    pub views: Vec<View>,
}

impl Report {
    /// Pairs of authorities serving different documents for one round.
    pub fn splits(&self) -> Vec<([u8; 32], [u8; 32])> {
        // (authority, (epoch, round), digest)
        type Held<'a> = (&'a [u8; 32], (u32, u64), [u8; 32]);
        let docs: Vec<Held> = self
            .views
            .iter()
            .filter_map(|v| match &v.served {
                Served::Document {
                    epoch,
                    serial,
                    digest,
                    ..
                } => Some((&v.key, (*epoch, *serial), *digest)),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for (i, a) in docs.iter().enumerate() {
            for b in &docs[i + 1..] {
                if a.1 == b.1 && a.2 != b.2 {
                    out.push((*a.0, *b.0));
                }
            }
        }
        out
    }

    /// Whether the network is sound as far as this check sees: no split,
    /// no document its votes contradict, and at least one valid document.
    pub fn sound(&self) -> bool {
        self.splits().is_empty()
            && self
                .views
                .iter()
                .any(|v| matches!(v.served, Served::Document { .. }))
            && !self.views.iter().any(|v| {
                matches!(
                    v.served,
                    Served::Document {
                        audit: Audit::Differs,
                        ..
                    }
                )
            })
    }

    /// The report as lines a person reads.
    pub fn text(&self) -> String {
        let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
        let mut out = String::new();
        for v in &self.views {
            let who = &hex(&v.key)[..16];
            let line = match &v.served {
                Served::Unreachable(why) => format!("authority {who}: unreachable ({why})"),
                Served::Refused(why) => format!("authority {who}: its document is refused: {why}"),
                Served::Document {
                    epoch,
                    serial,
                    digest,
                    signers,
                    audit,
                } => format!(
                    "authority {who}: epoch {epoch} round {serial}, document {}, {signers} signatures ({} needed); {}",
                    &hex(digest)[..16],
                    self.threshold,
                    match audit {
                        Audit::Matches => "recomputed from its votes: the same".to_owned(),
                        Audit::Differs =>
                            "recomputed from its votes: DIFFERENT (its signers broke the rule)"
                                .to_owned(),
                        Audit::Unchecked(why) => format!("not recomputed ({why})"),
                    }
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        for (a, b) in self.splits() {
            out.push_str(&format!(
                "SPLIT VIEW: authorities {} and {} serve different documents for the same round\n",
                &hex(&a)[..16],
                &hex(&b)[..16]
            ));
        }
        out.push_str(if self.sound() {
            "no split view\n"
        } else {
            "the network's directory is NOT sound from here\n"
        });
        out
    }
}

/// Asks every authority of `config`.
pub async fn check(config: &NetworkConfig, timeout: Duration) -> Result<Report, ClientError> {
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = net::build_swarm(keypair, 64).map_err(|e| NetError::Link(e.to_string()))?;
    for a in &config.authorities {
        swarm.add_peer_address(a.peer, a.addr.clone());
    }
    let control = swarm.behaviour().stream.new_control();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let trust = config.trust()?;
    let keys: Vec<[u8; 32]> = config.authorities.iter().map(|a| a.key).collect();
    // One authority after another: each answer is judged alone.
    let mut views = Vec::new();
    for a in &config.authorities {
        let mut control = control.clone();
        let trust = &trust;
        let keys = &keys;
        let network = &config.network;
        let view = async {
            let served =
                match net::directory_request(&mut control, a.peer, DIR_GET_DOCUMENT, &[], timeout)
                    .await
                {
                    Err(e) => Served::Unreachable(e.to_string()),
                    Ok(bytes) => match NetworkDocument::verify(&bytes, trust, net::unix_now()) {
                        Err(e) => Served::Refused(e.to_string()),
                        Ok(doc) => {
                            let (digest, signers) =
                                document_signers(&bytes, keys).unwrap_or(([0; 32], Vec::new()));
                            let audit =
                                audit(&mut control, a.peer, &doc, network, keys, timeout).await;
                            Served::Document {
                                epoch: doc.epoch,
                                serial: doc.serial,
                                digest,
                                signers: signers.len(),
                                audit,
                            }
                        }
                    },
                };
            View { key: a.key, served }
        }
        .await;
        views.push(view);
    }
    task.abort();
    Ok(Report {
        threshold: config.threshold,
        views,
    })
}

async fn audit(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    doc: &NetworkDocument,
    network: &str,
    keys: &[[u8; 32]],
    timeout: Duration,
) -> Audit {
    let bytes =
        match net::directory_request(control, peer, DIR_GET_DOCUMENT_VOTES, &[], timeout).await {
            Ok(b) => b,
            Err(e) => return Audit::Unchecked(e.to_string()),
        };
    let Some(signed) = net::decode_votes(&bytes) else {
        return Audit::Unchecked("a malformed answer".into());
    };
    let mut votes = Vec::new();
    for v in &signed {
        match Vote::verify(v, network, keys, net::check_multiaddr) {
            Ok(pair) => votes.push(pair),
            Err(e) => return Audit::Unchecked(format!("a vote does not verify: {e}")),
        }
    }
    match compute_consensus(
        network,
        keys,
        doc.epoch,
        doc.serial,
        &votes,
        net::check_multiaddr,
    ) {
        Ok(recomputed) if recomputed == *doc => Audit::Matches,
        Ok(_) => Audit::Differs,
        Err(e) => Audit::Unchecked(format!("its votes give no document: {e}")),
    }
}
