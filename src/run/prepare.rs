//! What a run needs before it reads anything: the storage, the parsed layout, the
//! lake and the planned expectations. A bad one is a configuration error, found
//! when the job is loaded ([`check`]), before any listing or lock.

use std::path::Path;

use crate::config::job::{Job, JobError};
use crate::error::Error;
use crate::lake::Lake;
use crate::stages::expect::{ExpectError, Expectations};
use crate::stages::source::layout::Layout;
use crate::storage::Storage;

/// The parts of a run that exist before anything is read: a bad one is a configuration error.
pub struct Prepared {
    pub storage: Storage,
    pub layout: Layout,
    pub lake: Lake,
    /// The job's declared expectations, planned against silver's schema (empty: none).
    pub expectations: Expectations,
}

pub fn prepare(job: &Job) -> Result<Prepared, Error> {
    let layout = Layout::parse(&job.layout).map_err(|e| Error::Usage(e.to_string()))?;
    let storage = Storage::open(&job.source, &job.storage)?;
    let lake = Lake::open(&job.lake, &job.storage)?;
    let expectations = expectations(job)?;
    Ok(Prepared {
        storage,
        layout,
        lake,
        expectations,
    })
}

/// The job's `[[expectations]]` parsed and planned by DataFusion against the
/// telemetry table's schema (the columns silver gets).
pub fn expectations(job: &Job) -> Result<Expectations, ExpectError> {
    Expectations::compile(&job.expectations, &crate::lake::telemetry_table().schema)
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
