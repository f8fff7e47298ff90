#![doc = include_str!("../README.md")]

pub mod admission;
pub mod cache;
pub mod cover;
pub mod directory;
pub mod dispatch;
pub mod engine;
pub mod fair;
pub mod format;
pub mod keys;
pub mod loops;
pub mod mailbox;
pub mod placement;
pub mod receipts;
pub mod records;
pub mod repair_plan;
pub mod replay;
pub mod replica_proto;
pub mod route;
pub mod service;
pub mod service_machine;
pub mod sessions;
pub mod time;
pub mod windows;

pub use engine::{
    Counters, Delivery, DropReason, EngineConfig, Event, Journal, MixEngine, MixingMode, Transmit,
};
pub use format::{CheckError, PacketFormat, Sphinx};
pub use keys::{EpochKey, KeyRing, ReplaySizing};
pub use replay::{ReplayChecked, ReplayFilter};
pub use time::Instant;
