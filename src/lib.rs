//! coldpath: the cold path of an IoT telemetry platform, one date at a time.
//!
//! The library is the `coldpath` binary's body; its public surface is what
//! the binary calls, nothing more: [`Cli`] (the command line) and [`execute`]
//! (a command to its exit code), [`listen`] (clean stops on SIGTERM/SIGINT),
//! [`LogWriter`] (stderr for log lines, around the progress bar), [`BatchIds`]
//! (the Azure Batch ids a log span carries) and [`redact`] (secrets out of a
//! panic's message). The few integration tests that call a stage directly
//! reach it through a hidden `testing` module. Everything else is crate-private.
//!
//! The crate's modules, in the order a date's data goes through them
//! (ARCHITECTURE.md has the map):
//!
//! - `config`: the job file and the column map, validated before anything is read;
//! - `storage`: object stores for a location, credentials, retries, fault names, redaction;
//! - `stages`: the transforms in data order: `stages::source` lists and decodes
//!   blobs, `stages::normalize` types each record or rejects it, `stages::dedup`
//!   keeps one row per reading, `stages::features` computes the gold tables;
//! - `run`: one date end to end (`run::pipeline`, an event hour at a time through
//!   `run::hours`), and the many-date runs (`run::backfill`, `run::catchup`);
//! - `lake`: everything Delta: table specs, writing and streaming, reading silver
//!   back, the run lock, manifests, maintenance;
//! - `report`: the JSON objects the binary prints;
//! - `commands`: the command line and the Data Factory and Batch entry points;
//! - `calendar`: day and hour arithmetic; `cancel`: clean stops on SIGTERM/SIGINT;
//!   `error`: the crate error and its exit codes.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub(crate) mod calendar;
pub(crate) mod cancel;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod lake;
pub(crate) mod memory;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod stages;
pub(crate) mod storage;
pub(crate) mod version;

pub(crate) use error::Error;

pub use cancel::listen;
pub use commands::cli::Cli;
pub use commands::execute;
pub use commands::failure_exit_code;
pub use commands::progress::LogWriter;
pub use storage::fault::redact;
pub use version::BatchIds;

/// The folders' arrows against ARCHITECTURE.md.
#[cfg(test)]
mod architecture_test;

/// What the tests share: the unit tests' numbers, and the stages the
/// integration tests' property tests call directly (tests/it/fuzz.rs decodes
/// blobs; tests/it/report_html.rs renders a page). Not an interface.
#[doc(hidden)]
pub mod testing {
    pub use crate::config::schema::TelemetrySchema;
    pub use crate::report::html::{render, Page};
    pub use crate::stages::dedup::frame_of;
    pub use crate::stages::normalize::pieces::Pieces;
    pub use crate::stages::normalize::{
        process_blob, BlobOutcome, Rules, MAX_DEVICE_ID_BYTES, MAX_REJECTS_ANY_BLOB,
        MAX_REJECTS_PER_BLOB, MAX_TEXT_BYTES,
    };
    pub use crate::stages::source::decode::{CsvDialect, Declared, Limits};
    pub use crate::stages::source::layout::Partition;
    pub use crate::stages::source::{Blob, Window};

    /// The tests' pseudo-random numbers: Knuth's MMIX LCG, the same sequence every run.
    #[cfg(test)]
    pub(crate) struct Lcg(pub(crate) u64);

    #[cfg(test)]
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
