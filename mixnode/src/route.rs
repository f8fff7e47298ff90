//! Routes: the one place that decides which nodes a packet crosses, and
//! builds its frame or reply block under the document's epoch keys with
//! the network's mixing delays (`specs/client.md` §3 and §5,
//! `specs/mixing.md` for node loops). Clients, node loops and service
//! requests take their routes from here. A route lists nodes in the order
//! a packet visits them; the first is the one its frame is sent to.

use mtos_crypto::sphinx::{self, Destination, Hop, sample_exponential};

use crate::admission::Position;
use crate::directory::{NetworkDocument, NodeEntry};

/// The positions a node loop from `me` visits after leaving it, ending at
/// `me` (each step one the stratified topology admits, and one client
/// traffic takes too: `specs/mixing.md` §5). A gateway's or service
/// node's loop crosses the layers and comes back as a final hop. A mix's
/// loop goes onward through the layers to a service node as a request,
/// and comes back from it as the answer, through a reply block over the
/// layers before `me`: no packet crosses a gateway or service node as a
/// middle hop, which nothing else does.
pub fn loop_positions(me: Position, layers: u8) -> Vec<Position> {
    let all = (1..=layers).map(Position::Layer);
    match me {
        Position::Service | Position::Gateway => all.chain(std::iter::once(me)).collect(),
        Position::Layer(k) if (1..=layers).contains(&k) => (k + 1..=layers)
            .map(Position::Layer)
            .chain(std::iter::once(Position::Service))
            .chain((1..k).map(Position::Layer))
            .chain(std::iter::once(me))
            .collect(),
        // A layer the network does not have: no loop.
        Position::Layer(_) => Vec::new(),
        Position::Client => Vec::new(),
    }
}

/// Where a loop from `position` turns at a service node: the index, in
/// its route ([`loop_positions`]), of the service node that answers it
/// (a mix's loop), or `None` when it comes back as a forward packet (a
/// gateway's or service node's own loop).
pub fn loop_turn(position: Position, layers: u8) -> Option<usize> {
    let positions = loop_positions(position, layers);
    let (_, via) = positions.split_last()?;
    via.iter().position(|p| *p == Position::Service)
}

/// Seconds a reply block leaves, beyond its hops' greatest delays, for
/// the links and the queue at its first hop ([`NetworkDocument::reply_block_expires`]).
pub const REPLY_LINK_MARGIN_SECS: u64 = 30;

/// One hop's delay: exponential of mean `mean`, drawn again while above
/// `max` (nodes drop a packet held longer than the network's maximum,
/// `delay_too_long`), so the delay is the exponential truncated at `max`.
/// At the networks' settings (mean ≪ max) a redraw practically never
/// happens; after 64 the delay is `max`.
pub fn capped_delay<R: rand::Rng + ?Sized>(
    rng: &mut R,
    mean: std::time::Duration,
    max: std::time::Duration,
) -> std::time::Duration {
    for _ in 0..64 {
        let d = sample_exponential(rng, mean);
        if d <= max {
            return d;
        }
    }
    max
}

/// What routes are picked from: the nodes at each position. The network
/// document is one ([`NetworkDocument`]); the simulator's network of
/// numbered nodes another, so both take routes by the same rule.
pub trait Nodes {
    /// A node as the caller names it (`&NodeEntry`, an index).
    type Node: Clone;

    /// The mix layers.
    fn layers(&self) -> u8;

    /// A node at `position`, picked uniformly, or `None` if there is none.
    fn pick<R: rand::Rng + ?Sized>(&self, rng: &mut R, position: Position) -> Option<Self::Node>;

    /// A node's key (what loss attribution names it by).
    fn key(&self, node: &Self::Node) -> [u8; 32];
}

/// `first` (if any), one node of each mix layer in layer order, then
/// `last`: the shape of every route a client sends or receives on (a
/// client's forward route from its gateway, a reply block's route to it).
/// `None` when a layer is empty.
pub fn through_layers<N: Nodes, R: rand::Rng + ?Sized>(
    nodes: &N,
    rng: &mut R,
    first: Option<N::Node>,
    last: N::Node,
) -> Option<Vec<N::Node>> {
    let mut route: Vec<N::Node> = first.into_iter().collect();
    for l in 1..=nodes.layers() {
        route.push(nodes.pick(rng, Position::Layer(l))?);
    }
    route.push(last);
    Some(route)
}

/// A node loop's route: from `me` (at `position`) through one node at
/// each of [`loop_positions`] and back to `me`, or `None` when a position
/// is empty or `me` cannot loop (a client, a layer the network lacks).
pub fn loop_route<N: Nodes, R: rand::Rng + ?Sized>(
    nodes: &N,
    rng: &mut R,
    me: N::Node,
    position: Position,
) -> Option<Vec<N::Node>> {
    let positions = loop_positions(position, nodes.layers());
    let (last, via) = positions.split_last()?;
    if *last != position {
        return None;
    }
    let mut route: Vec<N::Node> = via
        .iter()
        .map(|p| nodes.pick(rng, *p))
        .collect::<Option<_>>()?;
    route.push(me);
    Some(route)
}

impl<'d> Nodes for &'d NetworkDocument {
    type Node = &'d NodeEntry;

    fn layers(&self) -> u8 {
        self.layers
    }

    fn pick<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        position: Position,
    ) -> Option<&'d NodeEntry> {
        NetworkDocument::pick(self, rng, position)
    }

    fn key(&self, node: &&'d NodeEntry) -> [u8; 32] {
        node.key
    }
}

impl NetworkDocument {
    /// The node whose identity key is `key`.
    pub fn node(&self, key: &[u8; 32]) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.key == *key)
    }

    /// One node of each mix layer, in layer order, or `None` when a layer
    /// is empty.
    pub fn pick_layers<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<Vec<&NodeEntry>> {
        (1..=self.layers)
            .map(|l| self.pick(rng, Position::Layer(l)))
            .collect()
    }

    /// A client's forward route: from its gateway (`gateway`, a node key)
    /// through one node per layer to `last` (a recipient's gateway, a
    /// service node, or the client's own gateway for a loop).
    pub fn client_route<'d, R: rand::Rng + ?Sized>(
        &'d self,
        rng: &mut R,
        gateway: &[u8; 32],
        last: &'d NodeEntry,
    ) -> Option<Vec<&'d NodeEntry>> {
        through_layers(&self, rng, Some(self.node(gateway)?), last)
    }

    /// A reply block's route back to a client: from `first` (a
    /// correspondent's gateway; nothing for a service node, which hands
    /// replies to layer 1 itself) through one node per layer to the
    /// client's gateway (`gateway`, a node key).
    pub fn reply_route<'d, R: rand::Rng + ?Sized>(
        &'d self,
        rng: &mut R,
        first: Option<&'d NodeEntry>,
        gateway: &[u8; 32],
    ) -> Option<Vec<&'d NodeEntry>> {
        through_layers(&self, rng, first, self.node(gateway)?)
    }

    /// A node loop's route: from `me` through one node at each of
    /// [`loop_positions`] and back to `me`, or `None` when a position is
    /// empty or `me` cannot loop (a client).
    pub fn node_loop_route<'d, R: rand::Rng + ?Sized>(
        &'d self,
        rng: &mut R,
        me: &'d NodeEntry,
    ) -> Option<Vec<&'d NodeEntry>> {
        loop_route(&self, rng, me, me.position())
    }

    /// A node at `position`, picked uniformly (routes take one node per
    /// position).
    pub fn pick<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        position: Position,
    ) -> Option<&NodeEntry> {
        let nodes: Vec<&NodeEntry> = self
            .nodes
            .iter()
            .filter(|n| n.position() == position)
            .collect();
        (!nodes.is_empty()).then(|| nodes[rand::RngExt::random_range(rng, 0..nodes.len())])
    }

    /// The hops of `route` under this document's epoch keys, and an
    /// exponential delay of the network's mean for each. `None` if a node
    /// lacks a key for the epoch.
    fn hops_and_delays<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
    ) -> Option<(Vec<Hop>, Vec<std::time::Duration>)> {
        self.hops_and_delays_for(rng, route, self.epoch)
    }

    /// The hops of `route` under its nodes' keys for `epoch` (this
    /// document's, or one a node lists ahead), with their delays.
    fn hops_and_delays_for<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        epoch: u32,
    ) -> Option<(Vec<Hop>, Vec<std::time::Duration>)> {
        let hops: Vec<Hop> = route
            .iter()
            .map(|n| {
                Some(Hop {
                    address: n.address(),
                    sphinx_key: n.sphinx_key(epoch)?,
                })
            })
            .collect::<Option<_>>()?;
        let mean = std::time::Duration::from_millis(self.mixing.mean_delay_ms);
        let max = std::time::Duration::from_millis(self.mixing.max_delay_ms);
        let delays = hops.iter().map(|_| capped_delay(rng, mean, max)).collect();
        Some((hops, delays))
    }

    /// A link frame carrying `message` through `route` (the first node is
    /// the one the frame is sent to) to `destination`, under this
    /// document's epoch keys, each hop holding it an exponential delay of
    /// the network's mean. `None` if a node lacks a key for the epoch or
    /// the packet cannot be built.
    pub fn forward_frame<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &Destination,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let (hops, delays) = self.hops_and_delays(rng, route)?;
        let packet = sphinx::build_forward(rng, &hops, destination, &delays, message).ok()?;
        sphinx::Frame::encode((self.epoch % 256) as u8, &packet).ok()
    }

    /// A frame whose final hop receives `payload` (a whole Sphinx
    /// payload) exactly: a delivery to a client's mailbox
    /// (`specs/client.md` §2).
    pub fn delivery_frame<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &Destination,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let (hops, delays) = self.hops_and_delays(rng, route)?;
        let packet = sphinx::build_forward_raw(rng, &hops, destination, &delays, payload).ok()?;
        sphinx::Frame::encode((self.epoch % 256) as u8, &packet).ok()
    }

    /// A single-use reply block (SURB) through `route` to `destination`
    /// under this document's epoch keys, each hop holding the reply an
    /// exponential delay of the network's mean. Returns the block, what
    /// its creator keeps to read the reply, and the sum of its delays.
    pub fn reply_block<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &[u8; 32],
        surb_id: [u8; sphinx::SURB_ID_LEN],
    ) -> Option<(Vec<u8>, sphinx::SurbRecovery, std::time::Duration)> {
        self.reply_block_for(rng, route, destination, surb_id, self.epoch)
    }

    /// The `expires` of a reply block over `hops` hops under this
    /// document's epoch keys (`client.md` §5): nodes keep an epoch's key
    /// through the next epoch, and the room left for the reply's own
    /// delays is the most they can be (every hop's delay is capped at the
    /// network's maximum), not their sum: an expiry computed from the
    /// drawn delays would tell the block's user how long the reply will
    /// take. [`REPLY_LINK_MARGIN_SECS`] more are left for the links.
    pub fn reply_block_expires(&self, hops: usize) -> u64 {
        let worst = self
            .mixing
            .max_delay_ms
            .div_ceil(1000)
            .saturating_mul(hops as u64);
        self.schedule
            .start(self.epoch.saturating_add(2))
            .saturating_sub(worst.saturating_add(1 + REPLY_LINK_MARGIN_SECS))
    }

    /// [`NetworkDocument::reply_block`] under the route's keys for
    /// `epoch`: the next epoch's, which nodes list ahead, for a block to
    /// be used once that epoch has begun. `None` when a node of the route
    /// lists no key for it.
    pub fn reply_block_for<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[&NodeEntry],
        destination: &[u8; 32],
        surb_id: [u8; sphinx::SURB_ID_LEN],
        epoch: u32,
    ) -> Option<(Vec<u8>, sphinx::SurbRecovery, std::time::Duration)> {
        let (hops, delays) = self.hops_and_delays_for(rng, route, epoch)?;
        let total = delays.iter().sum();
        let (surb, recovery) =
            sphinx::build_surb(rng, &hops, destination, surb_id, &delays).ok()?;
        Some((surb, recovery, total))
    }
}

#[cfg(test)]
pub(crate) mod test_network;
#[cfg(test)]
mod tests;
