//! Blobs of a local folder read around the page cache (Linux `O_DIRECT`).
//!
//! Hand-written for speed, in place of object_store's local reads. A night
//! reads each blob once and never again, so the page cache gains nothing from
//! holding it, and on this machine filling and evicting it is most of what
//! reading costs: the plant day's 16 GB read cold took 13 to 35 s of CPU
//! (mostly the kernel's) read through the cache, and 4 s read direct into
//! reused buffers (BENCHMARKS.md, issue 18). The buffers come from a small
//! pool, so a piece does not take fresh pages (each fault and zeroing is paid
//! again on every 16 MiB piece otherwise).
//!
//! Only what succeeds whole is served from here: a file the folder's file
//! system cannot open direct (tmpfs, some network mounts), a read that fails or
//! comes up short of what was asked, and every other platform return `None`,
//! and the caller reads through object_store, whose errors and ranges are the
//! ones the rest of the job knows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltalake::logstore::object_store::{local::LocalFileSystem, path::Path as StorePath};

/// Offsets, lengths and buffer addresses of direct reads and writes are
/// multiples of this (the largest logical block size in use).
pub(super) const ALIGN: usize = 4096;

/// Buffers kept for reuse, at most (about two pieces per blob in flight, two blobs).
const POOL_BUFFERS: usize = 4;

/// Only buffers of these sizes are kept: not a small file's, nor a large blob's read whole.
const POOLED_BYTES: std::ops::RangeInclusive<usize> = (1 << 20)..=(32 << 20);

/// A local folder whose blobs are read direct.
#[derive(Debug, Clone)]
pub struct Direct {
    /// The folder as object_store sees it: a blob's file is the one it would open.
    local: Arc<LocalFileSystem>,
    pool: Buffers,
}

impl Direct {
    pub fn new(local: Arc<LocalFileSystem>) -> Direct {
        Direct {
            local,
            pool: Buffers::new(POOL_BUFFERS),
        }
    }

    /// The file object_store would open for `path`.
    fn file(&self, path: &StorePath) -> Option<PathBuf> {
        self.local.path_to_filesystem(path).ok()
    }

    /// The blob at `path`, at most its first `at_most` bytes, or `None` (see the module doc).
    pub async fn get(&self, path: &StorePath, at_most: u64) -> Option<bytes::Bytes> {
        let file = self.file(path)?;
        let pool = self.pool.clone();
        let span = Span::Head(at_most);
        finished(tokio::task::spawn_blocking(move || read(&file, span, &pool)).await)
    }

    /// `range` of the blob at `path`, or `None` (see the module doc).
    pub async fn get_range(
        &self,
        path: &StorePath,
        range: std::ops::Range<u64>,
    ) -> Option<bytes::Bytes> {
        if range.start >= range.end {
            // object_store's to answer: it calls an empty range invalid.
            return None;
        }
        let file = self.file(path)?;
        let pool = self.pool.clone();
        let span = Span::Range(range);
        finished(tokio::task::spawn_blocking(move || read(&file, span, &pool)).await)
    }
}

/// What a direct read takes of a file.
enum Span {
    /// Exactly these bytes.
    Range(std::ops::Range<u64>),
    /// The file from its start, at most this many bytes.
    Head(u64),
}

/// A read's bytes; a read that panicked (a bug) is logged and left to object_store.
fn finished(done: Result<Option<bytes::Bytes>, tokio::task::JoinError>) -> Option<bytes::Bytes> {
    done.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a direct read failed: reading through object_store");
        None
    })
}

/// Reads `span` of `file`, exactly, or gives `None`.
#[cfg(target_os = "linux")]
fn read(file: &Path, span: Span, pool: &Buffers) -> Option<bytes::Bytes> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        // Not blocking: a FIFO in the folder must not hang the run (it is not a file: `None`).
        .custom_flags(libc::O_DIRECT | libc::O_NONBLOCK)
        .open(file)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let range = match span {
        Span::Range(r) => r,
        Span::Head(at_most) => 0..meta.len().min(at_most),
    };
    if range.start > range.end {
        return None;
    }
    let start = range.start - range.start % ALIGN as u64;
    let skip = (range.start - start) as usize;
    let want = usize::try_from(range.end - range.start).ok()?;
    let span = (skip + want).div_ceil(ALIGN) * ALIGN;
    let mut buf = Pooled::take(pool, span + ALIGN);
    let at = buf.aligned_start();
    let mut got = 0;
    while got < skip + want {
        match f.read_at(&mut buf.vec[at + got..at + span], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        // A short read that is not block-aligned is the end of the file.
        if got % ALIGN != 0 {
            break;
        }
    }
    if got < skip + want {
        return None;
    }
    buf.range = at + skip..at + skip + want;
    Some(bytes::Bytes::from_owner(buf))
}

#[cfg(not(target_os = "linux"))]
fn read(_file: &Path, _span: Span, _pool: &Buffers) -> Option<bytes::Bytes> {
    None
}

/// Buffers for direct reads and writes, kept for reuse (a fresh buffer's pages
/// are faulted in and zeroed again each time), `keep` of them at most.
#[derive(Debug, Clone)]
pub(super) struct Buffers {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    keep: usize,
}

impl Buffers {
    pub(super) fn new(keep: usize) -> Buffers {
        Buffers {
            free: Arc::default(),
            keep,
        }
    }

    /// A buffer of at least `len` bytes: one kept that is large enough, or a new one.
    pub(super) fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut free| {
            let i = free.iter().position(|v| v.len() >= len)?;
            Some(free.swap_remove(i))
        });
        reused.unwrap_or_else(|| vec![0; len])
    }

    /// Keeps `buf` for reuse, unless `keep` are kept already.
    pub(super) fn give_back(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(buf);
            }
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }
}

/// A buffer from the pool, given back when the bytes read into it are dropped.
struct Pooled {
    vec: Vec<u8>,
    range: std::ops::Range<usize>,
    pool: Buffers,
}

impl Pooled {
    /// A buffer of at least `len` bytes: from the pool for sizes it keeps, else new.
    fn take(pool: &Buffers, len: usize) -> Pooled {
        let vec = if POOLED_BYTES.contains(&len) {
            pool.take(len)
        } else {
            vec![0; len]
        };
        Pooled {
            vec,
            range: 0..0,
            pool: pool.clone(),
        }
    }

    /// Where in the buffer an aligned read can start.
    fn aligned_start(&self) -> usize {
        self.vec.as_ptr().align_offset(ALIGN)
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.vec[self.range.clone()]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let vec = std::mem::take(&mut self.vec);
        if POOLED_BYTES.contains(&vec.len()) {
            self.pool.give_back(vec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes no two offsets of which repeat within a block: a misplaced offset shows.
    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    /// Whether this file system opens `file` for direct reads at all.
    fn opens_direct(file: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(file)
            .is_ok()
    }

    #[tokio::test]
    async fn reads_come_back_exactly_as_the_file_holds_them_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        // Over a MiB, so that buffers go back to the pool and are read into again.
        let n = (3 << 20) + 1234;
        let data = content(n);
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/blob.json"), &data).unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let direct = Direct::new(Arc::new(local));
        if !opens_direct(&dir.path().join("a/b/blob.json")) {
            // This file system cannot read direct (tmpfs): object_store reads instead.
            eprintln!("O_DIRECT not supported under {}", dir.path().display());
            return;
        }
        let blob = StorePath::from("a/b/blob.json");
        let whole = direct
            .get(&blob, u64::MAX)
            .await
            .expect("opened direct, read direct");
        assert_eq!(&whole[..], &data[..]);
        let ranges = [
            (0, ALIGN),
            (1, 2),
            (ALIGN - 1, ALIGN + 1),
            (5000, n),
            (n - 1, n),
        ];
        for (s, e) in ranges {
            let got = direct.get_range(&blob, s as u64..e as u64).await;
            assert_eq!(got.as_deref(), Some(&data[s..e]), "range {s}..{e}");
        }
        // Empty ranges and ranges beyond the end are object_store's to answer (it names the error).
        for (s, e) in [(7, 7), (n, n), (0, n + 1), (n + 1, n + 9)] {
            let got = direct.get_range(&blob, s as u64..e as u64).await;
            assert!(got.is_none(), "{s}..{e}");
        }
        assert!(direct
            .get(&StorePath::from("a/b/missing.json"), u64::MAX)
            .await
            .is_none());
        assert!(direct
            .get(&StorePath::from("a/../b/blob.json"), u64::MAX)
            .await
            .is_none());
        // A FIFO where a blob was listed: not a file, and no wait for a writer.
        let fifo = dir.path().join("a/b/pipe.json");
        let fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let pipe = StorePath::from("a/b/pipe.json");
        assert!(direct.get(&pipe, u64::MAX).await.is_none());
        // Many reads through few buffers: each one's bytes stay its own while held.
        let part = |i: usize| i * 1000..i * 1000 + (3 << 19);
        for round in 0..3 {
            let reads = (0..8).map(|i| {
                let r = part(i + round);
                direct.get_range(&blob, r.start as u64..r.end as u64)
            });
            let held: Vec<_> = futures::future::join_all(reads).await;
            for (i, got) in held.iter().enumerate() {
                assert_eq!(
                    got.as_deref(),
                    Some(&data[part(i + round)]),
                    "round {round}"
                );
            }
            drop(held);
            let pooled = direct.pool.kept();
            assert!(
                (1..=POOL_BUFFERS).contains(&pooled),
                "{pooled} buffers kept"
            );
        }
    }
}
