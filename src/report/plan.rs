//! The report of `coldpath plan`: what a run of a date would read and replace, typed.

use serde::Serialize;

/// What `plan --date D` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub job: String,
    pub date: String,
    pub source: String,
    pub lake: String,
    /// The time-partition prefixes a run lists.
    pub prefixes: Vec<String>,
    pub blobs: Vec<PlanBlob>,
    pub archived: Archived,
    pub blob_count: usize,
    pub bytes: u64,
    /// Blobs under the prefixes whose path does not follow the layout (a run skips them).
    pub ignored: Vec<String>,
    /// The partitions a run replaces, one per table.
    pub replaces: Vec<String>,
    /// What the features read back from silver (the look-back).
    pub reads_back: String,
    /// The later dates that were run whose derived rows read this date's: what
    /// `run --refresh-dependents` (or a catch-up) recomputes after a run of it.
    pub dependents: Vec<String>,
    /// How the listing differs from the manifest of the date's last run.
    pub manifest: PlanManifest,
    /// The columns a run would add to `telemetry` by schema evolution (declared
    /// columns, `_rescued_data`) that the table does not have yet.
    pub adds_columns: Vec<String>,
}

/// One blob a run would read.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBlob {
    pub path: String,
    pub bytes: u64,
    pub partition_start: String,
    /// `own` (the date's partitions) or `look_ahead`.
    pub window: &'static str,
    pub tier: Option<String>,
    pub archive_status: Option<String>,
}

/// The listed blobs in the Archive tier, which a run cannot read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Archived {
    pub blobs: usize,
    pub bytes: u64,
    pub rehydration_requested: Vec<String>,
}

/// The listing against the date's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct PlanManifest {
    /// `never_run`, `manifest_missing` (rows but no manifest), `manifest_unreadable`, `unchanged` or `changed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_at: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
}

/// How a listing differs from a manifest (`lake/manifest.rs`, `diff`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same path, another size, modification time or ETag (a grown blob among them).
    pub changed: Vec<String>,
    pub bytes_added: u64,
    pub bytes_removed: u64,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}
