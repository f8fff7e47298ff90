//! Threads (`mtos item thread`, the web screen's thread view): an item's
//! chain of reply-to, remix-of and reblog-of references up to its root,
//! and the items that point into that chain among those this client
//! knows (followed feeds' entries and the items it sealed or fetched), as
//! a tree (`specs/item.md` §8). An item that cannot be opened is a node
//! of its own, shown as missing, never an error.

use std::collections::HashMap;

use mtos_crypto::item::{Item, ItemRef, Locator, RefKind};

/// Longest chain followed up from an item.
pub const MAX_DEPTH: usize = 64;
/// Most items a thread shows.
pub const MAX_NODES: usize = 1_000;

/// Opens items for a thread.
pub trait ItemSource {
    /// The item `reference` names, or why it cannot be had.
    fn open(&mut self, reference: &ItemRef) -> Result<Item, String>;
}

/// One item of a thread.
#[derive(Debug)]
pub struct Node {
    /// Its reference.
    pub reference: ItemRef,
    /// The item, or why it is missing.
    pub item: Result<Item, String>,
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
/// point into it among `known`.
pub fn build(start: &ItemRef, known: &[ItemRef], source: &mut dyn ItemSource) -> Thread {
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<Locator, usize> = HashMap::new();
    let mut truncated = false;

    // Up: the chain from the item to its root.
    let mut chain: Vec<(ItemRef, Result<Item, String>)> = Vec::new();
    let mut seen: HashMap<Locator, ()> = HashMap::new();
    let mut current = start.clone();
    loop {
        seen.insert(*current.root(), ());
        let item = source.open(&current);
        let next = item
            .as_ref()
            .ok()
            .and_then(|i| parents(i).into_iter().next());
        chain.push((current.clone(), item));
        match next {
            Some((_, parent)) if !seen.contains_key(parent.root()) => {
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
            item.as_ref().ok().and_then(|it| {
                parents(it)
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

    // Down: known items that point to an item of the thread, until none
    // is added (an item joins under the first of its parents found).
    let mut candidates: Vec<(ItemRef, Item)> = Vec::new();
    let mut considered: HashMap<Locator, ()> = HashMap::new();
    for r in known {
        if index.contains_key(r.root()) || considered.insert(*r.root(), ()).is_some() {
            continue;
        }
        if let Ok(item) = source.open(r) {
            candidates.push((r.clone(), item));
        }
    }
    let mut added = true;
    while added {
        added = false;
        let mut rest = Vec::new();
        for (reference, item) in candidates {
            let at = parents(&item)
                .into_iter()
                .find_map(|(k, r)| index.get(r.root()).map(|&p| (k, p)));
            match at {
                Some((kind, p)) if nodes.len() < MAX_NODES => {
                    let i = nodes.len();
                    index.insert(*reference.root(), i);
                    nodes.push(Node {
                        reference,
                        item: Ok(item),
                        kind: Some(kind),
                        parent: Some(p),
                        children: Vec::new(),
                    });
                    nodes[p].children.push(i);
                    added = true;
                }
                Some(_) => truncated = true,
                None => rest.push((reference, item)),
            }
        }
        candidates = rest;
    }
    // Children oldest first (then by reference, for a stable order).
    let order: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            (
                n.item.as_ref().map_or(0, Item::created_ms),
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
        fn open(&mut self, reference: &ItemRef) -> Result<Item, String> {
            self.0
                .get(reference.root())
                .cloned()
                .ok_or_else(|| "not in the store".into())
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
                    Ok(item) => item.parts()[0].as_text().unwrap().to_owned(),
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
