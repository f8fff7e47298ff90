//! Placement (`specs/directory.md` §6.3 step 5): the nodes a majority
//! listed, put in their layers and trimmed to the caps of their families
//! and networks, with layers evened out at an epoch's first document.
//! Deterministic: every authority and auditor places the same way.

use std::collections::BTreeMap;

use super::super::vote::VoteParams;
use super::super::*;
use super::{SharedRandom, layer_draw};

/// A node the majority voted for, before placement.
pub(super) struct Listed {
    pub(super) node: NodeEntry,
    /// The layer the majority proposes (mixes).
    pub(super) layer: Option<u8>,
    /// Whether a majority says the layer is an operator's pin.
    pub(super) pinned: bool,
}

/// What the caps of §6.3 count a node under: the family its approvals
/// name, and the network its first address is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CapGroup {
    Family(String),
    /// The first public IP address's /16 (IPv4) or /32 (IPv6): nodes at
    /// one provider share it whether or not anyone named their family.
    Net(std::net::IpAddr),
}

/// The groups `node` is capped in: its family, and the network of every
/// public IP address its descriptor lists (so no address listed first
/// or last hides it from a network it can be reached in). Loopback,
/// private, link-local and unspecified addresses form no group
/// (testnets and private networks, where every node shares one), nor do
/// DNS names. An address is what the node's own descriptor says: it is
/// not proven.
fn cap_groups(node: &NodeEntry) -> Vec<CapGroup> {
    let mut groups: Vec<CapGroup> = node.family.iter().cloned().map(CapGroup::Family).collect();
    let mut nets: Vec<std::net::IpAddr> = node
        .addrs
        .iter()
        .filter_map(|a| address_network(a))
        .collect();
    nets.sort();
    nets.dedup();
    groups.extend(nets.into_iter().map(CapGroup::Net));
    groups
}

/// The /16 or /32 network of a multiaddr's `/ip4/` or `/ip6/` part, if
/// it is a public address.
fn address_network(addr: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut parts = addr.split('/').skip(1);
    let ip: IpAddr = match (parts.next()?, parts.next()?) {
        ("ip4", ip) => IpAddr::V4(ip.parse().ok()?),
        // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is that IPv4
        // address.
        ("ip6", ip) => ip.parse::<Ipv6Addr>().ok()?.to_canonical(),
        _ => return None,
    };
    match ip {
        IpAddr::V4(v4) => {
            let local = v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64);
            let [a, b, _, _] = v4.octets();
            (!local).then(|| IpAddr::V4(Ipv4Addr::new(a, b, 0, 0)))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let local = v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80;
            (!local).then(|| IpAddr::V6(Ipv6Addr::new(seg[0], seg[1], 0, 0, 0, 0, 0, 0)))
        }
    }
}

/// Fills the layers and trims families and networks over their cap
/// (§6.3). Mixes with a proposed layer keep it while their groups are
/// under their cap there; the others go, in draw order, to the layer with
/// the fewest mixes where their groups are under their cap. Every node
/// counts as one: no self-reported capacity draws traffic. With
/// `rebalance`, layers that differ by two or more mixes are then evened
/// out (step 5 of §6.3).
pub(super) fn place(
    listed: Vec<Listed>,
    params: &VoteParams,
    random: &SharedRandom,
    rebalance: bool,
) -> Vec<NodeEntry> {
    let layers = usize::from(params.layers.max(1));
    let share = usize::from(params.family_cap_percent.clamp(1, 100));
    let mut drawn: Vec<(Listed, Vec<CapGroup>)> = listed
        .into_iter()
        .map(|l| {
            let groups = cap_groups(&l.node);
            (l, groups)
        })
        .collect();
    drawn.sort_by_key(|(l, _)| layer_draw(&random.value, &l.node.key));
    let count = |role| drawn.iter().filter(|(l, _)| l.node.role == role).count();
    let cap_of = |size: usize| (size * share / 100).max(1);
    let mix_cap = cap_of(count(Role::Mix).div_ceil(layers));
    // Gateways are group 0, service nodes group layers + 1.
    let gateway_cap = cap_of(count(Role::Gateway));
    let service_cap = cap_of(count(Role::Service));
    let mut caps = Caps::default();
    let mut out: Vec<NodeEntry> = Vec::new();
    let mut sizes = vec![0usize; layers + 1];
    // Placed mixes: (draw position, index in `out`, pinned, groups).
    let mut mixes: Vec<(usize, usize, bool, Vec<CapGroup>)> = Vec::new();
    let mut unplaced: Vec<(usize, NodeEntry, Vec<CapGroup>)> = Vec::new();
    for (position, (listed, groups)) in drawn.into_iter().enumerate() {
        let Listed {
            mut node,
            layer,
            pinned,
        } = listed;
        match node.role {
            Role::Mix => match layer {
                Some(l) if caps.room(&groups, usize::from(l), mix_cap) => {
                    caps.take(&groups, usize::from(l));
                    sizes[usize::from(l)] += 1;
                    node.layer = Some(l);
                    mixes.push((position, out.len(), pinned, groups));
                    out.push(node);
                }
                _ => unplaced.push((position, node, groups)),
            },
            role => {
                let (at, cap) = match role {
                    Role::Gateway => (0, gateway_cap),
                    _ => (layers + 1, service_cap),
                };
                if caps.room(&groups, at, cap) {
                    caps.take(&groups, at);
                    node.layer = None;
                    out.push(node);
                }
            }
        }
    }
    for (position, mut node, groups) in unplaced {
        let mut order: Vec<usize> = (1..=layers).collect();
        order.sort_by_key(|&l| (sizes[l], l));
        if let Some(&l) = order.iter().find(|&&l| caps.room(&groups, l, mix_cap)) {
            caps.take(&groups, l);
            sizes[l] += 1;
            node.layer = u8::try_from(l).ok();
            mixes.push((position, out.len(), false, groups));
            out.push(node);
        }
    }
    if rebalance {
        // Latest drawn first: the mix moved is the one drawn last.
        mixes.sort_by_key(|m| std::cmp::Reverse(m.0));
        // Each move takes a mix from a layer to one with at least two
        // fewer, so the sum of the squared sizes falls: it ends.
        while let Some((m, from, to)) = next_move(&mixes, &out, &sizes, &caps, mix_cap) {
            caps.give_back(&mixes[m].3, from);
            caps.take(&mixes[m].3, to);
            sizes[from] -= 1;
            sizes[to] += 1;
            out[mixes[m].1].layer = u8::try_from(to).ok();
        }
    }
    out.sort_by_key(|n| n.key);
    out
}

/// The next move of layer evening (§6.3 step 5): among the pairs of
/// layers where the first holds at least two mixes more than the second,
/// largest first then smallest (ties: the lower layer), the first whose
/// larger layer has an unpinned mix with room in the smaller; that mix is
/// the one drawn last. Returns its index in `mixes` (latest drawn first)
/// and the two layers.
fn next_move(
    mixes: &[(usize, usize, bool, Vec<CapGroup>)],
    out: &[NodeEntry],
    sizes: &[usize],
    caps: &Caps,
    mix_cap: usize,
) -> Option<(usize, usize, usize)> {
    let mut from: Vec<usize> = (1..sizes.len()).collect();
    from.sort_by_key(|&l| (std::cmp::Reverse(sizes[l]), l));
    let mut to: Vec<usize> = (1..sizes.len()).collect();
    to.sort_by_key(|&l| (sizes[l], l));
    for &big in &from {
        for &small in to.iter().filter(|&&l| sizes[big] >= sizes[l] + 2) {
            let movable = mixes.iter().position(|(_, i, pinned, groups)| {
                out[*i].layer.map(usize::from) == Some(big)
                    && !pinned
                    && caps.room(groups, small, mix_cap)
            });
            if let Some(m) = movable {
                return Some((m, big, small));
            }
        }
    }
    None
}

/// Nodes placed per (cap group, placement group); placement group 0 is
/// the gateways, 1..=layers the mix layers, layers + 1 the service nodes.
#[derive(Default)]
struct Caps(BTreeMap<(CapGroup, usize), usize>);

impl Caps {
    fn room(&self, groups: &[CapGroup], at: usize, cap: usize) -> bool {
        groups
            .iter()
            .all(|g| self.0.get(&(g.clone(), at)).copied().unwrap_or(0) < cap)
    }

    fn take(&mut self, groups: &[CapGroup], at: usize) {
        for g in groups {
            *self.0.entry((g.clone(), at)).or_insert(0) += 1;
        }
    }

    fn give_back(&mut self, groups: &[CapGroup], at: usize) {
        for g in groups {
            if let Some(n) = self.0.get_mut(&(g.clone(), at)) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_network;

    #[test]
    fn the_network_of_an_address_is_its_16_or_32_and_private_ones_have_none() {
        let net = |a: &str| address_network(a).map(|ip| ip.to_string());
        assert_eq!(
            net("/ip4/198.51.100.7/tcp/1").as_deref(),
            Some("198.51.0.0")
        );
        assert_eq!(
            net("/ip6/2001:db8:5:6::1/tcp/1").as_deref(),
            Some("2001:db8::")
        );
        assert_eq!(
            net("/ip6/::ffff:198.51.100.7/tcp/1").as_deref(),
            Some("198.51.0.0")
        );
        for local in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/192.168.0.9/tcp/1",
            "/ip4/172.16.4.4/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
            "/dns4/example.org/tcp/1",
            "ip4/1.2.3.4",
            "",
        ] {
            assert_eq!(net(local), None, "{local}");
        }
    }
}
