//! The schema-drift part of a run report: what silver rescued, which fields look like columns, which columns the run adds.

use std::collections::BTreeMap;

use serde::Serialize;

/// Schema drift in one run (present when the job rescues or declares columns).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriftReport {
    /// The date's rows as read (valid records of the date, before dedup): the shares' base.
    pub rows: u64,
    /// Of those, rows with a `_rescued_data` value, and the fields in them.
    pub rescued_records: u64,
    pub rescued_fields: u64,
    /// Rows per rescued field name (as written in the records): at most 1,000
    /// names, each at most 256 bytes.
    pub rescued_by_field: BTreeMap<String, u64>,
    /// Rescued fields under the names past those bounds, counted here instead.
    #[serde(skip_serializing_if = "is_zero")]
    pub rescued_untallied_fields: u64,
    /// Rescued fields on more than `candidate_share` of the rows: columns to declare.
    pub candidate_columns: Vec<String>,
    pub candidate_share: f64,
    /// The columns this run's commit adds to `telemetry` (schema evolution).
    pub added_columns: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
