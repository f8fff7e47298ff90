//! Threads (`mtos item thread`, the web screen's thread view): an item's
//! chain of reply-to, remix-of and reblog-of references up to its root,
//! and the items that point into that chain among those this client
//! knows (followed feeds' entries and the items it sealed or fetched), as
//! a tree (`specs/item.md` §8). An item that cannot be opened is a node
//! of its own, shown as missing, never an error.

use std::collections::{HashMap, HashSet, VecDeque};

use mtos_crypto::item::{Item, ItemRef, Locator, PartKind, RefKind};

/// Longest chain followed up from an item.
pub const MAX_DEPTH: usize = 64;
/// Most items a thread shows.
pub const MAX_NODES: usize = 1_000;
/// Bytes of an item's first text part a thread shows (it is read only
/// when whole within them).
pub const TEXT_BYTES: usize = 4 * 1024;

/// What a thread knows of an item: its signed header (the parts empty)
/// and its first text part when that is short.
#[derive(Debug, Clone)]
pub struct Head {
    /// The header.
    pub item: Item,
    /// The first part, when it is `text/plain`, at most [`TEXT_BYTES`]
    /// and matches its digest.
    pub text: Option<String>,
}

impl Head {
    /// The head from a header, its parts' lengths and the first bytes of
    /// its parts' data (`mtos_crypto::item::seal::open_head`).
    pub fn new(item: Item, lengths: &[u64], data: &[u8]) -> Self {
        let text = item.parts().first().and_then(|p| {
            let len = usize::try_from(*lengths.first()?).ok()?;
            (p.kind() == PartKind::Text
                && p.mime().starts_with("text/plain")
                && len <= TEXT_BYTES
                && len <= data.len())
            .then(|| &data[..len])
            .filter(|t| item.part_digests().first() == Some(blake3::hash(t).as_bytes()))
            .and_then(|t| String::from_utf8(t.to_vec()).ok())
        });
        Head { item, text }
    }
}

/// Reads items' heads for a thread.
pub trait ItemSource {
    /// The head of the item `reference` names, or why it cannot be had.
    fn head(&mut self, reference: &ItemRef) -> Result<Head, String>;
}

/// One item of a thread.
#[derive(Debug)]
pub struct Node {
    /// Its reference.
    pub reference: ItemRef,
    /// Its head, or why it is missing.
    pub item: Result<Head, String>,
    /// How it points to its parent in the tree (`None` for a root).
    pub kind: Option<RefKind>,
    /// Its parent's index.
    pub parent: Option<usize>,
    /// Its children's indexes, oldest first.
    pub children: Vec<usize>,
}

/// A thread: its nodes, the index of its root, and of the item asked
/// about.
#[derive(Debug)]
pub struct Thread {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The root (the top of the chain as far as it could be followed).
    pub root: usize,
    /// The item asked about.
    pub focus: usize,
    /// Whether a bound cut the thread short.
    pub truncated: bool,
}

/// The references an item points to as a thread's parent, in order of
/// preference: replies, then remixes, then reblogs.
pub fn parents(item: &Item) -> Vec<(RefKind, ItemRef)> {
    let mut out = Vec::new();
    for kind in [RefKind::ReplyTo, RefKind::RemixOf, RefKind::ReblogOf] {
        for r in item.refs() {
            if r.kind == kind {
                out.push((kind, r.target.clone()));
            }
        }
    }
    out
}

/// Builds the thread of `start` from `source`, looking for items that
/// point into it among `known`. Each known item's head is read once
/// (its first chunks, whatever its size); only the items that join keep
/// theirs.
pub fn build(start: &ItemRef, known: &[ItemRef], source: &mut dyn ItemSource) -> Thread {
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<Locator, usize> = HashMap::new();
    let mut truncated = false;

    // Up: the chain from the item to its root.
    let mut chain: Vec<(ItemRef, Result<Head, String>)> = Vec::new();
    let mut seen: HashSet<Locator> = HashSet::new();
    let mut current = start.clone();
    loop {
        seen.insert(*current.root());
        let head = source.head(&current);
        let next = head
            .as_ref()
            .ok()
            .and_then(|h| parents(&h.item).into_iter().next());
        chain.push((current.clone(), head));
        match next {
            Some((_, parent)) if !seen.contains(parent.root()) => {
                if chain.len() >= MAX_DEPTH {
                    truncated = true;
                    break;
                }
                current = parent;
            }
            _ => break,
        }
    }
    // The chain, root first, each the child of the one before.
    for (reference, item) in chain.into_iter().rev() {
        let i = nodes.len();
        let parent = i.checked_sub(1);
        let kind = parent.and_then(|p| {
            item.as_ref().ok().and_then(|h| {
                parents(&h.item)
                    .into_iter()
                    .find(|(_, r)| r.root() == nodes[p].reference.root())
                    .map(|(k, _)| k)
            })
        });
        index.insert(*reference.root(), i);
        nodes.push(Node {
            reference,
            item,
            kind,
            parent,
            children: Vec::new(),
        });
        if let Some(p) = parent {
            nodes[p].children.push(i);
        }
    }
    let root = 0;
    let focus = nodes.len() - 1;

    // Down: the known items by the items they point to; then, breadth
    // first from the thread's items, each joins under the first item of
    // the thread it points to (in the order they joined).
    let mut candidates: Vec<(ItemRef, Vec<(RefKind, Locator)>)> = Vec::new();
    let mut by_parent: HashMap<Locator, Vec<usize>> = HashMap::new();
    let mut considered: HashSet<Locator> = HashSet::new();
    for r in known {
        if index.contains_key(r.root()) || !considered.insert(*r.root()) {
            continue;
        }
        let Ok(head) = source.head(r) else {
            continue;
        };
        let ps: Vec<(RefKind, Locator)> = parents(&head.item)
            .into_iter()
            .map(|(k, p)| (k, *p.root()))
            .collect();
        if ps.is_empty() {
            continue;
        }
        let c = candidates.len();
        for (_, p) in &ps {
            by_parent.entry(*p).or_default().push(c);
        }
        candidates.push((r.clone(), ps));
    }
    let mut joined = vec![false; candidates.len()];
    let mut queue: VecDeque<usize> = (0..nodes.len()).collect();
    'walk: while let Some(n) = queue.pop_front() {
        let at = *nodes[n].reference.root();
        let Some(list) = by_parent.get(&at) else {
            continue;
        };
        for &c in list {
            if joined[c] {
                continue;
            }
            if nodes.len() >= MAX_NODES {
                truncated = true;
                break 'walk;
            }
            joined[c] = true;
            let (reference, ps) = &candidates[c];
            let Ok(head) = source.head(reference) else {
                continue;
            };
            let kind = ps.iter().find(|(_, p)| *p == at).map(|(k, _)| *k);
            let i = nodes.len();
            index.insert(*reference.root(), i);
            nodes.push(Node {
                reference: reference.clone(),
                item: Ok(head),
                kind,
                parent: Some(n),
                children: Vec::new(),
            });
            nodes[n].children.push(i);
            queue.push_back(i);
        }
    }
    // Children oldest first (then by reference, for a stable order).
    let order: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            (
                n.item.as_ref().map_or(0, |h| h.item.created_ms()),
                n.reference.to_uri(),
            )
        })
        .collect();
    for n in &mut nodes {
        n.children.sort_by(|a, b| order[*a].cmp(&order[*b]));
    }
    Thread {
        nodes,
        root,
        focus,
        truncated,
    }
}

impl Thread {
    /// The nodes in display order, each with its depth: depth first from
    /// the root, children oldest first.
    pub fn walk(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root, 0usize)];
        while let Some((i, depth)) = stack.pop() {
            out.push((i, depth));
            for &c in self.nodes[i].children.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtos_crypto::Identity;
    use mtos_crypto::item::{ContentType, ItemDraft, Part, TypedRef};
    use rand::SeedableRng;

    struct Map(HashMap<Locator, Item>);

    impl ItemSource for Map {
        fn head(&mut self, reference: &ItemRef) -> Result<Head, String> {
            let item = self
                .0
                .get(reference.root())
                .cloned()
                .ok_or_else(|| "not in the store".to_owned())?;
            let data = item.parts()[0].data().to_vec();
            let lengths = [data.len() as u64];
            Ok(Head::new(item, &lengths, &data))
        }
    }

    fn reference(n: u8) -> ItemRef {
        let mut bytes = vec![1u8, 0];
        bytes.extend([n; 32]);
        bytes.extend([0u8; 32]);
        ItemRef::decode(&bytes).unwrap()
    }

    fn item(who: &Identity, at: u64, text: &str, refs: Vec<(RefKind, ItemRef)>) -> Item {
        let mut d = ItemDraft::new(ContentType::Note, at, vec![Part::text(text)]);
        d.refs = refs
            .into_iter()
            .map(|(kind, target)| TypedRef { kind, target })
            .collect();
        d.sign(who).unwrap()
    }

    #[test]
    fn a_chain_with_a_missing_middle_and_known_replies_is_one_tree() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let alice = Identity::throwaway(&mut rng, 0);
        let bob = Identity::throwaway(&mut rng, 0);
        let mut map = HashMap::new();
        // 1 <- 2 <- (3 missing) <- 4 <- 5, and 6 replies to 4, 7 reblogs 6.
        map.insert(*reference(1).root(), item(&alice, 1, "root", vec![]));
        map.insert(
            *reference(2).root(),
            item(&bob, 2, "two", vec![(RefKind::ReplyTo, reference(1))]),
        );
        map.insert(
            *reference(4).root(),
            item(&bob, 4, "four", vec![(RefKind::ReplyTo, reference(3))]),
        );
        map.insert(
            *reference(5).root(),
            item(&alice, 5, "five", vec![(RefKind::RemixOf, reference(4))]),
        );
        map.insert(
            *reference(6).root(),
            item(&alice, 6, "six", vec![(RefKind::ReplyTo, reference(4))]),
        );
        map.insert(
            *reference(7).root(),
            item(&bob, 7, "seven", vec![(RefKind::ReblogOf, reference(6))]),
        );
        let known: Vec<ItemRef> = [1, 2, 6, 7].map(reference).to_vec();
        let t = build(&reference(5), &known, &mut Map(map));
        let shown: Vec<(String, usize, Option<RefKind>)> = t
            .walk()
            .into_iter()
            .map(|(i, d)| {
                let n = &t.nodes[i];
                let label = match &n.item {
                    Ok(h) => h.text.clone().unwrap(),
                    Err(_) => "missing".into(),
                };
                (label, d, n.kind)
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("missing".into(), 0, None),
                ("four".into(), 1, Some(RefKind::ReplyTo)),
                ("five".into(), 2, Some(RefKind::RemixOf)),
                ("six".into(), 2, Some(RefKind::ReplyTo)),
                ("seven".into(), 3, Some(RefKind::ReblogOf)),
            ]
        );
        assert_eq!(t.nodes[t.focus].reference.root(), reference(5).root());
        assert!(!t.truncated);
    }

    #[test]
    fn cycles_end_the_chain() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let a = Identity::throwaway(&mut rng, 0);
        let mut map = HashMap::new();
        map.insert(
            *reference(1).root(),
            item(&a, 1, "one", vec![(RefKind::ReplyTo, reference(2))]),
        );
        map.insert(
            *reference(2).root(),
            item(&a, 2, "two", vec![(RefKind::ReplyTo, reference(1))]),
        );
        let t = build(&reference(1), &[reference(2)], &mut Map(map));
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.walk().len(), 2);
    }
}
