//! Understudy's call plane: everything but the inference engines, which run
//! in supervised worker processes (see `docs/architecture.md`).

#![warn(missing_docs)]

pub mod audio;
pub mod bench;
pub mod cli;
pub mod config;
pub mod continuity;
pub mod dialog;
pub mod engines;
pub mod http;
pub mod metrics;
pub mod net;
pub mod session;
pub mod stats;
pub mod sync;
pub mod systemd;
pub mod transport;
pub mod update;
