//! `mtos net check`: asks every configured authority for its document and
//! the votes it was computed from, recomputes each document from its
//! votes by the consensus rule, then asks gateways for the document they
//! installed, and reports any split view: two documents for the same
//! round, from authorities or gateways (`specs/directory.md` §4, §6). It
//! trusts no one authority: a document is judged by its signatures and by
//! the votes it names.

use std::time::Duration;

use futures::StreamExt;
use mtos_mixnode::directory::{NetworkDocument, Role, Vote, compute_consensus, document_signers};
use mtos_net::{self as net, DIR_GET_DOCUMENT, DIR_GET_DOCUMENT_VOTES, NetError, NodeEntryExt};

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

/// Who was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A configured authority.
    Authority,
    /// A gateway listed in an authority's document: it serves the
    /// document it installed, and no votes.
    Gateway,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Who answered.
    pub source: Source,
    /// The authority's or the gateway's key.
    pub key: [u8; 32],
    /// What it served.
    pub served: Served,
}

/// Gateways asked at most (a sample when more are listed).
pub const MAX_GATEWAYS: usize = 8;

/// What `mtos net check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Signatures a document needs.
    pub threshold: usize,
    /// Each authority's answer, in configured order, then the gateways'.
    pub views: Vec<View>,
}

impl Report {
    /// Pairs (of authorities or gateways) serving different documents for
    /// one round.
    pub fn splits(&self) -> Vec<([u8; 32], [u8; 32])> {
        // (who, (epoch, round), digest)
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
            let who = format!(
                "{} {}",
                match v.source {
                    Source::Authority => "authority",
                    Source::Gateway => "gateway",
                },
                &hex(&v.key)[..16]
            );
            let line = match &v.served {
                Served::Unreachable(why) => format!("{who}: unreachable ({why})"),
                Served::Refused(why) => format!("{who}: its document is refused: {why}"),
                Served::Document {
                    epoch,
                    serial,
                    digest,
                    signers,
                    audit,
                } => format!(
                    "{who}: epoch {epoch} round {serial}, document {}, {signers} signatures ({} needed); {}",
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
                "SPLIT VIEW: {} and {} serve different documents for the same round\n",
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

/// Asks every authority of `config`, then up to [`MAX_GATEWAYS`] of the
/// gateways the newest valid document lists.
pub async fn check(config: &NetworkConfig, timeout: Duration) -> Result<Report, ClientError> {
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = net::build_swarm(keypair, 64).map_err(|e| NetError::Link(e.to_string()))?;
    for a in &config.authorities {
        swarm.add_peer_address(a.peer, a.addr.clone());
    }
    let control = swarm.behaviour().stream.new_control();
    // Gateways' addresses are learnt from the documents, after the swarm
    // runs: they reach it through this channel.
    type Learnt = (
        libp2p::PeerId,
        Vec<libp2p::Multiaddr>,
        tokio::sync::oneshot::Sender<()>,
    );
    let (addresses, mut learnt) = tokio::sync::mpsc::unbounded_channel::<Learnt>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                Some((peer, addrs, added)) = learnt.recv() => {
                    for a in addrs {
                        swarm.add_peer_address(peer, a);
                    }
                    let _ = added.send(());
                }
            }
        }
    });
    let trust = config.trust()?;
    let keys: Vec<[u8; 32]> = config.authorities.iter().map(|a| a.key).collect();
    // One after another: each answer is judged alone.
    let mut views = Vec::new();
    let mut newest: Option<NetworkDocument> = None;
    for a in &config.authorities {
        let mut control = control.clone();
        let (served, doc) = ask(&mut control, a.peer, &trust, &keys, timeout).await;
        let served = match (served, &doc) {
            (
                Served::Document {
                    epoch,
                    serial,
                    digest,
                    signers,
                    ..
                },
                Some(doc),
            ) => Served::Document {
                epoch,
                serial,
                digest,
                signers,
                audit: audit(&mut control, a.peer, doc, &config.network, &keys, timeout).await,
            },
            (other, _) => other,
        };
        if let Some(doc) = doc
            && newest
                .as_ref()
                .is_none_or(|n| (n.epoch, n.serial) < (doc.epoch, doc.serial))
        {
            newest = Some(doc);
        }
        views.push(View {
            source: Source::Authority,
            key: a.key,
            served,
        });
    }
    let mut gateways: Vec<&mtos_mixnode::directory::NodeEntry> = newest
        .iter()
        .flat_map(|d| d.nodes.iter())
        .filter(|n| n.role == Role::Gateway)
        .collect();
    if gateways.len() > MAX_GATEWAYS {
        use rand::seq::SliceRandom;
        gateways.shuffle(&mut rand::rng());
        gateways.truncate(MAX_GATEWAYS);
    }
    for g in gateways {
        let Ok(peer) = g.peer() else { continue };
        // Known to the swarm before the stream is opened.
        let (added, known) = tokio::sync::oneshot::channel();
        let _ = addresses.send((peer, g.multiaddrs(), added));
        let _ = known.await;
        let mut control = control.clone();
        let (served, _) = ask(&mut control, peer, &trust, &keys, timeout).await;
        // A gateway serves no votes: its document is checked when an
        // authority served the same one, and its votes gave it.
        let served = match served {
            Served::Document {
                epoch,
                serial,
                digest,
                signers,
                ..
            } => {
                let audited = views.iter().any(|v| {
                    matches!(
                        &v.served,
                        Served::Document { digest: d, audit: Audit::Matches, .. } if *d == digest
                    )
                });
                Served::Document {
                    epoch,
                    serial,
                    digest,
                    signers,
                    audit: if audited {
                        Audit::Matches
                    } else {
                        Audit::Unchecked(
                            "no authority asked served this document (an older or newer round)"
                                .into(),
                        )
                    },
                }
            }
            other => other,
        };
        views.push(View {
            source: Source::Gateway,
            key: g.key,
            served,
        });
    }
    task.abort();
    Ok(Report {
        threshold: config.threshold,
        views,
    })
}

/// Asks `peer` for its document and verifies it; the audit is left
/// unchecked (the caller recomputes it where votes can be had).
async fn ask(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    trust: &mtos_mixnode::directory::Trust,
    keys: &[[u8; 32]],
    timeout: Duration,
) -> (Served, Option<NetworkDocument>) {
    match net::directory_request(control, peer, DIR_GET_DOCUMENT, &[], timeout).await {
        Err(e) => (Served::Unreachable(e.to_string()), None),
        Ok(bytes) => match NetworkDocument::verify(&bytes, trust, net::unix_now()) {
            Err(e) => (Served::Refused(e.to_string()), None),
            Ok(doc) => {
                let (digest, signers) =
                    document_signers(&bytes, keys).unwrap_or(([0; 32], Vec::new()));
                (
                    Served::Document {
                        epoch: doc.epoch,
                        serial: doc.serial,
                        digest,
                        signers: signers.len(),
                        audit: Audit::Unchecked(String::new()),
                    },
                    Some(doc),
                )
            }
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(source: Source, key: u8, serial: u64, digest: u8, audit: Audit) -> View {
        View {
            source,
            key: [key; 32],
            served: Served::Document {
                epoch: 3,
                serial,
                digest: [digest; 32],
                signers: 2,
                audit,
            },
        }
    }

    #[test]
    fn a_gateway_given_another_document_for_a_round_is_a_split_view() {
        let mut report = Report {
            threshold: 2,
            views: vec![
                doc(Source::Authority, 1, 10, 7, Audit::Matches),
                doc(Source::Authority, 2, 10, 7, Audit::Matches),
                // Behind by a round: not a split.
                doc(Source::Gateway, 3, 9, 6, Audit::Unchecked(String::new())),
                View {
                    source: Source::Gateway,
                    key: [4; 32],
                    served: Served::Unreachable("timeout".into()),
                },
            ],
        };
        assert!(report.sound(), "{}", report.text());
        assert!(report.text().contains("gateway 0303"));
        // A gateway holding a second valid document for round 10: the
        // authorities showed the network two views.
        report.views.push(doc(
            Source::Gateway,
            5,
            10,
            8,
            Audit::Unchecked(String::new()),
        ));
        assert!(!report.sound());
        assert_eq!(
            report.splits(),
            vec![([1; 32], [5; 32]), ([2; 32], [5; 32])]
        );
        assert!(report.text().contains("SPLIT VIEW"), "{}", report.text());
    }
}
