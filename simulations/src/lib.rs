#![doc = include_str!("../README.md")]

pub mod adversary;
pub mod bandwidth;
pub mod churn;
pub mod disclosure;
pub mod entropy;
pub mod grid;
pub mod linkability;
pub mod load;
pub mod loops;
pub mod mailbox;
pub mod metrics;
pub mod mix_churn;
pub mod packet;
pub mod plot;
pub mod replicate;
pub mod replies;
pub mod scenario;
pub mod sim;
pub mod storage;
mod storage_adversary;
pub mod stratified;
pub mod sweep;
pub mod windows;

/// The simulator's version and the commit it was built from (a summary
/// says which code produced it).
pub const CODE_VERSION: &str = env!("MTOS_SIM_VERSION");

pub use metrics::Metrics;
pub use scenario::{Scenario, ScenarioError};
pub use sim::{AbstractMode, RealMode, Simulation, run_scenario};
