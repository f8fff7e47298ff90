//! `mtos-node authority`: a directory authority. Nodes upload signed
//! descriptors to every authority; the authorities vote each round and
//! sign the document they agree on (`specs/directory.md` §6). This module
//! holds the config, `init` and the operator's approvals; `run` the
//! driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use mtos_crypto::{Identity, Label, Visibility};
use serde::{Deserialize, Serialize};

use super::{NodeError, create_private};
use mtos_mixnode::directory::{
    Admission, Approval, AuthoritySet, DirectoryError, EpochSchedule, MAX_FAMILY, MAX_SIGNATURES,
    Mixing, NetworkParams, REMEMBER_SECS, Rates, StorageRules,
};
use mtos_net::{libp2p_keypair, unix_now};

mod run;
pub use run::run;

/// The authority's key file, inside its directory.
pub const KEY_FILE: &str = "authority.key";
/// The authority's config file.
pub const CONFIG_FILE: &str = "authority.toml";
/// The operator's approvals, beside the config.
pub const APPROVED_FILE: &str = "approved.toml";
/// What the authority must not forget across restarts, beside the config.
pub const STATE_FILE: &str = "state.json";
/// The last agreed document, beside the config.
pub const DOCUMENT_FILE: &str = "document.bin";

/// Which nodes an authority votes for (`specs/directory.md` §6.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionMode {
    /// Only approved keys, in the layers the consensus gives.
    #[default]
    Approved,
    /// Any node, in the layer it asks for: testnets only.
    Open,
}

/// Another authority of the network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAuthority {
    /// Its ed25519 key, 64 hex digits.
    pub key: String,
    /// Its libp2p address.
    pub addr: String,
}

/// `authority.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// The network id.
    pub network: String,
    /// libp2p listen address.
    pub listen: String,
    /// Key directory, relative to the config file.
    pub keys: PathBuf,
    /// Mix layers.
    pub layers: u8,
    /// Epoch schedule.
    pub epochs: EpochSchedule,
    /// Network-wide mixing.
    pub mixing: Mixing,
    /// Network-wide rates.
    pub rates: Rates,
    /// What storage nodes take (absent: the defaults).
    #[serde(default)]
    pub storage: StorageRules,
    /// Which nodes it votes for.
    #[serde(default)]
    pub admission: AdmissionMode,
    /// A testnet: the only network where open admission is allowed.
    #[serde(default)]
    pub testnet: bool,
    /// Node keys (64 hex digits) approved besides `approved.toml`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The other authorities of the network.
    #[serde(default)]
    pub peers: Vec<PeerAuthority>,
    /// Signatures a document needs; 0: more than half of the authorities.
    #[serde(default)]
    pub threshold: usize,
    /// The largest share of a mix layer (or of the gateways, or of the
    /// service nodes) one family may hold, percent.
    #[serde(default = "default_family_cap")]
    pub family_cap_percent: u8,
}

fn default_family_cap() -> u8 {
    DEFAULT_FAMILY_CAP
}

/// A third of a layer, at most, for one family.
pub const DEFAULT_FAMILY_CAP: u8 = 33;

impl AuthorityConfig {
    /// Parses and checks; errors name the file and field.
    pub fn parse(text: &str, path: &Path) -> Result<Self, NodeError> {
        let c: AuthorityConfig = toml::from_str(text).map_err(|e| {
            NodeError::Config(format!(
                "{}: {}",
                path.display(),
                e.to_string().trim_end().replace('\n', " ")
            ))
        })?;
        let bad = |field: &str, why: &str| {
            NodeError::Config(format!("{}: field `{field}`: {why}", path.display()))
        };
        if c.network.trim().is_empty() || c.network.len() > 64 {
            return Err(bad("network", "must be 1 to 64 characters"));
        }
        if c.listen.parse::<Multiaddr>().is_err() {
            return Err(bad(
                "listen",
                "must be a multiaddr such as /ip4/127.0.0.1/tcp/9400",
            ));
        }
        if !(1..=3).contains(&c.layers) {
            return Err(bad("layers", "must be 1, 2 or 3"));
        }
        if !(1..=7 * 86_400).contains(&c.epochs.epoch_secs) {
            return Err(bad("epochs.epoch_secs", "must be 1 to 604800"));
        }
        if !(1..=c.epochs.epoch_secs).contains(&c.epochs.heartbeat_secs) {
            return Err(bad(
                "epochs.heartbeat_secs",
                "must be 1 to epochs.epoch_secs",
            ));
        }
        // The same ranges every node checks, so no node refuses what the
        // authority publishes.
        if let Err(e) = c.mixing.validate() {
            return Err(bad("mixing", &e.to_string()));
        }
        if !(1..=c.epochs.epoch_secs).contains(&c.epochs.round_secs) {
            return Err(bad("epochs.round_secs", "must be 1 to epochs.epoch_secs"));
        }
        if c.allow.iter().any(|k| parse_key(k).is_none()) {
            return Err(bad(
                "allow",
                "every entry must be a node key, 64 hex digits",
            ));
        }
        if c.admission == AdmissionMode::Open && !c.testnet {
            return Err(bad(
                "admission",
                "open admission lets anyone fill every layer; it is a testnet setting \
                 (testnet = true). Approve nodes instead: mtos-node authority approve KEY",
            ));
        }
        if !(1..=100).contains(&c.family_cap_percent) {
            return Err(bad("family_cap_percent", "must be 1 to 100"));
        }
        let mut keys = std::collections::BTreeSet::new();
        for (i, p) in c.peers.iter().enumerate() {
            let key = parse_key(&p.key).ok_or_else(|| {
                bad(
                    &format!("peers[{i}].key"),
                    "must be an authority key, 64 hex digits",
                )
            })?;
            if mtos_crypto::VerifyKey::from_bytes(key).is_err() || !keys.insert(key) {
                return Err(bad(
                    &format!("peers[{i}].key"),
                    "must be a distinct ed25519 key",
                ));
            }
            if p.addr.parse::<Multiaddr>().is_err() {
                return Err(bad(&format!("peers[{i}].addr"), "must be a multiaddr"));
            }
        }
        let n = c.peers.len() + 1;
        if n > MAX_SIGNATURES {
            return Err(bad("peers", "at most 15 other authorities"));
        }
        if c.threshold != 0 && !(n / 2 < c.threshold && c.threshold <= n) {
            return Err(bad(
                "threshold",
                &format!(
                    "must be more than half of the {n} authorities and at most {n}, or 0 for more than half"
                ),
            ));
        }
        // The same rule every node and client checks.
        c.rates.validate().map_err(|e| match e {
            DirectoryError::Field { field, problem } => bad(&field, &problem),
            other => bad("rates", &other.to_string()),
        })?;
        c.storage.validate().map_err(|e| match e {
            DirectoryError::Field { field, problem } => bad(&field, &problem),
            other => bad("storage", &other.to_string()),
        })?;
        Ok(c)
    }

    /// The commented file `authority init` writes (`testnet`: open
    /// admission and short rounds).
    pub fn template(
        network: &str,
        listen: &str,
        epoch_secs: u64,
        genesis: u64,
        mean_delay_ms: u64,
        testnet: bool,
    ) -> String {
        let heartbeat = epoch_secs.clamp(1, mtos_mixnode::directory::DEFAULT_HEARTBEAT_SECS);
        let round = if testnet {
            epoch_secs.clamp(1, 2)
        } else {
            (epoch_secs / 2).clamp(1, mtos_mixnode::directory::DEFAULT_ROUND_SECS)
        };
        let admission = if testnet { "open" } else { "approved" };
        let family_cap = DEFAULT_FAMILY_CAP;
        let stamp_floor = mtos_mixnode::directory::DEFAULT_STAMP_FLOOR;
        format!(
            r#"# mtos directory authority. Written by `mtos-node authority init`.
# Unknown fields are refused.

# The network id every node and client is configured with.
network = "{network}"
# libp2p listen address (TCP + Noise + Yamux); nodes' network.authority_addr.
listen = "{listen}"
# Key directory, relative to this file. Never share its contents.
keys = "keys"
# Mix layers between gateways and service nodes.
layers = 3
# A testnet: the only kind of network where admission may be open.
testnet = {testnet}
# Which nodes this authority votes for: "approved" (node keys approved
# with `mtos-node authority approve KEY`, kept in approved.toml, or listed
# in `allow`; layers are the authorities' to assign) or "open" (any node,
# in the layer it asks for: testnets only).
admission = "{admission}"
# Node keys (as `mtos-node init` prints them) approved besides approved.toml.
allow = []
# The largest share (percent) of a mix layer, of the gateways or of the
# service nodes that one family of nodes (`approve --family`) may hold.
family_cap_percent = {family_cap}
# Signatures a network document needs: 0 for more than half of the
# authorities (this one and its peers).
threshold = 0
# The other authorities, each as {{ key = "64 hex digits", addr = "/ip4/.../tcp/..." }}.
# Every authority of a network lists all the others.
peers = []

[epochs]
# Start of epoch 0 (Unix seconds) and the epoch length. Nodes make a new
# Sphinx key every epoch and publish it one epoch ahead.
genesis = {genesis}
epoch_secs = {epoch_secs}
# Nodes re-upload their descriptor this often (seconds); a node not heard
# from for three heartbeats leaves the document, and its records are
# copied to the nodes that replace it.
heartbeat_secs = {heartbeat}
# The authorities vote once a round (seconds): a new node is listed
# within two rounds; a round that fails keeps the document before it.
round_secs = {round}

[mixing]
# poisson (each hop holds a packet an exponential delay chosen by its
# sender) or pool (timed dynamic pool). One mode for the whole network.
mode = "poisson"
mean_delay_ms = {mean_delay_ms}
max_delay_ms = 10000

[rates]
# Per-second rates of clients' payload, loop and drop streams, and of
# mix nodes' own loops (specs/mixing.md).
payload = 2.0
loops = 1.0
drops = 1.0
node_loops = 1.0

[rates.bulk]
# Clients' rates inside their bulk windows (specs/client.md section 4.1).
# Time from genesis is cut into windows of window_secs, taken in turn by
# `cohorts` cohorts; each client is in one, drawn from its own seed, so it
# sends at these rates one window in `cohorts`, busy or not (here 30 s
# every 10 minutes: 5% of the day). Delete the table for no windows.
payload = 50.0
loops = 1.0
drops = 1.0
window_secs = 30
cohorts = 20

[storage]
# The least proof-of-work effort (Equi-X solutions, ~3 ms of one core
# each) a put's storage stamp carries; replicas ask more as they fill
# (specs/storage.md section 2).
stamp_floor = {stamp_floor}
"#
        )
    }

    /// Which nodes to vote for: every node (open), or the approvals in
    /// `approved` with the `allow` list's keys.
    pub fn admission(&self, approved: &Approvals) -> Admission {
        match self.admission {
            AdmissionMode::Open => Admission::Open,
            AdmissionMode::Approved => {
                let mut all: BTreeMap<[u8; 32], Approval> = self
                    .allow
                    .iter()
                    .filter_map(|k| parse_key(k))
                    .map(|k| (k, Approval::default()))
                    .collect();
                for (k, a) in &approved.nodes {
                    if let Some(key) = parse_key(k) {
                        all.insert(key, a.clone());
                    }
                }
                Admission::Approved(all)
            }
        }
    }

    /// The network's authorities: this one (`me`) and its peers.
    pub fn authority_set(&self, me: [u8; 32]) -> Result<AuthoritySet, NodeError> {
        let mut authorities = vec![me];
        for p in &self.peers {
            let key =
                parse_key(&p.key).ok_or_else(|| NodeError::Config("peers: not a key".into()))?;
            if key == me {
                return Err(NodeError::Config(
                    "peers: lists this authority's own key; list only the others".into(),
                ));
            }
            authorities.push(key);
        }
        let n = authorities.len();
        Ok(AuthoritySet {
            network: self.network.clone(),
            authorities,
            threshold: if self.threshold == 0 {
                AuthoritySet::majority_of(n)
            } else {
                self.threshold
            },
        })
    }

    pub(crate) fn params(&self) -> NetworkParams {
        NetworkParams {
            network: self.network.clone(),
            schedule: self.epochs,
            mixing: self.mixing,
            rates: self.rates,
            layers: self.layers,
            storage: self.storage,
            family_cap_percent: self.family_cap_percent,
            addresses: mtos_net::check_multiaddr,
        }
    }
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .ok()?
        .try_into()
        .ok()
}

/// What `authority init` made.
#[derive(Debug)]
pub struct Initialised {
    /// The config file.
    pub config: PathBuf,
    /// The authority's public key, hex: nodes' `network.authority`.
    pub public_key: String,
    /// Its PeerId.
    pub peer_id: String,
}

/// Creates an authority directory; never overwrites.
pub fn init(
    dir: &Path,
    network: &str,
    listen: &str,
    epoch_secs: u64,
    mean_delay_ms: u64,
    testnet: bool,
) -> Result<Initialised, NodeError> {
    let config = dir.join(CONFIG_FILE);
    let keys = dir.join("keys");
    let key = keys.join(KEY_FILE);
    for existing in [&config, &key] {
        if existing.exists() {
            return Err(NodeError::Config(format!(
                "{} exists; refusing to overwrite (nothing was written)",
                existing.display()
            )));
        }
    }
    let now = unix_now();
    let genesis = now - now % epoch_secs.max(1);
    let text =
        AuthorityConfig::template(network, listen, epoch_secs, genesis, mean_delay_ms, testnet);
    AuthorityConfig::parse(&text, &config)?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&keys).map_err(|source| NodeError::Io {
        path: keys.clone(),
        source,
    })?;
    let label = Label::new("mtos-authority").map_err(|e| NodeError::Config(e.to_string()))?;
    let identity = Identity::generate(&mut rand::rng(), label, Visibility::Public, now);
    create_private(&key, identity.export_secret().as_bytes())?;
    create_private(&config, text.as_bytes())?;
    Ok(Initialised {
        config,
        public_key: data_encoding::HEXLOWER.encode(identity.verify_key().as_bytes()),
        peer_id: libp2p_keypair(&identity).public().to_peer_id().to_string(),
    })
}

/// Loads the config at `path`.
pub fn load_config(path: &Path) -> Result<AuthorityConfig, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        path: path.to_owned(),
        source,
    })?;
    AuthorityConfig::parse(&text, path)
}

/// The operator's approvals (`approved.toml`): node keys (hex) with the
/// family and layer the operator gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// By node key.
    #[serde(default)]
    pub nodes: BTreeMap<String, Approval>,
    /// The re-keyings approved in the last 30 days: a node re-keys at most
    /// once per records' retention (`specs/directory.md` §6.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rekeys: Vec<Rekey>,
}

/// One approved re-keying (`approve NEW --replaces OLD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rekey {
    /// The key replaced, hex.
    pub old: String,
    /// The key replacing it, hex.
    pub new: String,
    /// When it was approved (Unix seconds).
    pub at: u64,
}

impl Approvals {
    /// Reads `approved.toml` in `dir` (none: no approvals).
    pub fn load(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(APPROVED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                NodeError::Config(format!(
                    "{}: {}",
                    path.display(),
                    e.to_string().trim_end().replace('\n', " ")
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(NodeError::Io { path, source }),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), NodeError> {
        let path = dir.join(APPROVED_FILE);
        let text = toml::to_string(self)
            .map_err(|e| NodeError::Config(format!("cannot write approvals: {e}")))?;
        let text = format!(
            "# Nodes this authority votes for. Written by `mtos-node authority approve`;\n\
             # re-read every voting round.\n{text}"
        );
        super::write_atomically(&path, text.as_bytes())
    }
}

/// `mtos-node authority approve`: approves `key` (a node key, as `mtos-node
/// init` prints it) in the authority directory `dir`, with a family and a
/// pinned layer if given. With `replaces`, the key is the new key of an
/// approved node: it takes the old key's family and pin (unless given),
/// the old key is voted for until the new one is listed, and the
/// re-keying is refused if the node re-keyed within the records'
/// retention (a fresh key draws a fresh salt: re-keying at will would be
/// re-drawing placement until it lands on a chosen locator). The running
/// authority takes it at its next round. Returns the key as written.
pub fn approve(
    dir: &Path,
    key: &str,
    family: Option<String>,
    layer: Option<u8>,
    replaces: Option<&str>,
    layers: u8,
    now: u64,
) -> Result<String, NodeError> {
    let parsed = node_key(key)?;
    if let Some(f) = &family
        && (f.is_empty() || f.len() > MAX_FAMILY || f.chars().any(char::is_control))
    {
        return Err(NodeError::Config(format!(
            "a family is 1 to {MAX_FAMILY} bytes without control characters"
        )));
    }
    if let Some(l) = layer
        && !(1..=layers).contains(&l)
    {
        return Err(NodeError::Config(format!(
            "layer {l}: this network has layers 1 to {layers}"
        )));
    }
    let mut approvals = Approvals::load(dir)?;
    approvals
        .rekeys
        .retain(|r| r.at.saturating_add(REMEMBER_SECS) > now);
    let hex = data_encoding::HEXLOWER.encode(&parsed);
    let mut approval = Approval {
        family,
        layer,
        replaces: None,
    };
    if let Some(old) = replaces {
        let old = data_encoding::HEXLOWER.encode(&node_key(old)?);
        if old == hex {
            return Err(NodeError::Config("a key cannot replace itself".to_owned()));
        }
        // A replacement is a key never seen here: not another node's, and
        // not one that took part in a re-keying.
        if approvals.nodes.contains_key(&hex)
            || approvals
                .rekeys
                .iter()
                .any(|r| r.old == hex || r.new == hex)
        {
            return Err(NodeError::Config(format!(
                "{hex} is already approved here, or was re-keyed: a node's new key must be \
                 a fresh one (mtos-node init). Nothing was written"
            )));
        }
        let Some(held) = approvals.nodes.get(&old) else {
            return Err(NodeError::Config(format!(
                "{old} is not approved here (a key in the config's `allow` list is \
                 re-keyed by editing that list): approve the new key without --replaces, \
                 and it is a new node"
            )));
        };
        if let Some(last) = approvals
            .rekeys
            .iter()
            .filter(|r| r.old == old || r.new == old)
            .map(|r| r.at)
            .max()
        {
            let days = |s: u64| s.div_ceil(86_400);
            return Err(NodeError::Config(format!(
                "this node re-keyed {} day(s) ago; a node re-keys at most once per {} days \
                 (each new key draws a new placement), so again in {} day(s). Nothing was \
                 written",
                (now.saturating_sub(last)) / 86_400,
                REMEMBER_SECS / 86_400,
                days(last.saturating_add(REMEMBER_SECS).saturating_sub(now)),
            )));
        }
        approval.family = approval.family.or_else(|| held.family.clone());
        approval.layer = approval.layer.or(held.layer);
        approval.replaces = parse_key(&old);
        approvals.rekeys.push(Rekey {
            old,
            new: hex.clone(),
            at: now,
        });
    }
    // Approving a replacement again (say, to change its family) keeps
    // what it replaces: the old key stays retired.
    if approval.replaces.is_none()
        && let Some(held) = approvals.nodes.get(&hex)
    {
        approval.replaces = held.replaces;
    }
    approvals.nodes.insert(hex.clone(), approval);
    approvals.save(dir)?;
    Ok(hex)
}

fn node_key(key: &str) -> Result<[u8; 32], NodeError> {
    parse_key(key)
        .filter(|k| mtos_crypto::VerifyKey::from_bytes(*k).is_ok())
        .ok_or_else(|| NodeError::Config(format!("{key:?} is not a node key (64 hex digits)")))
}

/// `mtos-node authority revoke`: withdraws the approval of `key`. The
/// running authority stops voting for it at its next round. Returns
/// whether it was approved.
pub fn revoke(dir: &Path, key: &str) -> Result<bool, NodeError> {
    let parsed = parse_key(key)
        .ok_or_else(|| NodeError::Config(format!("{key:?} is not a node key (64 hex digits)")))?;
    let mut approvals = Approvals::load(dir)?;
    let was = approvals
        .nodes
        .remove(&data_encoding::HEXLOWER.encode(&parsed))
        .is_some();
    approvals.save(dir)?;
    Ok(was)
}

#[cfg(test)]
mod tests;
