//! A local testnet: a directory authority, gateways, mix layers and
//! service nodes as real `mtos-node` processes on 127.0.0.1, for trying
//! mtos on one machine. `up` starts them and waits until every node uses
//! a document listing all of them; if anything fails half-way it stops
//! what it started. `down` stops them all. The state (processes, metrics
//! URLs, what a client needs) is `testnet.json` in the directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mtos_mixnode::admission::Position;

use crate::ClientError;
use crate::mixnet::NetworkConfig;

mod launch;

pub use launch::{
    Authority, AuthoritySettings, Node, NodeSettings, Wiring, init_authority, init_node,
    join_authorities, node_config, wiring,
};

/// The state file inside a testnet directory.
pub const STATE_FILE: &str = "testnet.json";

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Mix layers.
    pub layers: u8,
    /// Mix nodes per layer.
    pub per_layer: usize,
    /// Gateways.
    pub gateways: usize,
    /// Service nodes.
    pub services: usize,
    /// Epoch length, seconds.
    pub epoch_secs: u64,
    /// Mean per-hop delay, ms.
    pub mean_delay_ms: u64,
    /// λP, λL, λD per second.
    pub rates: (f64, f64, f64),
    /// Every node's loop rate λM per second (`rates.node_loops`; a mix's
    /// loops are probes to the service nodes, `mixing.md` §5).
    pub node_loops: f64,
    /// Directory authorities (a document needs more than half of their
    /// signatures).
    pub authorities: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            layers: 3,
            per_layer: 2,
            gateways: 1,
            services: 1,
            epoch_secs: 600,
            mean_delay_ms: 20,
            rates: (10.0, 2.0, 2.0),
            node_loops: 1.0,
            authorities: 3,
        }
    }
}

/// One process of the testnet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    /// A name: authority, gateway-1, mix-2-1, service-1.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its config file.
    pub config: PathBuf,
    /// Its metrics address (`host:port`), nodes only.
    pub metrics: Option<String>,
}

/// `testnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Network id.
    pub network: String,
    /// Each authority's key (hex) and libp2p address.
    pub authorities: Vec<AuthorityInfo>,
    /// Every process, authorities first.
    pub processes: Vec<Process>,
}

/// One authority in `testnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorityInfo {
    /// Its key, hex.
    pub key: String,
    /// Its libp2p address.
    pub addr: String,
}

impl State {
    /// What a client needs to join.
    pub fn network_config(&self) -> Result<NetworkConfig, ClientError> {
        let pairs: Vec<(String, String)> = self
            .authorities
            .iter()
            .map(|a| (a.key.clone(), a.addr.clone()))
            .collect();
        NetworkConfig::parse(&self.network, &pairs, 0, "testnet.json")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A free TCP port on 127.0.0.1 for a listener: drawn at random below the
/// kernel's ephemeral range, never handed out twice by this process, and
/// checked by binding it once (another process could still take it before
/// it is used, but no outgoing connection will).
pub fn free_port() -> Result<u16, ClientError> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    // Below the kernel's ephemeral range: a port from that range can be
    // taken by any process's outgoing connection between this check and
    // the listener's bind (a node once failed with "address in use" on a
    // busy machine).
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > 12_000 {
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            let port = rand::RngExt::random_range(&mut rng, 10_000..ephemeral_low);
            let fresh = GIVEN.lock().is_ok_and(|g| !g.contains(&port));
            if fresh && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                if let Ok(mut g) = GIVEN.lock() {
                    g.insert(port);
                }
                return Ok(port);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClientError::Testnet(format!("no free port on 127.0.0.1: {e}")))
}

/// Scrapes `name` from a node's Prometheus endpoint, summed over the
/// label sets containing `labels` (e.g. `reason="replay"`; empty: all);
/// `None` when the endpoint does not answer.
pub fn metric(addr: &str, name: &str, labels: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, metric_labels) = key.split_once('{').unwrap_or((key, ""));
        if metric_name == name && metric_labels.contains(labels) {
            total += value.parse::<f64>().ok()?;
        }
    }
    Some(total)
}

/// Children started so far: stopped (SIGKILL) unless `up` succeeds.
struct Started(Vec<(String, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> Result<Child, ClientError> {
    let file = std::fs::File::create(log).map_err(io(log))?;
    let mut c = Command::new(bin);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    // Its own process group: a Ctrl-C meant for `mtos testnet up` does
    // not reach the testnet, and `down` stops it.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        c.process_group(0);
    }
    c.spawn()
        .map_err(|e| ClientError::Testnet(format!("cannot start {}: {e}", bin.display())))
}

/// Says that what `up` had started was stopped.
fn stopped(e: ClientError) -> ClientError {
    ClientError::Testnet(format!("{e} (the testnet was stopped)"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Starts a testnet in `dir` with `bin` as `mtos-node`. `progress` gets a
/// line per step.
pub fn up(
    dir: &Path,
    spec: &Spec,
    bin: &Path,
    mut progress: impl FnMut(&str),
) -> Result<State, ClientError> {
    let state_path = dir.join(STATE_FILE);
    if state_path.exists() {
        return Err(ClientError::Conflict(format!(
            "{} exists: a testnet is (or was) running there; `mtos testnet down` first",
            state_path.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let network = "mtos-testnet".to_owned();
    let (payload, loops, drops) = spec.rates;
    let settings = AuthoritySettings {
        layers: Some(spec.layers),
        payload: Some(payload),
        loops: Some(loops),
        drops: Some(drops),
        node_loops: Some(spec.node_loops),
        // Bulk windows at the template's rates, or the idle ones where
        // those are higher (a window never sends less).
        bulk_payload: Some(payload.max(50.0)),
        bulk_loops: Some(loops.max(1.0)),
        bulk_drops: Some(drops.max(1.0)),
        ..AuthoritySettings::default()
    };
    let count = spec.authorities.clamp(1, 16);
    let mut authorities = Vec::new();
    for i in 1..=count {
        authorities.push(launch::init_authority(
            bin,
            &dir.join(format!("authority-{i}")),
            &network,
            spec.epoch_secs,
            spec.mean_delay_ms,
            &settings,
        )?);
    }
    launch::join_authorities(&authorities)?;

    let mut started = Started(Vec::new());
    let mut processes = Vec::new();
    for (i, authority) in authorities.iter().enumerate() {
        let name = format!("authority-{}", i + 1);
        let log = authority
            .config
            .parent()
            .unwrap_or(dir)
            .join("authority.log");
        let child = spawn(
            bin,
            &[
                "authority",
                "run",
                "--config",
                &authority.config.to_string_lossy(),
            ],
            &log,
        )
        .map_err(stopped)?;
        processes.push(Process {
            name: name.clone(),
            pid: child.id(),
            config: authority.config.clone(),
            metrics: None,
        });
        started.0.push((name.clone(), child));
        progress(&format!("{name} on {}", authority.addr));
    }

    let mut nodes: Vec<(String, Position)> = Vec::new();
    for g in 1..=spec.gateways {
        nodes.push((format!("gateway-{g}"), Position::Gateway));
    }
    for layer in 1..=spec.layers {
        for i in 1..=spec.per_layer {
            nodes.push((format!("mix-{layer}-{i}"), Position::Layer(layer)));
        }
    }
    for s in 1..=spec.services {
        nodes.push((format!("service-{s}"), Position::Service));
    }
    for (name, position) in &nodes {
        // Every node but the gateways stores records (`storage.md` §1),
        // so items can be published on the testnet.
        let settings = NodeSettings {
            storage: Some(*position != Position::Gateway),
            ..NodeSettings::default()
        };
        let node = launch::init_node(bin, &dir.join(name), *position, &authorities, &settings)
            .map_err(stopped)?;
        let child = spawn(
            bin,
            &["run", "--config", &node.config.to_string_lossy()],
            &node.dir.join("node.log"),
        )
        .map_err(stopped)?;
        processes.push(Process {
            name: name.clone(),
            pid: child.id(),
            config: node.config,
            metrics: Some(node.metrics),
        });
        started.0.push((name.clone(), child));
    }
    progress(&format!(
        "started {} nodes; waiting for the network document",
        nodes.len()
    ));

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for (name, child) in &mut started.0 {
            if let Ok(Some(status)) = child.try_wait() {
                let log = processes
                    .iter()
                    .find(|p| &p.name == name)
                    .map(|p| {
                        p.config
                            .parent()
                            .map(|d| {
                                d.join(if name.starts_with("authority") {
                                    "authority.log"
                                } else {
                                    "node.log"
                                })
                            })
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                return Err(ClientError::Testnet(format!(
                    "{name} exited ({status}); the testnet was stopped. Its log ends:\n{}",
                    tail(&log)
                )));
            }
        }
        let ready = processes
            .iter()
            .filter_map(|p| p.metrics.as_deref())
            .all(|m| metric(m, "mtos_directory_nodes", "") == Some(nodes.len() as f64));
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err(ClientError::Testnet(
                "the nodes did not all see each other within 90 s; the testnet was stopped".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = State {
        network,
        authorities: authorities
            .iter()
            .map(|a| AuthorityInfo {
                key: a.key.clone(),
                addr: a.addr.clone(),
            })
            .collect(),
        processes,
    };
    let text = serde_json::to_string_pretty(&state).map_err(|e| ClientError::Io {
        path: state_path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&state_path, text + "\n").map_err(io(&state_path))?;
    // Success: the processes outlive this command.
    started.0.clear();
    Ok(state)
}

/// Reads a testnet's state.
pub fn load(dir: &Path) -> Result<State, ClientError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ClientError::NotFound(format!("no testnet in {} (no {STATE_FILE})", dir.display()))
        } else {
            io(&path)(e)
        }
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::Testnet(format!("{}: {e}", path.display())))
}

/// Whether `pid` is still the `mtos-node` process started with `config`
/// (a pid can be reused by an unrelated process after it exits).
fn is_ours(pid: u32, config: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let text = String::from_utf8_lossy(&c);
        text.contains("mtos-node") && text.contains(&*config.to_string_lossy())
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops every process of the testnet in `dir` (SIGTERM, then SIGKILL
/// after 10 s) and removes its state file. Returns how many were running.
pub fn down(dir: &Path) -> Result<usize, ClientError> {
    let state = load(dir)?;
    let running: Vec<&Process> = state
        .processes
        .iter()
        .filter(|p| is_ours(p.pid, &p.config))
        .collect();
    for p in &running {
        signal(p.pid, "-TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && running.iter().any(|p| is_ours(p.pid, &p.config)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in running.iter().filter(|p| is_ours(p.pid, &p.config)) {
        signal(p.pid, "-KILL");
    }
    let path = dir.join(STATE_FILE);
    std::fs::remove_file(&path).map_err(io(&path))?;
    Ok(running.len())
}
