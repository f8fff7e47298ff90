//! Walking an item's tree as its chunks arrive, for fetching: which
//! chunks a store lacks and where each sits, and, when one arrives, which
//! chunks it reveals. A fetch that asks for those at once keeps every
//! request slot busy, instead of waiting for a whole level of the tree
//! before asking for the next (`specs/client.md` §4.1): the chunks below
//! the first manifest node of a level are asked for while its siblings
//! are still on their way.

use zeroize::Zeroizing;

use super::reference::Locator;
use super::tree::{ChunkSource, FANOUT, TreeShape, open_node, open_root};
use crate::error::OpenError;

/// Where a chunk sits in an item's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// The root node (its height is read from it).
    Root,
    /// A manifest node below the root, at height `level` (1 lists data
    /// chunks) and position `index` in its level.
    Node {
        /// Height.
        level: u8,
        /// Position within its level.
        index: u64,
    },
    /// A data chunk: it reveals nothing.
    Data,
}

/// A walk of one item's tree (its tree key, root and size cap), learning
/// the tree's shape from the root when that is there.
pub struct Walk {
    key: Zeroizing<[u8; 32]>,
    root: Locator,
    max_len: u64,
    shape: Option<TreeShape>,
}

impl std::fmt::Debug for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk")
            .field("root", &self.root)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl Walk {
    /// A walk of the tree at `root` under the tree key `key`, refusing
    /// an item announced larger than `max_len`.
    pub fn new(key: Zeroizing<[u8; 32]>, root: Locator, max_len: u64) -> Self {
        Self {
            key,
            root,
            max_len,
            shape: None,
        }
    }

    /// The root's locator (at [`Place::Root`]).
    pub fn root(&self) -> Locator {
        self.root
    }

    /// The chunks `source` lacks below the chunk at `place` (itself
    /// included when it is lacking) whose locators are known: the whole
    /// tree's for [`Place::Root`]. Every manifest node read is verified
    /// and decrypted; data chunks are only looked up (they are checked
    /// when they arrive). A node present but at the wrong place, or not
    /// decrypting, is an error.
    pub fn lacking_below<S: ChunkSource>(
        &mut self,
        source: &mut S,
        locator: &Locator,
        place: Place,
    ) -> Result<Vec<(Locator, Place)>, OpenError> {
        let mut lacking = Vec::new();
        let node = match place {
            Place::Data => {
                if source.get(locator).map_err(OpenError::Store)?.is_none() {
                    lacking.push((*locator, Place::Data));
                }
                return Ok(lacking);
            }
            Place::Root => match open_root(source, &self.key, &self.root, self.max_len) {
                Err(OpenError::ChunkMissing(_)) => return Ok(vec![(self.root, Place::Root)]),
                Err(e) => return Err(e),
                Ok((info, _, shape)) => {
                    self.shape = Some(shape);
                    info
                }
            },
            Place::Node { level, index } => {
                let Some(shape) = self.shape else {
                    // The root comes first: a node below it cannot be
                    // checked without the shape the root gives.
                    return Ok(vec![(self.root, Place::Root)]);
                };
                match open_node(source, &self.key, locator, level, index, Some(&shape)) {
                    Err(OpenError::ChunkMissing(_)) => return Ok(vec![(*locator, place)]),
                    Err(e) => return Err(e),
                    Ok((info, _)) => info,
                }
            }
        };
        let Some(shape) = self.shape else {
            return Ok(lacking);
        };
        // Depth first, with an explicit stack: a tree is at most a few
        // levels high, but nothing here trusts that.
        let mut stack = vec![node];
        while let Some(parent) = stack.pop() {
            for (i, child) in parent.children.iter().enumerate() {
                let index = parent.index * FANOUT as u64 + i as u64;
                if parent.level == 1 {
                    if source.get(child).map_err(OpenError::Store)?.is_none() {
                        lacking.push((*child, Place::Data));
                    }
                    continue;
                }
                let level = parent.level - 1;
                match open_node(source, &self.key, child, level, index, Some(&shape)) {
                    Ok((info, _)) => stack.push(info),
                    Err(OpenError::ChunkMissing(_)) => {
                        lacking.push((*child, Place::Node { level, index }));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(lacking)
    }
}

/// The chunks of the tree at `root` that `source` lacks and whose place
/// is known from what it holds: the root when it is missing; otherwise
/// every missing child of every manifest node that can be opened. Empty
/// when the whole tree is there. Fetching these and asking again walks a
/// tree of height h in h + 1 rounds; [`Walk`] asks for each chunk as
/// soon as its parent arrives.
pub fn missing<S: ChunkSource>(
    source: &mut S,
    key: Zeroizing<[u8; 32]>,
    root: &Locator,
    max_len: u64,
) -> Result<Vec<Locator>, OpenError> {
    let mut walk = Walk::new(key, *root, max_len);
    Ok(walk
        .lacking_below(source, root, Place::Root)?
        .into_iter()
        .map(|(l, _)| l)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::Write;

    use super::*;
    use crate::geometry::CHUNK_SIZE;
    use crate::item::tree::{ChunkSink, MemoryChunks, TreeWriter, assemble};

    const KEY: [u8; 32] = [3; 32];

    fn build(len: usize) -> (MemoryChunks, Locator, TreeShape, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut store = MemoryChunks::new();
        let mut w = TreeWriter::new(&mut store, KEY, u64::MAX);
        for piece in data.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        let (root, shape) = w.finish().unwrap();
        (store, root, shape, data)
    }

    fn copy(from: &mut MemoryChunks, to: &mut MemoryChunks, l: &Locator) {
        let chunk = from.chunk_mut(l).unwrap().clone();
        to.put(l, &chunk).unwrap();
    }

    #[test]
    fn missing_chunks_are_found_level_by_level() {
        // Two levels: a root over 2 level-1 nodes over FANOUT + 5 chunks.
        let (mut full, root, shape, data) = build(FANOUT * CHUNK_SIZE + 5);
        assert_eq!(shape.levels, 2);
        let key = || Zeroizing::new(KEY);
        let mut local = MemoryChunks::new();
        let mut rounds = 0;
        loop {
            let lacking = missing(&mut local, key(), &root, u64::MAX).unwrap();
            if lacking.is_empty() {
                break;
            }
            rounds += 1;
            for l in lacking {
                copy(&mut full, &mut local, &l);
            }
        }
        // Root, then the two level-1 nodes, then every data chunk.
        assert_eq!(rounds, 3);
        assert_eq!(local.len(), full.len());
        assert_eq!(assemble(&mut local, &KEY, &root, u64::MAX).unwrap(), data);
        // One data chunk lost: exactly it is missing.
        let gone = *local.locators().last().unwrap();
        let mut holey = local.clone();
        holey.remove(&gone);
        let lacking = missing(&mut holey, key(), &root, u64::MAX).unwrap();
        assert_eq!(lacking, vec![gone]);
        // A corrupt manifest node is an error, not a missing chunk.
        let mut corrupt = local.clone();
        corrupt.chunk_mut(&root).unwrap()[0] ^= 1;
        assert!(matches!(
            missing(&mut corrupt, key(), &root, u64::MAX),
            Err(OpenError::ChunkCorrupt(_))
        ));
        // The wrong key cannot read the root.
        assert!(missing(&mut local, Zeroizing::new([4; 32]), &root, u64::MAX).is_err());
    }

    #[test]
    fn each_arrival_reveals_its_own_children_and_every_chunk_is_asked_once() {
        // A root over 3 level-1 nodes over 2 FANOUT + 5 chunks.
        let (mut full, root, shape, data) = build((2 * FANOUT + 5) * CHUNK_SIZE);
        assert_eq!((shape.levels, shape.nodes_at(1)), (2, 3));
        let mut local = MemoryChunks::new();
        let mut walk = Walk::new(Zeroizing::new(KEY), root, u64::MAX);
        let mut asked = HashSet::new();
        let first = walk.lacking_below(&mut local, &root, Place::Root).unwrap();
        assert_eq!(first, vec![(root, Place::Root)]);
        let mut queue: std::collections::VecDeque<_> = first.into();
        asked.insert(root);
        let mut first_leaves_before_last_node = None;
        // Chunks arrive in the order asked: the tree's first level-1 node
        // arrives while the other two are still out.
        while let Some((l, place)) = queue.pop_front() {
            copy(&mut full, &mut local, &l);
            let revealed = walk.lacking_below(&mut local, &l, place).unwrap();
            if place == (Place::Node { level: 1, index: 0 }) {
                let nodes_out = queue
                    .iter()
                    .filter(|(_, p)| matches!(p, Place::Node { .. }))
                    .count();
                first_leaves_before_last_node = Some((revealed.len(), nodes_out));
            }
            if place == Place::Data {
                assert!(revealed.is_empty(), "a data chunk reveals nothing");
            }
            for (c, p) in revealed {
                assert!(asked.insert(c), "{c} asked twice");
                queue.push_back((c, p));
            }
        }
        assert_eq!(asked.len() as u64, shape.total_chunks());
        assert_eq!(local.len(), full.len());
        assert_eq!(assemble(&mut local, &KEY, &root, u64::MAX).unwrap(), data);
        // The first level-1 node's FANOUT chunks were asked for while two
        // level-1 nodes were still to come.
        assert_eq!(first_leaves_before_last_node, Some((FANOUT, 2)));
    }

    #[test]
    fn a_node_below_an_unread_root_asks_for_the_root_and_lies_are_errors() {
        let (mut full, root, _, _) = build(FANOUT * CHUNK_SIZE + 5);
        let mut local = MemoryChunks::new();
        let mut walk = Walk::new(Zeroizing::new(KEY), root, u64::MAX);
        let node = Place::Node { level: 1, index: 1 };
        // Without the root, a node's place cannot be checked.
        assert_eq!(
            walk.lacking_below(&mut local, &root, node).unwrap(),
            vec![(root, Place::Root)]
        );
        copy(&mut full, &mut local, &root);
        let level1 = walk.lacking_below(&mut local, &root, Place::Root).unwrap();
        assert_eq!(level1.len(), 2);
        // The first level-1 node, handed in as the second: it does not
        // decrypt at that place.
        copy(&mut full, &mut local, &level1[0].0);
        assert!(matches!(
            walk.lacking_below(&mut local, &level1[0].0, node),
            Err(OpenError::Manifest { .. })
        ));
        // A size cap below the item's size is refused at the root.
        let mut capped = Walk::new(Zeroizing::new(KEY), root, 10);
        assert!(matches!(
            capped.lacking_below(&mut local, &root, Place::Root),
            Err(OpenError::TooLarge { .. })
        ));
    }
}
