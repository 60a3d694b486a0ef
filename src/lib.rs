//! coldpath: the cold path of an IoT telemetry platform, one date at a time.
//!
//! The crate, in the order a date's data goes through it (ARCHITECTURE.md has the map):
//!
//! - [`config`]: the job file and the column map, validated before anything is read;
//! - [`storage`]: object stores for a location, credentials, retries, fault names, redaction;
//! - [`stages`]: the transforms in data order: [`stages::source`] lists and decodes
//!   blobs, [`stages::normalize`] types each record or rejects it, [`stages::dedup`]
//!   keeps one row per reading, [`stages::features`] computes the gold tables;
//! - [`run`]: one date end to end ([`run::pipeline`], an event hour at a time through
//!   [`run::hours`]), and the many-date runs ([`run::backfill`], [`run::catchup`]);
//! - [`lake`]: everything Delta: table specs, writing and streaming, reading silver
//!   back, the run lock, manifests, maintenance;
//! - [`report`]: the JSON objects the binary prints;
//! - [`commands`]: the command line and the Data Factory and Batch entry points;
//! - [`calendar`]: day and hour arithmetic; [`cancel`]: clean stops on SIGTERM/SIGINT;
//!   [`error`]: the crate error and its exit codes.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod calendar;
pub mod cancel;
pub mod commands;
pub mod config;
pub mod error;
pub mod lake;
pub mod memory;
pub mod report;
pub mod run;
pub mod stages;
pub mod storage;
pub mod version;

pub use error::Error;

/// The folders' arrows against ARCHITECTURE.md.
#[cfg(test)]
mod architecture_test;

/// What the unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// The tests' pseudo-random numbers: Knuth's MMIX LCG, the same sequence every run.
    pub(crate) struct Lcg(pub(crate) u64);

    impl Lcg {
        /// The next state, all 64 bits.
        pub(crate) fn step(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }

        /// A number below `n`, from the state's high bits.
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            (self.step() >> 33) % n
        }
    }
}
