//! The source stage: find one date's raw blobs by the layout's time prefixes and fetch them.
//!
//! All blob I/O goes through `object_store` (deltalake's), so a local folder,
//! `az://`, `abfss://` and `https://…blob.core.windows.net` sources behave alike.

pub mod avro;
pub mod decode;
pub mod flat;
pub mod layout;
pub mod tier;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deltalake::logstore::object_store::{
    self, azure::MicrosoftAzureBuilder, local::LocalFileSystem, path::Path as StorePath,
    ObjectStore, ObjectStoreExt, ObjectStoreScheme,
};
use futures::{StreamExt, TryStreamExt};
use url::Url;

use crate::fault::{describe, Fault};
use crate::retry::StorageSettings;
use layout::{Layout, Partition};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{location}`: {message}")]
    Location { location: String, message: String },
    #[error("listing `{prefix}` in {location}: {}", describe(*.fault, .container.as_deref(), .source))]
    List {
        location: String,
        prefix: String,
        container: Option<String>,
        fault: Fault,
        source: Box<object_store::Error>,
    },
    #[error("reading blob `{blob}` in {location}: {}", describe(*.fault, .container.as_deref(), .source))]
    Read {
        location: String,
        blob: String,
        container: Option<String>,
        fault: Fault,
        source: Box<object_store::Error>,
    },
}

impl SourceError {
    /// Whether this is a problem with the configuration (exit 2) rather than a fault while running.
    pub fn is_config(&self) -> bool {
        match self {
            SourceError::Location { .. } => true,
            SourceError::List { fault, .. } | SourceError::Read { fault, .. } => fault.is_config(),
        }
    }
}

/// An object store plus the folder inside it that a location names.
#[derive(Debug, Clone)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    pub root: StorePath,
    /// The location as the user gave it (URLs carry no secrets: those come from the environment).
    pub location: String,
    /// The container (Azure) the location is in, for error messages.
    pub container: Option<String>,
    /// Retries and timeouts (kept to open sibling locations alike, e.g. reference logs).
    pub settings: StorageSettings,
}

impl Storage {
    /// Opens a location: a local directory (which must exist), `file://`, `az://`, `abfss://` or `https://` URL.
    pub fn open(location: &str, settings: &StorageSettings) -> Result<Storage, SourceError> {
        let err = |message: String| SourceError::Location {
            location: location.to_string(),
            message,
        };
        if let Some(url) = as_url(location) {
            let (scheme, root) = ObjectStoreScheme::parse(&url).map_err(|e| err(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = match scheme {
                ObjectStoreScheme::Local => {
                    let path = url
                        .to_file_path()
                        .map_err(|_| err("not a local file URL".into()))?;
                    return Storage::open_local(location, path, settings);
                }
                ObjectStoreScheme::MicrosoftAzure => Arc::new(
                    settings
                        .apply(MicrosoftAzureBuilder::from_env().with_url(url.as_str()))
                        .build()
                        .map_err(|e| err(e.to_string()))?,
                ),
                other => return Err(err(format!("unsupported storage scheme {other:?}"))),
            };
            return Ok(Storage {
                store,
                root,
                location: location.to_string(),
                container: container_of(&url),
                settings: settings.clone(),
            });
        }
        Storage::open_local(location, PathBuf::from(location), settings)
    }

    fn open_local(
        location: &str,
        path: PathBuf,
        settings: &StorageSettings,
    ) -> Result<Storage, SourceError> {
        let err = |message: String| SourceError::Location {
            location: location.to_string(),
            message,
        };
        if !path.is_dir() {
            return Err(err("no such directory".into()));
        }
        let store = LocalFileSystem::new_with_prefix(&path).map_err(|e| err(e.to_string()))?;
        Ok(Storage {
            store: Arc::new(store),
            root: StorePath::default(),
            location: location.to_string(),
            container: None,
            settings: settings.clone(),
        })
    }

    /// The store path of `rel` (relative to this location's folder).
    pub fn path(&self, rel: &str) -> StorePath {
        let rel = rel.trim_matches('/');
        if self.root.as_ref().is_empty() {
            StorePath::from(rel)
        } else if rel.is_empty() {
            self.root.clone()
        } else {
            StorePath::from(format!("{}/{}", self.root.as_ref(), rel))
        }
    }

    /// `path` relative to this location's folder.
    fn relative(&self, path: &StorePath) -> String {
        let full = path.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(root)
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    }

    /// A failed listing of `prefix`, sorted for the operator.
    fn list_error(&self, prefix: &str, source: object_store::Error) -> SourceError {
        SourceError::List {
            location: self.location.clone(),
            prefix: prefix.to_string(),
            container: self.container.clone(),
            fault: Fault::of(&source),
            source: Box::new(source),
        }
    }

    /// Fetches a whole blob.
    pub async fn get(&self, rel: &str) -> Result<bytes::Bytes, SourceError> {
        let read = |source: object_store::Error| SourceError::Read {
            location: self.location.clone(),
            blob: rel.to_string(),
            container: self.container.clone(),
            fault: Fault::of(&source),
            source: Box::new(source),
        };
        let got = self.store.get(&self.path(rel)).await.map_err(read)?;
        got.bytes().await.map_err(read)
    }
}

/// The container an Azure URL names: `az://c/…`, `abfss://c@account…/…`, `https://account…/c/…`.
pub fn container_of(url: &Url) -> Option<String> {
    match url.scheme() {
        "az" | "azure" | "adl" => url.host_str().map(str::to_string),
        "abfs" | "abfss" => Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .or_else(|| url.host_str().map(str::to_string)),
        "https" | "http" => url
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

/// A location string as a URL, when it is one (`C:\…` and bare paths are not).
fn as_url(location: &str) -> Option<Url> {
    if !location.contains("://") {
        return None;
    }
    Url::parse(location).ok()
}

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
    pub size: u64,
    pub partition: Partition,
    pub window: Window,
    /// When the store last saw it change, and its ETag where the store gives
    /// one: with `size`, what a run's manifest records to spot a changed blob.
    pub last_modified: DateTime<Utc>,
    pub etag: Option<String>,
}

/// What listing found for a date.
#[derive(Debug, Default)]
pub struct Listing {
    pub prefixes: Vec<String>,
    pub blobs: Vec<Blob>,
    /// Blobs under the listed prefixes whose path does not follow the layout (skipped).
    pub ignored: Vec<String>,
}

/// The start of `date` (UTC).
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_default()
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
) -> Result<Vec<String>, SourceError> {
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
) -> Result<Listing, SourceError> {
    let start = day_start(date);
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
