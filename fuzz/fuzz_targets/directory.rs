//! What an authority, node or auditor reads from the directory protocol
//! (`specs/directory.md` §4, §6): `get votes` answers, votes, signed
//! documents and descriptors; the votes that parse go through the
//! consensus rule and a voting round, which must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mtos_crypto::{Identity, Label, Visibility};
use mtos_mixnode::directory::{
    Authority, AuthoritySet, Descriptor, EpochSchedule, Mixing, MixingKind, NetworkDocument,
    NetworkParams, Rates, StorageRules, Trust, Vote, Voting, VotingState, compute_consensus,
    document_signers,
};

fn addresses(a: &str) -> Result<(), String> {
    if a.starts_with('/') { Ok(()) } else { Err("not an address".into()) }
}

fuzz_target!(|data: &[u8]| {
    let authority = Identity::from_secrets(
        Label::new("fuzz").unwrap_or_else(|_| unreachable!()),
        Visibility::Public,
        0,
        &[1; 32],
        &[2; 32],
    );
    let me = *authority.verify_key().as_bytes();
    let keys = [me, [9; 32]];
    let trust = Trust {
        network: "fuzz".into(),
        authorities: vec![authority.verify_key()],
        threshold: 1,
        addresses,
    };
    let _ = NetworkDocument::verify(data, &trust, 1_000);
    let _ = document_signers(data, &keys);
    let _ = Descriptor::verify(data, "fuzz", 3, addresses);
    let votes: Vec<Vec<u8>> = mtos_mixnode::directory::decode_votes(data).unwrap_or_else(|| vec![data.to_vec()]);
    let parsed: Vec<_> = votes
        .iter()
        .filter_map(|v| Vote::verify(v, "fuzz", &keys, addresses).ok())
        .collect();
    for (vote, _) in &parsed {
        let _ = compute_consensus("fuzz", &keys, vote.epoch, vote.serial, &parsed, addresses);
    }
    let params = NetworkParams {
        network: "fuzz".into(),
        schedule: EpochSchedule { genesis: 0, epoch_secs: 10, heartbeat_secs: 10, round_secs: 2 },
        mixing: Mixing {
            mode: MixingKind::Poisson,
            mean_delay_ms: 50,
            max_delay_ms: 1_000,
            pool_interval_ms: 0,
            pool_min: 0,
            pool_fraction: 0.0,
        },
        rates: Rates { payload: 1.0, loops: 1.0, drops: 1.0, node_loops: 1.0, bulk: None },
        layers: 3,
        storage: StorageRules::default(),
        family_cap_percent: 33,
        addresses,
    };
    let set = AuthoritySet { network: "fuzz".into(), authorities: keys.to_vec(), threshold: 2 };
    let mut voting = Voting::new(set, me, Authority::new(params), VotingState::default(), addresses);
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed([0; 32]);
    voting.tick(1_000, &authority, &mut rng);
    let _ = voting.authority_mut().accept_descriptor(data, 1);
    for v in &votes {
        let _ = voting.add_vote(v);
    }
    voting.tick(1_999, &authority, &mut rng);
    let _ = voting.add_signatures(data);
    let _ = voting.restore_document(data, 1);
    voting.tick(2_001, &authority, &mut rng);
});
