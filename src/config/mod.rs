//! What the user declared: the job file and the column map, read and validated before anything runs.

pub mod drift;
pub mod expect;
pub mod features;
pub mod formats;
pub mod job;
pub mod schema;
