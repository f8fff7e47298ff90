//! The swarm task: connections, identify, ping, dialling by PeerId, and
//! the count of connected peers by role.

use super::*;

/// Commands to the swarm task.
pub(super) enum SwarmCommand {
    /// Learn the addresses of the document's nodes.
    Addresses(Vec<(PeerId, Vec<Multiaddr>)>),
    /// Connect to a peer at these addresses (a no-op when connected or
    /// dialling).
    Dial(PeerId, Vec<Multiaddr>),
}

pub(super) struct SwarmTask {
    pub(super) swarm: libp2p::Swarm<net::Behaviour>,
    pub(super) commands: mpsc::Receiver<SwarmCommand>,
    pub(super) topology: SharedTopology,
    pub(super) listen: watch::Sender<Vec<Multiaddr>>,
    pub(super) metrics: Metrics,
    pub(super) admission: SharedAdmission,
    pub(super) authorities: Vec<PeerId>,
    pub(super) log_clients: bool,
    /// Test-only: a watching gateway's log (`[faults] watch_clients`).
    pub(super) watch: Option<Arc<super::client_watch::ClientWatch>>,
    /// The source address of each connected peer (a gateway bounds
    /// client sessions per address).
    pub(super) remote_ips: RemoteIps,
}

/// Connected peers' source addresses.
pub(super) type RemoteIps = Arc<Mutex<HashMap<PeerId, std::net::IpAddr>>>;

/// The IP address a multiaddr starts from, if any.
fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(a) => Some(std::net::IpAddr::V4(a)),
        libp2p::multiaddr::Protocol::Ip6(a) => Some(std::net::IpAddr::V6(a)),
        _ => None,
    })
}

pub(super) async fn swarm_task(mut t: SwarmTask) {
    // The role each connected peer was counted under.
    let mut counted: HashMap<PeerId, &'static str> = HashMap::new();
    loop {
        tokio::select! {
            command = t.commands.recv() => match command {
                Some(SwarmCommand::Addresses(list)) => {
                    for (peer, addrs) in list {
                        for a in addrs {
                            t.swarm.add_peer_address(peer, a);
                        }
                    }
                }
                Some(SwarmCommand::Dial(peer, addrs)) => {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = t.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "dial refused");
                    }
                }
                None => return,
            },
            event = t.swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, "listening");
                    t.listen.send_modify(|l| l.push(address));
                }
                SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. }
                    if num_established.get() == 1 =>
                {
                        if let (Some(ip), Ok(mut ips)) =
                            (ip_of(endpoint.get_remote_address()), t.remote_ips.lock())
                        {
                            ips.insert(peer_id, ip);
                        }
                        let role = if t.authorities.contains(&peer_id) {
                            "authority"
                        } else {
                            t.topology
                                .borrow()
                                .as_ref()
                                .map_or("client", |topo| role_label(topo.position_of(&peer_id)))
                        };
                        t.metrics.connections.with_label_values(&[role]).inc();
                        if role == "client"
                            && let Some(watch) = &t.watch
                        {
                            watch.connected(&peer_id, endpoint.get_remote_address());
                        }
                        counted.insert(peer_id, role);
                        // Links to other nodes are the operator's to see;
                        // a client's identity is logged only when the
                        // operator opted in to client addresses.
                        if role != "client" || t.log_clients {
                            tracing::info!(peer = %peer_id, role, "connected");
                        }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    if let Some(role) = counted.remove(&peer_id) {
                        t.metrics.connections.with_label_values(&[role]).dec();
                    }
                    if let Ok(mut b) = t.admission.lock() {
                        b.forget(&peer_id);
                    }
                    if let Ok(mut ips) = t.remote_ips.lock() {
                        ips.remove(&peer_id);
                    }
                }
                SwarmEvent::ListenerError { error, .. } => {
                    tracing::warn!(%error, "listener error");
                }
                _ => {}
            },
        }
    }
}
