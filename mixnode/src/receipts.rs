//! Signed replica answers (`specs/storage.md` §4, "Receipts"): every
//! answer a replica gives on `/mtos/store/3` ends with the replica's
//! signature over the request it answers (the client's nonce and the
//! request's bytes), its own key, its document epoch and the answer, so a
//! client can check what a service node reports instead of taking its
//! word: a put counts only with K receipts from the locator's replicas, a
//! refusal only when a replica signed it, and a slot is empty only when
//! all its replicas signed so. A receipt names the nonce the client chose
//! for that request and the hash of the record it put, so one replayed
//! from another request (an earlier write to the same slot, say) does not
//! verify. Sans-IO: bytes in, verdicts out.

use mtos_crypto::VerifyKey;
use mtos_crypto::item::Locator;
use sha2::{Digest, Sha256};

use crate::placement::{StorageNode, replicas};
use crate::records::Kind;
use crate::replica_proto::{ReplicaOp, ReplicaStatus};

/// The client's request nonce, carried to every replica asked.
pub const NONCE_LEN: usize = 16;
/// What a replica appends to every answer: its document epoch (4 bytes,
/// big-endian) and its signature (64).
pub const TRAILER_LEN: usize = 4 + 64;
/// Domain separation of the signed statement.
pub const DOMAIN: &[u8] = b"mtos/replica-answer/1";
/// Signed answers one response carries at most: a service node asks no
/// more replicas than this for one request (a probe whose locators have
/// more replicas between them is a bad request), so they always fit a
/// reply (29 × (105 + a 15-byte scope and a 15-byte bitmap) + 1 = 3,916
/// of the 4,060 bytes a response body holds).
pub const MAX_SIGNED_ANSWERS: usize = 29;
/// Bytes of one signed answer besides its scope and detail.
pub const SIGNED_OVERHEAD: usize = 32 + 1 + 4 + 2 + 2 + 64;
/// The longest refusal reason a replica may sign.
pub const MAX_REASON: usize = 32;
/// Domain separation of the per-replica nonce.
pub const NONCE_DOMAIN: &[u8] = b"mtos/replica-nonce/1";

/// The nonce a service node sends replica `node` for the client request
/// `id`: SHA-256 of the domain, `id` and the replica's key, first 16
/// bytes. Each replica of one request gets its own, so colluding
/// replicas cannot join their shares of one probe by it; the client,
/// knowing `id`, computes each.
pub fn replica_nonce(id: &[u8; NONCE_LEN], node: &[u8; 32]) -> [u8; NONCE_LEN] {
    let mut h = Sha256::new();
    h.update(NONCE_DOMAIN);
    h.update(id);
    h.update(node);
    let d = h.finalize();
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&d[..NONCE_LEN]);
    n
}

/// Whether an answer's detail has the shape its operation and status
/// allow (`asked`: the locators a probe asked of it): a stored put's is
/// empty, a refusal's a label of at most [`MAX_REASON`] bytes, a probe's
/// a bitmap of exactly `asked` bits. A service node passes on no other.
pub fn well_formed(op: ReplicaOp, status: ReplicaStatus, detail: &[u8], asked: usize) -> bool {
    match (op, status) {
        (ReplicaOp::Put, ReplicaStatus::Ok) => detail.is_empty(),
        (ReplicaOp::Put, ReplicaStatus::Refused) => {
            !detail.is_empty() && detail.len() <= MAX_REASON && detail.is_ascii()
        }
        (ReplicaOp::Probe, ReplicaStatus::Ok) => detail.len() == asked.div_ceil(8),
        _ => false,
    }
}

/// Errors of a signed-answer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The list does not parse.
    #[error("malformed signed answers: {0}")]
    Malformed(&'static str),
}

/// What a replica answers: the request (its nonce and the body after
/// it), and who answers under which epoch.
#[derive(Debug, Clone, Copy)]
pub struct Answering<'a> {
    /// The request's nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// The replica's document epoch.
    pub epoch: u32,
    /// The replica's key.
    pub node: &'a [u8; 32],
    /// The operation.
    pub op: ReplicaOp,
    /// The request body after the nonce.
    pub request: &'a [u8],
}

/// The bytes a replica signs (`specs/storage.md` §4): the domain, the
/// nonce, the epoch, the replica's key, the operation and status codes,
/// SHA-256 of the request body after its nonce and SHA-256 of the
/// answer's detail.
pub fn statement(a: &Answering<'_>, status: ReplicaStatus, detail: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(DOMAIN.len() + NONCE_LEN + 4 + 32 + 2 + 64);
    s.extend_from_slice(DOMAIN);
    s.extend_from_slice(a.nonce);
    s.extend_from_slice(&a.epoch.to_be_bytes());
    s.extend_from_slice(a.node);
    s.push(a.op.code());
    s.push(status.code());
    s.extend_from_slice(&Sha256::digest(a.request));
    s.extend_from_slice(&Sha256::digest(detail));
    s
}

/// A replica's answer body with its trailer: `detail ‖ epoch ‖
/// signature`, `sign` signing with the replica's identity key.
pub fn signed_answer(
    sign: impl FnOnce(&[u8]) -> [u8; 64],
    a: &Answering<'_>,
    status: ReplicaStatus,
    mut detail: Vec<u8>,
) -> Vec<u8> {
    let signature = sign(&statement(a, status, &detail));
    detail.extend_from_slice(&a.epoch.to_be_bytes());
    detail.extend_from_slice(&signature);
    detail
}

/// An answer body's detail, epoch and signature; `None` when it is
/// shorter than the trailer.
pub fn split_answer(body: &[u8]) -> Option<(&[u8], u32, [u8; 64])> {
    let at = body.len().checked_sub(TRAILER_LEN)?;
    let (detail, trailer) = body.split_at(at);
    let (epoch, signature) = trailer.split_at(4);
    Some((
        detail,
        u32::from_be_bytes(epoch.try_into().ok()?),
        signature.try_into().ok()?,
    ))
}

/// One replica's signed answer as a service node passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The replica's key.
    pub node: [u8; 32],
    /// Its status.
    pub status: ReplicaStatus,
    /// Its document epoch.
    pub epoch: u32,
    /// What the service node says it asked this replica, outside the
    /// signature: for a probe, a bitmap over the probe's locators (bit i,
    /// most significant first, for the i-th); empty for a put. The client
    /// rebuilds the signed request from it, so a service node whose
    /// document differs from the client's is not taken for a liar, while
    /// a false scope fails the signature.
    pub scope: Vec<u8>,
    /// The answer's detail (a refusal's reason, a probe's bitmap; empty
    /// for a stored put).
    pub detail: Vec<u8>,
    /// Its signature over [`statement`].
    pub signature: [u8; 64],
}

impl Signed {
    /// From a replica's answer body (with trailer); `None` when too short.
    pub fn from_answer(node: [u8; 32], status: ReplicaStatus, body: &[u8]) -> Option<Self> {
        let (detail, epoch, signature) = split_answer(body)?;
        Some(Self {
            node,
            status,
            epoch,
            scope: Vec::new(),
            detail: detail.to_vec(),
            signature,
        })
    }

    /// Whether the replica signed this answer to `op` with `request` (the
    /// body after the nonce) under `nonce` (its own: [`replica_nonce`]).
    pub fn verify(&self, nonce: &[u8; NONCE_LEN], op: ReplicaOp, request: &[u8]) -> bool {
        let Ok(key) = VerifyKey::from_bytes(self.node) else {
            return false;
        };
        let a = Answering {
            nonce,
            epoch: self.epoch,
            node: &self.node,
            op,
            request,
        };
        key.verify(&statement(&a, self.status, &self.detail), &self.signature)
    }
}

/// A response body of signed answers: `count (1) ‖ count × (node (32) ‖
/// status (1) ‖ epoch (4) ‖ scope length (2) ‖ scope ‖ detail length (2)
/// ‖ detail ‖ signature (64))`. At most [`MAX_SIGNED_ANSWERS`] are
/// written.
pub fn encode_list(answers: &[Signed]) -> Vec<u8> {
    let answers = &answers[..answers.len().min(MAX_SIGNED_ANSWERS)];
    let mut out = vec![answers.len() as u8];
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for a in answers {
        out.extend_from_slice(&a.node);
        out.push(a.status.code());
        out.extend_from_slice(&a.epoch.to_be_bytes());
        field(&mut out, &a.scope);
        field(&mut out, &a.detail);
        out.extend_from_slice(&a.signature);
    }
    out
}

/// Parses [`encode_list`]'s bytes (nothing may follow).
pub fn decode_list(bytes: &[u8]) -> Result<Vec<Signed>, ReceiptError> {
    let bad = ReceiptError::Malformed;
    let (&count, mut rest) = bytes.split_first().ok_or(bad("empty"))?;
    if usize::from(count) > MAX_SIGNED_ANSWERS {
        return Err(bad("too many answers"));
    }
    let mut take = |n: usize| -> Result<&[u8], ReceiptError> {
        let (head, tail) = rest.split_at_checked(n).ok_or(bad("truncated"))?;
        rest = tail;
        Ok(head)
    };
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let node: [u8; 32] = take(32)?.try_into().map_err(|_| bad("node"))?;
        let status = ReplicaStatus::from_u8(take(1)?[0]).ok_or(bad("status"))?;
        let epoch = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("epoch"))?);
        let len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad("length"))?);
        let scope = take(usize::from(len))?.to_vec();
        let len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad("length"))?);
        let detail = take(usize::from(len))?.to_vec();
        let signature: [u8; 64] = take(64)?.try_into().map_err(|_| bad("signature"))?;
        out.push(Signed {
            node,
            status,
            epoch,
            scope,
            detail,
            signature,
        });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// Why a service node's answer is a lie: what a client that sees it
/// holds against the service node (it avoids it for the session). Only
/// what an honest service node never sends counts: it checks every
/// replica's signature before passing an answer on, so a bad one in its
/// response is its own. An answer from a node the client does not see as
/// a replica (their documents may differ for a moment) or for a distant
/// epoch is not a lie; it just does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Lie {
    /// The signed answers do not parse.
    #[error("the signed answers do not parse")]
    Malformed,
    /// One node answers twice.
    #[error("one replica answers twice")]
    Duplicate,
    /// A signature does not verify (forged, or replayed from another
    /// request).
    #[error("a signature does not verify")]
    BadSignature,
    /// The response's status says what no signed answer supports.
    #[error("the status is not what the signed answers say")]
    Unsupported,
}

/// What the service node passed on for one request, checked: every
/// answer from a distinct node, well formed for `op` (`asked(node)`
/// locators for a probe) and signed by that node for `op` with
/// `request(node)` under its own nonce for `id`. `Err` is a lie.
fn verified(
    answers: &[Signed],
    id: &[u8; NONCE_LEN],
    op: ReplicaOp,
    request: impl Fn(&Signed) -> Option<(Vec<u8>, usize)>,
) -> Result<(), Lie> {
    let mut seen: Vec<[u8; 32]> = Vec::with_capacity(answers.len());
    for a in answers {
        if seen.contains(&a.node) {
            return Err(Lie::Duplicate);
        }
        seen.push(a.node);
        let (rest, asked) = request(a).ok_or(Lie::Malformed)?;
        if !well_formed(op, a.status, &a.detail, asked) {
            return Err(Lie::Malformed);
        }
        if !a.verify(&replica_nonce(id, &a.node), op, &rest) {
            return Err(Lie::BadSignature);
        }
    }
    Ok(())
}

/// What a put's signed answers prove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutProof {
    /// Replicas that signed that they hold the record.
    pub stored: usize,
    /// A reason a replica signed when refusing it, if one did.
    pub refused: Option<String>,
}

/// The client's view of placement: its document's storage nodes, K and
/// epoch.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The storage nodes, in document order.
    pub storage: &'a [StorageNode],
    /// Replicas per record.
    pub k: usize,
    /// The document's epoch.
    pub epoch: u32,
}

/// The put a response answers: the record, its kind, locator and stamp.
#[derive(Debug, Clone, Copy)]
pub struct PutOf<'a> {
    /// The record's kind.
    pub kind: Kind,
    /// Its locator.
    pub locator: &'a Locator,
    /// The record.
    pub record: &'a [u8],
    /// The stamp it was sent with.
    pub stamp: &'a mtos_crypto::stamp::Stamp,
}

/// Checks a put's response body (`status` as the service node put it):
/// the signed answers of the replicas of the put's locator in `view`,
/// for the put `put` under the request id `id`. `Err` is a lie:
/// the service node forged, altered or replayed an answer, or claims an
/// outcome its answers do not carry. Only `ok` and `refused` carry
/// answers; any other status proves (and claims) nothing, and so does a
/// `refused` whose body is not a list (the service node refused the
/// record itself, which the client checks on its own).
pub fn check_put(
    status: crate::service::Status,
    body: &[u8],
    id: &[u8; NONCE_LEN],
    put: PutOf<'_>,
    view: View<'_>,
) -> Result<PutProof, Lie> {
    use crate::service::Status;
    let PutOf {
        kind,
        locator,
        record,
        stamp,
    } = put;
    let View { storage, k, epoch } = view;
    let answers = match (status, decode_list(body)) {
        (Status::Ok | Status::Refused, Ok(answers)) => answers,
        (Status::Ok, Err(_)) => return Err(Lie::Malformed),
        _ => return Ok(PutProof::default()),
    };
    let request = crate::replica_proto::put_rest(kind, locator, stamp, record);
    verified(&answers, id, ReplicaOp::Put, |a| {
        a.scope.is_empty().then(|| (request.clone(), 0))
    })?;
    let allowed = replicas(locator, storage, k);
    let mut proof = PutProof::default();
    for a in answers
        .iter()
        .filter(|a| allowed.contains(&a.node) && a.epoch.abs_diff(epoch) <= 1)
    {
        match a.status {
            ReplicaStatus::Ok => proof.stored += 1,
            ReplicaStatus::Refused => {
                proof.refused = Some(String::from_utf8_lossy(&a.detail).into_owned());
            }
            _ => {}
        }
    }
    let says = |s: ReplicaStatus| answers.iter().any(|a| a.status == s);
    let supported = match status {
        Status::Ok => says(ReplicaStatus::Ok),
        Status::Refused => says(ReplicaStatus::Refused),
        _ => true,
    };
    if !supported {
        return Err(Lie::Unsupported);
    }
    Ok(proof)
}

/// What the signed answers say of one probed slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A replica signed that it holds it.
    Held,
    /// Every replica signed that it does not.
    Empty,
    /// Neither: some replica did not answer (or its answer was withheld).
    Unknown,
}

/// Which locators of a probe (indices, in the probe's order) each
/// replica is asked about: those it is a replica of among `storage` (K =
/// `k`), each locator's replicas computed once (`specs/storage.md` §4).
pub fn probe_plan(
    locators: &[Locator],
    storage: &[StorageNode],
    k: usize,
) -> std::collections::BTreeMap<[u8; 32], Vec<usize>> {
    let mut plan: std::collections::BTreeMap<[u8; 32], Vec<usize>> = Default::default();
    for (i, l) in locators.iter().enumerate() {
        for node in replicas(l, storage, k) {
            plan.entry(node).or_default().push(i);
        }
    }
    plan
}

/// Whether bit `i` of a bitmap is set (most significant bit of byte
/// `i / 8` first, as every bitmap of `specs/storage.md` §4); `false` past
/// its end.
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// A bitmap of `n` bits with `set` set (most significant bit first).
pub fn bitmap(n: usize, set: &[usize]) -> Vec<u8> {
    let mut bits = vec![0u8; n.div_ceil(8)];
    for &i in set.iter().filter(|i| **i < n) {
        bits[i / 8] |= 0x80 >> (i % 8);
    }
    bits
}

/// The indices set in a bitmap of `n` bits; `None` when it is not
/// `ceil(n / 8)` bytes or sets a bit past `n`.
pub fn bits_set(bits: &[u8], n: usize) -> Option<Vec<usize>> {
    if bits.len() != n.div_ceil(8) {
        return None;
    }
    let set: Vec<usize> = (0..bits.len() * 8).filter(|&i| bit(bits, i)).collect();
    set.iter().all(|i| *i < n).then_some(set)
}

/// Checks a probe's response body for `locators` (in the order asked)
/// under the request id `id`: per locator, whether it is held, empty or
/// unknown. Each answer's scope names the locators the service node asked
/// of that replica; the client rebuilds the signed request from it, and
/// counts the answer for a locator only where the replica is one of that
/// locator's replicas in its own document. `Err` is a lie.
pub fn check_probe(
    body: &[u8],
    id: &[u8; NONCE_LEN],
    locators: &[Locator],
    view: View<'_>,
) -> Result<Vec<Held>, Lie> {
    let View { storage, k, epoch } = view;
    let answers = decode_list(body).map_err(|_| Lie::Malformed)?;
    let n = locators.len();
    verified(&answers, id, ReplicaOp::Probe, |a| {
        let asked = bits_set(&a.scope, n)?;
        let rest: Vec<u8> = asked
            .iter()
            .flat_map(|&i| locators[i].as_bytes().iter().copied())
            .collect();
        (!asked.is_empty()).then_some((rest, asked.len()))
    })?;
    let sets: Vec<Vec<[u8; 32]>> = locators.iter().map(|l| replicas(l, storage, k)).collect();
    // Per locator: replicas that signed "not held", and whether one
    // signed "held".
    let mut empty_votes = vec![0usize; n];
    let mut held = vec![false; n];
    for a in answers
        .iter()
        .filter(|a| a.status == ReplicaStatus::Ok && a.epoch.abs_diff(epoch) <= 1)
    {
        let asked = bits_set(&a.scope, n).unwrap_or_default();
        for (j, &i) in asked.iter().enumerate() {
            if !sets[i].contains(&a.node) {
                continue;
            }
            if bit(&a.detail, j) {
                held[i] = true;
            } else {
                empty_votes[i] += 1;
            }
        }
    }
    Ok((0..n)
        .map(|i| {
            if held[i] {
                Held::Held
            } else if empty_votes[i] == sets[i].len() && !sets[i].is_empty() {
                Held::Empty
            } else {
                Held::Unknown
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
