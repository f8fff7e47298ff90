//! Flooding a gateway from many client identities, and measuring what
//! honest clients still get through: shared by the flood test
//! (`tests/gateway_flood.rs`) and the attack-load benchmark
//! (`benches/benches/attack.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use mtos_client::mixnet::{Received, Session};
use mtos_mixnode::admission::Position;

use mtos_mixnode::directory::NodeEntry;

use crate::{AuthoritySettings, CHAIN, NodeSettings, TestClient, Testnet};

/// The scaled-down gateway's epoch.
pub const EPOCH_SECS: u64 = 600;
/// Packets a second its Sphinx key admits: four clients' worth at λP 2,
/// λL 1, λD 1 (each may send 8 a second and gets 4 back).
pub const KEY_RATE: u64 = 48;

/// A chain whose gateway is scaled down rather than a flood scaled up:
/// its key admits [`KEY_RATE`] packets a second, and it bounds no source
/// address (every client here comes from 127.0.0.1, as clients through
/// one Tor exit would). Blocks until every node is listed.
pub fn scaled_gateway_testnet() -> Testnet {
    Testnet::start_custom(
        &CHAIN,
        EPOCH_SECS,
        5,
        |p| NodeSettings {
            // The key's rate is its capacity over the epoch and 10 s.
            replay_capacity: (p == Position::Gateway).then_some(KEY_RATE * (EPOCH_SECS + 10)),
            sessions_per_address: (p == Position::Gateway).then_some(0),
            ..NodeSettings::default()
        },
        &AuthoritySettings {
            payload: Some(2.0),
            loops: Some(1.0),
            drops: Some(1.0),
            // Four clients at these rates: with bulk windows the scaled
            // key would carry one (a window's cost alone is over it).
            no_bulk: true,
            ..AuthoritySettings::default()
        },
    )
}

/// Alice sends `count` numbered messages to bob, one every `gap`; the
/// share bob has received `settle` after the last was sent (messages
/// tagged otherwise are ignored).
pub async fn delivery_ratio(
    alice: &Session,
    bob: &mut Session,
    count: usize,
    gap: Duration,
    settle: Duration,
    tag: &str,
) -> f64 {
    let to = bob.address();
    let deadline = tokio::time::Instant::now() + gap * count as u32 + settle;
    let sending = async {
        for n in 0..count {
            // A message too long or a closed session: not sent, so not
            // received either.
            let _ = alice.send(&to, format!("{tag}{n}").as_bytes());
            tokio::time::sleep(gap).await;
        }
    };
    let receiving = async {
        let mut seen = BTreeSet::new();
        while seen.len() < count {
            match tokio::time::timeout_at(deadline, bob.recv()).await {
                Ok(Some(Received::Message(m))) => {
                    if let Some(n) = String::from_utf8_lossy(&m)
                        .strip_prefix(tag)
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        seen.insert(n);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        seen.len()
    };
    let ((), got) = tokio::join!(sending, receiving);
    got as f64 / count as f64
}

/// Clients with fresh identities, each of which asked the gateway for a
/// session with its work.
#[derive(Debug)]
pub struct Attackers {
    /// The clients.
    pub clients: Vec<TestClient>,
    /// How many the gateway served.
    pub admitted: usize,
}

impl Attackers {
    /// `n` fresh identities, each opening a session at the gateway.
    pub async fn connect(net: &Testnet, n: usize) -> Self {
        let mut clients = Vec::new();
        let mut admitted = 0;
        for _ in 0..n {
            let mut a = TestClient::connect(net).await;
            let gateway = a.at(Position::Gateway)[0].clone();
            if a.try_open_session(&gateway).await.is_ok() {
                admitted += 1;
            }
            clients.push(a);
        }
        Self { clients, admitted }
    }

    /// Each client's packets for `secs` seconds at `per_second`: valid
    /// for the gateway's layer, through every mix layer to the service
    /// node (which drops them as bad requests). Built before a flood, as
    /// a flooder would.
    pub fn build(&self, per_second: usize, secs: usize) -> Vec<Vec<Vec<Vec<u8>>>> {
        self.clients
            .iter()
            .map(|a| {
                let route = a.chain_route();
                let route: Vec<&NodeEntry> = route.iter().collect();
                (0..secs)
                    .map(|_| {
                        (0..per_second)
                            .map(|_| a.frame(&route, Duration::from_millis(5), b"flood"))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Sends `packets` (from [`Attackers::build`]): each client writes
    /// one second's batch a second, all at once, whether or not the
    /// gateway serves it a session; returns when every batch is written.
    pub async fn flood(&mut self, packets: Vec<Vec<Vec<Vec<u8>>>>) {
        let clients = std::mem::take(&mut self.clients);
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(packets)
            .map(|(mut a, seconds)| {
                tokio::spawn(async move {
                    let gateway = a.at(Position::Gateway)[0].clone();
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    for batch in seconds {
                        tick.tick().await;
                        a.send_without_session(&gateway, &batch).await;
                    }
                    a
                })
            })
            .collect();
        for t in tasks {
            if let Ok(a) = t.await {
                self.clients.push(a);
            }
        }
    }
}
