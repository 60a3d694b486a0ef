//! What a run read: a manifest per date, so a later look can tell which dates' blobs changed.
//!
//! Producers keep writing after the nightly run (a Stream Analytics restart
//! fills the hours it missed, IoT Hub retries a batch, an operator copies a
//! device's buffer into an old folder). A succeeded run writes, after its last
//! commit and still under its locks, `<lake>/_coldpath/manifests/<date>.json`:
//! every blob of the date's partitions and look-ahead with its size, last
//! modification and ETag. [`diff`] compares a fresh listing with it; `catchup`
//! reruns only the dates that differ, and `plan` shows the difference.
//!
//! Entries are arrays, not objects, to keep 10,000 blobs near 1 MB. A manifest
//! in a format this build does not know reads as [`Read::Unknown`], which
//! callers treat as changed: a rerun is always safe, a skipped change is not.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::logstore::object_store::{self, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::lake::Lake;
use crate::report::plan::Diff;
use crate::stages::source::{Blob, Listing};
use crate::storage::{Storage, StorageError};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

const DIR: &str = "_coldpath/manifests";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest of {date} in the lake: {message}")]
    Io { date: NaiveDate, message: String },
    #[error(transparent)]
    Store(#[from] Box<StorageError>),
}

impl ManifestError {
    pub fn is_config(&self) -> bool {
        match self {
            ManifestError::Io { .. } => false,
            ManifestError::Store(e) => e.is_config(),
        }
    }
}

/// One blob as listed: path, size, last modified (ms since the epoch), ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry(pub String, pub u64, pub i64, pub Option<String>);

impl Entry {
    pub fn of(blob: &Blob) -> Entry {
        Entry(
            blob.path.clone(),
            blob.size,
            blob.last_modified.timestamp_millis(),
            blob.etag.clone(),
        )
    }
}

/// What one run of a date read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub date: NaiveDate,
    pub run_id: String,
    pub written_at: DateTime<Utc>,
    pub blobs: Vec<Entry>,
}

impl Manifest {
    pub fn of(date: NaiveDate, run_id: &str, listing: &Listing) -> Manifest {
        Manifest {
            format: FORMAT,
            date,
            run_id: run_id.to_string(),
            written_at: Utc::now(),
            blobs: listing.blobs.iter().map(Entry::of).collect(),
        }
    }
}

/// What reading a date's manifest found.
#[derive(Debug)]
pub enum Read {
    /// No manifest: the date was never run (or not since manifests exist).
    Missing,
    /// One this build cannot read (another format, or broken): treat as changed.
    Unknown(String),
    Found(Manifest),
}

/// The difference between what a run read (`old`) and what is listed now.
pub fn diff(old: &Manifest, now: &Listing) -> Diff {
    let before: BTreeMap<&str, &Entry> = old.blobs.iter().map(|e| (e.0.as_str(), e)).collect();
    let after: BTreeMap<&str, Entry> = now
        .blobs
        .iter()
        .map(|b| (b.path.as_str(), Entry::of(b)))
        .collect();
    let mut d = Diff::default();
    for (path, entry) in &after {
        match before.get(path) {
            None => {
                d.added.push(path.to_string());
                d.bytes_added += entry.1;
            }
            Some(was) if **was != *entry => {
                d.changed.push(path.to_string());
                d.bytes_added += entry.1.saturating_sub(was.1);
                d.bytes_removed += was.1.saturating_sub(entry.1);
            }
            Some(_) => {}
        }
    }
    for (path, was) in &before {
        if !after.contains_key(path) {
            d.removed.push(path.to_string());
            d.bytes_removed += was.1;
        }
    }
    d
}

/// Where a lake keeps its manifests (or, [`Place::in_lake`], another folder of
/// small JSON documents under `_coldpath/`, such as the stored run reports).
pub enum Place {
    Local(PathBuf),
    Store(Storage, &'static str),
}

impl Place {
    pub fn for_lake(lake: &Lake) -> Result<Place, ManifestError> {
        Place::in_lake(lake, DIR)
    }

    /// The folder `dir` (relative to the lake) of a local or object-store lake.
    pub fn in_lake(lake: &Lake, dir: &'static str) -> Result<Place, ManifestError> {
        if lake.url.scheme() == "file" {
            if let Ok(root) = lake.url.to_file_path() {
                return Ok(Place::Local(root.join(dir)));
            }
        }
        let storage = Storage::open(lake.url.as_str(), &lake.settings).map_err(Box::new)?;
        Ok(Place::Store(storage, dir))
    }

    fn name(date: NaiveDate) -> String {
        format!("{date}.json")
    }

    /// The document `name` of the folder; `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Place::Local(dir) => match std::fs::read(dir.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Place::Store(s, dir) => match s.store.get(&s.path(&format!("{dir}/{name}"))).await {
                Ok(got) => Ok(Some(got.bytes().await.map_err(|e| e.to_string())?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Writes `bytes` in place of the document `name` (atomically: a reader sees
    /// the old or the new one, never a part); `tag`, the process and a counter
    /// make the local temporary name unique, even for two writers of one document.
    pub async fn put(&self, name: &str, bytes: Vec<u8>, tag: &str) -> Result<(), String> {
        static PUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        match self {
            Place::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                let n = PUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = dir.join(format!(".{name}.{tag}.{}.{n}", std::process::id()));
                std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp, dir.join(name)).map_err(|e| e.to_string())
            }
            Place::Store(s, dir) => s
                .store
                .put(&s.path(&format!("{dir}/{name}")), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// The names of the folder's documents that start with `prefix`.
    pub async fn names(&self, prefix: &str) -> Result<Vec<String>, String> {
        match self {
            Place::Local(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => Ok(entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix))
                    .collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            },
            Place::Store(s, dir) => {
                use futures::TryStreamExt;
                let listed: Vec<_> = s
                    .store
                    .list(Some(&s.path(dir)))
                    .try_collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(listed
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_string))
                    .filter(|n| n.starts_with(prefix))
                    .collect())
            }
        }
    }

    /// Removes the document `name` (gone already is fine).
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        match self {
            Place::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Place::Store(s, dir) => match s.store.delete(&s.path(&format!("{dir}/{name}"))).await {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => Err(e.to_string()),
                _ => Ok(()),
            },
        }
    }

    /// The manifest of `date`.
    pub async fn read(&self, date: NaiveDate) -> Result<Read, ManifestError> {
        let io = |message: String| ManifestError::Io { date, message };
        match self.get(&Place::name(date)).await.map_err(io)? {
            Some(bytes) => Ok(parse(&bytes)),
            None => Ok(Read::Missing),
        }
    }

    /// Removes the date's manifest (none is fine): a run does so before it
    /// replaces the date's silver, since the manifest then no longer says what
    /// the date's tables were made of until the run writes its own.
    pub async fn forget(&self, date: NaiveDate) -> Result<(), ManifestError> {
        let io = |message: String| ManifestError::Io { date, message };
        self.delete(&Place::name(date)).await.map_err(io)
    }

    /// Writes `manifest` in place of the date's last one (atomically).
    pub async fn write(&self, manifest: &Manifest) -> Result<(), ManifestError> {
        let date = manifest.date;
        let io = |message: String| ManifestError::Io { date, message };
        let bytes = serde_json::to_vec(manifest).map_err(|e| io(e.to_string()))?;
        self.put(&Place::name(date), bytes, &manifest.run_id)
            .await
            .map_err(io)
    }
}

/// A manifest's bytes: this build's format, or why not.
fn parse(bytes: &[u8]) -> Read {
    #[derive(Deserialize)]
    struct Head {
        format: Option<u32>,
    }
    match serde_json::from_slice::<Head>(bytes) {
        Ok(Head {
            format: Some(FORMAT),
        }) => match serde_json::from_slice::<Manifest>(bytes) {
            Ok(m) => Read::Found(m),
            Err(e) => Read::Unknown(format!("manifest does not parse: {e}")),
        },
        Ok(Head { format }) => Read::Unknown(format!(
            "manifest format {} is not this build's {FORMAT}",
            format.map_or("(none)".to_string(), |f| f.to_string())
        )),
        Err(e) => Read::Unknown(format!("manifest is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(path: &str, size: u64, modified_ms: i64) -> Blob {
        let t = DateTime::from_timestamp_millis(modified_ms).unwrap();
        Blob {
            etag: Some(format!("{size}-{modified_ms}")),
            ..Blob::at(path, size, t)
        }
    }

    fn listing(blobs: Vec<Blob>) -> Listing {
        Listing {
            blobs,
            ..Listing::default()
        }
    }

    #[test]
    fn added_removed_and_changed_blobs_with_their_bytes() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 11).unwrap();
        let old = Manifest::of(
            date,
            "r1",
            &listing(vec![blob("a", 10, 1), blob("b", 20, 1), blob("c", 30, 1)]),
        );
        let now = listing(vec![blob("a", 10, 1), blob("b", 25, 2), blob("d", 7, 3)]);
        let d = diff(&old, &now);
        assert_eq!(d.added, vec!["d"]);
        assert_eq!(d.removed, vec!["c"]);
        assert_eq!(d.changed, vec!["b"]);
        assert_eq!((d.bytes_added, d.bytes_removed), (7 + 5, 30));
        assert!(diff(
            &old,
            &listing(vec![blob("a", 10, 1), blob("b", 20, 1), blob("c", 30, 1)])
        )
        .is_empty());
        // Same size, touched again: changed (an ETag or time that moved is a rewrite).
        assert_eq!(
            diff(&old, &listing(vec![blob("a", 10, 5)])).changed,
            vec!["a"]
        );
    }

    #[test]
    fn manifests_round_trip_and_other_formats_read_as_unknown() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 11).unwrap();
        let m = Manifest::of(date, "r1", &listing(vec![blob("a", 10, 1)]));
        let bytes = serde_json::to_vec(&m).unwrap();
        match parse(&bytes) {
            Read::Found(back) => assert_eq!(back.blobs, m.blobs),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse(br#"{"format": 0, "blobs": []}"#), Read::Unknown(w) if w.contains("format 0"))
        );
        assert!(matches!(parse(br#"{"blobs": []}"#), Read::Unknown(_)));
        assert!(matches!(parse(b"not json"), Read::Unknown(_)));
    }
}
