//! coldpath: the cold path of an IoT telemetry platform, one date at a time.
//!
//! The pipeline reads top to bottom: [`source`] lists and decodes raw blobs,
//! [`normalize`] types and checks each record, [`dedup`] keeps one row per
//! reading, [`features`] computes the hourly training table (reading the
//! previous date back through [`silver`]), [`sink`] replaces the date's Delta
//! partitions, [`report`] accounts for every record. [`pipeline`] runs them
//! in order for one date, holding a [`lock`] per table and date; [`job`],
//! [`schema`] and [`retry`] are the configuration they read.

pub mod adf;
pub mod backfill;
pub mod batch;
pub mod cancel;
pub mod catchup;
pub mod cli;
pub mod dedup;
pub mod error;
pub mod fault;
pub mod features;
pub mod hours;
pub mod job;
pub mod lock;
pub mod maintain;
pub mod manifest;
pub mod normalize;
pub mod pipeline;
pub mod report;
pub mod retry;
pub mod schema;
pub mod silver;
pub mod sink;
pub mod source;
pub mod version;

pub use error::Error;
