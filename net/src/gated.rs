//! Streams only some peers may open: the authorities' own protocol
//! (`specs/directory.md` §4).
//!
//! libp2p-stream hands inbound streams to their acceptor through a queue
//! of one per protocol and drops a stream that arrives while it is full.
//! A flood of directory streams from anyone therefore drops the other
//! authorities' vote requests as readily as its own, before the
//! authority's request pools see them.
//! [`PeerGated`] wraps a second libp2p-stream behaviour whose protocols
//! exist only on connections to the listed peers: on any other connection
//! the handler is a dummy that supports nothing, so a stranger's stream
//! on the protocol is refused at negotiation and never reaches the queue.
//!
//! Written here because libp2p-stream has no per-peer filter and the
//! authority's traffic must not share its intake with strangers.

use std::collections::HashSet;
use std::task::{Context, Poll};

use either::Either;
use libp2p::PeerId;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// A libp2p-stream behaviour whose streams only `allowed` peers reach.
pub struct PeerGated {
    inner: libp2p_stream::Behaviour,
    allowed: HashSet<PeerId>,
    /// Connections whose handler is the inner one: only their events
    /// reach the inner behaviour (it must never route a stream to a
    /// dummy handler).
    served: HashSet<ConnectionId>,
}

impl std::fmt::Debug for PeerGated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerGated")
            .field("allowed", &self.allowed.len())
            .field("served", &self.served.len())
            .finish_non_exhaustive()
    }
}

impl PeerGated {
    /// Streams for `allowed` peers only (none: the protocols exist on no
    /// connection).
    pub fn new(allowed: HashSet<PeerId>) -> Self {
        Self {
            inner: libp2p_stream::Behaviour::new(),
            allowed,
            served: HashSet::new(),
        }
    }

    /// A control to open and accept streams with the allowed peers.
    pub fn new_control(&self) -> libp2p_stream::Control {
        self.inner.new_control()
    }

    fn handler(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        inner: impl FnOnce(
            &mut libp2p_stream::Behaviour,
        ) -> Result<THandler<libp2p_stream::Behaviour>, ConnectionDenied>,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.allowed.contains(&peer) {
            let handler = inner(&mut self.inner)?;
            self.served.insert(connection);
            Ok(Either::Left(handler))
        } else {
            Ok(Either::Right(dummy::ConnectionHandler))
        }
    }
}

impl NetworkBehaviour for PeerGated {
    type ConnectionHandler = Either<THandler<libp2p_stream::Behaviour>, dummy::ConnectionHandler>;
    type ToSwarm = ();

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.handler(connection, peer, |b| {
            b.handle_established_inbound_connection(connection, peer, local, remote)
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.handler(connection, peer, |b| {
            b.handle_established_outbound_connection(connection, peer, addr, role, port_use)
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(e) if !self.served.contains(&e.connection_id) => {
                return;
            }
            FromSwarm::ConnectionClosed(e) if !self.served.remove(&e.connection_id) => return,
            FromSwarm::DialFailure(e) if !e.peer_id.is_some_and(|p| self.allowed.contains(&p)) => {
                return;
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self.inner.on_connection_handler_event(peer, connection, e),
            Either::Right(never) => libp2p::core::util::unreachable(never),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<(), THandlerInEvent<Self>>> {
        self.inner
            .poll(cx)
            .map(|action| action.map_in(Either::Left))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::identity::Keypair;
    use libp2p::swarm::Swarm;

    use super::*;
    use crate::{AUTHORITY_PROTOCOL, Behaviour, build_gated_swarm};

    fn swarm(key: &Keypair, allowed: &[PeerId]) -> Swarm<Behaviour> {
        build_gated_swarm(key.clone(), 16, allowed.iter().copied().collect()).unwrap()
    }

    /// A swarm listening on loopback, and its address.
    async fn listening(key: &Keypair, allowed: &[PeerId]) -> (Swarm<Behaviour>, Multiaddr) {
        let mut listener = swarm(key, allowed);
        listener
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                listener.select_next_some().await
            {
                return (listener, address);
            }
        }
    }

    /// Opens an [`AUTHORITY_PROTOCOL`] stream to `server` (on the gated
    /// behaviour, or on the ordinary one as any libp2p peer could) and
    /// reads its one-byte answer.
    async fn ask(
        mut swarm: Swarm<Behaviour>,
        gated: bool,
        server: PeerId,
        at: Multiaddr,
    ) -> Result<u8, String> {
        swarm.add_peer_address(server, at);
        let mut control = if gated {
            swarm.behaviour().gated.new_control()
        } else {
            swarm.behaviour().stream.new_control()
        };
        let driver = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let result = tokio::time::timeout(Duration::from_secs(20), async {
            let mut stream = control
                .open_stream(server, AUTHORITY_PROTOCOL)
                .await
                .map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            Ok(byte[0])
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        driver.abort();
        result
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_listed_peers_can_open_the_gated_protocol() {
        let server_key = Keypair::generate_ed25519();
        let friend_key = Keypair::generate_ed25519();
        let server = server_key.public().to_peer_id();
        let friend = friend_key.public().to_peer_id();
        let (mut listener, at) = listening(&server_key, &[friend]).await;
        let mut incoming = listener
            .behaviour()
            .gated
            .new_control()
            .accept(AUTHORITY_PROTOCOL)
            .unwrap();
        let (seen, mut served) = tokio::sync::mpsc::unbounded_channel();
        let server_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = listener.select_next_some() => {}
                    Some((peer, mut stream)) = incoming.next() => {
                        let _ = seen.send(peer);
                        let _ = stream.write_all(&[7]).await;
                        let _ = stream.close().await;
                    }
                }
            }
        });
        // A stranger speaking the protocol from an ordinary libp2p-stream
        // behaviour, or from a gated one listing the server, is refused
        // at negotiation: the protocol does not exist on its connection.
        for gated in [false, true] {
            let stranger = swarm(&Keypair::generate_ed25519(), &[server]);
            let refused = ask(stranger, gated, server, at.clone()).await;
            let why = refused.unwrap_err();
            assert!(why.contains("not support"), "gated {gated}: {why}");
        }
        // The listed peer is served.
        let friendly = ask(swarm(&friend_key, &[server]), true, server, at).await;
        assert_eq!(friendly, Ok(7));
        server_task.abort();
        let mut who = Vec::new();
        while let Ok(peer) = served.try_recv() {
            who.push(peer);
        }
        assert_eq!(who, vec![friend], "only the listed peer's stream arrived");
    }

    /// The one-place queue of `/mtos/dir/1`, kept full by a stranger's
    /// stream nobody accepts, drops a listed peer's stream on that
    /// protocol at once; its stream on the gated protocol, which has a
    /// queue of its own, is still served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_directory_queue_does_not_reach_the_gated_protocol() {
        let server_key = Keypair::generate_ed25519();
        let friend_key = Keypair::generate_ed25519();
        let server = server_key.public().to_peer_id();
        let (mut listener, at) = listening(&server_key, &[friend_key.public().to_peer_id()]).await;
        // Registered, never accepted: the queue holds one stream.
        let _directory = listener
            .behaviour()
            .stream
            .new_control()
            .accept(crate::DIR_PROTOCOL)
            .unwrap();
        let mut incoming = listener
            .behaviour()
            .gated
            .new_control()
            .accept(AUTHORITY_PROTOCOL)
            .unwrap();
        let server_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = listener.select_next_some() => {}
                    Some((_, mut stream)) = incoming.next() => {
                        let _ = stream.write_all(&[7]).await;
                        let _ = stream.close().await;
                    }
                }
            }
        });
        let driven = |mut swarm: Swarm<Behaviour>| {
            swarm.add_peer_address(server, at.clone());
            let controls = (
                swarm.behaviour().stream.new_control(),
                swarm.behaviour().gated.new_control(),
            );
            let task = tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            });
            (controls, task)
        };
        let ((mut stranger, _), stranger_task) = driven(swarm(&Keypair::generate_ed25519(), &[]));
        let _held = stranger
            .open_stream(server, crate::DIR_PROTOCOL)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ((mut plain, mut gated), friend_task) = driven(swarm(&friend_key, &[server]));
        // The friend's directory stream is dropped, not kept waiting.
        let mut dropped = plain
            .open_stream(server, crate::DIR_PROTOCOL)
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), dropped.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "the stream was not dropped: {read:?}"
        );
        // Its gated stream is served.
        let mut served = gated.open_stream(server, AUTHORITY_PROTOCOL).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), served.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(byte, [7]);
        for t in [server_task, stranger_task, friend_task] {
            t.abort();
        }
    }
}
