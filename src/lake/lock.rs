//! The run lock: one writer per table and date, so that a retry which starts while a stale attempt still runs waits or fails clearly instead of racing two replace-where commits on one partition (delta-rs does not see that conflict).
//!
//! The lock of `table` for `date` is `<lake>/_coldpath/locks/<table>/<date>.lock`.
//!
//! * On object storage it is a small JSON object, taken with a conditional put
//!   (create-if-absent), renewed every third of its `ttl` with
//!   update-if-the-etag-matches, and released by rewriting it as released (also
//!   conditional: a release never clobbers someone else's lock). It carries its
//!   expiry, so a crashed holder blocks others for at most `ttl`; an expired or
//!   released lock is taken over with update-if-the-etag-matches, so of two
//!   runs racing for it one wins. Azure answers a lost create with 412,
//!   Azurite with 409: both read as "held".
//! * On a local lake the same file is held with an OS file lock, which the OS
//!   drops when the holder dies; the file records the holder for the message.
//!
//! Lock I/O runs on a small runtime of its own, so renewals keep their
//! schedule while the run's threads are busy in Polars.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::logstore::object_store::{
    self, path::Path as StorePath, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::storage::fault::{describe, Fault};
use crate::storage::Storage;

/// How often a waiting run looks at the lock again.
const POLL: Duration = Duration::from_secs(2);
/// How long a stop waits for a lock request already sent, to give the lock back if it was taken.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// SIGTERM or SIGINT came while waiting; the locks already taken were released.
    #[error("stopped by signal {0} while waiting for the run lock; the locks taken were released")]
    Cancelled(i32),
    #[error(
        "table `{table}` for {date} is locked by {holder}; gave up after waiting {waited_s}s \
         (lock.wait = {wait_s}s). That run may still be writing the date: let it end (or its \
         lock expire), then run the date again"
    )]
    Held {
        table: &'static str,
        date: NaiveDate,
        holder: String,
        waited_s: u64,
        wait_s: u64,
    },
    #[error("run lock `{path}` in {location}: {}", describe(*.fault, .container.as_deref(), .source))]
    Store {
        path: String,
        location: String,
        container: Option<String>,
        fault: Fault,
        source: Box<object_store::Error>,
    },
    #[error("run lock {}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lost the run lock on table `{table}` for {date}: {why}; `{table}` was not committed")]
    Lost {
        table: &'static str,
        date: NaiveDate,
        why: String,
    },
    #[error("run lock: {0}")]
    Runtime(String),
}

impl LockError {
    pub fn is_config(&self) -> bool {
        matches!(self, LockError::Store { fault, .. } if fault.is_config())
    }
}

/// Who holds a lock: what the lock object says, and what a waiting run's error shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub run_id: String,
    pub job: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub released: bool,
    /// The Azure Batch job, task and node of the holder, when Batch ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::version::BatchIds>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} of job `{}` on {} (pid {}) since {}",
            self.run_id,
            self.job,
            self.host,
            self.pid,
            self.acquired_at.to_rfc3339()
        )?;
        if let Some(batch) = &self.batch {
            write!(f, " ({batch})")?;
        }
        if self.expires_at > self.acquired_at {
            write!(f, ", lock valid until {}", self.expires_at.to_rfc3339())?;
        }
        Ok(())
    }
}

/// The run asking for locks.
#[derive(Debug, Clone)]
pub struct Owner {
    pub run_id: String,
    pub job: String,
}

impl Owner {
    fn holder(&self, now: DateTime<Utc>, ttl: Duration) -> Holder {
        let batch = crate::version::BatchIds::from_env();
        Holder {
            run_id: self.run_id.clone(),
            job: self.job.clone(),
            // In a Batch container task HOSTNAME is the container's id; the node's id says where.
            host: batch
                .as_ref()
                .and_then(|b| b.node_id.clone())
                .unwrap_or_else(host_name),
            pid: std::process::id(),
            acquired_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            released: false,
            batch,
        }
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Where the locks of a lake live.
#[derive(Debug, Clone)]
pub enum Site {
    /// A local lake: `<dir>/_coldpath/locks`, held with OS file locks.
    Local(PathBuf),
    /// A lake on object storage: lock objects under `_coldpath/locks`.
    Store(Storage),
}

pub use crate::config::formats::LockSettings;

const LOCKS: &str = "_coldpath/locks";

fn lock_name(table: &str, date: NaiveDate) -> String {
    format!("{LOCKS}/{table}/{date}.lock")
}

impl Site {
    /// The lock site of a lake given by URL (`file://` or an object store URL).
    pub fn for_lake(
        url: &url::Url,
        settings: &crate::storage::retry::StorageSettings,
    ) -> Result<Site, crate::storage::StorageError> {
        if url.scheme() == "file" {
            if let Ok(dir) = url.to_file_path() {
                return Ok(Site::Local(dir));
            }
        }
        Ok(Site::Store(Storage::open(url.as_str(), settings)?))
    }
}

/// Locks held by one run; release them with [`LockSet::release`]. Dropped
/// unreleased (a panic), renewals stop and object locks expire after `ttl`.
pub struct LockSet {
    runtime: Option<tokio::runtime::Runtime>,
    locks: Vec<Held>,
    /// The store locks taken so far, renewed from the first one on (while the
    /// set waits for the next, too: the wait may outlast a lock's time to live).
    renewed: Arc<std::sync::Mutex<Vec<Arc<StoreLock>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

enum Held {
    File {
        table: &'static str,
        // Held open: the OS lock lives as long as this handle.
        _file: std::fs::File,
    },
    Store(Arc<StoreLock>),
}

struct StoreLock {
    table: &'static str,
    date: NaiveDate,
    storage: Storage,
    path: StorePath,
    ttl: Duration,
    state: tokio::sync::Mutex<StoreState>,
}

struct StoreState {
    version: UpdateVersion,
    holder: Holder,
    /// Why the lock is no longer ours (taken over, expired unrenewed, released).
    lost: Option<String>,
}

/// Renews every lock of `stores` side by side, each given at most `within`
/// (a third of the ttl, the time to the next round): one slow store request,
/// which object_store may retry for `storage.retry_timeout`, longer than a
/// ttl, must not hold the other locks' renewals past their expiry. A renewal
/// cut off may still land; the next one sees it as its own ([`still_ours`]).
async fn renew_all(stores: &[Arc<StoreLock>], within: Duration) {
    let rounds = stores.iter().map(|lock| async move {
        if tokio::time::timeout(within, lock.renew()).await.is_err() {
            warn!(
                table = lock.table,
                date = %lock.date,
                "a renewal of the run lock took longer than a third of its ttl; it is tried again at the next"
            );
        }
    });
    futures::future::join_all(rounds).await;
}

/// A storage error on the lock object at `path`.
fn store_error(storage: &Storage, path: &StorePath, source: object_store::Error) -> LockError {
    LockError::Store {
        // Relative to the lake, which the message names beside it: the store
        // path starts with the lake's own folder, and that would show it twice.
        path: storage.relative(path),
        location: storage.location.clone(),
        container: storage.container.clone(),
        fault: Fault::of(&source),
        source: Box::new(source),
    }
}

impl StoreLock {
    /// The lock of `table` and `date` at `path`, held at `version` by `holder`.
    fn held(
        table: &'static str,
        date: NaiveDate,
        storage: Storage,
        path: StorePath,
        ttl: Duration,
        (version, holder): (UpdateVersion, Holder),
    ) -> StoreLock {
        let state = StoreState {
            version,
            holder,
            lost: None,
        };
        StoreLock {
            table,
            date,
            storage,
            path,
            ttl,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// Pushes the expiry out by `ttl`, only if the lock is still ours.
    async fn renew(&self) {
        let mut st = self.state.lock().await;
        if st.lost.is_some() {
            return;
        }
        let now = Utc::now();
        let mut holder = st.holder.clone();
        holder.expires_at = now + chrono::Duration::from_std(self.ttl).unwrap_or_default();
        match put(&self.storage, &self.path, &holder, update(&st.version)).await {
            Ok(version) => {
                st.version = version;
                st.holder = holder;
            }
            Err(e) if is_conflict(&e) => match still_ours(&self.storage, &self.path, &holder)
                .await
                .ok()
                .flatten()
            {
                // A renewal of ours landed, its answer lost, and object_store sent it again.
                Some((version, current)) => {
                    st.version = version;
                    st.holder = current;
                }
                None => {
                    warn!(table = self.table, date = %self.date, "run lock taken over by another run");
                    st.lost = Some("another run took it over".into());
                }
            },
            Err(object_store::Error::NotFound { .. }) => {
                warn!(table = self.table, date = %self.date, "run lock taken over by another run");
                st.lost = Some("another run took it over".into());
            }
            Err(e) => {
                let message = crate::storage::fault::chain(&e);
                warn!(table = self.table, date = %self.date, error = %message, "could not renew the run lock");
                // Now, not when the renewal started: object_store's retries take time.
                if Utc::now() >= st.holder.expires_at {
                    st.lost = Some(format!(
                        "it expired at {} before a renewal succeeded ({message})",
                        st.holder.expires_at.to_rfc3339()
                    ));
                }
            }
        }
    }

    /// Whether the lock is still ours, asked of the store itself. The state is
    /// not held across the request, so renewals go on while it is retried; the
    /// time left is judged once it has answered.
    async fn check(&self) -> Result<(), LockError> {
        let lost = |why: String| LockError::Lost {
            table: self.table,
            date: self.date,
            why,
        };
        let (before, mine) = {
            let st = self.state.lock().await;
            if let Some(why) = &st.lost {
                return Err(lost(why.clone()));
            }
            (st.version.e_tag.clone(), st.holder.clone())
        };
        let seen = match self.storage.store.head(&self.path).await {
            Ok(meta) => meta.e_tag,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(lost("its lock object was deleted".into()))
            }
            Err(e) => return Err(store_error(&self.storage, &self.path, e)),
        };
        let known = {
            let st = self.state.lock().await;
            seen.is_some() && (seen == before || seen == st.version.e_tag)
        };
        // Another version: a renewal of ours that landed while the request was
        // answered (the store read the object between two renewals), or one cut
        // off that landed unanswered; or another run's. The object says which.
        if !known {
            let ours = still_ours(&self.storage, &self.path, &mine).await;
            // A store that fails to answer says nothing of who holds the lock.
            let ours = ours.map_err(|e| store_error(&self.storage, &self.path, e))?;
            if ours.is_none() {
                return Err(lost("another run holds it now".into()));
            }
        }
        let st = self.state.lock().await;
        if let Some(why) = &st.lost {
            return Err(lost(why.clone()));
        }
        let left = st.holder.expires_at - Utc::now();
        if left <= chrono::Duration::zero() {
            return Err(lost(format!(
                "it expired at {} (renewals failed)",
                st.holder.expires_at.to_rfc3339()
            )));
        }
        // Renewed every ttl / 3, a lock has at least two thirds of its ttl left,
        // or a third after one renewal missed. Less: renewals fell behind (a
        // throttled store), and a write started now could outlast the lock while
        // another run takes it over, each committing on its own snapshot.
        if left < chrono::Duration::from_std(self.ttl / 3).unwrap_or_default() {
            return Err(lost(format!(
                "its renewals fell behind: it expires at {}, too soon to start a commit under it",
                st.holder.expires_at.to_rfc3339()
            )));
        }
        Ok(())
    }

    /// Marks the lock released, only if it is still ours.
    async fn release(&self) {
        let mut st = self.state.lock().await;
        if st.lost.is_some() {
            return;
        }
        let mut holder = st.holder.clone();
        holder.released = true;
        holder.expires_at = Utc::now();
        if let Err(e) = put(&self.storage, &self.path, &holder, update(&st.version)).await {
            warn!(
                table = self.table,
                date = %self.date,
                error = %crate::storage::fault::chain(&e),
                "could not release the run lock; it expires by itself at {}",
                st.holder.expires_at.to_rfc3339()
            );
        }
        st.lost = Some("released".into());
    }
}

fn update(version: &UpdateVersion) -> PutMode {
    PutMode::Update(version.clone())
}

/// A lost race: Azure answers a conditional put with 412, Azurite a lost create with 409.
fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

async fn put(
    storage: &Storage,
    path: &StorePath,
    holder: &Holder,
    mode: PutMode,
) -> Result<UpdateVersion, object_store::Error> {
    let body = serde_json::to_vec_pretty(holder).unwrap_or_default();
    let opts = PutOptions {
        mode,
        ..PutOptions::default()
    };
    let r = storage
        .store
        .put_opts(path, PutPayload::from(body), opts)
        .await?;
    Ok(UpdateVersion {
        e_tag: r.e_tag,
        version: r.version,
    })
}

/// The lock object's version and holder when it still holds `mine`'s run
/// (same run and time taken, not released): a put of ours landed though its
/// answer was lost (a timeout, a 500), and object_store sent it again, which
/// the store then refused as a lost race (412 or 409). Not a lost race, then.
/// `Ok(None)`: another run's, released, unreadable or gone; `Err`: the store
/// did not answer, which says nothing of who holds it (each caller decides).
async fn still_ours(
    storage: &Storage,
    path: &StorePath,
    mine: &Holder,
) -> Result<Option<(UpdateVersion, Holder)>, object_store::Error> {
    let got = match storage.store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = got.meta.clone();
    let bytes = got.bytes().await?;
    let Ok(current) = serde_json::from_slice::<Holder>(&bytes) else {
        return Ok(None);
    };
    Ok(is_ours(&current, mine).then(|| {
        let version = UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        };
        (version, current)
    }))
}

/// Whether the lock object's `current` holder is `mine`: the same run and time
/// taken, not released.
fn is_ours(current: &Holder, mine: &Holder) -> bool {
    current.run_id == mine.run_id && current.acquired_at == mine.acquired_at && !current.released
}

/// One attempt at a lock.
enum Attempt<T> {
    Acquired(T),
    /// Held by someone else (what they wrote, if it could be read).
    Busy(String),
    /// The lock changed under us (a lost race): look again at once.
    Raced,
}

async fn try_store(
    storage: &Storage,
    path: &StorePath,
    owner: &Owner,
    ttl: Duration,
) -> Result<Attempt<(UpdateVersion, Holder)>, object_store::Error> {
    let now = Utc::now();
    try_holding(storage, path, owner.holder(now, ttl), ttl, now).await
}

/// [`try_store`] with the holder record `mine`, made at `now`.
async fn try_holding(
    storage: &Storage,
    path: &StorePath,
    mine: Holder,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Attempt<(UpdateVersion, Holder)>, object_store::Error> {
    match put(storage, path, &mine, PutMode::Create).await {
        Ok(v) => return Ok(Attempt::Acquired((v, mine))),
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(e),
    }
    let got = match storage.store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(Attempt::Raced),
        Err(e) => return Err(e),
    };
    let meta = got.meta.clone();
    let bytes = got.bytes().await?;
    let current: Option<Holder> = serde_json::from_slice(&bytes).ok();
    let version = UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    };
    if let Some(held) = current.clone().filter(|h| is_ours(h, &mine)) {
        // Our create landed though its answer was lost, and was sent again.
        return Ok(Attempt::Acquired((version, held)));
    }
    let free = match &current {
        Some(h) => h.released || h.expires_at <= now,
        // Unreadable (not written by coldpath?): judged by its age.
        None => meta.last_modified + chrono::Duration::from_std(ttl).unwrap_or_default() <= now,
    };
    if !free {
        let who = current.map(|h| h.to_string()).unwrap_or_else(|| {
            format!(
                "an unreadable lock object written at {}",
                meta.last_modified
            )
        });
        return Ok(Attempt::Busy(who));
    }
    match put(storage, path, &mine, PutMode::Update(version)).await {
        Ok(v) => {
            if let Some(h) = current.filter(|h| !h.released) {
                warn!(previous = %h, "took over an expired run lock (its run stopped renewing it)");
            }
            Ok(Attempt::Acquired((v, mine)))
        }
        Err(e) if is_conflict(&e) => Ok(
            match still_ours(storage, path, &mine).await.ok().flatten() {
                Some(held) => Attempt::Acquired(held),
                None => Attempt::Raced,
            },
        ),
        Err(object_store::Error::NotFound { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(e),
    }
}

fn try_file(
    path: &Path,
    owner: &Owner,
    ttl: Duration,
) -> Result<Attempt<std::fs::File>, LockError> {
    let io = |source: std::io::Error| LockError::File {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::{Seek, Write};
            // The OS lock is what counts; the record is for the next run's message.
            let mut holder = owner.holder(Utc::now(), ttl);
            holder.expires_at = holder.acquired_at;
            file.set_len(0).map_err(io)?;
            file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
            file.write_all(&serde_json::to_vec_pretty(&holder).unwrap_or_default())
                .map_err(io)?;
            file.flush().map_err(io)?;
            Ok(Attempt::Acquired(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let who = std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
                .map(|h| h.to_string())
                .unwrap_or_else(|| "another process".into());
            Ok(Attempt::Busy(who))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Takes the locks of `tables` for `date`, in the order given (callers use
/// one order, so two runs never hold one each of two locks), waiting up to
/// `settings.wait` in all.
pub async fn acquire(
    site: &Site,
    tables: &[&'static str],
    date: NaiveDate,
    owner: &Owner,
    settings: &LockSettings,
) -> Result<LockSet, LockError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coldpath-lock")
        .enable_all()
        .build()
        .map_err(|e| LockError::Runtime(format!("cannot start its runtime: {e}")))?;
    // The runtime lives in the set from the start: dropped unfinished (a
    // signal), the set shuts it down in the background rather than panicking.
    let mut set = LockSet {
        runtime: Some(runtime),
        locks: Vec::new(),
        renewed: Arc::default(),
        stop: None,
    };
    if matches!(site, Site::Store(_)) {
        set.start_renewals(settings)?;
    }
    if let Err(e) = set.take_each(site, tables, date, owner, settings).await {
        set.release().await;
        return Err(e);
    }
    Ok(set)
}

async fn acquire_one(
    site: Site,
    table: &'static str,
    date: NaiveDate,
    owner: Owner,
    settings: LockSettings,
    started: Instant,
    deadline: Instant,
) -> Result<Held, LockError> {
    let name = lock_name(table, date);
    let mut announced = false;
    loop {
        let attempt = match &site {
            Site::Local(dir) => try_file(&dir.join(&name), &owner, settings.ttl)?
                .map(|file| Held::File { table, _file: file }),
            Site::Store(storage) => {
                let path = storage.path(&name);
                let attempt = try_store(storage, &path, &owner, settings.ttl)
                    .await
                    .map_err(|source| store_error(storage, &path, source))?;
                attempt.map(|held| {
                    let lock =
                        StoreLock::held(table, date, storage.clone(), path, settings.ttl, held);
                    Held::Store(Arc::new(lock))
                })
            }
        };
        match attempt {
            Attempt::Acquired(held) => {
                if announced {
                    info!(table, date = %date, waited_ms = started.elapsed().as_millis() as u64, "run lock acquired after waiting");
                }
                return Ok(held);
            }
            Attempt::Raced => tokio::time::sleep(Duration::from_millis(50)).await,
            Attempt::Busy(holder) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(LockError::Held {
                        table,
                        date,
                        holder,
                        waited_s: started.elapsed().as_secs(),
                        wait_s: settings.wait.as_secs(),
                    });
                }
                if !announced {
                    info!(table, date = %date, holder = %holder, "waiting for another run's lock");
                    announced = true;
                }
                // A stop ends the wait between two tries, never during one: a
                // lock whose request was sent is known, and given back.
                tokio::select! {
                    _ = tokio::time::sleep(POLL.min(deadline - now)) => {}
                    signal = crate::cancel::cancelled() => return Err(LockError::Cancelled(signal)),
                }
            }
        }
    }
}

impl<T> Attempt<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Acquired(t) => Attempt::Acquired(f(t)),
            Attempt::Busy(h) => Attempt::Busy(h),
            Attempt::Raced => Attempt::Raced,
        }
    }
}

impl LockSet {
    /// Takes the lock of each of `tables` in turn, within `settings.wait` in all;
    /// a stop request while waiting ends it (the caller gives back what was taken).
    async fn take_each(
        &mut self,
        site: &Site,
        tables: &[&'static str],
        date: NaiveDate,
        owner: &Owner,
        settings: &LockSettings,
    ) -> Result<(), LockError> {
        let started = Instant::now();
        let deadline = started + settings.wait;
        for &table in tables {
            let task = acquire_one(
                site.clone(),
                table,
                date,
                owner.clone(),
                settings.clone(),
                started,
                deadline,
            );
            let Some(mut handle) = self.runtime.as_ref().map(|rt| rt.spawn(task)) else {
                return Err(LockError::Runtime("its runtime is gone".into()));
            };
            let joined = tokio::select! {
                joined = &mut handle => joined,
                signal = crate::cancel::cancelled() => {
                    // The wait ends between tries; a request under way may yet take
                    // the lock: waited for a little, so the caller gives it back.
                    if let Ok(Ok(Ok(held))) = tokio::time::timeout(STOP_GRACE, &mut handle).await {
                        self.hold(held);
                    }
                    handle.abort();
                    return Err(LockError::Cancelled(signal));
                }
            };
            let held = joined
                .map_err(|e| LockError::Runtime(e.to_string()))
                .and_then(|r| r)?;
            self.hold(held);
        }
        Ok(())
    }

    /// Adds a lock taken to the set, and to the ones renewed.
    fn hold(&mut self, held: Held) {
        if let (Held::Store(lock), Ok(mut renewed)) = (&held, self.renewed.lock()) {
            renewed.push(lock.clone());
        }
        self.locks.push(held);
    }

    /// Renews the store locks taken ([`LockSet::renewed`]) every third of their
    /// time to live, until the set is released (file locks need no renewal: the
    /// OS holds them).
    fn start_renewals(&mut self, settings: &LockSettings) -> Result<(), LockError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let every = settings.ttl / 3;
        let Some(rt) = self.runtime.as_ref() else {
            return Err(LockError::Runtime("its runtime is gone".into()));
        };
        let renewed = self.renewed.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {
                        let stores = renewed.lock().map(|s| s.clone()).unwrap_or_default();
                        renew_all(&stores, every).await;
                    }
                }
            }
        });
        self.stop = Some(tx);
        Ok(())
    }

    /// Fails unless the lock of `table` is still this run's: called right before its commit.
    pub async fn check(&self, table: &str) -> Result<(), LockError> {
        for held in &self.locks {
            match held {
                Held::Store(lock) if lock.table == table => {
                    let lock = lock.clone();
                    return self
                        .run(async move { lock.check().await })
                        .await
                        .and_then(|r| r);
                }
                Held::File { table: t, .. } if *t == table => return Ok(()),
                _ => {}
            }
        }
        Err(LockError::Runtime(format!(
            "no lock was taken for table `{table}` (a bug)"
        )))
    }

    /// Releases every lock, unless a write this process dropped still runs
    /// ([`super::writers_running`]: the clean-up gave up waiting for it): then the
    /// locks are left to expire after `lock.ttl`, so that no run of the date
    /// starts while that write may still commit.
    pub async fn release_unless_writing(self) {
        if super::writers_running() {
            warn!("a write of this run is still running: its locks are left to expire (lock.ttl) rather than released");
            return;
        }
        self.release().await;
    }

    /// Releases every lock (a failure to release is a warning: the lock expires).
    pub async fn release(mut self) {
        self.stop.take();
        let stores: Vec<Arc<StoreLock>> = self
            .locks
            .drain(..)
            .filter_map(|h| match h {
                Held::Store(s) => Some(s),
                Held::File { .. } => None,
            })
            .collect();
        if !stores.is_empty() {
            let _ = self
                .run(async move {
                    for lock in stores {
                        lock.release().await;
                    }
                })
                .await;
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, LockError> {
        let Some(rt) = &self.runtime else {
            return Err(LockError::Runtime("its runtime is gone".into()));
        };
        rt.spawn(f)
            .await
            .map_err(|e| LockError::Runtime(e.to_string()))
    }
}

impl Drop for LockSet {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime blocks, which an async caller must not do.
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::formats::MIN_LOCK_TTL;
    use deltalake::logstore::object_store::memory::InMemory;

    fn memory_site() -> (Site, Storage) {
        site_on(Arc::new(InMemory::new()))
    }

    fn site_on(store: Arc<dyn ObjectStore>) -> (Site, Storage) {
        let storage = Storage {
            store,
            root: StorePath::from("lake"),
            location: "memory://lake".into(),
            container: None,
            settings: crate::storage::retry::StorageSettings::default(),
            direct: None,
        };
        (Site::Store(storage.clone()), storage)
    }

    fn owner(run: &str) -> Owner {
        Owner {
            run_id: run.into(),
            job: "t".into(),
        }
    }

    fn settings(wait_ms: u64) -> LockSettings {
        LockSettings {
            wait: Duration::from_millis(wait_ms),
            ttl: Duration::from_secs(60),
        }
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()
    }

    async fn read_holder(storage: &Storage, table: &str) -> Holder {
        let path = storage.path(&lock_name(table, date()));
        let bytes = storage
            .store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_holder_under_batch_names_its_job_task_and_node() {
        let now = Utc::now();
        let mut holder = owner("run-9").holder(now, Duration::from_secs(60));
        holder.host = "tvmps_0001".into();
        holder.batch = Some(crate::version::BatchIds {
            job_id: Some("backfill-1".into()),
            task_id: Some("silver-2024-03-11".into()),
            node_id: Some("tvmps_0001".into()),
        });
        let text = holder.to_string();
        assert!(text.contains("run run-9"), "{text}");
        assert!(
            text.contains("(Batch job backfill-1 task silver-2024-03-11 on node tvmps_0001)"),
            "{text}"
        );
        // A record written before the field existed still reads.
        let mut old = serde_json::to_value(&holder).unwrap();
        old.as_object_mut().unwrap().remove("batch");
        let back: Holder = serde_json::from_value(old).unwrap();
        assert_eq!(back.batch, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_held_lock_makes_the_second_run_wait_then_fail_naming_the_holder() {
        let (site, _) = memory_site();
        let first = acquire(&site, &["telemetry"], date(), &owner("run-a"), &settings(0))
            .await
            .unwrap();
        let err = acquire(
            &site,
            &["telemetry"],
            date(),
            &owner("run-b"),
            &settings(300),
        )
        .await
        .err()
        .expect("the lock is held");
        let message = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{message}");
        assert!(message.contains("run-a"), "{message}");
        assert!(message.contains("telemetry"), "{message}");
        first.release().await;
        let second = acquire(&site, &["telemetry"], date(), &owner("run-b"), &settings(0))
            .await
            .expect("a released lock is free");
        second.check("telemetry").await.unwrap();
        second.release().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn locks_of_other_dates_and_tables_are_independent() {
        let (site, _) = memory_site();
        let a = acquire(&site, &["telemetry"], date(), &owner("a"), &settings(0))
            .await
            .unwrap();
        let other_date = date().succ_opt().unwrap();
        let b = acquire(&site, &["telemetry"], other_date, &owner("b"), &settings(0))
            .await
            .unwrap();
        let c = acquire(&site, &["rejects"], date(), &owner("c"), &settings(0))
            .await
            .unwrap();
        // Each still holds its own: no acquire took another's lock.
        a.check("telemetry").await.unwrap();
        b.check("telemetry").await.unwrap();
        c.check("rejects").await.unwrap();
        for set in [a, b, c] {
            set.release().await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_expired_lock_is_taken_over_and_its_old_holder_sees_it_lost() {
        let (site, storage) = memory_site();
        let stale = acquire(&site, &["telemetry"], date(), &owner("stale"), &settings(0))
            .await
            .unwrap();
        // The stale run stops renewing (as if frozen): make its lock look expired.
        let path = storage.path(&lock_name("telemetry", date()));
        let mut expired = read_holder(&storage, "telemetry").await;
        expired.expires_at = Utc::now() - chrono::Duration::seconds(1);
        let meta = storage.store.head(&path).await.unwrap();
        put(
            &storage,
            &path,
            &expired,
            PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            }),
        )
        .await
        .unwrap();
        let fresh = acquire(&site, &["telemetry"], date(), &owner("fresh"), &settings(0))
            .await
            .expect("an expired lock is free");
        assert_eq!(read_holder(&storage, "telemetry").await.run_id, "fresh");
        let err = stale.check("telemetry").await.unwrap_err();
        assert!(matches!(err, LockError::Lost { .. }), "{err}");
        // The stale run's release must not free the new holder's lock.
        stale.release().await;
        assert_eq!(read_holder(&storage, "telemetry").await.run_id, "fresh");
        assert!(!read_holder(&storage, "telemetry").await.released);
        fresh.check("telemetry").await.unwrap();
        fresh.release().await;
        assert!(read_holder(&storage, "telemetry").await.released);
    }

    /// A put of ours that landed though its answer was lost is sent again by
    /// object_store and refused as a lost race: the lock is still ours, taken
    /// or renewed, not another run's. One that another run holds is not.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_put_of_ours_that_landed_unanswered_keeps_the_lock() {
        let (_, storage) = memory_site();
        let path = storage.path(&lock_name("telemetry", date()));
        let ttl = Duration::from_secs(60);
        let now = Utc::now();
        // Taking: our create landed; the resent one conflicts with it.
        let mine = owner("r").holder(now, ttl);
        put(&storage, &path, &mine, PutMode::Create).await.unwrap();
        let taken = try_holding(&storage, &path, mine.clone(), ttl, now)
            .await
            .unwrap();
        assert!(matches!(taken, Attempt::Acquired((_, ref h)) if *h == mine));
        let theirs = owner("other").holder(now, ttl);
        let busy = try_holding(&storage, &path, theirs, ttl, now)
            .await
            .unwrap();
        assert!(matches!(busy, Attempt::Busy(_)));
        // Renewing: the object holds our renewal, the lock an older etag.
        let stale = UpdateVersion {
            e_tag: Some("\"an older etag\"".into()),
            version: None,
        };
        let lock = |holder: Holder| {
            let held = (stale.clone(), holder);
            StoreLock::held(
                "telemetry",
                date(),
                storage.clone(),
                path.clone(),
                ttl,
                held,
            )
        };
        let ours = lock(mine.clone());
        ours.renew().await;
        ours.check().await.unwrap();
        let other = lock(owner("gone").holder(now, ttl));
        other.renew().await;
        let err = other.check().await.unwrap_err();
        assert!(err.to_string().contains("took it over"), "{err}");
    }

    /// A lock whose renewals fell behind (less than a third of its ttl left)
    /// is no longer committed under; with more left it still is.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_lock_too_close_to_its_expiry_is_not_committed_under() {
        let (_, storage) = memory_site();
        let path = storage.path(&lock_name("telemetry", date()));
        let ttl = Duration::from_secs(60);
        let with_left = |seconds: i64| {
            let (storage, path) = (storage.clone(), path.clone());
            async move {
                let mut holder = owner("r").holder(Utc::now(), ttl);
                holder.expires_at = Utc::now() + chrono::Duration::seconds(seconds);
                let version = put(&storage, &path, &holder, PutMode::Overwrite)
                    .await
                    .unwrap();
                StoreLock::held("telemetry", date(), storage, path, ttl, (version, holder))
            }
        };
        // A third of 60 s is 20 s.
        with_left(22).await.check().await.unwrap();
        let err = with_left(18).await.check().await.unwrap_err();
        assert!(err.to_string().contains("renewals fell behind"), "{err}");
        let err = with_left(-1).await.check().await.unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn renewal_moves_the_expiry_and_keeps_the_lock() {
        let (site, storage) = memory_site();
        let s = LockSettings {
            wait: Duration::ZERO,
            ttl: MIN_LOCK_TTL,
        };
        let set = acquire(&site, &["telemetry"], date(), &owner("r"), &s)
            .await
            .unwrap();
        let first = read_holder(&storage, "telemetry").await.expires_at;
        // Wait for the renewal itself (every ttl / 3), not for a guessed time; the
        // deadline only turns a renewal that never comes into a failure.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let later = loop {
            let now = read_holder(&storage, "telemetry").await.expires_at;
            if now > first {
                break now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was never renewed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(later > first, "{later} should be after {first}");
        // Renewed before it ran out, so still this run's.
        set.check("telemetry").await.unwrap();
        set.release().await;
    }

    /// A run that took `telemetry` and waits for `features_hourly` (held by
    /// another) past `telemetry`'s time to live keeps `telemetry` renewed
    /// meanwhile, so it is still the run's once the wait ends.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_lock_taken_is_renewed_while_the_next_one_is_waited_for() {
        let (site, storage) = memory_site();
        let other = acquire(
            &site,
            &["features_hourly"],
            date(),
            &owner("other"),
            &settings(0),
        )
        .await
        .unwrap();
        let s = LockSettings {
            wait: Duration::from_secs(60),
            ttl: MIN_LOCK_TTL,
        };
        let (site_w, s_w) = (site.clone(), s.clone());
        let waiting = tokio::spawn(async move {
            let tables = ["telemetry", "features_hourly"];
            acquire(&site_w, &tables, date(), &owner("run"), &s_w).await
        });
        let taken = Utc::now();
        // Past telemetry's first expiry, still waiting: its expiry moved on.
        tokio::time::sleep(MIN_LOCK_TTL + Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "still waiting for features_hourly");
        let holder = read_holder(&storage, "telemetry").await;
        assert_eq!(holder.run_id, "run");
        assert!(
            holder.expires_at > Utc::now(),
            "expired at {} while waiting (taken about {taken})",
            holder.expires_at
        );
        other.release().await;
        let set = waiting
            .await
            .unwrap()
            .expect("taken once the other run released it");
        set.check("telemetry").await.unwrap();
        set.check("features_hourly").await.unwrap();
        set.release().await;
    }

    /// A renewal that hangs (a store request retried for minutes) does not
    /// hold back the renewal of the run's other locks past their expiry.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_hung_renewal_does_not_stop_the_others() {
        let (site, storage) = memory_site();
        let s = LockSettings {
            wait: Duration::ZERO,
            ttl: MIN_LOCK_TTL,
        };
        let tables = ["telemetry", "rejects"];
        let set = acquire(&site, &tables, date(), &owner("r"), &s)
            .await
            .unwrap();
        let telemetry = set
            .locks
            .iter()
            .find_map(|held| match held {
                Held::Store(lock) if lock.table == "telemetry" => Some(lock.clone()),
                _ => None,
            })
            .unwrap();
        // Holding its state stalls telemetry's renewals as a hung request would.
        let stalled = telemetry.state.lock().await;
        let first = read_holder(&storage, "rejects").await.expires_at;
        tokio::time::sleep(MIN_LOCK_TTL + Duration::from_secs(1)).await;
        let rejects = read_holder(&storage, "rejects").await;
        assert!(
            rejects.expires_at > first && rejects.expires_at > Utc::now(),
            "rejects' lock was not renewed: it expires at {} (first {first})",
            rejects.expires_at
        );
        assert!(read_holder(&storage, "telemetry").await.expires_at < Utc::now());
        drop(stalled);
        set.check("rejects").await.unwrap();
        set.release().await;
    }

    /// A check whose request to the store takes longer than the lock's ttl
    /// keeps the lock renewed meanwhile, and is judged on the time left once
    /// the store has answered.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_slow_check_does_not_stop_the_renewals() {
        let slow = crate::storage::test_store::TroubledStore {
            head_delay: MIN_LOCK_TTL + Duration::from_secs(1),
            ..Default::default()
        };
        let (site, storage) = site_on(Arc::new(slow));
        let s = LockSettings {
            wait: Duration::ZERO,
            ttl: MIN_LOCK_TTL,
        };
        let set = Arc::new(
            acquire(&site, &["telemetry"], date(), &owner("r"), &s)
                .await
                .unwrap(),
        );
        let checking = tokio::spawn({
            let set = set.clone();
            async move { set.check("telemetry").await }
        });
        tokio::time::sleep(MIN_LOCK_TTL + Duration::from_millis(500)).await;
        assert!(
            !checking.is_finished(),
            "the check is still waiting for the store"
        );
        let holder = read_holder(&storage, "telemetry").await;
        assert!(
            holder.expires_at > Utc::now(),
            "the lock expired at {} while its check waited",
            holder.expires_at
        );
        checking.await.unwrap().unwrap();
        Arc::into_inner(set).unwrap().release().await;
    }

    /// A check that sees a version it does not know asks the object; a store
    /// that fails to answer then is a store error, not a lock another run holds.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_check_whose_read_fails_is_a_store_error_not_a_lost_lock() {
        let store = Arc::new(crate::storage::test_store::TroubledStore::default());
        let (_, storage) = site_on(store.clone());
        let path = storage.path(&lock_name("telemetry", date()));
        let ttl = Duration::from_secs(60);
        let mine = owner("r").holder(Utc::now(), ttl);
        put(&storage, &path, &mine, PutMode::Create).await.unwrap();
        // The lock knows an older version than the store has (a renewal of its own landed unanswered).
        let stale = UpdateVersion {
            e_tag: Some("\"an older etag\"".into()),
            version: None,
        };
        let lock = StoreLock::held("telemetry", date(), storage, path, ttl, (stale, mine));
        lock.check().await.unwrap();
        store
            .gets_fail
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = lock.check().await.unwrap_err();
        assert!(matches!(err, LockError::Store { .. }), "{err}");
    }

    /// A clean-up that gave up waiting for a dropped write leaves the run's
    /// locks to expire: no run of the date may start while it could commit.
    #[tokio::test(flavor = "multi_thread")]
    async fn locks_are_left_to_expire_while_a_dropped_write_runs() {
        let (site, storage) = memory_site();
        let set = acquire(&site, &["telemetry"], date(), &owner("w"), &settings(0))
            .await
            .unwrap();
        let write = super::super::stream::tracked("t", async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(1)
        });
        assert!(tokio::time::timeout(Duration::from_millis(20), write)
            .await
            .is_err());
        set.release_unless_writing().await;
        let holder = read_holder(&storage, "telemetry").await;
        assert_eq!(holder.run_id, "w");
        assert!(!holder.released, "left to expire, not released");
        assert!(super::super::stream::settle().await);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unreadable_lock_object_is_judged_by_its_age() {
        let (site, storage) = memory_site();
        let path = storage.path(&lock_name("telemetry", date()));
        storage
            .store
            .put(&path, PutPayload::from_static(b"not json"))
            .await
            .unwrap();
        let err = acquire(&site, &["telemetry"], date(), &owner("x"), &settings(0))
            .await
            .err()
            .expect("a fresh unreadable lock is respected");
        assert!(err.to_string().contains("unreadable"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_local_lock_is_exclusive_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::Local(dir.path().to_owned());
        let first = acquire(
            &site,
            &["telemetry", "rejects"],
            date(),
            &owner("one"),
            &settings(0),
        )
        .await
        .unwrap();
        let err = acquire(&site, &["rejects"], date(), &owner("two"), &settings(100))
            .await
            .err()
            .expect("held");
        assert!(err.to_string().contains("run one"), "{err}");
        first.check("rejects").await.unwrap();
        first.release().await;
        let second = acquire(&site, &["rejects"], date(), &owner("two"), &settings(0))
            .await
            .expect("free after release");
        second.release().await;
    }
}
