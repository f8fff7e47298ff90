//! The authority's driver: serves `/mtos/dir/1` (descriptors in;
//! documents, votes and proposals out), and `/mtos/dir-authority/1` to
//! the other authorities alone, and moves the voting rounds of
//! `mtos_mixnode::directory::Voting` on, fetching the other authorities'
//! votes and signatures (`specs/directory.md` §6.1). The rounds, the rule
//! and the bookkeeping are the core's; this file only moves bytes, keeps
//! time and saves state.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use mtos_crypto::Identity;
use mtos_mixnode::directory::{Authority, RoundId, VoteAdded, Voting, VotingState};
use mtos_net::{
    self as net, AUTHORITY_PROTOCOL, DIR_ERROR, DIR_GET_DOCUMENT, DIR_GET_DOCUMENT_VOTES,
    DIR_GET_PROPOSAL, DIR_GET_VOTES, DIR_OK, DIR_PROTOCOL, DIR_PUT_DESCRIPTOR, NetError,
    libp2p_keypair, peer_id_of, unix_now,
};
use rand::SeedableRng;

use super::{Approvals, AuthorityConfig, DOCUMENT_FILE, KEY_FILE, STATE_FILE, parse_key};
use crate::gate;
use crate::{NodeError, load_identity, write_atomically};

/// A request must be read within this (a peer that opens streams and
/// sends nothing holds a permit no longer).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// And answered within this.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

type Shared = Arc<Mutex<Voting>>;

fn now_ms() -> u64 {
    mtos_net::unix_now_ms()
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// Serves the directory and votes until `shutdown` resolves.
pub async fn run(
    config: AuthorityConfig,
    base: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let identity = Arc::new(load_identity(&base.join(&config.keys).join(KEY_FILE))?);
    let me = *identity.verify_key().as_bytes();
    let set = config.authority_set(me)?;
    let mut peers: Vec<([u8; 32], PeerId)> = Vec::new();
    let mut addresses: Vec<(PeerId, Multiaddr)> = Vec::new();
    for p in &config.peers {
        let key = parse_key(&p.key).ok_or_else(|| NodeError::Config("peers: not a key".into()))?;
        let peer = peer_id_of(&key).map_err(|e| NodeError::Config(format!("peers: {e}")))?;
        let addr: Multiaddr = p
            .addr
            .parse()
            .map_err(|e| NodeError::Config(format!("peers: {e}")))?;
        addresses.push((peer, addr));
        peers.push((key, peer));
    }
    let peer_ids: std::collections::HashSet<PeerId> = peers.iter().map(|(_, p)| *p).collect();
    // The other authorities' requests come on a protocol of their own,
    // which only they can open (`specs/directory.md` §4).
    let mut swarm = net::build_gated_swarm(libp2p_keypair(&identity), 4_096, peer_ids.clone())?;
    let listen: Multiaddr = config
        .listen
        .parse()
        .map_err(|e| NodeError::Config(format!("listen: {e}")))?;
    swarm.listen_on(listen).map_err(|e| NodeError::Listen {
        field: "listen",
        addr: config.listen.clone(),
        reason: crate::listen_reason(&e),
    })?;
    for (peer, addr) in addresses {
        swarm.add_peer_address(peer, addr);
        // A stranger filling the connection table must not keep the
        // authorities from reconnecting to one another.
        swarm.behaviour_mut().limits.bypass_peer_id(&peer);
    }
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control
        .accept(DIR_PROTOCOL)
        .map_err(|_| NodeError::Config("directory protocol registered twice".into()))?;
    let mut authority_control = swarm.behaviour().gated.new_control();
    let from_authorities = authority_control
        .accept(AUTHORITY_PROTOCOL)
        .map_err(|_| NodeError::Config("authority protocol registered twice".into()))?;

    let state = load_state(base)?;
    let mut authority = Authority::new(config.params());
    let approvals = Approvals::load(base)?;
    authority.set_admission(config.admission(&approvals));
    let mut voting = Voting::new(set.clone(), me, authority, state, mtos_net::check_multiaddr);
    match std::fs::read(base.join(DOCUMENT_FILE)) {
        Ok(bytes) => match voting.restore_document(&bytes, unix_now()) {
            Ok(()) => tracing::info!("serving the last agreed document until a new one"),
            Err(e) => tracing::info!(error = %e, "the saved document is not served"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(NodeError::Io {
                path: base.join(DOCUMENT_FILE),
                source,
            });
        }
    }
    tracing::info!(
        peer = %swarm.local_peer_id(),
        key = %hex(&me),
        network = %config.network,
        authorities = set.authorities.len(),
        threshold = set.threshold,
        admission = ?config.admission,
        "mtos authority starting"
    );
    let shared: Shared = Arc::new(Mutex::new(voting));
    let gate = gate::Gate::new(peer_ids);
    let rounds = tokio::spawn(vote_loop(VoteLoop {
        gate: gate.clone(),
        shared: shared.clone(),
        identity: identity.clone(),
        control: authority_control,
        fallback: control.clone(),
        peers,
        config: config.clone(),
        base: base.to_owned(),
    }));
    // Their intake is drained by a task of its own, so that a busy swarm
    // loop does not leave one of their streams waiting in libp2p-stream's
    // one-place queue, where the next would be dropped (two arriving at
    // once still can be: the asker tries again a pause later).
    let authority_intake = AbortOnDrop(vec![tokio::spawn(serve_authorities(
        from_authorities,
        gate.clone(),
        shared.clone(),
    ))]);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = swarm.select_next_some() => {
                if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } = event {
                    tracing::info!(%address, "listening");
                }
            }
            Some((peer, stream)) = incoming.next() => {
                // Beyond the limits the stream is dropped; nodes retry.
                if let Some(permit) = gate.admit(peer) {
                    tokio::spawn(serve_request(stream, shared.clone(), permit));
                }
            }
        }
    }
    rounds.abort();
    drop(authority_intake);
    tracing::info!("mtos authority stopped");
    Ok(())
}

/// Serves the other authorities' requests as they arrive on
/// [`AUTHORITY_PROTOCOL`] (only they can open it), from their own pool.
async fn serve_authorities(
    mut streams: libp2p_stream::IncomingStreams,
    gate: Arc<gate::Gate>,
    shared: Shared,
) {
    while let Some((peer, stream)) = streams.next().await {
        if let Some(permit) = gate.admit(peer) {
            tokio::spawn(serve_request(stream, shared.clone(), permit));
        }
    }
}

fn load_state(base: &Path) -> Result<VotingState, NodeError> {
    let path = base.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VotingState::default()),
        Err(source) => Err(NodeError::Io { path, source }),
    }
}

struct VoteLoop {
    gate: Arc<gate::Gate>,
    shared: Shared,
    identity: Arc<Identity>,
    /// The gated control, for `/mtos/dir-authority/1`.
    control: libp2p_stream::Control,
    /// The ordinary one, for an authority that does not serve it to us.
    fallback: libp2p_stream::Control,
    peers: Vec<([u8; 32], PeerId)>,
    config: AuthorityConfig,
    base: std::path::PathBuf,
}

/// Ticks the rounds, and runs one task per other authority that asks it
/// for its votes (all of them, every time, while the voting phase lasts:
/// votes are relayed so an authority showing different votes to different
/// peers is caught) and then for its signatures. Each peer is asked on
/// its own: a silent or slow one delays no tick and no other peer.
async fn vote_loop(l: VoteLoop) {
    let l = Arc::new(l);
    let pause = pause_of(&l.config);
    let peers: Vec<_> = l
        .peers
        .iter()
        .map(|&(key, peer)| tokio::spawn(peer_loop(l.clone(), key, peer)))
        .collect();
    let _stop_peers = AbortOnDrop(peers);
    let mut target: Option<RoundId> = None;
    let mut gaps = 0u64;
    let mut reported: Option<(u32, u64)> = None;
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    loop {
        let new_round = {
            let Ok(mut v) = l.shared.lock() else {
                tracing::error!("the voting state is poisoned; the authority stops voting");
                return;
            };
            v.tick(now_ms(), &l.identity, &mut rng);
            v.target() != target
        };
        if new_round {
            target = on_new_round(&l, &mut gaps, &mut reported);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Aborts the tasks when dropped (the vote loop is aborted at shutdown).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// How often the rounds tick and peers are asked: an eighth of a round,
/// 250 ms to 2 s.
fn pause_of(config: &AuthorityConfig) -> Duration {
    let round_ms = config.epochs.round_secs.max(1) * 1000;
    Duration::from_millis((round_ms / 8).clamp(250, 2_000))
}

/// Asks one other authority, again and again, for what the current phase
/// needs from it. No request outlives the phase it serves (at least
/// 200 ms).
async fn peer_loop(l: Arc<VoteLoop>, key: [u8; 32], peer: PeerId) {
    let pause = pause_of(&l.config);
    loop {
        let now = now_ms();
        let (voting, wants_signature) = match l.shared.lock() {
            Ok(v) => (v.voting(now), v.missing_signatures().contains(&key)),
            Err(_) => return,
        };
        let (_, _, start, end) = l.config.epochs.round_at(now);
        let phase_end = if voting {
            start + (end - start) / 2
        } else {
            end
        };
        let wait = Duration::from_millis(phase_end.saturating_sub(now).clamp(200, 10_000));
        if voting {
            if let Some(answer) = ask(
                l.control.clone(),
                l.fallback.clone(),
                peer,
                DIR_GET_VOTES,
                wait,
            )
            .await
                && let Some(votes) = net::decode_votes(&answer)
            {
                let Ok(mut v) = l.shared.lock() else { return };
                for vote in votes {
                    if let Ok(VoteAdded::Equivocation(who)) = v.add_vote(&vote) {
                        tracing::warn!(
                            authority = %hex(&who),
                            "an authority sent two different votes for one round: \
                             neither counts (the pair is served as evidence)"
                        );
                    }
                }
            }
        } else if wants_signature
            && let Some(answer) = ask(
                l.control.clone(),
                l.fallback.clone(),
                peer,
                DIR_GET_PROPOSAL,
                wait,
            )
            .await
        {
            let Ok(mut v) = l.shared.lock() else { return };
            if let Err(e) = v.add_signatures(&answer) {
                tracing::debug!(error = %e, "a proposal was not taken");
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// At a new round: saves what must survive a restart, reports a round that
/// made no document, and re-reads the approvals.
fn on_new_round(
    l: &VoteLoop,
    gaps: &mut u64,
    reported: &mut Option<(u32, u64)>,
) -> Option<RoundId> {
    let approvals = Approvals::load(&l.base);
    let Ok(mut v) = l.shared.lock() else {
        return None;
    };
    match approvals {
        Ok(a) => v.authority_mut().set_admission(l.config.admission(&a)),
        Err(e) => tracing::warn!(error = %e, "approvals not re-read; the last ones stay"),
    }
    l.gate.set_nodes(
        v.authority_mut()
            .node_keys()
            .iter()
            .filter_map(|k| peer_id_of(k).ok())
            .collect(),
    );
    if v.gaps > *gaps {
        *gaps = v.gaps;
        tracing::warn!(
            failed_rounds = v.gaps,
            why = v.last_gap.as_deref().unwrap_or(""),
            "a round made no document; the last agreed one stays until it expires"
        );
    }
    if let Ok(state) = serde_json::to_vec(&v.state())
        && let Err(e) = write_atomically(&l.base.join(STATE_FILE), &state)
    {
        tracing::warn!(error = %e, "cannot save the authority's state");
    }
    if let Some(doc) = v.document(unix_now()) {
        let doc = doc.to_vec();
        if let Some(current) = v.current() {
            tracing::info!(
                epoch = current.epoch,
                serial = current.serial,
                nodes = current.nodes.len(),
                "document agreed"
            );
            // Once per document, not once per round it stays.
            let fresh = *reported != Some((current.epoch, current.serial));
            *reported = Some((current.epoch, current.serial));
            for who in current.consensus.withheld.iter().filter(|_| fresh) {
                tracing::warn!(
                    authority = %hex(who),
                    epoch = current.epoch,
                    "an authority committed to its secret and its reveal did not count: \
                     the epoch's shared value was made without it (it may have chosen \
                     between two values)"
                );
            }
        }
        if let Err(e) = write_atomically(&l.base.join(DOCUMENT_FILE), &doc) {
            tracing::warn!(error = %e, "cannot save the document");
        }
    }
    v.target()
}

/// One request to another authority on their own protocol; `None`
/// (logged at debug) if it failed. An authority that does not serve it
/// to us (an older version, or one whose list of authorities lacks us)
/// is asked on `/mtos/dir/1` instead, as anyone may ask it.
async fn ask(
    mut control: libp2p_stream::Control,
    mut fallback: libp2p_stream::Control,
    peer: PeerId,
    kind: u8,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let started = tokio::time::Instant::now();
    let mut result =
        net::directory_request_on(&mut control, AUTHORITY_PROTOCOL, peer, kind, &[], timeout).await;
    if let Err(NetError::Unsupported(_)) = result {
        let left = timeout.saturating_sub(started.elapsed());
        result = net::directory_request(&mut fallback, peer, kind, &[], left).await;
    }
    match result {
        Ok(body) => Some(body),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "an authority did not answer");
            None
        }
    }
}

async fn serve_request(mut stream: libp2p::Stream, shared: Shared, _permit: gate::Permit) {
    let exchange = async {
        let (kind, body) = tokio::time::timeout(
            REQUEST_DEADLINE,
            net::read_message(&mut stream, net::MAX_DIR_REQUEST),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let answer = match shared.lock() {
            Err(_) => Err("authority state poisoned".to_owned()),
            Ok(mut v) => match kind {
                DIR_PUT_DESCRIPTOR => v
                    .authority_mut()
                    .accept_descriptor(&body, unix_now())
                    .map(|()| Vec::new())
                    .map_err(|e| {
                        tracing::info!(error = %e, "descriptor refused");
                        e.to_string()
                    }),
                DIR_GET_DOCUMENT => v.document(unix_now()).map(<[u8]>::to_vec).ok_or_else(|| {
                    "no agreed network document: none yet, or the last expired and too \
                         few authorities have agreed since"
                        .to_owned()
                }),
                DIR_GET_VOTES => Ok(net::encode_votes(&fit(v.votes()))),
                DIR_GET_DOCUMENT_VOTES => Ok(net::encode_votes(&fit(v.document_votes().to_vec()))),
                DIR_GET_PROPOSAL => v
                    .proposal()
                    .ok_or_else(|| "no consensus computed yet in this round".to_owned()),
                other => Err(format!("unknown request {other}")),
            },
        };
        let (status, reply) = match answer {
            Ok(body) => (DIR_OK, body),
            Err(why) => (DIR_ERROR, why.into_bytes()),
        };
        net::write_message(&mut stream, status, &reply).await?;
        stream.close().await
    };
    let _ = tokio::time::timeout(ANSWER_DEADLINE, exchange).await;
}

/// As many votes as one answer holds (the authority's own first).
fn fit(votes: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut total = 2;
    votes
        .into_iter()
        .take_while(|v| {
            total += 4 + v.len();
            total <= net::MAX_DIR_MESSAGE
        })
        .collect()
}
