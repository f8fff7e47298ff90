//! Reaching the network through Tor (cargo feature `tor`, `specs/client.md`
//! §7). A session built with [`TorEntry`] makes every connection (to the
//! authority for the network document, and to its gateway) through a Tor
//! circuit built by arti, the Tor project's Rust client, so neither the
//! authority nor the gateway learns the client's IP address. Noise and
//! Yamux run inside the Tor stream as they do over TCP.
//!
//! The transport is ours rather than `libp2p-community-tor`'s because that
//! crate is built against an older libp2p than the one mtos uses; it is
//! the few lines of a dial-only `Transport` around `TorClient::connect`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arti_client::config::TorClientConfigBuilder;
use arti_client::{TorClient, TorClientConfig};
use futures::future::BoxFuture;
use libp2p::core::Transport;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Swarm, noise, yamux};
use mtos_net::{self as net, Behaviour, NetError};

use crate::ClientError;

/// How long bootstrapping may take by default (arti fetches a consensus
/// and builds its first circuits).
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where arti keeps its state and cache, and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorEntry {
    /// Guards and other persistent state (keep it between runs: fresh
    /// guards on every run would expose the client to more relays).
    pub state_dir: PathBuf,
    /// Directory cache.
    pub cache_dir: PathBuf,
    /// Bootstrapping that takes longer fails with a clear error.
    pub bootstrap_timeout: Duration,
}

impl TorEntry {
    /// arti's state and cache under `dir`, with the default timeout.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            state_dir: dir.join("state"),
            cache_dir: dir.join("cache"),
            bootstrap_timeout: BOOTSTRAP_TIMEOUT,
        }
    }

    /// arti's configuration for these directories. (Also installs the
    /// TLS crypto arti's links use, once per process.)
    pub fn client_config(&self) -> Result<TorClientConfig, ClientError> {
        // Fails only when a provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if self.bootstrap_timeout.is_zero() {
            return Err(
                NetError::Config("tor: the bootstrap timeout must be above zero".into()).into(),
            );
        }
        TorClientConfigBuilder::from_directories(&self.state_dir, &self.cache_dir)
            .build()
            .map_err(|e| NetError::Config(format!("tor configuration: {e}")).into())
    }

    /// Starts arti and waits until it can build circuits.
    pub async fn bootstrap(&self) -> Result<TorTransport, ClientError> {
        let config = self.client_config()?;
        let client = tokio::time::timeout(
            self.bootstrap_timeout,
            TorClient::create_bootstrapped(config),
        )
        .await
        .map_err(|_| {
            NetError::Timeout(format!(
                "tor bootstrap ({} s; is the Tor network reachable from here?)",
                self.bootstrap_timeout.as_secs()
            ))
        })?
        .map_err(|e| NetError::Link(format!("tor: {e}")))?;
        Ok(TorTransport { client })
    }
}

impl TorEntry {
    /// Starts arti without waiting: it bootstraps on the first connection
    /// (which then waits for it). Needs no network until then.
    pub fn on_demand(&self) -> Result<TorTransport, ClientError> {
        let config = self.client_config()?;
        let client = TorClient::builder()
            .config(config)
            .bootstrap_behavior(arti_client::BootstrapBehavior::OnDemand)
            .create_unbootstrapped()
            .map_err(|e| NetError::Link(format!("tor: {e}")))?;
        Ok(TorTransport { client })
    }
}

/// Where a Tor exit should connect for `addr`: a host name or a public IP
/// address, and a TCP port. Local and private addresses are refused: no
/// exit can reach them, and asking would tell the exit about this network.
pub fn tor_target(addr: &Multiaddr) -> Result<(String, u16), String> {
    let mut parts = addr.iter();
    let host = match parts.next() {
        Some(Protocol::Ip4(ip)) if public_v4(ip) => ip.to_string(),
        Some(Protocol::Ip6(ip)) if public_v6(ip) => ip.to_string(),
        Some(Protocol::Ip4(_) | Protocol::Ip6(_)) => {
            return Err(format!(
                "{addr}: a local or private address, which no Tor exit can reach"
            ));
        }
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => h.to_string(),
        _ => return Err(format!("{addr}: not an IP or DNS address")),
    };
    let port = match parts.next() {
        Some(Protocol::Tcp(p)) if p != 0 => p,
        _ => return Err(format!("{addr}: not a TCP address with a port")),
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => Ok((host, port)),
        Some(p) => Err(format!("{addr}: {p} cannot be reached through Tor")),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        // 100.64.0.0/10 (carrier-grade NAT) and 0.0.0.0/8.
        || (a == 100 && (b & 0xc0) == 64)
        || a == 0)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link local, 2001:db8::/32.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Is `addr` one a Tor exit can reach?
pub fn reachable(addr: &Multiaddr) -> bool {
    tor_target(addr).is_ok()
}

/// A dial-only libp2p transport whose connections are Tor streams.
#[derive(Clone)]
pub struct TorTransport {
    client: Arc<TorClient<tor_rtcompat::PreferredRuntime>>,
}

impl std::fmt::Debug for TorTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorTransport").finish_non_exhaustive()
    }
}

impl Transport for TorTransport {
    type Output = arti_client::DataStream;
    type Error = io::Error;
    type ListenerUpgrade = std::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        // A client behind Tor accepts nothing.
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Ok((host, port)) = tor_target(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let client = self.client.clone();
        Ok(Box::pin(async move {
            client.connect((host, port)).await.map_err(io::Error::other)
        }))
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

/// A swarm whose every connection goes through `tor`.
pub fn build_swarm(
    keypair: libp2p::identity::Keypair,
    tor: &TorTransport,
    max_connections: u32,
) -> Result<Swarm<Behaviour>, ClientError> {
    let tor = tor.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                Ok(tor
                    .upgrade(libp2p::core::upgrade::Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            },
        )
        .map_err(|e| NetError::Link(format!("tor transport: {e}")))?
        .with_behaviour(|key| net::behaviour(key, max_connections))
        .map_err(|e| NetError::Link(format!("tor transport: {e}")))?
        .with_swarm_config(net::swarm_config)
        .build();
    Ok(swarm)
}

#[cfg(test)]
mod tests;
