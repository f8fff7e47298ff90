//! The open-file limit: every libp2p connection, every RocksDB table and
//! every stream's socket is a file descriptor, and a node that runs out
//! refuses connections at random. At start the node raises its soft limit
//! towards what its config needs (within the hard limit the system or the
//! systemd unit's `LimitNOFILE` allows) and says so when it cannot.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors besides connections: RocksDB (replay tags, records),
/// listeners, logs, the metrics endpoint.
const BASE: u64 = 512;

/// What the limit is once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// Descriptors the config needs.
    pub needed: u64,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

impl FileLimit {
    /// Whether the node can hold every connection its config allows.
    pub fn enough(&self) -> bool {
        self.soft.is_none_or(|s| s >= self.needed)
    }
}

/// Raises the soft open-file limit to what `max_connections` needs (two
/// descriptors a connection: its socket and a spare for a replacing dial),
/// as far as the hard limit allows. `None` means unlimited.
pub fn raise_for(max_connections: u32) -> FileLimit {
    let needed = BASE + 2 * u64::from(max_connections);
    let current = getrlimit(Resource::Nofile);
    let mut limit = FileLimit {
        needed,
        soft: current.current,
        hard: current.maximum,
    };
    if limit.enough() {
        return limit;
    }
    let target = current.maximum.map_or(needed, |h| h.min(needed));
    let raised = Rlimit {
        current: Some(target),
        maximum: current.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        limit.soft = getrlimit(Resource::Nofile).current;
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_within_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let limit = raise_for(1_024);
        assert_eq!(limit.needed, 512 + 2_048);
        match (limit.soft, before.maximum) {
            (Some(soft), Some(hard)) => {
                assert!(soft >= before.current.unwrap_or(0));
                assert!(soft >= limit.needed.min(hard), "{limit:?}");
            }
            (soft, _) => assert!(soft.is_none() || limit.enough()),
        }
    }
}
