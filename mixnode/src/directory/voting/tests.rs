//! Several authorities voting in memory: what nodes and clients accept
//! from them, and what a lying or absent authority can do.

use super::*;
use crate::directory::tests::{descriptor, identity, params, test_addresses};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Epochs of 10 s in rounds of 2 s: five rounds an epoch.
const GENESIS: u64 = 1_000;
const EPOCH: u64 = 10;
const ROUND_MS: u64 = 2_000;

fn voting_params() -> NetworkParams {
    let mut p = params();
    p.schedule = EpochSchedule {
        genesis: GENESIS,
        epoch_secs: EPOCH,
        heartbeat_secs: EPOCH,
        round_secs: 2,
    };
    p
}

struct Node {
    id: Identity,
    role: Role,
    layer: Option<u8>,
    /// Its address, if not the loopback one.
    addr: Option<String>,
}

struct Net {
    ids: Vec<Identity>,
    auths: Vec<Voting>,
    up: Vec<bool>,
    nodes: Vec<Node>,
    rng: ChaCha20Rng,
}

impl Net {
    fn new(n: usize, threshold: usize, params: NetworkParams) -> Self {
        let ids: Vec<Identity> = (0..n as u64).map(|i| identity(100 + i)).collect();
        let set = AuthoritySet {
            network: "mtos-test".into(),
            authorities: ids.iter().map(|i| *i.verify_key().as_bytes()).collect(),
            threshold,
        };
        let auths = ids
            .iter()
            .map(|i| {
                Voting::new(
                    set.clone(),
                    *i.verify_key().as_bytes(),
                    Authority::new(params.clone()),
                    VotingState::default(),
                    test_addresses,
                )
            })
            .collect();
        Self {
            ids,
            auths,
            up: vec![true; n],
            nodes: Vec::new(),
            rng: ChaCha20Rng::seed_from_u64(7),
        }
    }

    fn trust(&self, threshold: usize) -> Trust {
        let mut set = self.auths[0].set().clone();
        set.threshold = threshold;
        set.trust(test_addresses).unwrap()
    }

    fn add_node(&mut self, seed: u64, role: Role, layer: Option<u8>) -> [u8; 32] {
        let id = identity(seed);
        let key = *id.verify_key().as_bytes();
        self.nodes.push(Node {
            id,
            role,
            layer,
            addr: None,
        });
        key
    }

    /// A node at `addr` (addresses separated by spaces); a mix asks for
    /// layer 1.
    fn add_node_at(&mut self, seed: u64, role: Role, addr: &str) -> [u8; 32] {
        let layer = (role == Role::Mix).then_some(1);
        let key = self.add_node(seed, role, layer);
        if let Some(n) = self.nodes.last_mut() {
            n.addr = Some(addr.to_owned());
        }
        key
    }

    /// Every authority approves every node added so far, each as `edit`
    /// leaves its approval (default: no family, no pin).
    fn approve_all(&mut self, edit: impl FnOnce(&mut BTreeMap<[u8; 32], Approval>)) {
        let mut approved: BTreeMap<[u8; 32], Approval> = self
            .nodes
            .iter()
            .map(|n| (*n.id.verify_key().as_bytes(), Approval::default()))
            .collect();
        edit(&mut approved);
        for a in &mut self.auths {
            a.authority_mut()
                .set_admission(Admission::Approved(approved.clone()));
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.auths.len()).filter(|&i| self.up[i]).collect()
    }

    /// Every node uploads its descriptor (keys for this epoch and the
    /// next) to every authority that is up: the heartbeat.
    fn heartbeat(&mut self, now: u64) {
        let epoch = voting_params().schedule.epoch_at(now);
        for node in &self.nodes {
            let mut d = descriptor(&node.id, node.role, node.layer, &[epoch, epoch + 1]);
            d.published = now;
            if let Some(addr) = &node.addr {
                d.node.addrs = addr.split(' ').map(str::to_owned).collect();
            }
            let bytes = d.sign(&node.id);
            for i in self.live() {
                let _ = self.auths[i].authority_mut().accept_descriptor(&bytes, now);
            }
        }
    }

    /// One round from its start: votes, their exchange (each authority
    /// takes every vote the others hold), the consensus, the signatures.
    fn round(&mut self, start_ms: u64) {
        self.heartbeat(start_ms / 1000);
        let live = self.live();
        for &i in &live {
            self.auths[i].tick(start_ms, &self.ids[i], &mut self.rng);
        }
        self.exchange_votes();
        for &i in &live {
            self.auths[i].tick(start_ms + ROUND_MS / 2, &self.ids[i], &mut self.rng);
        }
        for &i in &live {
            for &j in &live {
                if let Some(p) = self.auths[j].proposal() {
                    let _ = self.auths[i].add_signatures(&p);
                }
            }
        }
    }

    fn exchange_votes(&mut self) {
        let live = self.live();
        for &i in &live {
            for &j in &live {
                for v in self.auths[j].votes() {
                    let _ = self.auths[i].add_vote(&v);
                }
            }
        }
    }

    /// Runs every round starting in [from, to) seconds, then ticks at
    /// `to` so the last round's document takes over.
    fn run(&mut self, from: u64, to: u64) {
        let mut t = from * 1000;
        while t < to * 1000 {
            self.round(t);
            t += ROUND_MS;
        }
        for i in self.live() {
            self.auths[i].tick(to * 1000, &self.ids[i], &mut self.rng);
        }
    }

    fn doc(&self, i: usize, now: u64, threshold: usize) -> NetworkDocument {
        let bytes = self.auths[i].document(now).expect("a document");
        NetworkDocument::verify(bytes, &self.trust(threshold), now).unwrap()
    }
}

fn chain(net: &mut Net) {
    net.add_node(1, Role::Gateway, None);
    for l in 1..=3 {
        net.add_node(10 + u64::from(l), Role::Mix, Some(l));
    }
    net.add_node(20, Role::Service, None);
}

#[test]
fn three_authorities_agree_on_one_document_that_each_signs() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let at = GENESIS + 2 * EPOCH + 4;
    net.run(GENESIS, at);
    let bytes: Vec<&[u8]> = (0..3).map(|i| net.auths[i].document(at).unwrap()).collect();
    assert!(
        bytes.iter().all(|b| *b == bytes[0]),
        "authorities serve different documents"
    );
    // All three signed: it verifies even with a threshold of 3.
    let doc = net.doc(0, at, 3);
    assert_eq!(doc.epoch, 2);
    assert_eq!(doc.serial, 2);
    assert_eq!(doc.nodes.len(), 5);
    assert_eq!(doc.consensus.votes.len(), 3);
    assert_eq!(net.auths[0].gaps, 0, "{:?}", net.auths[0].last_gap);
    // Epoch 0 had no commitments before it: the fallback. Epoch 2's value
    // comes from the reveals committed to in epoch 1.
    let r2 = doc.consensus.shared_random.unwrap();
    assert!(!r2.fallback);
    assert_eq!(doc.consensus.commits.len(), 3);
    assert_eq!(
        doc.consensus.previous_random,
        net.auths[0].randoms.get(&1).map(|r| r.value)
    );
    // The same value in every round of the epoch; another the next.
    net.run(at, GENESIS + 3 * EPOCH + 2);
    let later = net.doc(0, GENESIS + 3 * EPOCH + 2, 3);
    assert_eq!(later.epoch, 3);
    assert_ne!(later.consensus.shared_random.unwrap().value, r2.value);
    assert_eq!(net.auths[0].randoms.get(&2), Some(&r2));
}

#[test]
fn with_one_authority_down_the_network_goes_on_and_with_two_the_last_document_ends() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t1 = GENESIS + EPOCH + 4;
    net.run(GENESIS, t1);
    net.up[2] = false;
    let t2 = GENESIS + 3 * EPOCH + 2;
    net.run(t1, t2);
    let doc = net.doc(0, t2, 2);
    assert_eq!((doc.epoch, doc.serial), (3, 1));
    assert_eq!(doc.consensus.votes.len(), 2);
    assert_eq!(doc.nodes.len(), 5);
    assert_eq!(net.auths[0].gaps, 0, "{:?}", net.auths[0].last_gap);
    // A threshold of 3 refuses it: two signatures.
    assert!(
        NetworkDocument::verify(net.auths[0].document(t2).unwrap(), &net.trust(3), t2).is_err()
    );
    // Two down: no round makes a document; the last one is served until
    // it expires (the next epoch's start plus half an epoch), then none.
    net.up[1] = false;
    let t3 = GENESIS + 4 * EPOCH + 2;
    net.run(t2, t3);
    assert!(net.auths[0].gaps >= 4);
    let why = net.auths[0].last_gap.clone().unwrap();
    assert!(why.contains("1 votes counted"), "{why}");
    let last = net.doc(0, t3, 2);
    assert_eq!((last.epoch, last.serial), (3, 1));
    let expired = last.valid_until;
    assert!(net.auths[0].document(expired - 1).is_some());
    assert!(net.auths[0].document(expired).is_none());
}

#[test]
fn a_lying_authority_cannot_list_nodes_or_change_keys_alone() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t = GENESIS + 6;
    net.run(GENESIS, t);
    // The liar (authority 2) votes for a node no other authority heard
    // of, and puts in another Sphinx key for the first mix: a descriptor
    // it cannot sign as the mix.
    let sybil = identity(66);
    let sybil_desc = descriptor(&sybil, Role::Mix, Some(2), &[0, 1]).sign(&sybil);
    let mix_key = *net.nodes[1].id.verify_key().as_bytes();
    let mut other_keys = descriptor(&net.nodes[1].id, Role::Mix, Some(1), &[0, 1]);
    other_keys.published = t + 1;
    other_keys.node.sphinx_keys[0].public = [0xee; 32];
    let forged_desc = other_keys.sign(&net.ids[2]);
    net.up[2] = false;
    net.heartbeat(t + 2);
    for i in 0..2 {
        net.auths[i].tick((t + 2) * 1000, &net.ids[i], &mut net.rng);
    }
    net.exchange_votes();
    let honest_vote = net.auths[0].own_vote().unwrap().to_vec();
    let set = net.auths[0].set().authorities.clone();
    let (mut v, _) = Vote::verify(&honest_vote, "mtos-test", &set, test_addresses).unwrap();
    v.authority = set[2];
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    for n in &mut v.nodes {
        if n.key == mix_key {
            n.descriptor = hex(&forged_desc);
        }
    }
    v.nodes.push(VoteEntry {
        key: *sybil.verify_key().as_bytes(),
        descriptor: hex(&sybil_desc),
        since: None,
        salt: None,
        family: None,
        layer: Some(2),
        pinned: false,
    });
    v.nodes.sort_by_key(|n| n.key);
    let liar_vote = v.sign(&net.ids[2]);
    for i in 0..2 {
        assert_eq!(net.auths[i].add_vote(&liar_vote), Ok(VoteAdded::New));
        net.auths[i].tick((t + 3) * 1000, &net.ids[i], &mut net.rng);
    }
    net.up[2] = true;
    let honest = net.auths[0].proposal().unwrap();
    let doc = NetworkDocument::verify(&honest, &net.trust(1), t + 3).unwrap();
    assert_eq!(doc.consensus.votes.len(), 3, "the liar's vote was counted");
    assert!(
        !doc.nodes
            .iter()
            .any(|n| n.key == *sybil.verify_key().as_bytes())
    );
    let listed_mix = doc.nodes.iter().find(|n| n.key == mix_key).unwrap();
    assert_ne!(listed_mix.sphinx_keys[0].public, [0xee; 32]);
    // The liar signs a document of its own making: it has one signature,
    // and a signature repeated still counts once.
    let mut forged = doc.clone();
    let sybil_entry = Descriptor::verify(&sybil_desc, "mtos-test", 3, test_addresses)
        .unwrap()
        .node;
    forged.nodes.push(sybil_entry);
    forged.nodes.sort_by_key(|n| n.key);
    let one = forged.sign(&net.ids[2]);
    assert!(NetworkDocument::verify(&one, &net.trust(2), t + 3).is_err());
    let twice = add_signature(&one, &net.ids[2]).unwrap();
    let parts = signed::document_parts(&one).unwrap();
    let doubled = signed::encode_document(
        parts.body.clone(),
        vec![parts.signatures[0], parts.signatures[0]],
    );
    assert!(NetworkDocument::verify(&twice, &net.trust(2), t + 3).is_err());
    assert!(NetworkDocument::verify(&doubled, &net.trust(2), t + 3).is_err());
    // Nor can it add its signature to the honest consensus of another
    // body: the others keep only signatures on their bytes.
    assert_eq!(
        net.auths[0].add_signatures(&one),
        Err(VotingError::OtherDocument)
    );
}

#[test]
fn an_authority_that_sends_two_votes_is_caught_and_not_counted() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t = GENESIS + 4;
    net.run(GENESIS, t);
    let start = (t) * 1000;
    net.heartbeat(t);
    for i in 0..3 {
        net.auths[i].tick(start, &net.ids[i], &mut net.rng);
    }
    // Authority 2 shows authority 0 its real vote and authority 1 one
    // without the gateway.
    let real = net.auths[2].own_vote().unwrap().to_vec();
    let set = net.auths[2].set().authorities.clone();
    let (mut other, _) = Vote::verify(&real, "mtos-test", &set, test_addresses).unwrap();
    let gateway = *net.nodes[0].id.verify_key().as_bytes();
    other.nodes.retain(|n| n.key != gateway);
    let other = other.sign(&net.ids[2]);
    assert_eq!(net.auths[0].add_vote(&real), Ok(VoteAdded::New));
    assert_eq!(net.auths[1].add_vote(&other), Ok(VoteAdded::New));
    // The honest two exchange what they hold, and each sees both.
    let from0 = net.auths[0].votes();
    let from1 = net.auths[1].votes();
    for v in &from1 {
        let _ = net.auths[0].add_vote(v);
    }
    for v in &from0 {
        let _ = net.auths[1].add_vote(v);
    }
    assert_eq!(net.auths[0].equivocations, 1);
    assert_eq!(net.auths[1].equivocations, 1);
    assert!(
        net.auths[0].votes().contains(&other),
        "the evidence is served"
    );
    for i in 0..2 {
        net.auths[i].tick(start + 1000, &net.ids[i], &mut net.rng);
    }
    let p0 = net.auths[0].proposal().unwrap();
    net.auths[1].add_signatures(&p0).unwrap();
    let p1 = net.auths[1].proposal().unwrap();
    net.auths[0].add_signatures(&p1).unwrap();
    for i in 0..2 {
        net.auths[i].tick(start + ROUND_MS, &net.ids[i], &mut net.rng);
    }
    let doc = net.doc(0, t + 2, 2);
    assert_eq!(doc.consensus.votes.len(), 2);
    assert!(doc.consensus.votes.iter().all(|v| v.authority != set[2]));
    assert_eq!(doc.nodes.len(), 5);
}

#[test]
fn approved_nodes_are_placed_by_the_authorities_and_a_family_over_its_cap_is_trimmed() {
    let mut p = voting_params();
    p.family_cap_percent = 34;
    let mut net = Net::new(3, 2, p);
    net.add_node(1, Role::Gateway, None);
    net.add_node(20, Role::Service, None);
    // Six mixes, every one asking for layer 3; four of them one family.
    let mixes: Vec<[u8; 32]> = (0..6)
        .map(|i| net.add_node(30 + i, Role::Mix, Some(3)))
        .collect();
    let unapproved = identity(99);
    net.approve_all(|approved| {
        for m in &mixes[..4] {
            approved.get_mut(m).unwrap().family = Some("big".into());
        }
        // The operator pins one unfamilied mix to layer 2.
        approved.get_mut(&mixes[5]).unwrap().layer = Some(2);
    });
    for a in &mut net.auths {
        let e = a
            .authority_mut()
            .accept_descriptor(
                &descriptor(&unapproved, Role::Mix, Some(1), &[0, 1]).sign(&unapproved),
                GENESIS,
            )
            .unwrap_err();
        assert!(e.to_string().contains("allowlist"), "{e}");
    }
    let t = GENESIS + 6;
    net.run(GENESIS, t);
    let doc = net.doc(0, t, 2);
    let mix_entries: Vec<&NodeEntry> = doc.nodes.iter().filter(|n| n.role == Role::Mix).collect();
    // Per layer, "big" may hold max(1, 34% of 2) = 1: three of its four.
    let big: Vec<&&NodeEntry> = mix_entries
        .iter()
        .filter(|n| n.family.as_deref() == Some("big"))
        .collect();
    assert_eq!(big.len(), 3);
    let mut big_layers: Vec<u8> = big.iter().map(|n| n.layer.unwrap()).collect();
    big_layers.sort();
    assert_eq!(big_layers, vec![1, 2, 3]);
    assert_eq!(mix_entries.len(), 5);
    // Not all in the layer they asked for: balanced, 2-2-1 in some order.
    let mut sizes = [0usize; 4];
    for n in &mix_entries {
        sizes[usize::from(n.layer.unwrap())] += 1;
    }
    let mut s = sizes[1..].to_vec();
    s.sort();
    assert_eq!(s, vec![1, 2, 2]);
    let pinned = doc.nodes.iter().find(|n| n.key == mixes[5]).unwrap();
    assert_eq!(pinned.layer, Some(2));
    assert!(
        !doc.nodes
            .iter()
            .any(|n| n.key == *unapproved.verify_key().as_bytes())
    );
    // Layers hold from round to round.
    let t2 = GENESIS + 2 * EPOCH;
    net.run(t, t2);
    let again = net.doc(0, t2, 2);
    for n in &again.nodes {
        assert_eq!(
            doc.nodes.iter().find(|m| m.key == n.key).map(|m| m.layer),
            Some(n.layer)
        );
    }
}

#[test]
fn a_node_gets_its_salt_in_the_epoch_after_it_joins_and_keeps_it_when_it_returns() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t1 = GENESIS + EPOCH + 4;
    net.run(GENESIS, t1);
    // Nodes of the first epoch have a salt at once (the founders').
    let first = net.doc(0, t1, 2);
    assert!(
        first
            .nodes
            .iter()
            .all(|n| n.salt.is_some() && n.since == Some(0))
    );
    let late = net.add_node(40, Role::Service, None);
    let t2 = GENESIS + 2 * EPOCH - 2;
    net.run(t1, t2);
    let joined = net.doc(0, t2, 2);
    let entry = joined.nodes.iter().find(|n| n.key == late).unwrap();
    assert_eq!((entry.since, entry.salt), (Some(1), None));
    let t3 = GENESIS + 2 * EPOCH + 4;
    net.run(t2, t3);
    let next = net.doc(0, t3, 2);
    let entry = next.nodes.iter().find(|n| n.key == late).unwrap();
    let salt = entry.salt.unwrap();
    assert_eq!(salt, next.consensus.shared_random.unwrap().value);
    // It falls silent long enough to leave, and comes back: the same salt,
    // not a fresh draw.
    let gone = net.nodes.pop().unwrap();
    let t4 = GENESIS + 6 * EPOCH;
    net.run(t3, t4);
    assert!(!net.doc(0, t4, 2).nodes.iter().any(|n| n.key == late));
    net.nodes.push(gone);
    let t5 = GENESIS + 7 * EPOCH;
    net.run(t4, t5);
    let back = net.doc(0, t5, 2);
    let entry = back.nodes.iter().find(|n| n.key == late).unwrap();
    assert_eq!((entry.since, entry.salt), (Some(1), Some(salt)));
}

#[test]
fn a_fallback_value_salts_no_node_after_the_first_epoch() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t1 = GENESIS + EPOCH + 2;
    net.run(GENESIS, t1);
    let late = net.add_node(41, Role::Service, None);
    // At the start of epoch 1's last round (the one voting epoch 2's
    // first document), the authorities lose what they knew of the shared
    // value (and their secrets), but not what they remember of the nodes:
    // epoch 2's value is the fallback, which anyone could compute in
    // advance.
    let t2 = GENESIS + 2 * EPOCH - 2;
    net.run(t1, t2);
    for (i, a) in net.auths.iter_mut().enumerate() {
        let mut state = a.state();
        state.randoms.clear();
        state.commits.clear();
        state.secrets.clear();
        *a = Voting::new(
            a.set().clone(),
            *net.ids[i].verify_key().as_bytes(),
            Authority::new(voting_params()),
            state,
            test_addresses,
        );
    }
    let t3 = GENESIS + 2 * EPOCH + 4;
    net.run(t2, t3);
    let doc = net.doc(0, t3, 2);
    assert!(doc.consensus.shared_random.unwrap().fallback);
    let entry = doc.nodes.iter().find(|n| n.key == late).unwrap();
    assert_eq!((entry.since, entry.salt), (Some(1), None));
    // The next epoch has reveals again: then it takes that value.
    let t4 = GENESIS + 3 * EPOCH + 4;
    net.run(t3, t4);
    let doc = net.doc(0, t4, 2);
    let r = doc.consensus.shared_random.unwrap();
    assert!(!r.fallback);
    let entry = doc.nodes.iter().find(|n| n.key == late).unwrap();
    assert_eq!(entry.salt, Some(r.value));
}

#[test]
fn with_one_honest_authority_down_a_liar_cannot_win_ties() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    let t = GENESIS + 2 * EPOCH + 4;
    net.run(GENESIS, t);
    let late = net.add_node(42, Role::Service, None);
    let t1 = GENESIS + 3 * EPOCH + 4;
    net.run(t, t1);
    let before = net.doc(0, t1, 2);
    let entry = before.nodes.iter().find(|n| n.key == late).unwrap().clone();
    assert_eq!(entry.since, Some(2));
    // Authority 1 is down; the liar (2) votes every node with `since` 0,
    // a salt of its choosing and a descriptor of the gateway it signed
    // itself. Only authority 0 is honest and up: one against one.
    net.up[1] = false;
    let start = (t1 + 2) * 1000;
    net.heartbeat(t1 + 2);
    for i in [0, 2] {
        net.auths[i].tick(start, &net.ids[i], &mut net.rng);
    }
    let set = net.auths[0].set().authorities.clone();
    let honest = net.auths[0].own_vote().unwrap().to_vec();
    let (mut v, _) = Vote::verify(&honest, "mtos-test", &set, test_addresses).unwrap();
    v.authority = set[2];
    let gateway = &net.nodes[0].id;
    let mut forged = descriptor(gateway, Role::Gateway, None, &[3, 4]);
    forged.published = t1 + 2;
    forged.node.addrs = vec!["/ip4/10.6.6.6/tcp/1".into()];
    for n in &mut v.nodes {
        n.since = Some(0);
        n.salt = Some([0; 32]);
        if n.key == *gateway.verify_key().as_bytes() {
            n.descriptor = data_encoding::HEXLOWER.encode(&forged.sign(&net.ids[2]));
        }
    }
    let liar_vote = v.sign(&net.ids[2]);
    assert_eq!(net.auths[0].add_vote(&liar_vote), Ok(VoteAdded::New));
    net.auths[0].tick(start + 1000, &net.ids[0], &mut net.rng);
    let doc =
        NetworkDocument::verify(&net.auths[0].proposal().unwrap(), &net.trust(1), t1 + 3).unwrap();
    // The gateway's only valid descriptor is the honest one: one vote, not
    // a majority, so it is left out rather than listed with the liar's
    // address.
    assert!(
        !doc.nodes
            .iter()
            .any(|n| n.key == *gateway.verify_key().as_bytes())
    );
    // No majority for `since` or a salt: the defaults (listed now, and
    // no salt: it takes no records) rather than the liar's values.
    let late_now = doc.nodes.iter().find(|n| n.key == late).unwrap();
    assert_eq!(late_now.since, Some(3));
    assert_eq!(late_now.salt, None);
    assert!(doc.nodes.iter().all(|n| n.salt != Some([0; 32])));
}

#[test]
fn a_re_keyed_node_is_listed_under_its_old_key_until_its_new_one_is_then_only_the_new() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    net.approve_all(|_| {});
    let t1 = GENESIS + EPOCH + 4;
    net.run(GENESIS, t1);
    let old = *net.nodes[4].id.verify_key().as_bytes();
    let first = net.doc(0, t1, 2);
    let old_salt = first.nodes.iter().find(|n| n.key == old).unwrap().salt;
    assert!(old_salt.is_some());

    // The service node's operator makes a new key; the authorities approve
    // it as the old one's replacement. Both run during the change.
    let new = net.add_node(50, Role::Service, None);
    net.approve_all(|approved| approved.get_mut(&new).unwrap().replaces = Some(old));
    // The old key is voted for until the new one is listed with a salt: the
    // node is never absent, and both are listed for about an epoch (until
    // the new key has its salt).
    let mut seen_both = false;
    let t3 = GENESIS + 3 * EPOCH + 4;
    let mut t = t1;
    while t < t3 {
        net.run(t, t + 2);
        t += 2;
        let doc = net.doc(0, t, 2);
        let has = |k: [u8; 32]| doc.nodes.iter().any(|n| n.key == k);
        assert!(has(old) || has(new), "the node was absent at {t}");
        seen_both |= has(old) && has(new);
    }
    assert!(seen_both);
    let after = net.doc(0, t3, 2);
    assert!(
        !after.nodes.iter().any(|n| n.key == old),
        "the old key left"
    );
    // The new key is a new node: listed since its own epoch, with the
    // salt of the epoch after it (not the old key's).
    let entry = after.nodes.iter().find(|n| n.key == new).unwrap();
    assert_eq!(entry.since, Some(1));
    assert!(entry.salt.is_some());
    assert_ne!(entry.salt, old_salt);
}

#[test]
fn nodes_in_one_network_are_capped_like_a_family_and_private_addresses_are_not() {
    let mut p = voting_params();
    p.family_cap_percent = 34;
    let mut net = Net::new(3, 2, p);
    // Three gateways, two of them in 198.51.0.0/16: the gateways' cap is
    // max(1, 34 % of 3) = 1 per network.
    let gateways = [
        net.add_node_at(1, Role::Gateway, "/ip4/198.51.100.1/tcp/9000"),
        net.add_node_at(2, Role::Gateway, "/ip4/198.51.7.2/tcp/9000"),
        net.add_node_at(3, Role::Gateway, "/ip4/192.0.2.3/tcp/9000"),
    ];
    net.add_node(20, Role::Service, None);
    // Six mixes: four in one provider's /16 (in different /24s, under no
    // family; one lists a DNS name first), two on loopback. A layer (of
    // two) holds one of that network's: three of its four are listed.
    let provider: Vec<[u8; 32]> = (0..4)
        .map(|i| {
            let first = if i == 3 {
                "/dns4/mix.example/tcp/9000 "
            } else {
                ""
            };
            net.add_node_at(
                30 + i,
                Role::Mix,
                &format!("{first}/ip4/203.0.{}.{}/tcp/9000", 10 + i, 1 + i),
            )
        })
        .collect();
    let local: Vec<[u8; 32]> = (0..2)
        .map(|i| net.add_node(40 + i, Role::Mix, Some(1)))
        .collect();
    let t = GENESIS + 6;
    net.run(GENESIS, t);
    let doc = net.doc(0, t, 2);
    let listed = |k: &[u8; 32]| doc.nodes.iter().find(|n| n.key == *k);
    assert_eq!(gateways.iter().filter(|g| listed(g).is_some()).count(), 2);
    assert!(
        listed(&gateways[2]).is_some(),
        "the gateway alone in its network"
    );
    let placed: Vec<u8> = provider
        .iter()
        .filter_map(|k| listed(k).and_then(|n| n.layer))
        .collect();
    assert_eq!(placed.len(), 3);
    let mut layers = placed.clone();
    layers.sort();
    layers.dedup();
    assert_eq!(layers.len(), 3, "one per layer: {placed:?}");
    // Loopback nodes share no network: none is trimmed.
    assert!(local.iter().all(|k| listed(k).is_some()));
}

#[test]
fn a_reveal_withheld_is_on_the_record_of_the_document_it_biased() {
    let mut net = Net::new(3, 2, voting_params());
    chain(&mut net);
    // Epoch 1's value is computed with every reveal.
    let t1 = GENESIS + EPOCH + 4;
    net.run(GENESIS, t1);
    let doc = net.doc(0, t1, 2);
    assert!(doc.consensus.withheld.is_empty());
    // Authority 2 committed to its epoch-2 secret, and is silent in the
    // round that computes epoch 2's value: the value is made of two
    // reveals, and the document names the one that did not come.
    let t2 = GENESIS + 2 * EPOCH - 2;
    net.run(t1, t2);
    net.up[2] = false;
    let t3 = GENESIS + 2 * EPOCH;
    net.run(t2, t3);
    let doc = net.doc(0, t3, 2);
    assert_eq!(doc.epoch, 2);
    let value = doc.consensus.shared_random.unwrap();
    assert!(!value.fallback);
    assert_eq!(
        doc.consensus.withheld,
        vec![*net.ids[2].verify_key().as_bytes()]
    );
}

#[test]
fn layers_emptied_by_leaves_are_evened_out_at_the_next_epoch_and_pins_hold() {
    let mut net = Net::new(3, 2, voting_params());
    net.add_node(1, Role::Gateway, None);
    net.add_node(20, Role::Service, None);
    let mixes: Vec<[u8; 32]> = (0..6)
        .map(|i| net.add_node(60 + i, Role::Mix, Some(1)))
        .collect();
    // Every operator pins two mixes to layer 2 and one to layer 3; the
    // other three are the authorities' to place.
    net.approve_all(|approved| {
        approved.get_mut(&mixes[0]).unwrap().layer = Some(2);
        approved.get_mut(&mixes[1]).unwrap().layer = Some(2);
        approved.get_mut(&mixes[2]).unwrap().layer = Some(3);
    });
    let sizes = |doc: &NetworkDocument| {
        let mut s = [0usize; 4];
        for n in doc.nodes.iter().filter(|n| n.role == Role::Mix) {
            s[usize::from(n.layer.unwrap())] += 1;
        }
        [s[1], s[2], s[3]]
    };
    let t1 = GENESIS + 6;
    net.run(GENESIS, t1);
    let doc = net.doc(0, t1, 2);
    assert_eq!(sizes(&doc), [2, 2, 2]);
    // The mixes of layer 1 fall silent and leave.
    let layer1: Vec<[u8; 32]> = doc
        .nodes
        .iter()
        .filter(|n| n.layer == Some(1))
        .map(|n| n.key)
        .collect();
    net.nodes
        .retain(|n| !layer1.contains(n.id.verify_key().as_bytes()));
    let mut t = t1;
    let left = loop {
        net.run(t, t + 2);
        t += 2;
        let doc = net.doc(0, t, 2);
        if sizes(&doc) != [2, 2, 2] {
            break doc;
        }
        assert!(t < GENESIS + 10 * EPOCH, "the silent mixes never left");
    };
    // Within an epoch no mix moves (packets in flight to it would be
    // lost): layer 1 stays empty until the epoch's first document.
    if left.serial != 0 {
        assert_eq!(sizes(&left), [0, 2, 2]);
    }
    let next = GENESIS + u64::from(left.epoch + 1) * EPOCH;
    net.run(t, next);
    let even = net.doc(0, next, 2);
    assert_eq!(even.serial, 0);
    // Layer 2 (ties with 3, lower) is all pinned: the unpinned mix of
    // layer 3 moves instead.
    assert_eq!(sizes(&even), [1, 2, 1]);
    let layer = |k: &[u8; 32]| even.nodes.iter().find(|n| n.key == *k).unwrap().layer;
    assert_eq!(
        [layer(&mixes[0]), layer(&mixes[1]), layer(&mixes[2])],
        [Some(2), Some(2), Some(3)],
        "a pinned mix is never moved"
    );
    // And the layers hold from then on.
    net.run(next, next + 2 * EPOCH);
    let later = net.doc(0, next + 2 * EPOCH, 2);
    for n in later.nodes.iter().filter(|n| n.role == Role::Mix) {
        let before = even.nodes.iter().find(|m| m.key == n.key).unwrap();
        assert_eq!(before.layer, n.layer);
    }
}
