#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod flood;
pub mod screen;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::AsyncWriteExt;
use libp2p::{Multiaddr, PeerId};
use mtos_client::testnet;
pub use mtos_client::testnet::{AuthoritySettings, NodeSettings};
use mtos_crypto::sphinx::{self, Destination, Hop};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::{NetworkDocument, NodeEntry, Trust};
use mtos_net::{self as net, DIR_GET_DOCUMENT, NodeEntryExt};
pub use mtos_node::config::{FaultsSection, ServiceLie};

pub mod soak;

/// The `mtos-node` binary with test fault injection (`mtos-node-faults`),
/// built once per test process (so a test never runs a stale binary, even
/// under `cargo test -p mtos-tests`). `MTOS_NODE_BIN` overrides it.
pub fn node_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("MTOS_NODE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| build_binary("mtos-node", "mtos-node-faults"))
    })
    .clone()
}

/// The `mtos` binary, built the same way.
pub fn mtos_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("mtos-client", "mtos"))
        .clone()
}

fn build_binary(package: &str, bin: &str) -> PathBuf {
    // target/<profile>/deps/<test exe>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap().to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    // The harness's nodes honour `[faults]` (`TestNode::restart_with_faults`).
    if bin == "mtos-node-faults" {
        build.args(["--features", "faults"]);
    }
    // Benchmarks run from target/release: measure a release build.
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of {bin} failed");
    profile_dir.join(bin)
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    mtos_client::testnet::free_port().unwrap()
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns the
    /// exit status if it exited.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shortest full route: gateway, one node per layer, service node.
pub const CHAIN: [Position; 5] = [
    Position::Gateway,
    Position::Layer(1),
    Position::Layer(2),
    Position::Layer(3),
    Position::Service,
];

/// Runs `mtos --home HOME ARGS` (the node binary of this build; a
/// throwaway keychain: passphrase from the environment, low scrypt cost).
pub fn mtos_at(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(mtos_binary())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("MTOS_NODE_BIN", node_binary())
        .env("MTOS_PASSPHRASE", "test passphrase")
        .env("MTOS_KDF_LOG_N", "10")
        .output()
        .expect("run mtos")
}

/// A testnet made by `mtos testnet up` in a directory, stopped (`mtos
/// testnet down`) when dropped, even after a failed assertion.
#[derive(Debug)]
pub struct CliTestnet {
    /// Its directory.
    pub dir: PathBuf,
}

impl CliTestnet {
    /// `mtos testnet up --dir DIR ARGS`; panics with its stderr if it fails.
    pub fn up(dir: &Path, args: &[&str]) -> Self {
        let net = Self {
            dir: dir.to_owned(),
        };
        let out = Command::new(mtos_binary())
            .args(["testnet", "up", "--dir"])
            .arg(dir)
            .args(args)
            .env("MTOS_NODE_BIN", node_binary())
            .output()
            .expect("run mtos testnet up");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }
}

impl Drop for CliTestnet {
    fn drop(&mut self) {
        let _ = Command::new(mtos_binary())
            .args(["testnet", "down", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// The value after `name` on the command line (`--clients 10`), or
/// `default`: the benchmarks' options.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One node of a test network.
#[derive(Debug)]
pub struct TestNode {
    /// Its directory.
    pub dir: PathBuf,
    /// Gateway, mix layer n, or service.
    pub position: Position,
    /// Its metrics address.
    pub metrics: String,
    /// Its libp2p address.
    pub p2p: Multiaddr,
    /// The process.
    pub proc: Proc,
}

impl TestNode {
    /// The value of a metric (summed over label sets containing
    /// `labels`, e.g. `reason="replay"`), or `None` when the endpoint is
    /// unreachable.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        metric(&self.metrics, name, labels)
    }

    fn start(&mut self) {
        let mut c = Command::new(node_binary());
        c.arg("run")
            .arg("--config")
            .arg(self.dir.join("mtos-node.toml"))
            .env("RUST_LOG", "info");
        let log = self.dir.join("node.log");
        let name = self.proc.name.clone();
        self.proc = Proc::spawn(&name, c, &log);
    }

    /// `kill -9`s the node and starts it again from the same directory.
    pub fn kill_and_restart(&mut self) {
        self.proc.kill();
        self.start();
    }

    /// Stops the node and starts it again injecting `faults` (its
    /// config's `[faults]` section; the harness's `mtos-node` is a
    /// `faults` build).
    pub fn restart_with_faults(&mut self, faults: FaultsSection) {
        self.proc.kill();
        let path = self.dir.join("mtos-node.toml");
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config.insert("faults".into(), toml::Value::try_from(faults).unwrap());
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        self.start();
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

pub use mtos_client::testnet::metric;

/// One directory authority of a test network.
#[derive(Debug)]
pub struct TestAuthority {
    /// Its directory.
    pub dir: PathBuf,
    /// The process.
    pub proc: Proc,
    /// Its address.
    pub addr: Multiaddr,
    /// Its public key.
    pub key: [u8; 32],
}

impl TestAuthority {
    fn start(&mut self) {
        let mut c = Command::new(node_binary());
        c.args(["authority", "run", "--config"])
            .arg(self.dir.join("authority.toml"))
            .env("RUST_LOG", "info");
        let name = self.proc.name.clone();
        self.proc = Proc::spawn(&name, c, &self.dir.join("authority.log"));
    }

    /// Starts it again (after [`Proc::kill`]), from the same directory.
    pub fn restart(&mut self) {
        self.proc.kill();
        self.start();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("authority.log")).unwrap_or_default()
    }
}

/// Authorities a test network has unless told otherwise, as `mtos testnet
/// up` has.
pub const AUTHORITIES: usize = 3;

/// Authorities and nodes on loopback, killed when dropped.
#[derive(Debug)]
pub struct Testnet {
    /// The temporary directory (kept until drop).
    pub root: tempfile::TempDir,
    /// The directory authorities.
    pub authorities: Vec<TestAuthority>,
    /// The network id.
    pub network: String,
    /// The nodes.
    pub nodes: Vec<TestNode>,
}

impl Testnet {
    /// Starts an authority (epochs of `epoch_secs`, mean delay
    /// `mean_delay_ms`) and one node per entry of `positions`, then waits
    /// until every node's document lists them all. Node loop cover is off
    /// (λM = 0), so tests can count every frame they send;
    /// [`Testnet::start_custom`] keeps the defaults it is not told.
    pub fn start(positions: &[Position], epoch_secs: u64, mean_delay_ms: u64) -> Self {
        Self::start_with(positions, epoch_secs, mean_delay_ms, |_| {
            NodeSettings::default()
        })
    }

    /// [`Testnet::start`], each node with the settings `node` gives for
    /// its position (to change limits, say).
    pub fn start_with(
        positions: &[Position],
        epoch_secs: u64,
        mean_delay_ms: u64,
        node: impl Fn(Position) -> NodeSettings,
    ) -> Self {
        let authority = AuthoritySettings {
            node_loops: Some(0.0),
            ..AuthoritySettings::default()
        };
        Self::start_custom(positions, epoch_secs, mean_delay_ms, node, &authority)
    }

    /// [`Testnet::start_with`] with the network's settings `authority`
    /// (its rates, say) over `authority init`'s defaults.
    pub fn start_custom(
        positions: &[Position],
        epoch_secs: u64,
        mean_delay_ms: u64,
        node: impl Fn(Position) -> NodeSettings,
        authority: &AuthoritySettings,
    ) -> Self {
        let mut net = Self::launch(
            positions,
            epoch_secs,
            mean_delay_ms,
            node,
            authority,
            AUTHORITIES,
        );
        net.wait_until_listed(positions.len(), Duration::from_secs(60));
        net
    }

    /// [`Testnet::start_custom`] with `authorities` directory authorities,
    /// without waiting for the nodes to be listed (a network whose
    /// authorities list only approved nodes, say).
    pub fn launch(
        positions: &[Position],
        epoch_secs: u64,
        mean_delay_ms: u64,
        node: impl Fn(Position) -> NodeSettings,
        authority: &AuthoritySettings,
        authorities: usize,
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        let made: Vec<testnet::Authority> = (1..=authorities)
            .map(|i| {
                testnet::init_authority(
                    &node_binary(),
                    &root.path().join(format!("authority{i}")),
                    "mtos-test",
                    epoch_secs,
                    mean_delay_ms,
                    authority,
                )
                .unwrap()
            })
            .collect();
        testnet::join_authorities(&made).unwrap();
        let mut net = Self {
            root,
            authorities: Vec::new(),
            network: made[0].network.clone(),
            nodes: Vec::new(),
        };
        for (i, a) in made.iter().enumerate() {
            let mut test_authority = TestAuthority {
                dir: a.config.parent().unwrap().to_owned(),
                proc: Proc {
                    child: None,
                    name: format!("authority{}", i + 1),
                },
                addr: a.addr.parse().unwrap(),
                key: data_encoding::HEXLOWER
                    .decode(a.key.as_bytes())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            };
            test_authority.start();
            net.authorities.push(test_authority);
        }
        for (i, position) in positions.iter().enumerate() {
            let dir = net.root.path().join(format!("node{i}"));
            let made = testnet::init_node(&node_binary(), &dir, *position, &made, &node(*position))
                .unwrap();
            let mut test_node = TestNode {
                dir,
                position: *position,
                metrics: made.metrics,
                p2p: made.p2p.parse().unwrap(),
                proc: Proc {
                    child: None,
                    name: format!("node{i} ({position:?})"),
                },
            };
            test_node.start();
            net.nodes.push(test_node);
        }
        net
    }

    /// Waits until every node's document lists `count` nodes.
    pub fn wait_until_listed(&mut self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.metric("mtos_directory_nodes", "") != Some(count as f64))
                .map(|n| n.proc.name.clone())
                .collect();
            if pending.is_empty() {
                return;
            }
            for n in &mut self.nodes {
                assert!(n.proc.alive(), "{} exited:\n{}", n.proc.name, n.log());
            }
            assert!(
                Instant::now() < deadline,
                "nodes without a full document after {timeout:?}: {pending:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What a client session needs to join this network.
    pub fn network_config(&self) -> mtos_client::mixnet::NetworkConfig {
        let pairs: Vec<(String, String)> = self
            .authorities
            .iter()
            .map(|a| (data_encoding::HEXLOWER.encode(&a.key), a.addr.to_string()))
            .collect();
        mtos_client::mixnet::NetworkConfig::parse(&self.network, &pairs, 0, "test").unwrap()
    }

    /// The trust a client configures: more than half of the authorities.
    pub fn trust(&self) -> Trust {
        Trust {
            network: self.network.clone(),
            authorities: self
                .authorities
                .iter()
                .map(|a| mtos_crypto::VerifyKey::from_bytes(a.key).unwrap())
                .collect(),
            threshold: mtos_mixnode::directory::AuthoritySet::majority_of(self.authorities.len()),
            addresses: mtos_net::check_multiaddr,
        }
    }

    /// The authorities' PeerIds.
    pub fn authority_peers(&self) -> Vec<PeerId> {
        self.authorities
            .iter()
            .map(|a| mtos_net::peer_id_of(&a.key).unwrap())
            .collect()
    }

    /// The node at `position` (the first one there).
    pub fn node(&self, position: Position) -> &TestNode {
        self.nodes.iter().find(|n| n.position == position).unwrap()
    }

    /// The node at `position`, mutably.
    pub fn node_mut(&mut self, position: Position) -> &mut TestNode {
        self.nodes
            .iter_mut()
            .find(|n| n.position == position)
            .unwrap()
    }

    /// Every node's counters, for failure messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let m = |name: &str, labels: &str| n.metric(name, labels).unwrap_or(f64::NAN);
            out.push_str(&format!(
                "{} {:?}: received {} forwarded {} delivered {} directory {} queue {}",
                n.proc.name,
                n.position,
                m("mtos_frames_received_total", ""),
                m("mtos_frames_forwarded_total", ""),
                m("mtos_frames_delivered_total", ""),
                m("mtos_directory_nodes", ""),
                m("mtos_queue_depth_packets", ""),
            ));
            for reason in frame_drop_reasons() {
                let v = m("mtos_frames_dropped_total", &format!("reason=\"{reason}\""));
                if v != 0.0 {
                    out.push_str(&format!(" {reason}={v}"));
                }
            }
            out.push('\n');
            for line in n
                .log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("broke"))
            {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }

    /// Waits for `f`, failing with every node's counters.
    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sum of a metric over the nodes at `position`.
    pub fn sum(&self, position: Position, name: &str, labels: &str) -> f64 {
        self.nodes
            .iter()
            .filter(|n| n.position == position)
            .map(|n| n.metric(name, labels).unwrap_or(f64::NAN))
            .sum()
    }
}

/// A bare libp2p peer acting as a client: it fetches the document and
/// writes frames to nodes.
pub struct TestClient {
    /// Its stream control (for requests of its own).
    pub control: libp2p_stream::Control,
    commands: tokio::sync::mpsc::Sender<(PeerId, Multiaddr)>,
    /// The verified document.
    pub document: NetworkDocument,
    /// The client's libp2p identity.
    pub peer: PeerId,
    _task: tokio::task::JoinHandle<()>,
    /// Gateways it holds a session at (whose delivery frames a task
    /// reads and drops): a gateway admits a client's mix frames only then.
    sessions: HashMap<PeerId, tokio::task::JoinHandle<()>>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        for t in self.sessions.values() {
            t.abort();
        }
    }
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl TestClient {
    /// A client with a fresh libp2p identity that fetched the network's
    /// document.
    pub async fn connect(net: &Testnet) -> Self {
        Self::connect_as(net, libp2p::identity::Keypair::generate_ed25519()).await
    }

    /// [`TestClient::connect`] under a given libp2p identity (a node's,
    /// to speak as that node).
    pub async fn connect_as(net: &Testnet, keypair: libp2p::identity::Keypair) -> Self {
        use futures::StreamExt;
        let peer = keypair.public().to_peer_id();
        let mut swarm = net::build_swarm(keypair, 64).unwrap();
        for a in &net.authorities {
            swarm.add_peer_address(mtos_net::peer_id_of(&a.key).unwrap(), a.addr.clone());
        }
        let authorities = net.authority_peers();
        let mut control = swarm.behaviour().stream.new_control();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(PeerId, Multiaddr)>(64);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some((peer, addr)) => swarm.add_peer_address(peer, addr),
                        None => return,
                    },
                    _ = swarm.select_next_some() => {}
                }
            }
        });
        let mut bytes = Vec::new();
        for authority in authorities {
            if let Ok(b) = net::directory_request_retrying(
                &mut control,
                authority,
                DIR_GET_DOCUMENT,
                &[],
                Duration::from_secs(10),
            )
            .await
            {
                bytes = b;
                break;
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let document = NetworkDocument::verify(&bytes, &net.trust(), now).unwrap();
        for n in &document.nodes {
            for a in n.multiaddrs() {
                tx.send((n.peer().unwrap(), a)).await.unwrap();
            }
        }
        Self {
            control,
            commands: tx,
            document,
            peer,
            _task: task,
            sessions: HashMap::new(),
        }
    }

    /// Opens `protocol` to `peer`. The swarm learns the document's
    /// addresses just after connect: a dial may come too early, so opening
    /// is tried again (50 times, 200 ms apart).
    async fn open_retrying(
        &mut self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, String> {
        let mut opened = Err(String::new());
        for _ in 0..50 {
            // Bounded: a node too busy to take the stream (its inbound
            // streams full) never answers the negotiation, and a client
            // that waited on it for ever would hang the test.
            opened = match tokio::time::timeout(
                Duration::from_secs(10),
                self.control.open_stream(peer, protocol.clone()),
            )
            .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the stream was not opened within 10 s".into()),
            };
            if opened.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        opened
    }

    /// Opens `protocol` to `node` and exchanges one framed message
    /// (`kind`, body), returning the answer's kind and body, or the error
    /// (a refused stream reads as one).
    pub async fn request(
        &mut self,
        node: &NodeEntry,
        protocol: libp2p::StreamProtocol,
        kind: u8,
        body: &[u8],
    ) -> Result<(u8, Vec<u8>), String> {
        use futures::AsyncWriteExt;
        let peer = node.peer().map_err(|e| e.to_string())?;
        // Opening is retried, not the exchange.
        let mut stream = self.open_retrying(peer, protocol).await?;
        net::write_message(&mut stream, kind, body)
            .await
            .map_err(|e| e.to_string())?;
        let answer = net::read_message(&mut stream, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.close().await;
        Ok(answer)
    }

    /// Ends the session held at `gateway` (its stream closed).
    pub fn close_session(&mut self, gateway: &NodeEntry) {
        if let Some(t) = gateway.peer().ok().and_then(|p| self.sessions.remove(&p)) {
            t.abort();
        }
    }

    /// Opens a session at `gateway` with its work, as a client does, and
    /// keeps it (its frames read and dropped) while the client lives.
    pub async fn open_session(&mut self, gateway: &NodeEntry) {
        self.try_open_session(gateway).await.unwrap();
    }

    /// [`TestClient::open_session`], or why the gateway did not serve it
    /// (it closed the session before its first frame).
    pub async fn try_open_session(&mut self, gateway: &NodeEntry) -> Result<(), String> {
        let secret: [u8; 32] = rand::random();
        let epoch = self.document.epoch;
        let mailbox = mtos_crypto::envelope::mailbox_id(&secret);
        let client = self.peer.to_bytes();
        let work = mtos_crypto::work::WorkFor {
            gateway: &gateway.key,
            epoch,
            mailbox: &mailbox,
            client: &client,
        };
        let nonce = mtos_crypto::work::solve_session_work(
            work,
            mtos_crypto::work::SESSION_WORK_BITS,
            rand::random(),
        );
        let mut open = secret.to_vec();
        open.extend_from_slice(&epoch.to_be_bytes());
        open.extend_from_slice(&nonce.to_be_bytes());
        // No bulk windows.
        open.extend_from_slice(&u16::MAX.to_be_bytes());
        let (mut stream, _) = self.session_stream(gateway, &open).await?;
        let drain = tokio::spawn(async move {
            use futures::AsyncReadExt;
            let mut frame = vec![0u8; mtos_mixnode::mailbox::DELIVERY_FRAME_SIZE];
            while stream.read_exact(&mut frame).await.is_ok() {}
        });
        self.sessions
            .insert(gateway.peer().map_err(|e| e.to_string())?, drain);
        Ok(())
    }

    /// Opens a client session at `gateway` writing `open` and reads its
    /// first delivery frame (the gateway sends frames once the session's
    /// work is checked); the stream and that frame, or the error.
    async fn session_stream(
        &mut self,
        gateway: &NodeEntry,
        open: &[u8],
    ) -> Result<(libp2p::Stream, Vec<u8>), String> {
        use futures::{AsyncReadExt, AsyncWriteExt};
        let peer = gateway.peer().map_err(|e| e.to_string())?;
        let mut stream = self.open_retrying(peer, net::CLIENT_PROTOCOL).await?;
        let write = async {
            stream.write_all(open).await?;
            stream.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(_) => return Err("the session's opening was not taken within 10 s".into()),
        }
        // The gateway's answer (bulk windows granted or not), then the
        // first frame.
        let mut frame = vec![0u8; 1 + mtos_mixnode::mailbox::DELIVERY_FRAME_SIZE];
        match tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut frame)).await {
            Ok(Ok(())) => {
                frame.remove(0);
                Ok((stream, frame))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no frame within 10 s".into()),
        }
    }

    /// Opens a client session at `gateway` writing `open` (mailbox
    /// secret, epoch, nonce, ticket: `client.md` §3) and reads one delivery frame,
    /// or the error when the gateway closes the session (or sends
    /// nothing within 10 s).
    pub async fn session_frame(
        &mut self,
        gateway: &NodeEntry,
        open: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.session_stream(gateway, open)
            .await
            .map(|(_, frame)| frame)
    }

    /// The document's nodes at a position.
    pub fn at(&self, position: Position) -> Vec<&NodeEntry> {
        self.document
            .nodes
            .iter()
            .filter(|n| n.position() == position)
            .collect()
    }

    /// The first node at each position of the chain, gateway to service:
    /// a route for [`TestClient::frame`].
    pub fn chain_route(&self) -> Vec<NodeEntry> {
        [
            Position::Gateway,
            Position::Layer(1),
            Position::Layer(2),
            Position::Layer(3),
            Position::Service,
        ]
        .iter()
        .filter_map(|p| self.at(*p).first().map(|n| (*n).clone()))
        .collect()
    }

    /// Builds a frame for the route `nodes` (the first is the entry),
    /// each hop holding it `delay`, delivering `message` at the last.
    pub fn frame(&self, nodes: &[&NodeEntry], delay: Duration, message: &[u8]) -> Vec<u8> {
        let epoch = self.document.epoch;
        let route: Vec<Hop> = nodes
            .iter()
            .map(|n| Hop {
                address: n.address(),
                sphinx_key: n.sphinx_key(epoch).unwrap(),
            })
            .collect();
        let destination = Destination {
            address: nodes.last().unwrap().key,
            surb_id: [0; sphinx::SURB_ID_LEN],
        };
        let delays = vec![delay; route.len()];
        let packet =
            sphinx::build_forward(&mut rand::rng(), &route, &destination, &delays, message)
                .unwrap();
        sphinx::Frame::encode((epoch % 256) as u8, &packet).unwrap()
    }

    /// Opens a mix stream to `node` and writes `frames` (raw bytes: any
    /// size), then closes the stream.
    pub async fn send(&mut self, node: &NodeEntry, frames: &[Vec<u8>]) {
        let peer = node.peer().unwrap();
        // A session that ended (the gateway restarted) is opened again.
        let open = self.sessions.get(&peer).is_some_and(|t| !t.is_finished());
        if node.position() == Position::Gateway && !open {
            self.open_session(node).await;
        }
        self.send_without_session(node, frames).await;
    }

    /// [`TestClient::send`] without opening a session at a gateway first
    /// (whose frames a gateway then refuses).
    pub async fn send_without_session(&mut self, node: &NodeEntry, frames: &[Vec<u8>]) {
        let peer = node.peer().unwrap();
        let mut last = None;
        for _ in 0..50 {
            match net::open_mix_stream(&mut self.control, peer).await {
                Ok(mut s) => {
                    for f in frames {
                        s.write_all(f).await.unwrap();
                    }
                    s.flush().await.unwrap();
                    s.close().await.unwrap();
                    return;
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("cannot open a mix stream to {peer}: {last:?}");
    }

    /// Learns an extra address for a peer.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        self.commands.send((peer, addr)).await.unwrap();
    }
}

/// Every label of `mtos_frames_dropped_total`: the engine's reasons and
/// the driver's.
pub fn frame_drop_reasons() -> impl Iterator<Item = &'static str> {
    mtos_mixnode::engine::DropReason::ALL
        .iter()
        .map(|r| r.name())
        .chain(mtos_node::metrics::DriverDrop::ALL.iter().map(|r| r.name()))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds (user + system) a process has used, from
/// `/proc/<pid>/stat` (the same counters `getrusage` reports; Linux
/// reports them in units of 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident set size in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The Kolmogorov-Smirnov statistic of `samples` against `cdf`.
pub fn ks_statistic(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// The two-sample Kolmogorov-Smirnov statistic.
pub fn ks_two_sample(a: &mut [f64], b: &mut [f64]) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The asymptotic critical value of the one-sample KS test with `n`
/// samples at level `alpha`: sqrt(-ln(alpha/2)/2)/sqrt(n).
pub fn ks_critical(n: usize, alpha: f64) -> f64 {
    (-(alpha / 2.0).ln() / 2.0).sqrt() / (n as f64).sqrt()
}

/// The asymptotic critical value of the two-sample KS test at `alpha`.
pub fn ks_two_sample_critical(n: usize, m: usize, alpha: f64) -> f64 {
    (-(alpha / 2.0).ln() / 2.0).sqrt() * (((n + m) as f64) / ((n * m) as f64)).sqrt()
}
