//! Refreshes owed: the later dates whose derived rows read a date's silver,
//! recorded in the lake when that silver is replaced, and cleared when they
//! are recomputed.
//!
//! Why: a catch-up reruns a changed date D, then refreshes D's dependents
//! ([`crate::run::dependents`]). The rerun writes D's manifest, so a catch-up
//! stopped before those refreshes (a signal, a refresh that failed) left a
//! second catch-up seeing D unchanged, and D's dependents stale for good; so
//! did a rerun of D by hand. Now a run that replaces D's silver records, under
//! `_coldpath/pending/`, one small document per dependent E and write:
//! `<E>.after.<D>.<run id>.<n>.json` (the run id, so that a second replacement
//! of D writes a document of its own; `n`, so that each time a run records E,
//! before its silver commit and after, the document is a new one). A refresh
//! or a run of E that succeeds removes those it listed before it read silver,
//! but not one whose D owes itself a refresh (E read D's derived tables as they
//! were); one recorded after that stays: E may have been computed from the
//! silver before it. Were the records of one run one document, rewritten, a refresh
//! that listed it before D's commit and removed it after would remove the
//! record made after the commit too, and E would stay stale. A run of E
//! that read D's silver, which another run replaced before E's silver was
//! committed, records one itself: D's run could not name E, whose silver was
//! not yet committed. Every run also records its own date before its silver
//! commit, first of all (its derived tables lag that silver until they are
//! committed; and while it lags, the later dates' records it makes hold) and,
//! once it succeeds with its features, removes that record. A run or refresh
//! of E that succeeds while an earlier date C owes itself one read C's
//! `features_hourly` as it was: it records `<E>.after.<C>` before it removes
//! its own ([`settle`]). `catchup` refreshes every date that has one, in its
//! range or not, oldest first.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::manifest::Place;
use super::Lake;

const DIR: &str = "_coldpath/pending";

fn place(lake: &Lake) -> Result<Place, String> {
    Place::in_lake(lake, DIR).map_err(|e| e.to_string())
}

/// Documents this process recorded: each record a name of its own.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn name(date: NaiveDate, cause: NaiveDate, run_id: &str) -> String {
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{date}.after.{cause}.{run_id}.{n}.json")
}

/// The date owed a refresh and its cause, from a document's name.
fn parse(name: &str) -> Option<(NaiveDate, NaiveDate)> {
    let (date, rest) = name.split_once(".after.")?;
    let rest = rest.strip_suffix(".json")?;
    // `<D>.<run id>.<n>`; a document of the first form had neither.
    let cause = rest.split_once('.').map_or(rest, |(cause, _run)| cause);
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    Some((day(date)?, day(cause)?))
}

/// `e`, naming the document or folder it is about.
fn about(what: &str, e: String) -> String {
    format!("{DIR}/{what}: {e}")
}

/// The names of the documents that start with `prefix`; an error names them.
async fn names_of(place: &Place, prefix: &str) -> Result<Vec<String>, String> {
    let names = place.names(prefix).await;
    names.map_err(|e| about(&format!("{prefix}*"), e))
}

/// Whether `date` owes itself a refresh (its derived tables lag its silver), in `place`.
async fn lags_in(place: &Place, date: NaiveDate) -> Result<bool, String> {
    Ok(!names_of(place, &format!("{date}.after.{date}."))
        .await?
        .is_empty())
}

/// Records that each of `dates` reads `cause`'s silver, which run `run_id` replaced.
pub async fn record(
    lake: &Lake,
    cause: NaiveDate,
    dates: &[NaiveDate],
    run_id: &str,
) -> Result<(), String> {
    let place = place(lake)?;
    for &date in dates {
        let body = serde_json::json!({ "refresh": date, "after": cause, "run_id": run_id });
        let name = name(date, cause, run_id);
        place
            .put(&name, body.to_string().into_bytes(), run_id)
            .await
            .map_err(|e| about(&name, e))?;
    }
    Ok(())
}

/// The documents that owe `date` a refresh now and that recomputing it settles,
/// by name (for [`clear`]). Not one whose cause D owes itself a refresh (its
/// own record: a run of D failed between its silver and its derived tables, or
/// is under way): within the [`READS_DERIVED_DATES`] before `date`, a
/// recomputation of `date` now reads D's derived tables as they were (the
/// baselines read its `features_hourly`), so it stays owed until D's are done.
/// Further back too: a run of D records its own lag before it records `date`
/// and before its silver commit, so a record listed while D's run is under way
/// holds until that run has committed and recorded `date` again; settled then,
/// `date` would have read D's old silver, and a run of D that died after its
/// commit would leave no record that says so.
pub async fn owed(lake: &Lake, date: NaiveDate) -> Result<Vec<String>, String> {
    let place = place(lake)?;
    let mut lagging: BTreeMap<NaiveDate, bool> = BTreeMap::new();
    let mut settled = Vec::new();
    for name in names_of(&place, &format!("{date}.after.")).await? {
        let Some((_, cause)) = parse(&name) else {
            continue;
        };
        if cause != date {
            let lags = match lagging.get(&cause) {
                Some(&lags) => lags,
                None => {
                    let lags = lags_in(&place, cause).await?;
                    lagging.insert(cause, lags);
                    lags
                }
            };
            if lags {
                tracing::warn!(%date, cause = %cause, "the date stays owed a refresh: the cause's own derived tables lag its silver; `coldpath catchup` refreshes the cause, then the date");
                continue;
            }
        }
        settled.push(name);
    }
    Ok(settled)
}

/// Whether `date` owes itself a refresh (its derived tables lag its silver).
pub async fn lags(lake: &Lake, date: NaiveDate) -> Result<bool, String> {
    lags_in(&place(lake)?, date).await
}

/// [`owed`], a failure a warning and nothing owed: the date is then refreshed
/// once more by a later catch-up.
pub async fn owed_logged(lake: &Lake, date: NaiveDate) -> Vec<String> {
    owed(lake, date).await.unwrap_or_else(|e| {
        tracing::warn!(%date, error = %crate::storage::fault::redact(&e), "the refreshes owed to the date were not read; a later catch-up refreshes it again");
        Vec::new()
    })
}

/// The documents run `run_id` of `date` recorded for `date` itself (its derived
/// tables lagging its silver), for [`clear`] once they are committed. A listing
/// that fails is a warning and none: the date is then refreshed once more.
pub async fn own(lake: &Lake, date: NaiveDate, run_id: &str) -> Vec<String> {
    let mine = format!("{date}.after.{date}.{run_id}.");
    let listed = async { names_of(&place(lake)?, &mine).await };
    listed.await.unwrap_or_else(|e| {
        tracing::warn!(%date, error = %crate::storage::fault::redact(&e), "the run's own refresh record was not read; a later catch-up refreshes the date again");
        Vec::new()
    })
}

/// Removes the documents `names` (what a refresh listed before it read silver).
pub async fn clear(lake: &Lake, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let place = place(lake)?;
    for name in names {
        place.delete(name).await.map_err(|e| about(name, e))?;
    }
    Ok(())
}

/// What a computation of `date` (a run with its features, a refresh) is owed as
/// it begins, and settles once it succeeds ([`settle`]); none for a run
/// without its features (`Default`), which settles nothing.
#[derive(Default)]
pub struct Owed {
    /// The documents it settles ([`owed`]).
    pub names: Vec<String>,
    /// The earlier dates whose derived tables lagged their silver as it began
    /// (`None`: they could not be listed).
    lagging: Option<BTreeSet<NaiveDate>>,
}

/// [`Owed`] of `date`, listed before it reads anything. A listing that fails
/// is a warning: the date is then refreshed once more by a later catch-up.
pub async fn at_start(lake: &Lake, date: NaiveDate) -> Owed {
    Owed {
        names: owed_logged(lake, date).await,
        lagging: lagging_before(lake, date).await.ok(),
    }
}

/// How many dates before it a date's derived rows read the derived tables of:
/// the 168 h baselines read the `features_hourly` of the 7 dates before.
/// (Everything else a date reads of earlier dates is silver, or made from it.)
const READS_DERIVED_DATES: i64 = crate::stages::features::baseline::BASELINE_DATES;

/// The dates at most [`READS_DERIVED_DATES`] before `date` that owe themselves
/// a refresh (a run or refresh of theirs stopped between their silver and
/// their derived tables): `date` computed now reads their derived tables as
/// they are. A failure is a warning.
async fn lagging_before(lake: &Lake, date: NaiveDate) -> Result<BTreeSet<NaiveDate>, String> {
    Ok(lagging_in(&every_name(lake, date).await?, date))
}

/// Every document's name; a failure is a warning.
async fn every_name(lake: &Lake, date: NaiveDate) -> Result<Vec<String>, String> {
    let listed = async { names_of(&place(lake)?, "").await };
    listed.await.inspect_err(|e| {
        tracing::warn!(%date, error = %crate::storage::fault::redact(e), "the earlier dates lagging their silver were not listed; a later catch-up refreshes the date again");
    })
}

/// Whether `date` computed now reads `earlier`'s derived tables (not only its
/// silver): `earlier` is one of the [`READS_DERIVED_DATES`] before it.
pub fn reads_derived(date: NaiveDate, earlier: NaiveDate) -> bool {
    earlier < date && (date - earlier).num_days() <= READS_DERIVED_DATES
}

/// [`lagging_before`] of `date` among the documents `names`.
fn lagging_in(names: &[String], date: NaiveDate) -> BTreeSet<NaiveDate> {
    names
        .iter()
        .filter_map(|n| parse(n))
        .filter(|&(d, cause)| d == cause && reads_derived(date, d))
        .map(|(d, _)| d)
        .collect()
}

/// Once `date` is recomputed and committed: records it owed a refresh after
/// each earlier date whose derived tables lagged as it began or lag now (it
/// read them as they were; [`owed`] keeps such a record until the earlier date
/// is refreshed), unless a record of that stays already; then clears what it
/// settled and `also`. Where those dates cannot be listed or the records
/// written, it clears nothing: the date stays owed, and a later catch-up
/// refreshes it again.
pub async fn settle(lake: &Lake, date: NaiveDate, owed: &Owed, also: Vec<String>, run_id: &str) {
    let recorded = async {
        let before = owed
            .lagging
            .as_ref()
            .ok_or("not listed as the date began")?;
        let names = every_name(lake, date).await?;
        let staying: BTreeSet<NaiveDate> = names
            .iter()
            .filter(|n| !owed.names.contains(n))
            .filter_map(|n| parse(n))
            .filter(|&(d, _)| d == date)
            .map(|(_, cause)| cause)
            .collect();
        for &cause in before.union(&lagging_in(&names, date)) {
            if !staying.contains(&cause) {
                tracing::warn!(%date, %cause, "the date read an earlier date's derived tables, which lag its silver: it is owed a refresh after that date's");
                record(lake, cause, &[date], run_id).await?;
            }
        }
        Ok::<_, String>(())
    };
    match recorded.await {
        Ok(()) => {
            let mut done = owed.names.clone();
            done.extend(also);
            clear_logged(lake, &done).await;
        }
        Err(e) => {
            tracing::warn!(%date, error = %crate::storage::fault::redact(&e), "the earlier dates lagging their silver were not recorded; the date stays owed a refresh");
        }
    }
}

/// [`clear`], a failure a warning: the date is then refreshed once more by a later catch-up.
pub async fn clear_logged(lake: &Lake, names: &[String]) {
    if let Err(e) = clear(lake, names).await {
        tracing::warn!(error = %crate::storage::fault::redact(&e), "a refresh owed was done but not cleared; a later catch-up does it again");
    }
}

/// Every date owed a refresh, with the dates whose silver it reads.
pub async fn all(lake: &Lake) -> Result<BTreeMap<NaiveDate, BTreeSet<NaiveDate>>, String> {
    let mut out: BTreeMap<NaiveDate, BTreeSet<NaiveDate>> = BTreeMap::new();
    for name in names_of(&place(lake)?, "").await? {
        if let Some((date, cause)) = parse(&name) {
            out.entry(date).or_default().insert(cause);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, d).unwrap()
    }

    /// Recorded per dependent and cause; cleared only as listed, so a record
    /// made after a refresh listed its own stays.
    #[tokio::test]
    async fn recorded_listed_and_cleared_as_seen() {
        let (dir, lake) = crate::lake::leftovers::tests::local_lake();
        assert!(all(&lake).await.unwrap().is_empty());
        record(&lake, day(10), &[day(11), day(12)], "run-a")
            .await
            .unwrap();
        record(&lake, day(11), &[day(12)], "run-b").await.unwrap();
        let want: BTreeMap<_, _> = [
            (day(11), BTreeSet::from([day(10)])),
            (day(12), BTreeSet::from([day(10), day(11)])),
        ]
        .into();
        assert_eq!(all(&lake).await.unwrap(), want);
        let seen = owed(&lake, day(12)).await.unwrap();
        assert_eq!(seen.len(), 2);
        // Recorded again while 12's refresh runs, by another date, by 11
        // replaced once more, and by run-a after its commit: all stay after it
        // clears what it saw.
        record(&lake, day(9), &[day(12)], "run-c").await.unwrap();
        record(&lake, day(11), &[day(12)], "run-d").await.unwrap();
        record(&lake, day(10), &[day(12)], "run-a").await.unwrap();
        clear(&lake, &seen).await.unwrap();
        let want: BTreeMap<_, _> = [
            (day(11), BTreeSet::from([day(10)])),
            (day(12), BTreeSet::from([day(9), day(10), day(11)])),
        ]
        .into();
        assert_eq!(all(&lake).await.unwrap(), want);
        // A stray file in the folder is no date's; one of the first form (no run id) counts.
        std::fs::write(dir.path().join(DIR).join("notes.txt"), b"x").unwrap();
        assert_eq!(all(&lake).await.unwrap().len(), 2);
        assert_eq!(owed(&lake, day(11)).await.unwrap().len(), 1);
        let first_form = dir
            .path()
            .join(DIR)
            .join("2024-03-13.after.2024-03-12.json");
        std::fs::write(first_form, b"{}").unwrap();
        assert_eq!(
            all(&lake).await.unwrap()[&day(13)],
            BTreeSet::from([day(12)])
        );
    }

    /// A record after a cause that lags its silver stays, whether the cause is
    /// one of the 7 dates whose derived tables the date reads or further back
    /// (its run may be under way, its silver not yet committed); the date's own
    /// record and one after a cause that does not lag are settled.
    #[tokio::test]
    async fn a_record_after_a_lagging_cause_stays() {
        let (_dir, lake) = crate::lake::leftovers::tests::local_lake();
        for cause in [day(2), day(3), day(10)] {
            record(&lake, cause, &[cause], "run-a").await.unwrap();
        }
        for cause in [day(1), day(2), day(3), day(9), day(10)] {
            record(&lake, cause, &[day(10)], "run-b").await.unwrap();
        }
        let owed = owed(&lake, day(10)).await.unwrap();
        let causes: BTreeSet<_> = owed
            .iter()
            .filter_map(|n| parse(n))
            .map(|(_, c)| c)
            .collect();
        assert_eq!(causes, BTreeSet::from([day(1), day(9), day(10)]));
        assert!(reads_derived(day(10), day(3)) && reads_derived(day(10), day(9)));
        assert!(!reads_derived(day(10), day(2)) && !reads_derived(day(10), day(10)));
        assert!(!reads_derived(day(10), day(11)));
    }

    /// Where the earlier dates lagging their silver could not be listed as the
    /// date began, or a record after one could not be written, settling clears
    /// nothing: the date stays owed, its own record and what it settles too.
    #[tokio::test]
    async fn a_settle_that_cannot_list_or_record_clears_nothing() {
        let (dir, lake) = crate::lake::leftovers::tests::local_lake();
        let folder = dir.path().join(DIR);
        let own = |lake| async move { place(lake).unwrap().names("2024-03-10.").await.unwrap() };
        // The folder a file: nothing can be listed as the date begins.
        std::fs::create_dir_all(folder.parent().unwrap()).unwrap();
        std::fs::write(&folder, b"not a folder").unwrap();
        let blind = at_start(&lake, day(10)).await;
        assert!(blind.names.is_empty() && blind.lagging.is_none());
        std::fs::remove_file(&folder).unwrap();
        record(&lake, day(3), &[day(3)], "run-a").await.unwrap();
        record(&lake, day(10), &[day(10)], "run-b").await.unwrap();
        let mine = own(&lake).await;
        settle(&lake, day(10), &blind, mine.clone(), "run-c").await;
        assert_eq!(own(&lake).await, mine);
        // Listed as it began (3 lags), but the record after 3 cannot be
        // written: a run id with a folder in it names a document under a
        // folder that does not exist.
        let seen = at_start(&lake, day(10)).await;
        assert_eq!(seen.names, mine);
        settle(&lake, day(10), &seen, Vec::new(), "no/such").await;
        assert_eq!(own(&lake).await, mine);
        let causes = all(&lake).await.unwrap().remove(&day(10));
        assert_eq!(causes, Some(BTreeSet::from([day(10)])));
        // The same settle with a run id that can be written records and clears.
        settle(&lake, day(10), &seen, Vec::new(), "run-d").await;
        let causes = all(&lake).await.unwrap().remove(&day(10));
        assert_eq!(causes, Some(BTreeSet::from([day(3)])));
    }

    /// A date settled while an earlier one within the baselines' 7 dates owes
    /// itself a refresh is recorded owed after it, once however often it is
    /// settled meanwhile; one 8 dates back, or later, is not its cause. Once
    /// the earlier date is refreshed, the next settle clears it.
    #[tokio::test]
    async fn a_date_settled_while_an_earlier_one_lags_is_owed_after_it() {
        let (_dir, lake) = crate::lake::leftovers::tests::local_lake();
        let lake = &lake;
        let causes = |date| async move { all(lake).await.unwrap().remove(&date) };
        for lagging in [day(2), day(3), day(12)] {
            record(lake, lagging, &[lagging], "run-a").await.unwrap();
        }
        record(lake, day(10), &[day(10)], "run-b").await.unwrap();
        for time in 0..2 {
            let owed = at_start(lake, day(10)).await;
            settle(lake, day(10), &owed, Vec::new(), "run-c").await;
            assert_eq!(
                causes(day(10)).await,
                Some(BTreeSet::from([day(3)])),
                "{time}"
            );
            let names = place(lake)
                .unwrap()
                .names("2024-03-10.after.")
                .await
                .unwrap();
            assert_eq!(names.len(), 1, "{names:?}");
        }
        let threes = place(lake).unwrap().names("2024-03-03.").await.unwrap();
        clear(lake, &threes).await.unwrap();
        let owed = at_start(lake, day(10)).await;
        assert_eq!(owed.names.len(), 1);
        settle(lake, day(10), &owed, Vec::new(), "run-d").await;
        assert_eq!(causes(day(10)).await, None);
        // Owed after 8 as it begins, 8 not lagging; 8 lagging by its end (a
        // run of 8 failed meanwhile): the record it settles is no longer
        // enough, so it records another.
        record(lake, day(8), &[day(10)], "run-e").await.unwrap();
        let owed = at_start(lake, day(10)).await;
        assert_eq!(owed.names.len(), 1);
        record(lake, day(8), &[day(8)], "run-f").await.unwrap();
        settle(lake, day(10), &owed, Vec::new(), "run-g").await;
        assert_eq!(causes(day(10)).await, Some(BTreeSet::from([day(8)])));
    }
}
