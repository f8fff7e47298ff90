//! This machine's Sphinx unwrap rate: what `mtos-node bench` reports and
//! what the chain benchmark compares node throughput with.

use std::time::{Duration, Instant};

use mtos_crypto::sphinx::{self, Destination, Hop, NodeAddress, SphinxSecret};

/// Header checks + replay tags + unwraps of pre-built two-hop packets per
/// second on one core, measured for `seconds` (building packets is slower
/// than processing them and is not measured).
pub fn unwrap_rate(seconds: f64) -> Result<f64, String> {
    unwrap_rate_on(1, seconds)
}

/// The same on `threads` threads at once, each on packets of its own:
/// their summed rate (the machine's, when `threads` is its cores).
pub fn unwrap_rate_on(threads: usize, seconds: f64) -> Result<f64, String> {
    let rates: Vec<Result<f64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(|| one_thread(seconds)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a bench thread panicked".into()))
            })
            .collect()
    });
    rates.into_iter().sum()
}

fn one_thread(seconds: f64) -> Result<f64, String> {
    let mut rng = rand::rng();
    let me = SphinxSecret::generate(&mut rng);
    let other = SphinxSecret::generate(&mut rng);
    let route = [
        Hop {
            address: NodeAddress([1; 32]),
            sphinx_key: me.public(),
        },
        Hop {
            address: NodeAddress([2; 32]),
            sphinx_key: other.public(),
        },
    ];
    let destination = Destination {
        address: [3; 32],
        surb_id: [0; 16],
    };
    let delays = [Duration::ZERO, Duration::ZERO];
    let packets: Vec<Vec<u8>> = (0..300)
        .map(|_| sphinx::build_forward(&mut rng, &route, &destination, &delays, b"bench"))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let budget = Duration::from_secs_f64(seconds.clamp(0.1, 600.0));
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        for p in &packets {
            let checked = sphinx::check_header(p, &me).map_err(|e| e.to_string())?;
            std::hint::black_box(checked.replay_tag());
            std::hint::black_box(checked.process().map_err(|e| e.to_string())?);
            done += 1;
        }
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}
