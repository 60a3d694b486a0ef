//! One blob fetched and decoded: whole, or in pieces as it is fetched.
//!
//! Decoding runs on rayon's threads, never on tokio's, and a panic there (a bug)
//! becomes an error naming the blob instead of an abort with no report. A large
//! blob of plain JSON lines is fetched [`PIECE_BYTES`] at a time, each piece
//! decoded while the next is fetched (see [`normalize::pieces`] for why); any
//! other blob is fetched whole.

use std::sync::Arc;

use crate::error::Error;
use crate::stages::normalize::pieces::{Pieces, PIECE_BYTES};
use crate::stages::normalize::{self, BlobOutcome, Rules};
use crate::stages::source::Blob;
use crate::storage::Storage;

/// Reads blob `idx` of the listing into its rows and rejects.
pub async fn read_blob(
    storage: &Storage,
    idx: usize,
    blob: &Blob,
    rules: Arc<Rules>,
) -> Result<BlobOutcome, Error> {
    if blob.size > 2 * PIECE_BYTES {
        let first = storage.get_range(&blob.path, 0..PIECE_BYTES).await?;
        if let Some(pieces) = Pieces::start(idx as u32, blob.clone(), rules.clone(), &first) {
            return read_pieces(storage, blob, pieces, first).await;
        }
    }
    let bytes = storage.get_at_most(&blob.path, blob.size).await?;
    let owned = blob.clone();
    on_rayon(&blob.path, move || {
        normalize::process_blob(idx as u32, &owned, &bytes, &rules)
    })
    .await
}

/// Decodes each piece while the next is fetched.
async fn read_pieces(
    storage: &Storage,
    blob: &Blob,
    mut pieces: Pieces,
    first: bytes::Bytes,
) -> Result<BlobOutcome, Error> {
    let mut at = first.len() as u64;
    let mut piece = first;
    loop {
        let next = (at < blob.size).then(|| at..(at + PIECE_BYTES).min(blob.size));
        let fetch = async {
            match next {
                Some(range) => storage.get_range(&blob.path, range).await.map(Some),
                None => Ok(None),
            }
        };
        let decode = on_rayon(&blob.path, move || {
            pieces.feed(&piece);
            pieces
        });
        let (fetched, decoded) = tokio::join!(fetch, decode);
        pieces = decoded?;
        match fetched? {
            Some(bytes) if bytes.is_empty() => {
                // Never a silent end short of the listed size: the rest would be lost.
                let why = format!("the blob ended at byte {at} of the {} listed", blob.size);
                let source = deltalake::logstore::object_store::Error::Generic {
                    store: "coldpath",
                    source: why.into(),
                };
                return Err(storage.read_error(&blob.path, source).into());
            }
            Some(bytes) => {
                at += bytes.len() as u64;
                piece = bytes;
            }
            None => break,
        }
    }
    on_rayon(&blob.path, move || pieces.finish()).await
}

/// Runs `f` on rayon's pool; a panic in it fails the run with the blob's name.
async fn on_rayon<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(payload)) => Err(Error::Internal(format!(
            "parsing blob `{path}` panicked: {} (a bug: please report it with the blob)",
            crate::stages::panic_message(payload.as_ref())
        ))),
        Err(_) => Err(Error::Internal(format!(
            "parsing blob `{path}` was cancelled"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::TelemetrySchema;
    use crate::stages::source::decode::{CsvDialect, Declared, Limits};
    use crate::stages::source::layout::Partition;
    use crate::stages::source::Window;
    use crate::storage::retry::StorageSettings;

    fn rules() -> Arc<Rules> {
        Arc::new(Rules {
            schema: TelemetrySchema::embedded().unwrap(),
            day_start_us: 1_710_115_200_000_000, // 2024-03-11T00:00:00Z
            late_arrival_us: 2 * 3_600_000_000,
            clock_skew_us: 5 * 60_000_000,
            format: Declared::Auto,
            csv: CsvDialect::default(),
            limits: Limits::default(),
            drift: None,
        })
    }

    /// A blob of `lines` readings in hour 10 of 2024-03-11, listed as `size` bytes.
    fn blob(dir: &std::path::Path, lines: usize) -> (Blob, u64) {
        let path = "telemetry/2024/03/11/10/big.json";
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(&format!(
                "{{\"deviceId\":\"d{}\",\"timestamp\":\"2024-03-11T10:{:02}:{:02}Z\",\"temperature\":{}.5,\"messageId\":\"m{i:09}\"}}\n",
                i % 7,
                (i / 60) % 60,
                i % 60,
                i % 90
            ));
        }
        std::fs::create_dir_all(dir.join("telemetry/2024/03/11/10")).unwrap();
        std::fs::write(dir.join(path), &text).unwrap();
        let blob = Blob {
            path: path.to_string(),
            size: text.len() as u64,
            partition: Partition {
                start: chrono::DateTime::from_timestamp(1_710_151_200, 0).unwrap(),
                width: chrono::Duration::hours(1),
            },
            window: Window::Own,
            last_modified: chrono::Utc::now(),
            etag: None,
        };
        (blob, text.len() as u64)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_large_blob_is_read_in_pieces_and_one_that_shrank_since_listing_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Storage::open(dir.path().to_str().unwrap(), &StorageSettings::default()).unwrap();
        // Over two pieces (33 MiB and more): read in pieces, every line a row.
        let lines = 400_000;
        let (mut listed, size) = blob(dir.path(), lines);
        assert!(size > 2 * PIECE_BYTES, "{size}");
        let out = read_blob(&storage, 0, &listed, rules()).await.unwrap();
        let rows: usize = out.hours.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(
            (rows, out.own_records, out.rejects.len()),
            (lines, lines as u64, 0)
        );
        // Listed larger than it now is (rewritten shorter since): an error naming
        // the blob, not a read that stops early and loses what the listing promised.
        listed.size = size + PIECE_BYTES;
        let err = read_blob(&storage, 0, &listed, rules()).await.unwrap_err();
        assert!(err.to_string().contains(&listed.path), "{err}");
        assert!(!err.is_config(), "{err}");
    }
}
