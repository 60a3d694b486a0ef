//! What the job file declares that only a stage can judge: the layout's pattern
//! and the expectations' SQL, planned against silver's schema. Judged when the job
//! is loaded ([`check`]), so a mistake is a configuration error naming its key
//! before any listing or lock; [`crate::run::site`] keeps the planned expectations.

use std::path::Path;

use crate::config::job::{Job, JobError};
use crate::stages::expect::{ExpectError, Expectations};
use crate::stages::source::layout::Layout;

/// The job's `[[expectations]]` parsed and planned by DataFusion against the
/// columns silver gets: the contract's, the schema's declared columns and, with
/// drift rescue, `_rescued_data`.
pub fn expectations(job: &Job) -> Result<Expectations, ExpectError> {
    let silver = crate::run::drift::silver_spec(&job.schema, &job.drift);
    Expectations::compile(&job.expectations, &silver.schema)
}

/// What the job file (at `path`) declares that only a stage can judge: the
/// layout's pattern and the expectations' SQL. Checked when the job is loaded,
/// so a mistake is the job file's error, naming its key, before anything runs.
pub fn check(path: &Path, job: &Job) -> Result<(), JobError> {
    let invalid = |key: &'static str, message: String| JobError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    Layout::parse(&job.layout).map_err(|e| invalid("layout", e.to_string()))?;
    expectations(job).map_err(|e| invalid("expectations", e.to_string()))?;
    Ok(())
}
