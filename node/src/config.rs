//! The relay operator's configuration file (`mtos-node.toml`) and the
//! node's key directory. Reading and writing files is the driver's job;
//! this module only parses, validates and renders.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, an unknown key or a wrong type (toml's message names
    /// the line and the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

pub use mtos_mixnode::directory::Role;

/// The node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// What the node is.
    pub node: NodeSection,
    /// Which network it joins.
    pub network: NetworkSection,
    /// Where it listens.
    pub listen: ListenSection,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Retention of stored records (storage nodes).
    #[serde(default)]
    pub storage: StorageSection,
    /// Logging choices.
    #[serde(default)]
    pub log: LogSection,
    /// Test-only fault injection. Parsed always, so that a build without
    /// the `faults` cargo feature can refuse it by name: an operator's
    /// node never runs a fault, whatever its file says.
    #[serde(default)]
    pub faults: Option<FaultsSection>,
}

/// `[faults]`: how a test makes this node misbehave, as a node mounting
/// an attack would. Honoured only by builds with the `faults` cargo
/// feature (the workspace's tests enable it); every other build refuses a
/// configuration that has the section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Drop every mix frame read (counted as `fault_injected`): a
    /// blocking attack, which node loop cover must notice.
    pub drop_all: bool,
    /// Answer replica gets with tampered records: a lying storage node,
    /// which readers must detect and route around.
    pub tamper_records: bool,
    /// Answer client requests as a lying service node would, which
    /// clients must catch (or outvote) and route around.
    pub service_lie: ServiceLie,
    /// A gateway writes down when each client frame arrives, on which
    /// stream, and each client connection (`client_frames.log` in the
    /// data directory), as a gateway watching its clients would.
    pub watch_clients: bool,
}

/// How a service node with `[faults] service_lie` lies
/// (`specs/storage.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ServiceLie {
    /// It does not.
    #[default]
    None,
    /// Answers every put "stored" without asking a replica, with
    /// receipts in the replicas' names signed with its own key.
    AckPuts,
    /// Answers every put "refused: wrong_locator" in a replica's name,
    /// signed with its own key.
    ForgeRefusals,
    /// Withholds from probe answers every replica's signed answer that
    /// says a slot is written.
    HideHeld,
}

/// What a binary does with a `[faults]` section. Each binary says it:
/// `mtos-node` always refuses, whatever features its library was built
/// with; only `mtos-node-faults` (cargo feature `faults`) honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPolicy {
    /// Refuse a configuration that has the section, naming it.
    Refuse,
    /// Inject the faults it asks for (test builds only).
    #[cfg(feature = "faults")]
    Honour,
}

impl NodeConfig {
    /// The faults this node injects: none unless configured (and only
    /// [`FaultPolicy::Honour`] lets a configuration with the section in).
    pub fn faults(&self) -> FaultsSection {
        self.faults.unwrap_or_default()
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Gateway, mix or service.
    pub role: Role,
    /// Mix layer 1..=3 (mix nodes only).
    #[serde(default)]
    pub layer: Option<u8>,
    /// Whether the node also stores records.
    #[serde(default)]
    pub storage: bool,
    /// Directory of the key files, relative to the config file.
    pub keys: PathBuf,
    /// Directory of the node's databases (replay tags), relative to the
    /// config file.
    #[serde(default = "default_data")]
    pub data: PathBuf,
}

fn default_data() -> PathBuf {
    PathBuf::from("data")
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// The network id; documents of other networks are refused.
    pub id: String,
    /// The network's directory authorities (empty until the operator
    /// pastes them in).
    #[serde(default)]
    pub authorities: Vec<AuthorityEntry>,
    /// Authority signatures a document needs; 0: more than half of them.
    #[serde(default)]
    pub threshold: usize,
}

/// One authority in `network.authorities`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEntry {
    /// Its ed25519 public key, 64 hex digits.
    pub key: String,
    /// Its libp2p address.
    pub addr: String,
}

impl NetworkSection {
    /// The authorities, parsed; the error names the entry and field.
    pub fn authority_addrs(&self) -> Result<Vec<mtos_net::AuthorityAddr>, crate::NodeError> {
        let mut out: Vec<mtos_net::AuthorityAddr> = Vec::new();
        for (i, a) in self.authorities.iter().enumerate() {
            let parsed = mtos_net::AuthorityAddr::parse(&a.key, &a.addr)
                .map_err(|e| crate::NodeError::Config(format!("network.authorities[{i}].{e}")))?;
            if out.iter().any(|o| o.key == parsed.key) {
                return Err(crate::NodeError::Config(format!(
                    "network.authorities[{i}].key: listed twice"
                )));
            }
            out.push(parsed);
        }
        Ok(out)
    }

    /// Signatures a document needs: the threshold set, or more than half.
    pub fn signatures_needed(&self) -> usize {
        match self.threshold {
            0 => mtos_mixnode::directory::AuthoritySet::majority_of(self.authorities.len()),
            t => t,
        }
    }
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// libp2p listen address of the mix links.
    pub p2p: String,
    /// Prometheus endpoint (`host:port`).
    pub metrics: String,
    /// Addresses published in the network document; empty: the addresses
    /// the node actually listens on.
    #[serde(default)]
    pub announce: Vec<String>,
}

pub use mtos_mixnode::admission::CLIENT_RATE_FACTOR;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Packets held for mixing at once.
    pub queue_limit: usize,
    /// Open connections (and a gateway's client sessions in all).
    pub max_connections: u32,
    /// A gateway's client sessions from one source address (an IPv4
    /// address, an IPv6 /64) at once; 0: no bound (for clients that
    /// share an address, e.g. through Tor).
    pub sessions_per_address: u32,
    /// Frames per second one peer may send (token bucket rate).
    pub peer_rate_pps: u32,
    /// A gateway's per-client token bucket: how many frames a client may
    /// send at once above its rate (the rate itself comes from the network
    /// document: [`CLIENT_RATE_FACTOR`] times the client's λP + λL + λD).
    pub client_burst: u32,
    /// Packets one epoch key admits over its life, which its replay
    /// filter is sized for (memory: about 4.9 bytes per packet at the
    /// node's 10⁻⁶, three keys at a time); admitted at most at
    /// `replay_capacity / epoch_secs` a second (`mixing.md` §2).
    pub replay_capacity: u64,
    /// Threads doing Sphinx work (the header MAC, the public key, the
    /// unwrap): 0 for one per core, 1 for the engine's own thread alone
    /// (`mixing.md` §4).
    pub sphinx_workers: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue_limit: 100_000,
            max_connections: 1_024,
            sessions_per_address: 64,
            peer_rate_pps: 20_000,
            client_burst: 100,
            replay_capacity: 4_000_000,
            sphinx_workers: 0,
        }
    }
}

/// `[storage]`: how long records live and how much a storage node keeps
/// (`specs/storage.md` §2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Every record lives at least this long, seconds.
    pub retention_secs: u64,
    /// Bytes of records kept; above it the oldest records past the
    /// retention time are evicted, and puts are refused when none is.
    pub max_bytes: u64,
    /// Puts per second one service node may make on this replica.
    pub puts_per_service: u32,
    /// Puts one service node may make at once above that rate.
    pub put_burst: u32,
    /// Records per second this node copies to new replicas when the
    /// document's storage nodes change (`specs/storage.md` §1); kept
    /// below `puts_per_service` so a repair is never refused as a flood.
    pub repair_per_sec: u32,
    /// Chunks a service node caches (0: no cache).
    pub cache_chunks: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            retention_secs: 30 * 24 * 3600,
            max_bytes: 10 << 30,
            puts_per_service: 200,
            put_burst: 2_000,
            repair_per_sec: 100,
            cache_chunks: mtos_mixnode::cache::DEFAULT_CACHE_CHUNKS,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Log client addresses (off by default: it would record who uses the
    /// network).
    pub client_addresses: bool,
}

/// Refuses a `[faults]` section unless the binary honours it.
fn check_faults(has_faults: bool, policy: FaultPolicy) -> Result<(), &'static str> {
    match policy {
        FaultPolicy::Refuse if has_faults => Err(
            "fault injection is for tests and this binary does not have it (mtos-node-faults, cargo feature `faults`); remove the [faults] section",
        ),
        _ => Ok(()),
    }
}

impl NodeConfig {
    /// Parses and validates `text`, refusing a `[faults]` section; `path`
    /// names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with(text, path, FaultPolicy::Refuse)
    }

    /// [`NodeConfig::parse`] with the binary's [`FaultPolicy`].
    pub fn parse_with(text: &str, path: &Path, faults: FaultPolicy) -> Result<Self, ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        // Before the typed parse, so that a refused section is named even
        // when its fields are wrong too.
        let has_faults =
            toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("faults"));
        check_faults(has_faults, faults).map_err(|r| invalid("faults", r))?;
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        match (config.node.role, config.node.layer) {
            (Role::Mix, Some(1..=3)) => {}
            (Role::Mix, _) => {
                return Err(invalid("node.layer", "a mix node needs layer = 1, 2 or 3"));
            }
            (_, Some(_)) => {
                return Err(invalid("node.layer", "only mix nodes have a layer"));
            }
            (_, None) => {}
        }
        if config.network.id.trim().is_empty() || config.network.id.len() > 64 {
            return Err(invalid("network.id", "must be 1 to 64 characters"));
        }
        if let Err(e) = config.network.authority_addrs() {
            return Err(invalid("network.authorities", &e.to_string()));
        }
        let n = config.network.authorities.len();
        let t = config.network.threshold;
        if t != 0 && !(n / 2 < t && t <= n) {
            return Err(invalid(
                "network.threshold",
                "must be more than half of the authorities listed and at most all, or 0 for more than half",
            ));
        }
        if !config.listen.p2p.starts_with('/') {
            return Err(invalid(
                "listen.p2p",
                "must be a multiaddr such as /ip4/0.0.0.0/tcp/9401",
            ));
        }
        if config
            .listen
            .metrics
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(invalid(
                "listen.metrics",
                "must be host:port, e.g. 127.0.0.1:9402",
            ));
        }
        for a in &config.listen.announce {
            if !a.starts_with('/') {
                return Err(invalid(
                    "listen.announce",
                    "every entry must be a multiaddr such as /ip4/203.0.113.5/tcp/9401",
                ));
            }
        }
        if config.limits.queue_limit == 0
            || config.limits.max_connections == 0
            || config.limits.peer_rate_pps == 0
            || config.limits.client_burst == 0
            || config.limits.replay_capacity == 0
        {
            return Err(invalid("limits", "every limit must be at least 1"));
        }
        if config.storage.retention_secs == 0
            || config.storage.max_bytes == 0
            || config.storage.puts_per_service == 0
            || config.storage.put_burst == 0
            || config.storage.repair_per_sec == 0
        {
            return Err(invalid("storage", "every storage limit must be at least 1"));
        }
        if config.storage.cache_chunks > 1_000_000 {
            return Err(invalid(
                "storage.cache_chunks",
                "at most 1000000 (3.6 GB of memory)",
            ));
        }
        Ok(config)
    }

    /// The commented default configuration `mtos-node init` writes.
    /// It never has a `[faults]` section.
    pub fn template(role: Role, layer: Option<u8>) -> String {
        let role_name = match role {
            Role::Gateway => "gateway",
            Role::Mix => "mix",
            Role::Service => "service",
        };
        let layer_line = match layer {
            Some(l) => format!("layer = {l}\n"),
            None => "# layer = 1        # mix nodes only: 1, 2 or 3\n".to_owned(),
        };
        format!(
            r#"# mtos-node configuration. Written by `mtos-node init`; edit freely.
# Every field is explained here; unknown fields are refused.

[node]
# gateway (clients connect here), mix (a layer of the mixnet), or service
# (final hop that answers requests).
role = "{role_name}"
{layer_line}# Whether this node also stores records for the storage layer.
storage = false
# The key directory, relative to this file. Never share its contents.
keys = "keys"
# Databases (replay tags), relative to this file.
data = "data"

[network]
# The network this node joins; documents for other networks are refused.
id = "mtos-local"
# The network's directory authorities, as its operators give them: each
# {{ key = "ed25519 public key, 64 hex digits", addr = "/ip4/.../tcp/..." }}.
# Documents not signed by enough of them are refused.
authorities = []
# Authority signatures a document needs: 0 for more than half of them.
threshold = 0

[listen]
# Mix links (libp2p: TCP + Noise + Yamux).
p2p = "/ip4/0.0.0.0/tcp/9401"
# Prometheus metrics at http://<this>/metrics. Keep it off the internet.
metrics = "127.0.0.1:9402"
# Addresses other nodes dial, as published in the network document. Empty:
# the addresses the node listens on (set it when listening on 0.0.0.0).
announce = []

[limits]
# Packets held for mixing at once; beyond it packets are dropped (counted).
queue_limit = 100000
max_connections = 1024
# Gateways: client sessions from one source address (an IPv4 address or an
# IPv6 /64) at once; 0 for no bound (clients sharing an address, e.g.
# through one Tor exit, share this).
sessions_per_address = 64
# Frames per second one peer may send.
peer_rate_pps = 20000
# Gateways: frames a client may send at once above its rate. The rate is
# twice the client's send rate in the network document (lambda P + L + D);
# a client on the cover schedule stays far below both.
client_burst = 100
# Packets each Sphinx key admits over its life, which its replay filter
# is sized for (about 4.9 bytes each; three keys at once); at most this
# many per epoch's length a second are admitted (more are refused as
# key_cap, so a flood never fills a filter past its false-positive bound).
# Gateways serve only as many clients as that rate carries (53 at the
# template's rates with bulk windows, 92 without, over an hour's epoch):
# raise it to serve more.
replay_capacity = 4000000
# Threads doing the Sphinx work of frames (header MAC, public key,
# unwrap), handing them back in arrival order: 0 for one per core, 1 for
# none beside the engine's own.
sphinx_workers = 0

[storage]
# Storage nodes (node.storage = true): every record lives at least this
# long (30 days), whatever arrives...
retention_secs = 2592000
# ...and above this many bytes of records (10 GiB) the oldest records past
# that age are evicted; when none is old enough, new puts are refused.
max_bytes = 10737418240
# Puts one service node may make here: per second, and at once above that
# (so one service node, or the clients behind it, cannot flush the store).
puts_per_service = 200
put_burst = 2000
# Records per second copied to new replicas when a storage node leaves or
# joins the network document (repair); below puts_per_service.
repair_per_sec = 100
# Service nodes: chunks kept from replicas' answers (about 36 MB; 0: none).
cache_chunks = 10000

[log]
# Log client addresses? Off: logs would then record who uses the network.
client_addresses = false
"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_for_every_role() {
        for (role, layer) in [
            (Role::Gateway, None),
            (Role::Mix, Some(2)),
            (Role::Service, None),
        ] {
            let text = NodeConfig::template(role, layer);
            let c = NodeConfig::parse(&text, Path::new("t.toml")).unwrap();
            assert_eq!(c.node.role, role);
            assert_eq!(c.node.layer, layer);
            assert!(!c.log.client_addresses);
            assert_eq!(
                c.storage,
                StorageSection::default(),
                "the template says the defaults"
            );
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let base = NodeConfig::template(Role::Mix, Some(1));
        let cases = [
            (base.replace("layer = 1", "layer = 4"), "node.layer"),
            (base.replace("layer = 1\n", ""), "node.layer"),
            (
                base.replace(
                    "authorities = []",
                    "authorities = [{ key = \"abc\", addr = \"/ip4/127.0.0.1/tcp/1\" }]",
                ),
                "network.authorities",
            ),
            (
                base.replace("threshold = 0", "threshold = 1"),
                "network.threshold",
            ),
            (
                base.replace("127.0.0.1:9402", "localhost"),
                "listen.metrics",
            ),
            (base.replace("p2p = \"/ip4", "p2p = \"ip4"), "listen.p2p"),
            (
                base.replace("queue_limit = 100000", "queue_limit = 0"),
                "limits",
            ),
            (
                base.replace("storage = false", "storage = false\nstorrage = 1"),
                "storrage",
            ),
            (base.replace("role = \"mix\"", "role = \"relay\""), "role"),
            (
                base.replace("retention_secs = 2592000", "retention_secs = 0"),
                "storage",
            ),
        ];
        for (text, field) in cases {
            let e = NodeConfig::parse(&text, Path::new("n.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e} does not name {field}");
            assert!(e.starts_with("n.toml"), "{e}");
        }
    }

    #[test]
    fn the_operators_parse_refuses_a_faults_section_by_name() {
        let base = NodeConfig::template(Role::Mix, Some(1));
        for section in [
            "[faults]\ndrop_all = true\n",
            // Named even when its fields are wrong too.
            "[faults]\nno_such_fault = 1\n",
            "[faults]\n",
        ] {
            let text = format!("{base}\n{section}");
            let e = NodeConfig::parse(&text, Path::new("n.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[faults]") && e.starts_with("n.toml"), "{e}");
        }
        let plain = NodeConfig::parse(&base, Path::new("n.toml")).unwrap();
        assert_eq!(plain.faults(), FaultsSection::default());
    }

    #[cfg(feature = "faults")]
    #[test]
    fn the_faults_binarys_parse_honours_the_section() {
        let base = NodeConfig::template(Role::Mix, Some(1));
        let text = format!("{base}\n[faults]\ndrop_all = true\n");
        let c = NodeConfig::parse_with(&text, Path::new("n.toml"), FaultPolicy::Honour).unwrap();
        assert!(c.faults().drop_all && !c.faults().tamper_records);
        let bad = format!("{base}\n[faults]\nno_such_fault = 1\n");
        assert!(NodeConfig::parse_with(&bad, Path::new("n.toml"), FaultPolicy::Honour).is_err());
    }
}
