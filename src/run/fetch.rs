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
    let bytes = storage.get(&blob.path).await?;
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
            Some(bytes) if !bytes.is_empty() => {
                at += bytes.len() as u64;
                piece = bytes;
            }
            _ => break,
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
        Ok(Err(_)) => Err(Error::Internal(format!(
            "parsing blob `{path}` panicked (a bug: please report it with the blob)"
        ))),
        Err(_) => Err(Error::Internal(format!(
            "parsing blob `{path}` was cancelled"
        ))),
    }
}
