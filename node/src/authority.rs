//! `mtos-node authority`: the directory authority. Nodes upload signed
//! descriptors and fetch the signed network document over `/mtos/dir/1`.
//! One authority for now; the document format already carries a list of
//! signatures (`specs/directory.md`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::Multiaddr;
use mtos_crypto::{Identity, Label, Visibility};
use serde::Deserialize;

use super::{NodeError, create_private, load_identity};
use mtos_mixnode::directory::{
    Authority, DirectoryError, EpochSchedule, Mixing, NetworkParams, Rates, StorageRules,
};
use mtos_net::{
    self as net, DIR_ERROR, DIR_GET_DOCUMENT, DIR_OK, DIR_PROTOCOL, DIR_PUT_DESCRIPTOR,
};
use mtos_net::{libp2p_keypair, unix_now};

/// The authority's key file, inside its directory.
pub const KEY_FILE: &str = "authority.key";
/// The authority's config file.
pub const CONFIG_FILE: &str = "authority.toml";

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
    /// Node keys (64 hex digits) the authority lists; empty: any node
    /// that signs a valid descriptor (fine for a testnet, not for a
    /// public network, where anyone could join as a mix).
    #[serde(default)]
    pub allow: Vec<String>,
}

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
        if c.allow.iter().any(|k| parse_key(k).is_none()) {
            return Err(bad(
                "allow",
                "every entry must be a node key, 64 hex digits",
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

    /// The commented file `authority init` writes.
    pub fn template(
        network: &str,
        listen: &str,
        epoch_secs: u64,
        genesis: u64,
        mean_delay_ms: u64,
    ) -> String {
        let heartbeat = epoch_secs.clamp(1, mtos_mixnode::directory::DEFAULT_HEARTBEAT_SECS);
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
# Node keys (as `mtos-node init` prints them) allowed in the document.
# Empty: any node may join, which suits a testnet only.
allow = []

[epochs]
# Start of epoch 0 (Unix seconds) and the epoch length. Nodes make a new
# Sphinx key every epoch and publish it one epoch ahead.
genesis = {genesis}
epoch_secs = {epoch_secs}
# Nodes re-upload their descriptor this often (seconds); a node not heard
# from for three heartbeats leaves the document, and its records are
# copied to the nodes that replace it.
heartbeat_secs = {heartbeat}

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

[storage]
# The least proof-of-work effort (Equi-X solutions, ~3 ms of one core
# each) a put's storage stamp carries; replicas ask more as they fill
# (specs/storage.md section 2).
stamp_floor = {stamp_floor}
"#
        )
    }

    fn allowlist(&self) -> Option<std::collections::BTreeSet<[u8; 32]>> {
        (!self.allow.is_empty()).then(|| self.allow.iter().filter_map(|k| parse_key(k)).collect())
    }

    fn params(&self) -> NetworkParams {
        NetworkParams {
            network: self.network.clone(),
            schedule: self.epochs,
            mixing: self.mixing,
            rates: self.rates,
            layers: self.layers,
            storage: self.storage,
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

/// Requests served at once; more streams are dropped (the node retries).
const MAX_CONCURRENT_REQUESTS: usize = 256;

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
    let text = AuthorityConfig::template(network, listen, epoch_secs, genesis, mean_delay_ms);
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

/// Serves the directory until `shutdown` resolves.
pub async fn run(
    config: AuthorityConfig,
    base: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let identity = Arc::new(load_identity(&base.join(&config.keys).join(KEY_FILE))?);
    let mut swarm = net::build_swarm(libp2p_keypair(&identity), 4_096)?;
    let listen: Multiaddr = config
        .listen
        .parse()
        .map_err(|e| NodeError::Config(format!("listen: {e}")))?;
    swarm.listen_on(listen).map_err(|e| NodeError::Listen {
        field: "listen",
        addr: config.listen.clone(),
        reason: super::listen_reason(&e),
    })?;
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control
        .accept(DIR_PROTOCOL)
        .map_err(|_| NodeError::Config("directory protocol registered twice".into()))?;
    tracing::info!(
        peer = %swarm.local_peer_id(),
        key = %data_encoding::HEXLOWER.encode(identity.verify_key().as_bytes()),
        network = %config.network,
        "mtos authority starting"
    );
    let mut authority = Authority::new(config.params());
    authority.set_allowlist(config.allowlist());
    let state = Arc::new(Mutex::new(authority));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = swarm.select_next_some() => {
                if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } = event {
                    tracing::info!(%address, "listening");
                }
            }
            Some((_peer, stream)) = incoming.next() => {
                // Beyond the limit the stream is dropped; nodes retry.
                if let Ok(permit) = permits.clone().try_acquire_owned() {
                    tokio::spawn(serve_request(stream, state.clone(), identity.clone(), permit));
                }
            }
        }
    }
    tracing::info!("mtos authority stopped");
    Ok(())
}

async fn serve_request(
    mut stream: libp2p::Stream,
    state: Arc<Mutex<Authority>>,
    identity: Arc<Identity>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let exchange = async {
        let (kind, body) = net::read_message(&mut stream, net::MAX_DIR_REQUEST).await?;
        let (status, reply) = match kind {
            DIR_PUT_DESCRIPTOR => {
                let result = state
                    .lock()
                    .map_err(|_| "authority state poisoned".to_owned())
                    .and_then(|mut a| {
                        a.accept_descriptor(&body, unix_now())
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(()) => (DIR_OK, Vec::new()),
                    Err(e) => {
                        tracing::info!(error = %e, "descriptor refused");
                        (DIR_ERROR, e.into_bytes())
                    }
                }
            }
            DIR_GET_DOCUMENT => match state.lock() {
                Ok(mut a) => (DIR_OK, a.document(unix_now(), &identity)),
                Err(_) => (DIR_ERROR, b"authority state poisoned".to_vec()),
            },
            other => (DIR_ERROR, format!("unknown request {other}").into_bytes()),
        };
        net::write_message(&mut stream, status, &reply).await?;
        stream.close().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), exchange).await;
}
