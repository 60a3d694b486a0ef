//! The source stage: find one date's raw blobs by the layout's time prefixes, and decode them.
//!
//! Listing goes through [`crate::storage::Storage`] (deltalake's `object_store`),
//! so a local folder, `az://`, `abfss://` and `https://…blob.core.windows.net`
//! sources behave alike. The decoders turn a blob's bytes into records.

pub mod avro;
pub mod decode;
pub mod flat;
pub mod layout;
pub mod shape;
pub mod tier;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deltalake::logstore::object_store;
use futures::{StreamExt, TryStreamExt};

use crate::storage::{Storage, StorageError};
use layout::{Layout, Partition};

/// Where a blob stands relative to the run's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// In one of the date's own time partitions: every record is counted.
    Own,
    /// In the look-ahead after the date: only valid records of the date count.
    LookAhead,
}

/// One blob a run will read.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Path relative to the source (what `source_file` records).
    pub path: String,
    /// Its size in bytes as stored.
    pub size: u64,
    /// The time partition its path names.
    pub partition: Partition,
    /// Whether it is the date's own or the look-ahead's.
    pub window: Window,
    /// When the store last saw it change, and its ETag where the store gives
    /// one: with `size`, what a run's manifest records to spot a changed blob.
    pub last_modified: DateTime<Utc>,
    /// The store's ETag, when it gives one.
    pub etag: Option<String>,
}

#[cfg(test)]
impl Blob {
    /// A blob of the date's own hour partition starting at `at`, for tests.
    pub(crate) fn at(path: &str, size: u64, at: DateTime<Utc>) -> Blob {
        Blob {
            path: path.into(),
            size,
            partition: Partition {
                start: at,
                width: chrono::Duration::hours(1),
            },
            window: Window::Own,
            last_modified: at,
            etag: None,
        }
    }
}

/// What listing found for a date.
#[derive(Debug, Default)]
pub struct Listing {
    pub prefixes: Vec<String>,
    pub blobs: Vec<Blob>,
    /// Blobs under the listed prefixes whose path does not follow the layout (skipped).
    pub ignored: Vec<String>,
}

/// Names starting with `_` or `.`: markers such as `_SUCCESS` and hidden temp files, never data.
fn is_marker(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Fills in the name tokens (`{iothub}`, `{partition}`) of listing prefixes with
/// the folders that exist, listing each parent folder once (one level, with a
/// delimiter: never a recursive walk of the container).
async fn expand_names(
    storage: &Storage,
    prefixes: Vec<String>,
) -> Result<Vec<String>, StorageError> {
    let mut folders: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut pending = prefixes;
    let mut out = Vec::new();
    while let Some(prefix) = pending.pop() {
        let Some((parent, after)) = layout::split_name(&prefix) else {
            out.push(prefix);
            continue;
        };
        if !folders.contains_key(parent) {
            let listed = storage
                .store
                .list_with_delimiter(Some(&storage.path(parent)))
                .await
                .map_err(|e| storage.list_error(parent, e))?;
            let names = listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .filter(|n| !is_marker(n))
                .collect();
            folders.insert(parent.to_string(), names);
        }
        for name in &folders[parent] {
            pending.push(format!("{parent}{name}{after}"));
        }
    }
    out.sort();
    Ok(out)
}

/// Lists the blobs of `date`'s partitions plus the look-ahead, prefix by prefix, in parallel.
pub async fn list_for_date(
    storage: &Storage,
    layout: &Layout,
    date: NaiveDate,
    late_arrival: Duration,
) -> Result<Listing, StorageError> {
    let start = crate::calendar::day_start(date);
    let own_end = start + Duration::days(1);
    let end = own_end + late_arrival;
    let prefixes = expand_names(storage, layout.prefixes(start, end)).await?;
    let listed: Vec<Vec<object_store::ObjectMeta>> =
        futures::stream::iter(prefixes.iter().cloned())
            .map(|prefix| async move {
                let p = storage.path(&prefix);
                storage
                    .store
                    .list(Some(&p))
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| storage.list_error(&prefix, e))
            })
            .buffered(16)
            .try_collect()
            .await?;
    let mut listing = Listing {
        prefixes,
        ..Listing::default()
    };
    for meta in listed.into_iter().flatten() {
        let rel = storage.relative(&meta.location);
        let file_name = rel.rsplit('/').next().unwrap_or(&rel);
        if is_marker(file_name) {
            continue; // markers such as _SUCCESS and hidden temp files
        }
        let Some(partition) = layout.partition_of(&rel) else {
            listing.ignored.push(rel);
            continue;
        };
        let window = if partition.start >= start && partition.start < own_end {
            Window::Own
        } else if partition.start >= own_end && partition.start < end {
            Window::LookAhead
        } else {
            continue; // a prefix may hold partitions outside the window (e.g. hours in a day folder)
        };
        listing.blobs.push(Blob {
            path: rel,
            size: meta.size,
            partition,
            window,
            last_modified: meta.last_modified,
            etag: meta.e_tag,
        });
    }
    listing.blobs.sort_by(|a, b| a.path.cmp(&b.path));
    listing.blobs.dedup_by(|a, b| a.path == b.path);
    Ok(listing)
}
