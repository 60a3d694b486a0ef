//! Storage: opening an object store for a location, with its credentials, retries and fault naming.
//!
//! Every byte coldpath reads or writes outside Delta goes through here (the
//! source's blobs, the reference logs, lock objects, manifests); the lake's
//! tables go through delta-rs with the same settings. [`fault`] sorts failures
//! for the operator and redacts secrets; [`retry`] holds the retry policy.

pub mod direct;
pub mod direct_write;
pub mod fault;
pub mod retry;
#[cfg(test)]
pub mod test_store;

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::logstore::object_store::{
    self, azure::MicrosoftAzureBuilder, local::LocalFileSystem, path::Path as StorePath,
    ObjectStore, ObjectStoreExt, ObjectStoreScheme,
};
use url::Url;

use fault::{describe, Fault};
use retry::StorageSettings;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage location `{location}`: {message}")]
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

impl StorageError {
    /// Whether this is a problem with the configuration (exit 2) rather than a fault while running.
    pub fn is_config(&self) -> bool {
        match self {
            StorageError::Location { .. } => true,
            StorageError::List { fault, .. } | StorageError::Read { fault, .. } => {
                fault.is_config()
            }
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
    /// A local folder's blobs, read around the page cache where its file system allows.
    pub direct: Option<direct::Direct>,
}

impl Storage {
    /// Opens a location: a local directory (which must exist), `file://`, `az://`, `abfss://` or `https://` URL.
    pub fn open(location: &str, settings: &StorageSettings) -> Result<Storage, StorageError> {
        let err = |message: String| StorageError::Location {
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
                direct: None,
            });
        }
        Storage::open_local(location, PathBuf::from(location), settings)
    }

    fn open_local(
        location: &str,
        path: PathBuf,
        settings: &StorageSettings,
    ) -> Result<Storage, StorageError> {
        let err = |message: String| StorageError::Location {
            location: location.to_string(),
            message,
        };
        if !path.is_dir() {
            return Err(err("no such directory".into()));
        }
        let store =
            Arc::new(LocalFileSystem::new_with_prefix(&path).map_err(|e| err(e.to_string()))?);
        Ok(Storage {
            store: store.clone(),
            root: StorePath::default(),
            location: location.to_string(),
            container: None,
            settings: settings.clone(),
            direct: Some(direct::Direct::new(store)),
        })
    }

    /// The store path of `rel` (relative to this location's folder).
    pub fn path(&self, rel: &str) -> StorePath {
        let rel = rel.trim_matches('/');
        // As listed: a name such as `dev~1.json` is the blob's own (`from` would
        // percent-encode it into a name no blob has); anything `parse` refuses
        // (`..`, empty segments) is encoded as before.
        let full = if self.root.as_ref().is_empty() {
            rel.to_string()
        } else if rel.is_empty() {
            return self.root.clone();
        } else {
            format!("{}/{}", self.root.as_ref(), rel)
        };
        StorePath::parse(&full).unwrap_or_else(|_| StorePath::from(full))
    }

    /// `path` relative to this location's folder.
    pub fn relative(&self, path: &StorePath) -> String {
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
    pub fn list_error(&self, prefix: &str, source: object_store::Error) -> StorageError {
        StorageError::List {
            location: self.location.clone(),
            prefix: prefix.to_string(),
            container: self.container.clone(),
            fault: Fault::of(&source),
            source: Box::new(source),
        }
    }

    /// A failed read of blob `rel`, sorted for the operator.
    pub fn read_error(&self, rel: &str, source: object_store::Error) -> StorageError {
        StorageError::Read {
            location: self.location.clone(),
            blob: rel.to_string(),
            container: self.container.clone(),
            fault: Fault::of(&source),
            source: Box::new(source),
        }
    }

    /// Fetches a whole blob with the time it was last written (a reference log: the
    /// time it is known up to).
    pub async fn get_dated(
        &self,
        rel: &str,
    ) -> Result<(bytes::Bytes, chrono::DateTime<chrono::Utc>), StorageError> {
        let read = |source| self.read_error(rel, source);
        let got = self.store.get(&self.path(rel)).await.map_err(read)?;
        let written = got.meta.last_modified;
        Ok((got.bytes().await.map_err(read)?, written))
    }

    /// Fetches a blob as it was listed: at most its first `listed` bytes. One that
    /// grew since is read as listed, as a blob read in pieces is (the date's
    /// manifest then tells `catchup` it changed), so a fetch never holds more than
    /// the read budget was charged for.
    pub async fn get_at_most(&self, rel: &str, listed: u64) -> Result<bytes::Bytes, StorageError> {
        if listed == 0 {
            return Ok(bytes::Bytes::new());
        }
        if let Some(direct) = &self.direct {
            if let Some(bytes) = direct.get(&self.path(rel), listed).await {
                return Ok(bytes);
            }
        }
        let read = |source| self.read_error(rel, source);
        let path = self.path(rel);
        let range = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(0..listed)),
            ..Default::default()
        };
        let got = match self.store.get_opts(&path, range).await {
            Ok(got) => got,
            Err(e) => {
                // Shorter now than listed (rewritten smaller): the whole of it,
                // which is less. Any other failure stays one: a fetch of the
                // whole of a blob that grew would hold more than was charged.
                let size = match self.store.head(&path).await {
                    Ok(meta) if meta.size <= listed => meta.size,
                    _ => return Err(read(e)),
                };
                if size == 0 {
                    return Ok(bytes::Bytes::new());
                }
                let whole = object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..size)),
                    ..Default::default()
                };
                self.store.get_opts(&path, whole).await.map_err(read)?
            }
        };
        let bytes = got.bytes().await.map_err(read)?;
        let at_most = usize::try_from(listed).unwrap_or(usize::MAX);
        Ok(bytes.slice(..bytes.len().min(at_most)))
    }

    /// Reads `range` of a blob's bytes (a blob read in pieces).
    pub async fn get_range(
        &self,
        rel: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, StorageError> {
        if let Some(direct) = &self.direct {
            if let Some(bytes) = direct.get_range(&self.path(rel), range.clone()).await {
                return Ok(bytes);
            }
        }
        self.store
            .get_range(&self.path(rel), range)
            .await
            .map_err(|source| self.read_error(rel, source))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_is_read_under_the_name_it_was_listed_with() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        for name in ["dev~1.json", "b%20c.json", "d#e.json"] {
            std::fs::write(dir.path().join("a").join(name), name).unwrap();
            let location = dir.path().to_str().unwrap();
            let storage = Storage::open(location, &StorageSettings::default()).unwrap();
            for s in [
                storage.clone(),
                Storage {
                    direct: None,
                    ..storage
                },
            ] {
                let got = s.get_at_most(&format!("a/{name}"), 1 << 20).await.unwrap();
                assert_eq!(&got[..], name.as_bytes());
                let (got, _) = s.get_dated(&format!("a/{name}")).await.unwrap();
                assert_eq!(&got[..], name.as_bytes());
                let got = s.get_range(&format!("a/{name}"), 1..3).await.unwrap();
                assert_eq!(&got[..], &name.as_bytes()[1..3]);
            }
        }
    }

    /// A ranged GET that fails on a blob grown past its listed size is an
    /// error naming the blob, not a fetch of the whole blob (which could be
    /// any size, past the read budget and `max_blob_bytes`).
    #[tokio::test]
    async fn a_failed_ranged_read_of_a_grown_blob_is_an_error_not_a_whole_fetch() {
        let store = Arc::new(test_store::TroubledStore {
            ranges_fail: true,
            ..Default::default()
        });
        let storage = Storage {
            store: store.clone(),
            root: StorePath::from("raw"),
            location: "memory://raw".into(),
            container: None,
            settings: StorageSettings::default(),
            direct: None,
        };
        let path = storage.path("grown.json");
        store.put(&path, vec![b'x'; 4096].into()).await.unwrap();
        let err = storage.get_at_most("grown.json", 10).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("grown.json") && text.contains("503"),
            "{text}"
        );
    }

    /// A blob that grew after it was listed is read as listed, through the
    /// direct reader and through object_store alike: a fetch holds no more
    /// than the read budget was charged for.
    #[tokio::test]
    async fn a_blob_is_read_as_listed_however_it_grew() {
        let dir = tempfile::tempdir().unwrap();
        let grown: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("b.json"), &grown).unwrap();
        let storage =
            Storage::open(dir.path().to_str().unwrap(), &StorageSettings::default()).unwrap();
        for s in [
            storage.clone(),
            Storage {
                direct: None,
                ..storage
            },
        ] {
            for listed in [0, 1, 4096, 5000, grown.len() as u64, 1 << 40] {
                let got = s.get_at_most("b.json", listed).await.unwrap();
                let want = &grown[..grown.len().min(listed as usize)];
                assert_eq!(
                    &got[..],
                    want,
                    "listed {listed}, direct {}",
                    s.direct.is_some()
                );
            }
        }
    }
}
