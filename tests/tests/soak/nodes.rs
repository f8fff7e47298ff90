//! The soak run's side of the nodes: restarts and memory samples while
//! the load runs, and the K-copies check at the end.

use super::*;

/// What the controller hands back: the network, every process lifetime's
/// memory samples, drops counted by nodes before they were killed, and
/// what it restarted.
pub(crate) struct Controlled {
    pub(crate) net: Testnet,
    pub(crate) lifetimes: Vec<Lifetime>,
    pub(crate) drops: BTreeMap<String, f64>,
    pub(crate) restarts: Vec<String>,
}

pub(crate) fn add_drops(node: &mtos_tests::TestNode, drops: &mut BTreeMap<String, f64>) {
    for reason in mtos_tests::frame_drop_reasons() {
        let v = node
            .metric("mtos_frames_dropped_total", &format!("reason=\"{reason}\""))
            .unwrap_or(0.0);
        *drops.entry(reason.to_owned()).or_default() += v;
    }
}

/// Memory samples: the lifetime of each process now running.
#[derive(Default)]
pub(crate) struct Sampler {
    pub(crate) current: BTreeMap<String, Lifetime>,
    pub(crate) done: Vec<Lifetime>,
}

impl Sampler {
    fn sample(&mut self, net: &Testnet) {
        let procs = net
            .nodes
            .iter()
            .map(|n| &n.proc)
            .chain(net.authorities.iter().map(|a| &a.proc));
        for p in procs {
            let (Some(pid), name) = (p.pid(), &p.name) else {
                continue;
            };
            let Some(rss) = rss_bytes(pid) else { continue };
            if self.current.get(name).is_some_and(|l| l.pid != pid) {
                self.done.extend(self.current.remove(name));
            }
            self.current
                .entry(name.clone())
                .or_insert_with(|| Lifetime {
                    name: name.clone(),
                    pid,
                    samples: Vec::new(),
                })
                .samples
                .push(rss);
        }
    }

    fn finish(mut self) -> Vec<Lifetime> {
        self.done.extend(self.current.into_values());
        self.done
    }
}

/// Restarts one node every `restart_every` (while one more fits before
/// `until`) and samples memory, until `until`.
pub(crate) fn control(
    mut net: Testnet,
    plan: Plan,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> Controlled {
    let _stop = StopOnDrop(stop);
    let mut sampler = Sampler::default();
    let (mut drops, mut restarts) = (BTreeMap::new(), Vec::new());
    let started = Instant::now();
    let mut next_sample = started;
    let mut next_restart = started + plan.restart_every;
    let mut turn = 0;
    let mut pause = |net: &Testnet, sampler: &mut Sampler, d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if Instant::now() >= next_sample {
                sampler.sample(net);
                next_sample += plan.sample_every;
            }
            std::thread::sleep(Duration::from_millis(200).min(end - Instant::now()));
        }
    };
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_restart {
            next_restart += plan.restart_every;
            let (i, long) = ROTATION[turn % ROTATION.len()];
            let down = if long { LONG_DOWN } else { SHORT_DOWN };
            // Only when it has time to come back before the load ends.
            if now + down + Duration::from_secs(20) < until {
                turn += 1;
                add_drops(&net.nodes[i], &mut drops);
                net.nodes[i].proc.kill();
                let at = started.elapsed();
                pause(&net, &mut sampler, down);
                net.nodes[i].kill_and_restart();
                let back = Instant::now();
                net.wait_until_listed(NODES.len(), Duration::from_secs(120));
                restarts.push(format!(
                    "{} killed at {:.0} s, down {} s, every document lists it again {:.1} s after restart",
                    net.nodes[i].proc.name,
                    at.as_secs_f64(),
                    down.as_secs(),
                    back.elapsed().as_secs_f64()
                ));
                eprintln!("soak: {}", restarts.last().unwrap());
            }
        }
        pause(&net, &mut sampler, Duration::from_millis(500));
    }
    sampler.sample(&net);
    Controlled {
        net,
        lifetimes: sampler.finish(),
        drops,
        restarts,
    }
}

/// Each node's identity key, in the order of `net.nodes`.
pub(crate) fn node_keys(net: &Testnet) -> Vec<[u8; 32]> {
    net.nodes
        .iter()
        .map(|n| {
            *mtos_node::load_identity(&n.dir.join("keys/identity.key"))
                .unwrap()
                .verify_key()
                .as_bytes()
        })
        .collect()
}

/// Waits until repair looks done: every storage node holds at least as
/// many records as it is a replica of among `records`, and the nodes'
/// repair counters stood still for four heartbeats. Seconds waited, or
/// `None` after `timeout` (the store check then says what is missing).
pub(crate) async fn settle(
    net: &Testnet,
    records: &[Record],
    storage: &[StorageNode],
    keys: &[[u8; 32]],
    timeout: Duration,
) -> Option<f64> {
    let started = Instant::now();
    let expected: Vec<usize> = keys
        .iter()
        .map(|k| {
            records
                .iter()
                .filter(|r| replicas(&r.locator, storage, DEFAULT_REPLICAS).contains(k))
                .count()
        })
        .collect();
    let (mut last, mut still) = (Vec::new(), 0);
    while started.elapsed() < timeout {
        let (full, repair) = tokio::task::block_in_place(|| {
            let full = net
                .nodes
                .iter()
                .zip(keys)
                .zip(&expected)
                .all(|((n, k), e)| {
                    !storage.iter().any(|s| s.key == *k)
                        || n.metric("mtos_records_held", "").unwrap_or(-1.0) >= *e as f64
                });
            let repair: Vec<Option<f64>> = net
                .nodes
                .iter()
                .flat_map(|n| {
                    ["sent", "present", "failed"]
                        .map(|r| n.metric("mtos_repair_records_total", &format!("result=\"{r}\"")))
                        .into_iter()
                        .chain([n.metric("mtos_repair_passes_total", "")])
                })
                .collect();
            (full, repair)
        });
        still = if repair == last { still + 1 } else { 0 };
        last = repair;
        if full && still >= 4 {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
    }
    None
}

/// Stops every node and reads each storage node's store: the records
/// of `records` it lacks though it is one of their K replicas under
/// `storage`, and per node (name, replica of, records held).
pub(crate) fn check_stores(
    net: &mut Testnet,
    records: &[Record],
    storage: &[StorageNode],
    keys: &[[u8; 32]],
) -> (Vec<String>, Vec<(String, usize, u64)>) {
    for node in &mut net.nodes {
        node.proc.kill();
    }
    let (mut missing, mut stored) = (Vec::new(), Vec::new());
    for (node, key) in net.nodes.iter().zip(keys) {
        if !storage.iter().any(|s| s.key == *key) {
            continue;
        }
        // Nothing is evicted by a reader.
        let retention = Retention {
            min_age_secs: u64::MAX,
            max_bytes: u64::MAX,
        };
        let db = mtos_node::record_db::RecordDb::open(&node.dir.join("data/records"), retention)
            .unwrap();
        let mut replica_of = 0;
        for r in records {
            if !replicas(&r.locator, storage, DEFAULT_REPLICAS).contains(key) {
                continue;
            }
            replica_of += 1;
            if db.get(r.kind, &r.locator).unwrap().as_ref() != Some(&r.bytes) {
                missing.push(format!(
                    "{}: its store lacks acknowledged {:?} {:?}",
                    node.proc.name, r.kind, r.locator
                ));
            }
        }
        stored.push((node.proc.name.clone(), replica_of, db.records()));
    }
    (missing, stored)
}
