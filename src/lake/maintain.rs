//! `coldpath maintain`: keep the tables healthy for Synapse and Azure ML — compact small files, write a checkpoint, vacuum files no version still needs.
//!
//! Compaction rewrites each partition's small files into files near the target
//! size (a commit that changes no row). A checkpoint lets readers skip the JSON
//! log. Vacuum, in delta-rs's full mode, deletes every data file that no
//! version references and that is older than the retention (default 7 days,
//! Delta's own: a reader or a time-travel query on an older version within that
//! window keeps working): the files replaced by later runs, and also the files of
//! runs that never committed (failed, killed, stopped by the quality gate), which
//! the log never mentions and the default lite mode never finds. On a local lake
//! it also removes the staging files of writes a killed process never finished
//! (`<file>.parquet#<n>`), which no store listing shows, once older than the
//! retention.

use std::num::NonZeroU64;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::vacuum::VacuumMode;
use serde::Serialize;
use tracing::info;

use crate::lake::{Lake, SinkError, TableSpec};

/// The shortest vacuum retention accepted without `--unsafe-retention`.
pub const SAFE_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Serialize)]
pub struct TableMaintenance {
    pub table: &'static str,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub files_compacted: u64,
    pub files_written: u64,
    pub checkpoint_version: Option<u64>,
    pub files_vacuumed: usize,
    /// Staging files of unfinished writes removed (a local lake only).
    pub staging_files_removed: usize,
}

/// Who maintains: the `maintain` command's run id and the job's name, for each commit.
#[derive(Debug, Clone, Copy)]
pub struct Maintainer<'a> {
    pub run_id: &'a str,
    pub job: &'a str,
}

/// The `userMetadata` of maintenance commits: the operation, the run, the job and the
/// coldpath build (a maintenance commit has no date: it covers every partition).
fn commit_properties(table: &str, by: Maintainer) -> CommitProperties {
    let meta = serde_json::json!({
        "operation": "maintain",
        "table": table,
        "run_id": by.run_id,
        "job": by.job,
        "coldpath_version": crate::version::VERSION,
        "coldpath_commit": crate::version::COMMIT,
    });
    CommitProperties::default().with_metadata([(
        "userMetadata".to_string(),
        serde_json::Value::String(meta.to_string()),
    )])
}

/// A DataFusion session that reads strings as plain strings, for compaction.
/// delta-rs's own reads them as views (`schema_force_view_types`) and writes the
/// compacted files with the types it read: files whose Arrow schema says
/// `string_view`, which pyarrow 14 and Azure ML's reader refuse. The tables'
/// files are plain `string` (docs/tables.md), compacted ones too.
/// Not made, compaction does not run (rather than write files readers refuse).
fn plain_strings_session(
) -> Result<std::sync::Arc<dyn deltalake::datafusion::catalog::Session>, String> {
    let overrides = std::collections::HashMap::from([(
        "datafusion.execution.parquet.schema_force_view_types".to_string(),
        "false".to_string(),
    )]);
    let ctx =
        deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides)
            .map_err(|e| e.to_string())?;
    Ok(std::sync::Arc::new(ctx.state()))
}

/// What [`maintain_all`] did: the tables kept, those that failed with why, and
/// the stop requested that ended it before the rest, if one did.
#[derive(Debug, Default)]
pub struct Kept {
    pub done: Vec<TableMaintenance>,
    pub failed: Vec<(&'static str, SinkError)>,
    pub stopped: Option<crate::cancel::Stopped>,
}

/// [`maintain`] of every table in turn. One table's failure (a run's commit
/// landing first: maintenance takes no run lock) leaves the others kept; a stop
/// requested ends it between two tables (each one's commits are atomic).
pub async fn maintain_all(lake: &Lake, retention: std::time::Duration, by: Maintainer<'_>) -> Kept {
    let mut kept = Kept::default();
    for spec in super::all_tables() {
        if let Some(signal) = crate::cancel::requested() {
            kept.stopped = Some(crate::cancel::Stopped(signal));
            return kept;
        }
        match maintain(lake, &spec, retention, by).await {
            Ok(Some(m)) => kept.done.push(m),
            Ok(None) => {}
            Err(e) => {
                let text = crate::storage::fault::redact(&e.to_string());
                tracing::warn!(table = spec.name, error = %text, "the table was not maintained; the others go on");
                kept.failed.push((spec.name, e));
            }
        }
    }
    kept
}

/// Compacts, checkpoints and vacuums one table; `None` when it does not exist yet.
pub async fn maintain(
    lake: &Lake,
    spec: &TableSpec,
    retention: std::time::Duration,
    by: Maintainer<'_>,
) -> Result<Option<TableMaintenance>, SinkError> {
    let url = lake.table_url(spec.name)?;
    let err = |source| SinkError::delta(spec.name, &url, source);
    // `expectations` exists only once a job that declares some has run.
    let Some(table) = crate::lake::open_table(lake, spec).await? else {
        return Ok(None);
    };
    let Some(version_before) = table.version() else {
        return Ok(None);
    };
    let optimize = table
        .optimize()
        .with_commit_properties(commit_properties(spec.name, by))
        .with_writer_properties(crate::lake::parquet_properties(by.run_id))
        .with_target_size(NonZeroU64::new(lake.file_size).unwrap_or(NonZeroU64::MIN));
    let session = plain_strings_session().map_err(|message| SinkError::Writer {
        table: spec.name,
        message: format!("compaction's session: {message}"),
    })?;
    let (table, compacted) = optimize.with_session_state(session).await.map_err(&err)?;
    info!(
        table = spec.name,
        removed = compacted.num_files_removed,
        added = compacted.num_files_added,
        "compacted"
    );
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(&err)?;
    let checkpoint_version = table.version();
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (table, vacuumed) = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_commit_properties(commit_properties(spec.name, by))
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(&err)?;
    info!(
        table = spec.name,
        deleted = vacuumed.files_deleted.len(),
        "vacuumed"
    );
    let staging_files_removed = remove_stale_staging(lake, spec, retention);
    Ok(Some(TableMaintenance {
        staging_files_removed,
        table: spec.name,
        version_before: Some(version_before),
        version_after: table.version(),
        files_compacted: compacted.num_files_removed,
        files_written: compacted.num_files_added,
        checkpoint_version,
        files_vacuumed: vacuumed.files_deleted.len(),
    }))
}

/// On a local lake, removes from `spec`'s partitions the staging files of
/// writes that never finished (`<name>.parquet#<n>`: coldpath's direct writer
/// and object_store stage a file under that name, then rename it; a process
/// killed in between leaves it) whose last change is older than `retention`
/// (a write under way is younger). The store's listing skips these names, so
/// vacuum never sees them. Returns how many were removed; one that cannot be
/// is a warning.
fn remove_stale_staging(lake: &Lake, spec: &TableSpec, retention: chrono::Duration) -> usize {
    let Ok(root) = lake.url.to_file_path() else {
        return 0;
    };
    let Ok(retention) = retention.to_std() else {
        return 0;
    };
    let Ok(partitions) = std::fs::read_dir(root.join(spec.name)) else {
        return 0;
    };
    let mut removed = 0;
    for partition in partitions.flatten().filter(|e| e.path().is_dir()) {
        let Ok(files) = std::fs::read_dir(partition.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let stale = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > retention);
            if !name.contains(".parquet#") || !stale {
                continue;
            }
            match std::fs::remove_file(file.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(table = spec.name, file = %name, error = %e, "a stale staging file was not removed")
                }
            }
        }
    }
    if removed > 0 {
        info!(
            table = spec.name,
            files = removed,
            "removed stale staging files"
        );
    }
    removed
}
