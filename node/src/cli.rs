//! The `mtos-node` command: the relay daemon of mtos, and the directory
//! authority. Its binaries (`mtos-node`, and `mtos-node-faults` in test
//! builds) only call [`main`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::authority;
use crate::config::{FaultPolicy, NodeConfig, Role};
use clap::{Parser, Subcommand, ValueEnum};
use mtos_crypto::{Identity, Label, Visibility};

/// File names inside the node directory.
const CONFIG_FILE: &str = "mtos-node.toml";
const IDENTITY_FILE: &str = "identity.key";

/// mtos-node: an mtos mix node for volunteer relay operators.
#[derive(Debug, Parser)]
#[command(name = "mtos-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Gateway,
    Mix,
    Service,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node directory: a commented config and a fresh identity key.
    ///
    /// Never overwrites an existing config or key: if either exists, nothing
    /// is written.
    ///
    /// Example: mtos-node init --dir /var/lib/mtos-node --role mix --layer 2
    Init {
        /// The node directory.
        #[arg(long, default_value = "mtos-node")]
        dir: PathBuf,
        /// The node's role.
        #[arg(long, value_enum, default_value = "mix")]
        role: RoleArg,
        /// Mix layer (1, 2 or 3) for --role mix.
        #[arg(long)]
        layer: Option<u8>,
    },
    /// Check a config file and its keys without starting anything.
    ///
    /// Example: mtos-node check --config /var/lib/mtos-node/mtos-node.toml
    Check {
        /// The config file.
        #[arg(long, default_value = "mtos-node/mtos-node.toml")]
        config: PathBuf,
    },
    /// Serve: join the network and mix until SIGINT or SIGTERM.
    ///
    /// Logs go to stderr (RUST_LOG sets the level, default info); metrics
    /// are at http://<listen.metrics>/metrics.
    ///
    /// Example: mtos-node run --config /var/lib/mtos-node/mtos-node.toml
    Run {
        /// The config file.
        #[arg(long, default_value = "mtos-node/mtos-node.toml")]
        config: PathBuf,
    },
    /// The directory authority: signs the network document.
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Measure this machine's Sphinx unwrap rate and the packets/s a node
    /// here can sustain.
    Bench {
        /// Seconds to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Debug, Subcommand)]
enum AuthorityCommand {
    /// Create an authority directory: config and key (never overwrites).
    /// Prints the public key nodes and clients must be configured with.
    ///
    /// Example: mtos-node authority init --dir authority --network mtos-local
    Init {
        /// The authority directory.
        #[arg(long, default_value = "mtos-authority")]
        dir: PathBuf,
        /// The network id.
        #[arg(long, default_value = "mtos-local")]
        network: String,
        /// libp2p listen address.
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/9400")]
        listen: String,
        /// Epoch length in seconds.
        #[arg(long, default_value_t = 3600)]
        epoch_secs: u64,
        /// Mean per-hop mixing delay in milliseconds.
        #[arg(long, default_value_t = 50)]
        mean_delay_ms: u64,
        /// A testnet's authority: any node may join, in the layer it asks
        /// for, and rounds are short. Never for a public network.
        #[arg(long)]
        testnet: bool,
    },
    /// Approve a node: the authority votes for it from its next round.
    ///
    /// Example: mtos-node authority approve 3f2a...9c --family example-hosting
    ///
    /// Re-keying: mtos-node authority approve NEWKEY --replaces OLDKEY
    Approve {
        /// The authority's config file.
        #[arg(long, default_value = "mtos-authority/authority.toml")]
        config: PathBuf,
        /// The node's key, as `mtos-node init` printed it.
        key: String,
        /// The operator family the node belongs to (one operator, one
        /// hosting provider): a family's share of each layer is capped.
        #[arg(long)]
        family: Option<String>,
        /// Pin the node, a mix, to this layer instead of the one the
        /// authorities would give it.
        #[arg(long)]
        layer: Option<u8>,
        /// The node's old key: KEY is its new one. The old key stays
        /// listed until the new one is, and keeps its family and pin; a
        /// node re-keys at most once per 30 days.
        #[arg(long, value_name = "OLD_KEY")]
        replaces: Option<String>,
    },
    /// Withdraw a node's approval: it leaves the document once a majority
    /// of the authorities stop voting for it.
    ///
    /// Example: mtos-node authority revoke 3f2a...9c
    Revoke {
        /// The authority's config file.
        #[arg(long, default_value = "mtos-authority/authority.toml")]
        config: PathBuf,
        /// The node's key.
        key: String,
    },
    /// Run the authority until SIGINT or SIGTERM.
    ///
    /// Example: mtos-node authority run --config authority/authority.toml
    Run {
        /// The config file.
        #[arg(long, default_value = "mtos-authority/authority.toml")]
        config: PathBuf,
    },
}

/// Parses the command line and runs the command; `faults` is the
/// binary's word on `[faults]` sections.
pub fn main(faults: FaultPolicy) -> ExitCode {
    match run(Cli::parse(), faults) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtos-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, faults: FaultPolicy) -> Result<(), String> {
    match cli.command {
        Command::Init { dir, role, layer } => init(&dir, role, layer),
        Command::Check { config } => check(&config, faults),
        Command::Run { config } => serve(&config, faults),
        Command::Authority(AuthorityCommand::Init {
            dir,
            network,
            listen,
            epoch_secs,
            mean_delay_ms,
            testnet,
        }) => {
            let made = authority::init(&dir, &network, &listen, epoch_secs, mean_delay_ms, testnet)
                .map_err(|e| e.to_string())?;
            println!("created {}", made.config.display());
            println!("authority key: {}", made.public_key);
            println!("authority peer id: {}", made.peer_id);
            println!(
                "add {{ key = \"{}\", addr = \"{listen}\" }} to network.authorities in every \
                 node's config, and to peers in every other authority's",
                made.public_key
            );
            Ok(())
        }
        Command::Authority(AuthorityCommand::Approve {
            config,
            key,
            family,
            layer,
            replaces,
        }) => {
            let parsed = authority::load_config(&config).map_err(|e| e.to_string())?;
            let base = config.parent().unwrap_or(Path::new("."));
            let key = authority::approve(
                base,
                &key,
                family,
                layer,
                replaces.as_deref(),
                parsed.layers,
                mtos_net::unix_now(),
            )
            .map_err(|e| e.to_string())?;
            println!("approved {key}; the authority votes for it from its next round");
            if !parsed.testnet && parsed.epochs.epoch_at(mtos_net::unix_now()) == 0 {
                println!(
                    "warning: this is the network's first epoch, whose nodes take a placement \
                     salt anyone could compute in advance (specs/directory.md 6.4): approve \
                     only the founders' nodes until epoch 1"
                );
            }
            if replaces.is_some() {
                println!(
                    "the old key is voted for until the new one is listed; the new key \
                     draws a new placement salt"
                );
            }
            Ok(())
        }
        Command::Authority(AuthorityCommand::Revoke { config, key }) => {
            authority::load_config(&config).map_err(|e| e.to_string())?;
            let base = config.parent().unwrap_or(Path::new("."));
            if authority::revoke(base, &key).map_err(|e| e.to_string())? {
                println!("revoked; the authority stops voting for it from its next round");
            } else {
                println!("that key was not approved here (nothing changed)");
            }
            Ok(())
        }
        Command::Authority(AuthorityCommand::Run { config }) => {
            let parsed = authority::load_config(&config).map_err(|e| e.to_string())?;
            let base = config.parent().unwrap_or(Path::new(".")).to_owned();
            init_logging(false);
            runtime()?.block_on(async move {
                authority::run(parsed, &base, signals())
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Bench { seconds } => bench(seconds),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Logs to stderr at RUST_LOG's level (default info). Unless the operator
/// opted in to client addresses, the libp2p crates are capped at warn:
/// their debug logs name remote addresses and PeerIds, clients' included.
fn init_logging(client_addresses: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !client_addresses {
        for target in [
            "libp2p_swarm",
            "libp2p_tcp",
            "libp2p_noise",
            "libp2p_yamux",
            "yamux",
            "multistream_select",
            "libp2p_identify",
            "libp2p_ping",
            "libp2p_stream",
            "libp2p_peer_store",
            "libp2p_connection_limits",
            "libp2p_core",
        ] {
            if let Ok(d) = format!("{target}=warn").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    // Colours only on a terminal: a log file or journal gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
async fn signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received; shutting down");
}

fn serve(config_path: &Path, faults: FaultPolicy) -> Result<(), String> {
    let text =
        fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = NodeConfig::parse_with(&text, config_path, faults).map_err(|e| e.to_string())?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_owned();
    init_logging(config.log.client_addresses);
    runtime()?.block_on(async move {
        crate::run::run(config, &base, signals())
            .await
            .map_err(|e| e.to_string())
    })
}

/// Times header check + unwrap of pre-built packets (building them is
/// slower and not what a node does).
fn bench(seconds: f64) -> Result<(), String> {
    let rate = crate::capacity::unwrap_rate(seconds)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = crate::capacity::unwrap_rate_on(cores, seconds)?;
    println!(
        "Sphinx unwrap (header check + replay tag + process): {rate:.0} packets/s on one core"
    );
    println!(
        "on all {cores} cores at once: {all:.0} packets/s ({:.2} × one core; {:.0} per core)",
        all / rate,
        all / cores as f64
    );
    println!(
        "this node can sustain about {:.0} packets/s with limits.sphinx_workers = 0 (one Sphinx thread per core; 80% of the machine's unwrap rate: the rest is links, replay commits and mixing, on the engine's own thread)",
        all * 0.8
    );
    Ok(())
}

fn init(dir: &Path, role: RoleArg, layer: Option<u8>) -> Result<(), String> {
    let role = match role {
        RoleArg::Gateway => Role::Gateway,
        RoleArg::Mix => Role::Mix,
        RoleArg::Service => Role::Service,
    };
    let layer = match (role, layer) {
        (Role::Mix, None) => Some(1),
        (Role::Mix, Some(l @ 1..=3)) => Some(l),
        (Role::Mix, Some(l)) => return Err(format!("--layer {l}: a mix layer is 1, 2 or 3")),
        (_, Some(_)) => return Err("--layer is only for --role mix".into()),
        (_, None) => None,
    };
    let config_path = dir.join(CONFIG_FILE);
    let keys = dir.join("keys");
    let key_path = keys.join(IDENTITY_FILE);
    for existing in [&config_path, &key_path] {
        if existing.exists() {
            return Err(format!(
                "{} exists; refusing to overwrite (nothing was written)",
                existing.display()
            ));
        }
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&keys)
        .map_err(|e| format!("{}: {e}", keys.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let label = Label::new("mtos-node").map_err(|e| e.to_string())?;
    let identity = Identity::generate(&mut rand::rng(), label, Visibility::Public, now);
    // The key first: a config without a key is harmless, the reverse would
    // invite a second init that replaces the key.
    crate::create_private(&key_path, identity.export_secret().as_bytes())
        .map_err(|e| e.to_string())?;
    crate::create_private(&config_path, NodeConfig::template(role, layer).as_bytes())
        .map_err(|e| e.to_string())?;
    println!("created {}", config_path.display());
    println!(
        "created {} (owner-only; back it up, never share it)",
        key_path.display()
    );
    println!("node key: {}", identity.verify_key());
    Ok(())
}

fn check(config_path: &Path, faults: FaultPolicy) -> Result<(), String> {
    let text =
        fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = NodeConfig::parse_with(&text, config_path, faults).map_err(|e| e.to_string())?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let key_path = base.join(&config.node.keys).join(IDENTITY_FILE);
    let key_text =
        fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let identity =
        Identity::import_secret(&key_text).map_err(|e| format!("{}: {e}", key_path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key_path)
            .map_err(|e| format!("{}: {e}", key_path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: readable by others (mode {:o}); chmod 600 it",
                key_path.display(),
                mode & 0o777
            ));
        }
    }
    println!(
        "config ok: {:?} node on network {:?}",
        config.node.role, config.network.id
    );
    if config.network.authorities.is_empty() {
        println!(
            "note: network.authorities is empty; the node cannot verify network documents yet"
        );
    }
    println!("node key: {}", identity.verify_key());
    Ok(())
}
