//! One authority's part in the vote (`specs/directory.md` §6.1), sans-IO:
//! time is divided into rounds; in each, the authority casts its vote for
//! the next round's document, gathers the other authorities' votes
//! (voting phase, the round's first half), computes the consensus and
//! signs it, then gathers the others' signatures on the same bytes
//! (signing phase). When the next round starts, a document signed by at
//! least `t` authorities takes over; otherwise the one before stays (it is
//! valid until its epoch's grace ends) and the gap is counted. The driver
//! (`mtos-node authority run`) moves the bytes and calls [`Voting::tick`].

use std::collections::{BTreeMap, BTreeSet};

use mtos_crypto::Identity;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::consensus::SharedRandom;
use super::signed::{document_parts, document_signature_verifies, encode_document, sign_document};
use super::vote::{Commit, RandomVote, Vote, commit_digest, vote_digest};
use super::*;

/// A round's document: its epoch and serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoundId {
    /// The epoch.
    pub epoch: u32,
    /// The round in that epoch.
    pub serial: u64,
}

/// Where a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Gathering votes.
    Voting,
    /// Gathering signatures on the consensus.
    Signing,
}

/// What an authority keeps across restarts (its driver writes it,
/// owner-only: until an epoch's reveal, its secret must stay secret; its
/// `Debug` leaves the secrets out).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingState {
    /// Its secrets for the shared random value, by epoch (hex).
    #[serde(default)]
    pub secrets: BTreeMap<u32, String>,
    /// What it remembers of listed nodes, by key (hex).
    #[serde(default)]
    pub registry: BTreeMap<String, Registered>,
    /// Shared random values of recent epochs, from agreed documents.
    #[serde(default)]
    pub randoms: BTreeMap<u32, SharedRandom>,
    /// Commitments to recent epochs' secrets, from agreed documents.
    #[serde(default)]
    pub commits: BTreeMap<u32, Vec<Commit>>,
}

impl std::fmt::Debug for VotingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VotingState")
            .field("secrets", &self.secrets.len())
            .field("registry", &self.registry.len())
            .field("randoms", &self.randoms)
            .field("commits", &self.commits)
            .finish()
    }
}

/// Why a vote or signature was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VotingError {
    /// The vote or document does not verify.
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    /// A vote for another round than the one running.
    #[error("a vote for epoch {epoch} round {serial}, not the round running")]
    OtherRound {
        /// Its epoch.
        epoch: u32,
        /// Its round.
        serial: u64,
    },
    /// The signed document is not the consensus this authority computed.
    #[error("the signed document differs from this authority's consensus")]
    OtherDocument,
    /// No consensus computed yet.
    #[error("no consensus computed yet in this round")]
    NoProposal,
}

/// What adding a vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteAdded {
    /// A new vote.
    New,
    /// The vote was already held.
    Known,
    /// A second, different vote by the same authority for the same round:
    /// it counts with neither, and both are kept as evidence.
    Equivocation([u8; 32]),
}

struct Proposal {
    body: Vec<u8>,
    doc: NetworkDocument,
    signatures: BTreeMap<[u8; 32], [u8; 64]>,
}

struct Round {
    target: RoundId,
    sign_at: u64,
    own: Vec<u8>,
    votes: BTreeMap<[u8; 32], (Vec<u8>, Vote, [u8; 32])>,
    equivocators: BTreeSet<[u8; 32]>,
    evidence: Vec<Vec<u8>>,
    proposal: Option<Proposal>,
    failure: Option<ConsensusError>,
}

/// Most conflicting votes kept as evidence per round.
const MAX_EVIDENCE: usize = 2 * MAX_SIGNATURES;

/// One authority's voting state.
pub struct Voting {
    set: AuthoritySet,
    me: [u8; 32],
    addresses: AddressCheck,
    authority: Authority,
    secrets: BTreeMap<u32, [u8; 32]>,
    randoms: BTreeMap<u32, SharedRandom>,
    commits: BTreeMap<u32, Vec<Commit>>,
    round: Option<Round>,
    current: Option<(NetworkDocument, Vec<u8>)>,
    /// The signed votes the current document was computed from.
    current_votes: Vec<Vec<u8>>,
    /// Rounds that ended without a document signed by `t`.
    pub gaps: u64,
    /// Why the last such round failed.
    pub last_gap: Option<String>,
    /// Authorities caught sending two different votes for one round.
    pub equivocations: u64,
}

impl std::fmt::Debug for Voting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets stay out of logs.
        f.debug_struct("Voting")
            .field("me", &short(&self.me))
            .field("gaps", &self.gaps)
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

impl Voting {
    /// The authority `me` of `set`, with its descriptor bookkeeping and the
    /// state it saved.
    pub fn new(
        set: AuthoritySet,
        me: [u8; 32],
        mut authority: Authority,
        state: VotingState,
        addresses: AddressCheck,
    ) -> Self {
        authority.restore_registry(
            state
                .registry
                .iter()
                .filter_map(|(k, r)| Some((unhex32(k)?, *r)))
                .collect(),
        );
        Self {
            set,
            me,
            addresses,
            authority,
            secrets: state
                .secrets
                .iter()
                .filter_map(|(e, s)| Some((*e, unhex32(s)?)))
                .collect(),
            randoms: state.randoms,
            commits: state.commits,
            round: None,
            current: None,
            current_votes: Vec::new(),
            gaps: 0,
            last_gap: None,
            equivocations: 0,
        }
    }

    /// What to save.
    pub fn state(&self) -> VotingState {
        VotingState {
            secrets: self.secrets.iter().map(|(e, s)| (*e, hex(s))).collect(),
            registry: self
                .authority
                .registry()
                .iter()
                .map(|(k, r)| (hex(k), *r))
                .collect(),
            randoms: self.randoms.clone(),
            commits: self.commits.clone(),
        }
    }

    /// The descriptor bookkeeping (descriptors arrive here; admission is
    /// set here).
    pub fn authority_mut(&mut self) -> &mut Authority {
        &mut self.authority
    }

    /// The authority set.
    pub fn set(&self) -> &AuthoritySet {
        &self.set
    }

    /// The round being voted on, if one has started.
    pub fn target(&self) -> Option<RoundId> {
        self.round.as_ref().map(|r| r.target)
    }

    /// Takes a document saved before a restart, if it still verifies at
    /// `now` (Unix seconds): served until a new one is agreed.
    pub fn restore_document(&mut self, bytes: &[u8], now: u64) -> Result<(), DirectoryError> {
        let trust = self.set.trust(self.addresses)?;
        let doc = NetworkDocument::verify(bytes, &trust, now)?;
        self.learn(&doc);
        self.current = Some((doc, bytes.to_vec()));
        Ok(())
    }

    /// Moves the rounds on to `now_ms` (Unix milliseconds): ends a round
    /// whose time is up (its document takes over if `t` signed it), starts
    /// the next with this authority's vote, and computes the consensus
    /// when the voting phase ends or every vote is in.
    pub fn tick(&mut self, now_ms: u64, signer: &Identity, rng: &mut impl Rng) -> Phase {
        let schedule = self.authority.params().schedule;
        let (epoch, index, start, end) = schedule.round_at(now_ms);
        let (te, ts) = schedule.target_of(epoch, index);
        let target = RoundId {
            epoch: te,
            serial: ts,
        };
        if self.round.as_ref().is_none_or(|r| r.target != target) {
            self.finish_round();
            self.start_round(target, start, end, now_ms / 1000, signer, rng);
        }
        let Some(round) = &self.round else {
            return Phase::Voting;
        };
        // Never before half-round, even with every vote in: until then
        // votes are relayed, so an authority that showed different votes
        // to different peers is caught before anyone signs.
        if round.proposal.is_none() && round.failure.is_none() && now_ms >= round.sign_at {
            self.propose(signer);
        }
        match self.round.as_ref() {
            Some(r) if r.proposal.is_some() || r.failure.is_some() => Phase::Signing,
            _ => Phase::Voting,
        }
    }

    fn start_round(
        &mut self,
        target: RoundId,
        start: u64,
        end: u64,
        now: u64,
        signer: &Identity,
        rng: &mut impl Rng,
    ) {
        let next = target.epoch.saturating_add(1);
        let secret = *self.secrets.entry(next).or_insert_with(|| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s
        });
        self.secrets
            .retain(|e, _| e.saturating_add(1) >= target.epoch);
        let keep = |e: &u32| e.saturating_add(4) >= target.epoch;
        self.randoms.retain(|e, _| keep(e));
        self.commits.retain(|e, _| keep(e));
        let random = RandomVote {
            commit: commit_digest(&self.set.network, &self.me, next, &secret),
            reveal: self.secrets.get(&target.epoch).copied(),
            commits: self.commits.get(&target.epoch).cloned().unwrap_or_default(),
            previous: target
                .epoch
                .checked_sub(1)
                .and_then(|e| self.randoms.get(&e))
                .map(|r| r.value),
            current: self.randoms.get(&target.epoch).copied(),
        };
        let vote = self
            .authority
            .vote(target.epoch, target.serial, now, random, self.me);
        let own = vote.sign(signer);
        let digest = vote_digest(&own);
        let mut votes = BTreeMap::new();
        votes.insert(self.me, (own.clone(), vote, digest));
        self.round = Some(Round {
            target,
            sign_at: start + (end - start) / 2,
            own,
            votes,
            equivocators: BTreeSet::new(),
            evidence: Vec::new(),
            proposal: None,
            failure: None,
        });
    }

    fn finish_round(&mut self) {
        let Some(round) = self.round.take() else {
            return;
        };
        let signed = round.proposal.as_ref().map_or(0, |p| p.signatures.len());
        match round.proposal {
            Some(p) if signed >= self.set.threshold.max(1) => {
                self.learn(&p.doc);
                let bytes = encode_document(p.body, p.signatures.into_iter().collect());
                self.current_votes = p
                    .doc
                    .consensus
                    .votes
                    .iter()
                    .filter_map(|r| round.votes.get(&r.authority))
                    .map(|(b, _, _)| b.clone())
                    .collect();
                self.current = Some((p.doc, bytes));
            }
            _ => {
                self.gaps += 1;
                self.last_gap = Some(match round.failure {
                    Some(e) => format!(
                        "epoch {} round {}: {e}",
                        round.target.epoch, round.target.serial
                    ),
                    None => format!(
                        "epoch {} round {}: {signed} of {} signatures needed",
                        round.target.epoch, round.target.serial, self.set.threshold
                    ),
                });
            }
        }
    }

    /// Learns from an agreed document: the registry, the shared random
    /// value, the commitments to the next.
    fn learn(&mut self, doc: &NetworkDocument) {
        self.authority.record(doc);
        // An epoch's value is fixed by the first agreed document that
        // carries it: later rounds cannot move it.
        if let Some(r) = doc.consensus.shared_random {
            self.randoms.entry(doc.epoch).or_insert(r);
        }
        self.commits
            .insert(doc.epoch.saturating_add(1), doc.consensus.commits.clone());
    }

    fn propose(&mut self, signer: &Identity) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let votes: Vec<(Vote, [u8; 32])> = round
            .votes
            .iter()
            .filter(|(k, _)| !round.equivocators.contains(*k))
            .map(|(_, (_, v, d))| (v.clone(), *d))
            .collect();
        match compute_consensus(
            &self.set.network,
            &self.set.authorities,
            round.target.epoch,
            round.target.serial,
            &votes,
            self.addresses,
        ) {
            Ok(doc) => {
                let body = serde_json::to_vec(&doc).unwrap_or_default();
                let sig = sign_document(&body, signer);
                let mut signatures = BTreeMap::new();
                signatures.insert(self.me, sig);
                round.proposal = Some(Proposal {
                    body,
                    doc,
                    signatures,
                });
            }
            Err(e) => round.failure = Some(e),
        }
    }

    /// This authority's vote in the running round.
    pub fn own_vote(&self) -> Option<&[u8]> {
        self.round.as_ref().map(|r| r.own.as_slice())
    }

    /// Every vote held for the running round, this authority's own
    /// first, then the evidence of any authority that sent two, then the
    /// others' (served to anyone and relayed between authorities; an
    /// answer too large for every vote keeps the first ones).
    pub fn votes(&self) -> Vec<Vec<u8>> {
        self.round.as_ref().map_or_else(Vec::new, |r| {
            std::iter::once(r.own.clone())
                .chain(r.evidence.iter().cloned())
                .chain(
                    r.votes
                        .iter()
                        .filter(|(k, _)| **k != self.me)
                        .map(|(_, (b, _, _))| b.clone()),
                )
                .collect()
        })
    }

    /// Whether the running round is still gathering votes.
    pub fn voting(&self, now_ms: u64) -> bool {
        self.round.as_ref().is_some_and(|r| now_ms < r.sign_at)
    }

    /// Authorities whose vote for the running round is missing.
    pub fn missing_votes(&self) -> Vec<[u8; 32]> {
        self.round.as_ref().map_or_else(Vec::new, |r| {
            self.set
                .authorities
                .iter()
                .filter(|a| !r.votes.contains_key(*a) && !r.equivocators.contains(*a))
                .copied()
                .collect()
        })
    }

    /// Takes a signed vote (from its authority, or relayed by another).
    pub fn add_vote(&mut self, bytes: &[u8]) -> Result<VoteAdded, VotingError> {
        // Votes are fetched again and again while they are relayed: a
        // vote already held is known by its digest, without parsing it.
        let digest = vote_digest(bytes);
        if let Some(round) = &self.round
            && (round.votes.values().any(|(_, _, d)| *d == digest)
                || round.evidence.iter().any(|e| vote_digest(e) == digest))
        {
            return Ok(VoteAdded::Known);
        }
        let (vote, digest) = Vote::verify(
            bytes,
            &self.set.network,
            &self.set.authorities,
            self.addresses,
        )?;
        let round = self.round.as_mut().ok_or(VotingError::NoProposal)?;
        if vote.epoch != round.target.epoch || vote.serial != round.target.serial {
            return Err(VotingError::OtherRound {
                epoch: vote.epoch,
                serial: vote.serial,
            });
        }
        let who = vote.authority;
        if round.equivocators.contains(&who) {
            return Ok(VoteAdded::Known);
        }
        match round.votes.get(&who) {
            Some((_, _, d)) if *d == digest => Ok(VoteAdded::Known),
            Some((first, _, _)) => {
                // Two votes for one round: it counts with neither, here
                // and, once they see the pair, at every other authority.
                if round.evidence.len() + 2 <= MAX_EVIDENCE {
                    round.evidence.push(first.clone());
                    round.evidence.push(bytes.to_vec());
                }
                round.votes.remove(&who);
                round.equivocators.insert(who);
                self.equivocations += 1;
                Ok(VoteAdded::Equivocation(who))
            }
            None => {
                round.votes.insert(who, (bytes.to_vec(), vote, digest));
                Ok(VoteAdded::New)
            }
        }
    }

    /// This authority's signed consensus for the running round (what it
    /// gives the others to add their signatures to), with every signature
    /// gathered so far.
    pub fn proposal(&self) -> Option<Vec<u8>> {
        let p = self.round.as_ref()?.proposal.as_ref()?;
        Some(encode_document(
            p.body.clone(),
            p.signatures.iter().map(|(k, s)| (*k, *s)).collect(),
        ))
    }

    /// Why the running round has no consensus, if it failed.
    pub fn failure(&self) -> Option<&ConsensusError> {
        self.round.as_ref()?.failure.as_ref()
    }

    /// Authorities whose signature on the consensus is missing.
    pub fn missing_signatures(&self) -> Vec<[u8; 32]> {
        let Some(p) = self.round.as_ref().and_then(|r| r.proposal.as_ref()) else {
            return Vec::new();
        };
        self.set
            .authorities
            .iter()
            .filter(|a| !p.signatures.contains_key(*a))
            .copied()
            .collect()
    }

    /// Takes another authority's signed consensus: the signatures of
    /// configured authorities on the same bytes as this authority's are
    /// kept. Returns how many were new.
    pub fn add_signatures(&mut self, signed: &[u8]) -> Result<usize, VotingError> {
        let parts = document_parts(signed)?;
        let p = self
            .round
            .as_mut()
            .and_then(|r| r.proposal.as_mut())
            .ok_or(VotingError::NoProposal)?;
        if parts.body != p.body {
            return Err(VotingError::OtherDocument);
        }
        let mut added = 0;
        for (key, sig) in parts.signatures {
            if self.set.authorities.contains(&key)
                && !p.signatures.contains_key(&key)
                && document_signature_verifies(&p.body, &key, &sig)
            {
                p.signatures.insert(key, sig);
                added += 1;
            }
        }
        Ok(added)
    }

    /// The document to serve at `now` (Unix seconds): the latest agreed,
    /// while it is valid.
    pub fn document(&self, now: u64) -> Option<&[u8]> {
        self.current
            .as_ref()
            .filter(|(d, _)| now < d.valid_until)
            .map(|(_, b)| b.as_slice())
    }

    /// The signed votes the latest agreed document was computed from (an
    /// auditor recomputes it from them, §6.3).
    pub fn document_votes(&self) -> &[Vec<u8>] {
        &self.current_votes
    }

    /// The latest agreed document, parsed.
    pub fn current(&self) -> Option<&NetworkDocument> {
        self.current.as_ref().map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests;
