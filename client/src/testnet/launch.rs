//! Making a testnet's directories: `mtos-node authority init` and
//! `mtos-node init`, then the generated configs edited by key with typed
//! settings. A setting the generated file does not have is an error, never
//! a silent no-op (as a text replacement would be once a default or a name
//! changes). [`super::up`] and the test harness both start networks this
//! way.

use std::path::{Path, PathBuf};
use std::process::Command;

use mtos_mixnode::admission::Position;
use toml_edit::{DocumentMut, Item, Value};

use crate::ClientError;

/// Network-wide settings the authority publishes, over `authority init`'s
/// defaults; `None` keeps the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthoritySettings {
    /// Mix layers (`layers`: 1 to 3).
    pub layers: Option<u8>,
    /// Clients' payload rate λP per second (`rates.payload`).
    pub payload: Option<f64>,
    /// Clients' loop rate λL per second (`rates.loops`).
    pub loops: Option<f64>,
    /// Clients' drop rate λD per second (`rates.drops`).
    pub drops: Option<f64>,
    /// Mix nodes' loop rate λM per second (`rates.node_loops`).
    pub node_loops: Option<f64>,
    /// Clients' payload rate in their bulk windows (`rates.bulk.payload`).
    pub bulk_payload: Option<f64>,
    /// Clients' loop rate in their bulk windows (`rates.bulk.loops`).
    pub bulk_loops: Option<f64>,
    /// Clients' drop rate in their bulk windows (`rates.bulk.drops`).
    pub bulk_drops: Option<f64>,
    /// The length of a bulk window, seconds (`rates.bulk.window_secs`).
    pub bulk_window_secs: Option<u64>,
    /// Cohorts taking the windows in turn (`rates.bulk.cohorts`).
    pub bulk_cohorts: Option<u64>,
    /// No bulk windows at all (the `[rates.bulk]` table removed).
    pub no_bulk: bool,
    /// The longest per-hop delay a node accepts (`mixing.max_delay_ms`).
    pub max_delay_ms: Option<u64>,
    /// How often nodes re-upload their descriptor (`epochs.heartbeat_secs`).
    pub heartbeat_secs: Option<u64>,
    /// The least effort of a put's storage stamp (`storage.stamp_floor`).
    pub stamp_floor: Option<u32>,
    /// How long a voting round of the authorities lasts
    /// (`epochs.round_secs`).
    pub round_secs: Option<u64>,
    /// Which nodes the authorities vote for (`admission`: "open", as a
    /// testnet's are made, or "approved").
    pub admission: Option<String>,
}

impl AuthoritySettings {
    fn edits(&self) -> Vec<(&'static str, Value)> {
        let mut e = Vec::new();
        push(&mut e, "layers", self.layers.map(i64::from));
        push(&mut e, "rates.payload", self.payload);
        push(&mut e, "rates.loops", self.loops);
        push(&mut e, "rates.drops", self.drops);
        push(&mut e, "rates.node_loops", self.node_loops);
        push(&mut e, "rates.bulk.payload", self.bulk_payload);
        push(&mut e, "rates.bulk.loops", self.bulk_loops);
        push(&mut e, "rates.bulk.drops", self.bulk_drops);
        push(&mut e, "rates.bulk.window_secs", int(self.bulk_window_secs));
        push(&mut e, "rates.bulk.cohorts", int(self.bulk_cohorts));
        push(&mut e, "mixing.max_delay_ms", int(self.max_delay_ms));
        push(&mut e, "epochs.heartbeat_secs", int(self.heartbeat_secs));
        push(&mut e, "epochs.round_secs", int(self.round_secs));
        push(&mut e, "admission", self.admission.as_deref());
        push(
            &mut e,
            "storage.stamp_floor",
            self.stamp_floor.map(i64::from),
        );
        e
    }

    /// `authority init`'s config text with these settings applied.
    pub fn apply(&self, text: &str) -> Result<String, ClientError> {
        let edited = edit(text, self.edits())?;
        if !self.no_bulk {
            return Ok(edited);
        }
        let mut doc: DocumentMut = edited
            .parse()
            .map_err(|e| ClientError::Testnet(format!("a generated config does not parse: {e}")))?;
        let removed = doc
            .get_mut("rates")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.remove("bulk"));
        if removed.is_none() {
            return Err(ClientError::Testnet(
                "the generated config has no [rates.bulk] to remove".into(),
            ));
        }
        Ok(doc.to_string())
    }
}

/// One node's settings over `mtos-node init`'s defaults; `None` keeps the
/// default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSettings {
    /// Whether it stores records (`node.storage`).
    pub storage: Option<bool>,
    /// Frames per second one peer may send (`limits.peer_rate_pps`).
    pub peer_rate_pps: Option<u32>,
    /// Gateways: frames a client may send at once above its rate
    /// (`limits.client_burst`).
    pub client_burst: Option<u32>,
    /// Puts per second one service node may make (`storage.puts_per_service`).
    pub puts_per_service: Option<u32>,
    /// Puts one service node may make at once (`storage.put_burst`).
    pub put_burst: Option<u32>,
    /// Service nodes: chunks cached from replicas' answers
    /// (`storage.cache_chunks`; 0: none).
    pub cache_chunks: Option<u64>,
    /// Whether its log names client addresses (`log.client_addresses`).
    pub client_addresses: Option<bool>,
    /// Gateways: client sessions from one source address
    /// (`limits.sessions_per_address`; 0: no bound).
    pub sessions_per_address: Option<u32>,
    /// Packets each Sphinx key admits over its life
    /// (`limits.replay_capacity`).
    pub replay_capacity: Option<u64>,
    /// Threads doing Sphinx work (`limits.sphinx_workers`; 0: one per
    /// core).
    pub sphinx_workers: Option<u32>,
    /// Storing nodes: the bound on records' bytes (`storage.max_bytes`).
    pub max_bytes: Option<u64>,
    /// Storing nodes: how long every record is kept at least
    /// (`storage.retention_secs`).
    pub retention_secs: Option<u64>,
}

impl NodeSettings {
    fn edits(&self) -> Vec<(&'static str, Value)> {
        let mut e = Vec::new();
        push(&mut e, "node.storage", self.storage);
        push(
            &mut e,
            "limits.peer_rate_pps",
            self.peer_rate_pps.map(i64::from),
        );
        push(
            &mut e,
            "limits.client_burst",
            self.client_burst.map(i64::from),
        );
        push(
            &mut e,
            "storage.puts_per_service",
            self.puts_per_service.map(i64::from),
        );
        push(&mut e, "storage.put_burst", self.put_burst.map(i64::from));
        push(&mut e, "storage.cache_chunks", int(self.cache_chunks));
        push(&mut e, "log.client_addresses", self.client_addresses);
        push(
            &mut e,
            "limits.sessions_per_address",
            self.sessions_per_address.map(i64::from),
        );
        push(&mut e, "limits.replay_capacity", int(self.replay_capacity));
        push(
            &mut e,
            "limits.sphinx_workers",
            self.sphinx_workers.map(i64::from),
        );
        push(&mut e, "storage.max_bytes", int(self.max_bytes));
        push(&mut e, "storage.retention_secs", int(self.retention_secs));
        e
    }
}

/// How a node joins a network and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// The network id.
    pub network: String,
    /// Each authority's key (hex) and libp2p address.
    pub authorities: Vec<(String, String)>,
    /// The node's libp2p listen address.
    pub p2p: String,
    /// The node's metrics address, `host:port`.
    pub metrics: String,
}

/// `mtos-node init`'s config text joined to a network by `wiring`, with
/// `settings` applied.
pub fn node_config(
    text: &str,
    wiring: &Wiring,
    settings: &NodeSettings,
) -> Result<String, ClientError> {
    let mut edits: Vec<(&'static str, Value)> = vec![
        ("network.id", wiring.network.as_str().into()),
        ("network.authorities", key_addr_array(&wiring.authorities)),
        ("listen.p2p", wiring.p2p.as_str().into()),
        ("listen.metrics", wiring.metrics.as_str().into()),
    ];
    edits.extend(settings.edits());
    edit(text, edits)
}

/// `[{ key = "...", addr = "..." }, ...]`.
fn key_addr_array(pairs: &[(String, String)]) -> Value {
    let mut array = toml_edit::Array::new();
    for (key, addr) in pairs {
        let mut t = toml_edit::InlineTable::new();
        t.insert("key", key.as_str().into());
        t.insert("addr", addr.as_str().into());
        array.push(Value::InlineTable(t));
    }
    Value::Array(array)
}

/// Makes each authority of a network list all the others as its peers,
/// with one genesis: now, so that the network's first epoch is a whole
/// epoch from its launch. (Each `authority init` takes the start of its
/// own current epoch, and an epoch may turn between two of them:
/// authorities that disagree on the schedule never agree on a document.
/// And a network launched late in that epoch would list its nodes first
/// in the next one, where they are not founders and get no placement
/// salt until the epoch after, `directory.md` §6.4: storage nodes that
/// store nothing for up to two epochs.)
pub fn join_authorities(authorities: &[Authority]) -> Result<(), ClientError> {
    if authorities.is_empty() {
        return Ok(());
    }
    let genesis = i64::try_from(mtos_net::unix_now())
        .map_err(|_| ClientError::Testnet("the clock is past the year 292 billion".into()))?;
    for a in authorities {
        let others: Vec<(String, String)> = authorities
            .iter()
            .filter(|o| o.key != a.key)
            .map(|o| (o.key.clone(), o.addr.clone()))
            .collect();
        let text = std::fs::read_to_string(&a.config).map_err(super::io(&a.config))?;
        let text = edit(
            &text,
            vec![
                ("peers", key_addr_array(&others)),
                ("epochs.genesis", genesis.into()),
            ],
        )?;
        std::fs::write(&a.config, text).map_err(super::io(&a.config))?;
    }
    Ok(())
}

/// How nodes are wired to these authorities.
pub fn wiring(authorities: &[Authority], p2p: &str, metrics: &str) -> Wiring {
    Wiring {
        network: authorities
            .first()
            .map(|a| a.network.clone())
            .unwrap_or_default(),
        authorities: authorities
            .iter()
            .map(|a| (a.key.clone(), a.addr.clone()))
            .collect(),
        p2p: p2p.to_owned(),
        metrics: metrics.to_owned(),
    }
}

fn push<T: Into<Value>>(edits: &mut Vec<(&'static str, Value)>, key: &'static str, v: Option<T>) {
    if let Some(v) = v {
        edits.push((key, v.into()));
    }
}

/// TOML integers are i64; larger settings saturate (no setting is near).
fn int(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Sets each dotted key of `text` that already exists, keeping comments.
fn edit(text: &str, edits: Vec<(&'static str, Value)>) -> Result<String, ClientError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| ClientError::Testnet(format!("a generated config does not parse: {e}")))?;
    for (key, v) in edits {
        let missing =
            || ClientError::Testnet(format!("the generated config has no setting `{key}`"));
        let mut item: &mut Item = doc.as_item_mut();
        for part in key.split('.') {
            item = item.get_mut(part).ok_or_else(missing)?;
        }
        let old = item.as_value_mut().ok_or_else(missing)?;
        if old.type_name() != v.type_name() {
            return Err(ClientError::Testnet(format!(
                "setting `{key}` is a {} in the generated config, not a {}",
                old.type_name(),
                v.type_name()
            )));
        }
        // Keep the key's surroundings (its trailing comment, say).
        let decor = old.decor().clone();
        *old = v;
        *old.decor_mut() = decor;
    }
    Ok(doc.to_string())
}

/// An authority made by [`init_authority`].
#[derive(Debug, Clone)]
pub struct Authority {
    /// Its config file.
    pub config: PathBuf,
    /// The network id.
    pub network: String,
    /// Its public key, hex.
    pub key: String,
    /// Its libp2p address.
    pub addr: String,
}

/// `mtos-node authority init --testnet` in `dir` (which must not hold
/// one) for `network` on a free loopback port, with `settings` applied.
/// Its config is `authority.toml` in `dir`; several authorities are then
/// introduced to each other by [`join_authorities`].
pub fn init_authority(
    bin: &Path,
    dir: &Path,
    network: &str,
    epoch_secs: u64,
    mean_delay_ms: u64,
    settings: &AuthoritySettings,
) -> Result<Authority, ClientError> {
    let addr = format!("/ip4/127.0.0.1/tcp/{}", super::free_port()?);
    let out = run_ok(
        bin,
        &[
            "authority",
            "init",
            "--dir",
            &dir.to_string_lossy(),
            "--network",
            network,
            "--listen",
            &addr,
            "--epoch-secs",
            &epoch_secs.to_string(),
            "--mean-delay-ms",
            &mean_delay_ms.to_string(),
            "--testnet",
        ],
    )?;
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("authority key: "))
        .ok_or_else(|| ClientError::Testnet("mtos-node authority init printed no key".into()))?
        .to_owned();
    let config = dir.join("authority.toml");
    let text = std::fs::read_to_string(&config).map_err(super::io(&config))?;
    std::fs::write(&config, settings.apply(&text)?).map_err(super::io(&config))?;
    Ok(Authority {
        config,
        network: network.to_owned(),
        key,
        addr,
    })
}

/// A node made by [`init_node`].
#[derive(Debug, Clone)]
pub struct Node {
    /// Its directory.
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its libp2p address.
    pub p2p: String,
    /// Its metrics address, `host:port`.
    pub metrics: String,
}

/// `mtos-node init` in `dir` for a node at `position`, joined to
/// `authorities` on free loopback ports, with `settings` applied. Its
/// config is `mtos-node.toml` in `dir`.
pub fn init_node(
    bin: &Path,
    dir: &Path,
    position: Position,
    authorities: &[Authority],
    settings: &NodeSettings,
) -> Result<Node, ClientError> {
    let (role, layer) = match position {
        Position::Gateway => ("gateway", None),
        Position::Layer(l) => ("mix", Some(l.to_string())),
        Position::Service => ("service", None),
        Position::Client => {
            return Err(ClientError::Testnet("a client is not a node".into()));
        }
    };
    let dir_text = dir.to_string_lossy();
    let mut args = vec!["init", "--dir", &dir_text, "--role", role];
    if let Some(l) = &layer {
        args.extend(["--layer", l]);
    }
    run_ok(bin, &args)?;
    let p2p = format!("/ip4/127.0.0.1/tcp/{}", super::free_port()?);
    let metrics = format!("127.0.0.1:{}", super::free_port()?);
    let config = dir.join("mtos-node.toml");
    let text = std::fs::read_to_string(&config).map_err(super::io(&config))?;
    let text = node_config(&text, &wiring(authorities, &p2p, &metrics), settings)?;
    std::fs::write(&config, text).map_err(super::io(&config))?;
    Ok(Node {
        dir: dir.to_owned(),
        config,
        p2p,
        metrics,
    })
}

fn run_ok(bin: &Path, args: &[&str]) -> Result<String, ClientError> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| ClientError::Testnet(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(ClientError::Testnet(format!(
            "mtos-node {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# top\n[rates]\n# the payload rate\npayload = 2.0 # per second\nloops = 1\n";

    #[test]
    fn a_setting_replaces_the_value_and_keeps_the_comments() {
        let out = edit(TEXT, vec![("rates.payload", 20.5.into())]).unwrap();
        assert_eq!(
            out,
            "# top\n[rates]\n# the payload rate\npayload = 20.5 # per second\nloops = 1\n"
        );
    }

    #[test]
    fn a_setting_the_file_lacks_or_of_another_type_is_refused() {
        for (key, v) in [
            ("rates.payloads", Value::from(1.0)),
            ("mixing.payload", Value::from(1.0)),
            ("rates", Value::from(1.0)),
            ("rates.loops", Value::from(1.0)),
        ] {
            let e = edit(TEXT, vec![(key, v)]).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
