//! `mtos testnet`: a local mixnet of real `mtos-node` processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use mtos_client::ClientError;
use mtos_client::mixnet::{Received, SentKind, Session};
use mtos_client::testnet::{self, Spec};

#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Start directory authorities, gateways, mix layers and service
    /// nodes on 127.0.0.1 and wait until they all see each other.
    ///
    /// Example: mtos testnet up --dir /tmp/tn --per-layer 2
    Up {
        /// The testnet directory (configs, keys, logs, testnet.json).
        #[arg(long, default_value = "mtos-testnet")]
        dir: PathBuf,
        /// Directory authorities: each votes, and a document needs more
        /// than half of their signatures.
        #[arg(long, default_value_t = 3)]
        authorities: usize,
        /// Mix layers.
        #[arg(long, default_value_t = 3)]
        layers: u8,
        /// Mix nodes per layer.
        #[arg(long, default_value_t = 2)]
        per_layer: usize,
        /// Gateways.
        #[arg(long, default_value_t = 1)]
        gateways: usize,
        /// Service nodes.
        #[arg(long, default_value_t = 1)]
        services: usize,
        /// Mean per-hop mixing delay, ms.
        #[arg(long, default_value_t = 20)]
        mean_delay_ms: u64,
        /// Epoch length, seconds (Sphinx keys rotate every epoch).
        #[arg(long, default_value_t = 600)]
        epoch_secs: u64,
        /// Each client's payload rate λP, packets/s.
        #[arg(long, default_value_t = 10.0)]
        payload_rate: f64,
        /// Each client's loop rate λL, packets/s.
        #[arg(long, default_value_t = 2.0)]
        loop_rate: f64,
        /// Each client's drop rate λD, packets/s.
        #[arg(long, default_value_t = 2.0)]
        drop_rate: f64,
        /// Each node's loop rate λM, packets/s (a mix's loops are probes
        /// to the service nodes).
        #[arg(long, default_value_t = 1.0)]
        node_loop_rate: f64,
        /// The mtos-node binary (default: next to this one, else on PATH).
        #[arg(long, env = "MTOS_NODE_BIN")]
        node_bin: Option<PathBuf>,
    },
    /// Stop every process of a testnet.
    Down {
        /// The testnet directory.
        #[arg(long, default_value = "mtos-testnet")]
        dir: PathBuf,
    },
    /// List a testnet's processes and metrics URLs.
    Status {
        /// The testnet directory.
        #[arg(long, default_value = "mtos-testnet")]
        dir: PathBuf,
    },
    /// Two clients exchange messages through a running testnet; prints
    /// what arrived, latencies and the cover traffic around them.
    Demo {
        /// The testnet directory.
        #[arg(long, default_value = "mtos-testnet")]
        dir: PathBuf,
        /// Messages to send.
        #[arg(long, default_value_t = 20)]
        messages: u32,
    },
}

fn node_bin(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("mtos-node")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("mtos-node"))
    })
}

pub fn run(cmd: TestnetCommand) -> Result<String, ClientError> {
    match cmd {
        TestnetCommand::Up {
            dir,
            authorities,
            layers,
            per_layer,
            gateways,
            services,
            mean_delay_ms,
            epoch_secs,
            payload_rate,
            loop_rate,
            drop_rate,
            node_loop_rate,
            node_bin: bin,
        } => {
            let rates = [payload_rate, loop_rate, drop_rate, node_loop_rate];
            if rates.iter().any(|r| !(0.0..=1000.0).contains(r)) || payload_rate <= 0.0 {
                return Err(ClientError::Refused(
                    "rates are packets/s between 0 and 1000, and the payload rate above 0".into(),
                ));
            }
            if !(1..=16).contains(&authorities) {
                return Err(ClientError::Refused(
                    "a testnet has 1 to 16 authorities".into(),
                ));
            }
            if !(1..=3).contains(&layers) || per_layer == 0 || gateways == 0 || services == 0 {
                return Err(ClientError::Refused(
                    "a testnet needs 1 to 3 layers and at least one node of each kind".into(),
                ));
            }
            let spec = Spec {
                layers,
                per_layer,
                gateways,
                services,
                mean_delay_ms,
                epoch_secs: epoch_secs.clamp(1, 604_800),
                rates: (payload_rate, loop_rate, drop_rate),
                node_loops: node_loop_rate,
                authorities,
            };
            let state = testnet::up(&dir, &spec, &node_bin(bin), |line| println!("{line}"))?;
            Ok(status_text(&dir, &state))
        }
        TestnetCommand::Down { dir } => {
            let n = testnet::down(&dir)?;
            Ok(format!("stopped {n} processes\n"))
        }
        TestnetCommand::Status { dir } => {
            let state = testnet::load(&dir)?;
            Ok(status_text(&dir, &state))
        }
        TestnetCommand::Demo { dir, messages } => demo(&dir, messages),
    }
}

fn status_text(dir: &Path, state: &testnet::State) -> String {
    let mut out = format!(
        "testnet {} in {}: {} authorities, a document needs {} signatures\n",
        state.network,
        dir.display(),
        state.authorities.len(),
        mtos_mixnode::directory::AuthoritySet::majority_of(state.authorities.len())
    );
    for a in &state.authorities {
        out.push_str(&format!("  authority {} (key {})\n", a.addr, a.key));
    }
    for p in &state.processes {
        match &p.metrics {
            Some(m) => out.push_str(&format!(
                "  {:<12} pid {:<7} http://{m}/metrics\n",
                p.name, p.pid
            )),
            None => out.push_str(&format!("  {:<12} pid {}\n", p.name, p.pid)),
        }
    }
    out.push_str(&format!(
        "clients join with {}; stop with: mtos testnet down --dir {}\n",
        dir.join(testnet::STATE_FILE).display(),
        dir.display()
    ));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn demo(dir: &Path, messages: u32) -> Result<String, ClientError> {
    let state = testnet::load(dir)?;
    let config = state.network_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    runtime.block_on(async move {
        let mut alice = Session::connect(&config).await?;
        let mut bob = Session::connect(&config).await?;
        println!(
            "alice and bob connected (fresh libp2p identities, mailboxes {}… and {}…)",
            data_encoding::HEXLOWER.encode(&alice.address().mailbox[..4]),
            data_encoding::HEXLOWER.encode(&bob.address().mailbox[..4])
        );
        let rates = alice.document().rates;
        println!(
            "cover schedule: λP {} + λL {} + λD {} packets/s per client; sending {messages} messages",
            rates.payload, rates.loops, rates.drops
        );
        let start = Instant::now();
        let mut sent_at = Vec::new();
        for i in 0..messages {
            // One reply block each: bob answers without learning alice's
            // address.
            alice.send_answerable(&bob.address(), format!("message {i}").as_bytes(), 1)?;
            sent_at.push(start.elapsed());
        }
        let mut latencies = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while latencies.len() < messages as usize {
            match tokio::time::timeout_at(deadline, bob.recv()).await {
                Ok(Some(m)) => {
                    let text = String::from_utf8_lossy(m.body()).into_owned();
                    let i: usize = text
                        .strip_prefix("message ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let latency = start.elapsed().saturating_sub(sent_at[i.min(sent_at.len() - 1)]);
                    latencies.push(latency);
                    if let Received::Answerable { from, .. } = &m {
                        bob.reply(from, format!("reply {i}").as_bytes())?;
                    }
                }
                _ => break,
            }
        }
        let mut round_trips = Vec::new();
        while round_trips.len() < latencies.len() {
            match tokio::time::timeout_at(deadline, alice.recv()).await {
                Ok(Some(Received::Reply { body, .. })) => {
                    let i: usize = String::from_utf8_lossy(&body)
                        .strip_prefix("reply ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    round_trips.push(start.elapsed().saturating_sub(sent_at[i.min(sent_at.len() - 1)]));
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        round_trips.sort();
        // Let the last loops come home before counting them.
        tokio::time::sleep(Duration::from_secs(1)).await;
        latencies.sort();
        let a = alice.stats();
        let b = bob.stats();
        let count = |k: SentKind| a.sent.iter().filter(|(_, s)| *s == k).count();
        let real = count(SentKind::Real);
        let cover = a.sent.len() - real;
        let loops = count(SentKind::Loop);
        let delivered_real = b.deliveries.iter().filter(|(_, r)| *r).count();
        let mut out = String::new();
        out.push_str(&format!(
            "delivered: {} of {messages} messages in {:.1} s\n",
            latencies.len(),
            start.elapsed().as_secs_f64()
        ));
        out.push_str(&format!(
            "latency: p50 {:?}  p90 {:?}  p99 {:?}  max {:?} (queueing for payload slots included)\n",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default()
        ));
        out.push_str(&format!(
            "replies through reply blocks: {} of {}; round trip p50 {:?}  p90 {:?}  max {:?}\n",
            round_trips.len(),
            latencies.len(),
            percentile(&round_trips, 0.5),
            percentile(&round_trips, 0.9),
            round_trips.last().copied().unwrap_or_default()
        ));
        out.push_str(&format!(
            "alice sent {} packets: {real} real, {cover} cover ({} payload-slot drops, {loops} loops, {} drops), cover/real {:.1}; {} loops came back\n",
            a.sent.len(),
            count(SentKind::PayloadCover),
            count(SentKind::Drop),
            cover as f64 / real.max(1) as f64,
            a.loops_returned
        ));
        out.push_str(&format!(
            "bob's gateway sent him {} frames at a constant rate: {delivered_real} with a payload ({} messages, {} of his own loops), {} dummies\n",
            b.deliveries.len(),
            b.received,
            b.loops_returned,
            b.deliveries.len() - delivered_real
        ));
        out.push_str("metrics:\n");
        for p in state.processes.iter().filter(|p| p.metrics.is_some()) {
            out.push_str(&format!(
                "  {:<12} http://{}/metrics\n",
                p.name,
                p.metrics.as_deref().unwrap_or_default()
            ));
        }
        if latencies.len() < messages as usize || round_trips.len() < latencies.len() {
            return Err(ClientError::Testnet(format!(
                "{out}only {} of {messages} messages and {} replies arrived within 120 s",
                latencies.len(),
                round_trips.len()
            )));
        }
        Ok(out)
    })
}
