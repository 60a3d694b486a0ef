//! Late blobs: each run's manifest, and `catchup` rerunning exactly the dates whose blobs changed.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::azurite::Azurite;
use crate::common::*;
// The held-out container's eight dates (`fixtures/generate.py --held-out`).
use crate::held_out::{DATES as WEEK, LABELS_AS_OF as WEEK_LABELS};

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];
const TABLES: [&str; 5] = [
    "telemetry",
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "rejects",
];

/// A reading of a device no fixture has, at `time`.
fn reading(device: &str, time: &str) -> String {
    format!(
        "{{\"deviceId\":\"{device}\",\"deviceType\":\"pump\",\"timestamp\":\"{time}\",\"temperature\":41.5,\"pressure\":101,\"vibration\":7.5,\"messageId\":\"{device}-{time}\"}}\n"
    )
}

fn run(date: &str, raw: &Path, lake: &Path) {
    let out = coldpath(
        &run_args(date, raw.to_str().unwrap(), lake.to_str().unwrap())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn catchup(raw: &str, lake: &str, extra: &[&str], env: &[(&str, String)]) -> (i32, Value, String) {
    coldpath_with("catchup", LABELS, raw, lake, extra, env)
}

/// `coldpath <command>` of the local job with `raw`, `lake` and the label cut-off
/// `labels`: its exit code, report and stderr.
fn coldpath_with(
    command: &str,
    labels: &str,
    raw: &str,
    lake: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> (i32, Value, String) {
    let job = job_file();
    let mut args = vec![
        command,
        "--job",
        job.to_str().unwrap(),
        "--source",
        raw,
        "--lake",
        lake,
        "--labels-as-of",
        labels,
    ];
    args.extend_from_slice(extra);
    let out: Output = coldpath_env(&args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: report is not JSON ({e}): {err}"));
    (out.status.code().unwrap(), report, err)
}

/// `coldpath plan` of `date`: its report.
fn plan(date: &str, raw: &Path, lake: &Path) -> Value {
    let job = job_file();
    let out = coldpath(&[
        "plan",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--source",
        raw.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn entry<'a>(report: &'a Value, date: &str) -> &'a Value {
    report["dates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == date)
        .unwrap_or_else(|| panic!("{date} not in {report}"))
}

/// Every table of `lake` as a clean run of the three dates from `raw` writes them
/// (into `dir`/clean), but the run ids and ingestion times.
fn assert_as_a_clean_run(dir: &Path, raw: &Path, lake: &Path) {
    let clean = dir.join("clean");
    for date in DATES {
        run(date, raw, &clean);
    }
    assert_eq!(all_rows(lake), all_rows(&clean));
}

fn all_rows(lake: &Path) -> Vec<Vec<String>> {
    TABLES.iter().map(|t| rows_without_run(lake, t)).collect()
}

/// Adds a blob to 2024-03-11 22:00, grows one of its 05:00 blobs and deletes one of 15:00.
fn change_2024_03_11(raw: &Path) {
    let day = raw.join("telemetry/2024/03/11");
    std::fs::write(
        day.join("22/late_copy.json"),
        reading("late-1", "2024-03-11T22:10:00Z") + &reading("late-2", "2024-03-11T22:11:00Z"),
    )
    .unwrap();
    let grown = day.join("05/491962166_b0817218492a722bd9832f918cc57204_1.json");
    let mut text = std::fs::read_to_string(&grown).unwrap();
    assert!(text.ends_with('\n'));
    text.push_str(&reading("grown-1", "2024-03-11T05:20:00Z"));
    std::fs::write(&grown, text).unwrap();
    std::fs::remove_file(day.join("15/889917121_3490fdc9aaeddc220df1d82e8d8dc10c_2.json")).unwrap();
}

/// A blob of an unchanged date, rewritten with garbage of the same size and
/// modification time (same inode): a catch-up that read it would change the date.
struct Booby {
    path: PathBuf,
    bytes: Vec<u8>,
    modified: std::time::SystemTime,
}

impl Booby {
    fn plant(raw: &Path) -> Booby {
        Booby::plant_at(
            raw.join("telemetry/2024/03/10/12/3109460531_992142a8fe131b1125527ca66d8426c6_1.json"),
        )
    }

    fn plant_at(path: PathBuf) -> Booby {
        let bytes = std::fs::read(&path).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &file, &vec![b'x'; bytes.len()]).unwrap();
        file.set_modified(modified).unwrap();
        Booby {
            path,
            bytes,
            modified,
        }
    }

    fn remove(self) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap();
        std::io::Write::write_all(&mut &file, &self.bytes).unwrap();
        file.set_modified(self.modified).unwrap();
    }
}

/// A partition folder of the lake made a file, so a commit to it fails; `put_back` restores it.
struct InTheWay {
    folder: PathBuf,
    aside: PathBuf,
}

impl InTheWay {
    fn put(dir: &Path, lake: &Path, partition: &str) -> InTheWay {
        let folder = lake.join(partition);
        let aside = dir.join(partition.replace('/', "-"));
        std::fs::rename(&folder, &aside).unwrap();
        std::fs::write(&folder, b"in the way").unwrap();
        InTheWay { folder, aside }
    }

    fn put_back(self) {
        std::fs::remove_file(&self.folder).unwrap();
        std::fs::rename(&self.aside, &self.folder).unwrap();
    }
}

/// `coldpath run` of `date` that must fail (exit 1): its report.
fn run_failing(date: &str, raw: &Path, lake: &Path) -> Value {
    let args = run_args(date, raw.to_str().unwrap(), lake.to_str().unwrap());
    let out = coldpath(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    report
}

/// A copy of the fixtures' container (`dir/raw`) with its three dates run into `dir/lake`.
fn three_dates_run() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    let lake = dir.path().join("lake");
    copy_dir(&fixtures_raw(), &raw);
    for date in DATES {
        run(date, &raw, &lake);
    }
    (dir, raw, lake)
}

#[test]
fn catchup_reruns_only_changed_dates_and_matches_a_clean_run() {
    let (dir, raw, lake) = three_dates_run();
    for date in DATES {
        assert!(lake
            .join(format!("_coldpath/manifests/{date}.json"))
            .is_file());
    }
    change_2024_03_11(&raw);
    let booby = Booby::plant(&raw);

    // plan shows the difference with the manifest.
    let plan = plan(DATES[1], &raw, &lake);
    assert_eq!(plan["manifest"]["state"], "changed", "{plan}");
    assert_eq!(plan["manifest"]["added"].as_array().unwrap().len(), 1);
    assert_eq!(plan["manifest"]["changed"].as_array().unwrap().len(), 1);
    assert_eq!(plan["manifest"]["removed"].as_array().unwrap().len(), 1);
    assert_eq!(plan["dependents"], serde_json::json!([DATES[2]]), "{plan}");

    let (code, report, err) = catchup(
        raw.to_str().unwrap(),
        lake.to_str().unwrap(),
        &["--from", DATES[0], "--to", DATES[2]],
        &[],
    );
    assert_eq!(code, 0, "{report}\n{err}");
    let (d10, d11, d12) = (
        entry(&report, DATES[0]),
        entry(&report, DATES[1]),
        entry(&report, DATES[2]),
    );
    assert_eq!(d10["state"], "unchanged");
    assert_eq!(d10["blobs_read"], 0);
    assert!(d10.get("rerun").is_none() && d10.get("features_refreshed").is_none());
    assert_eq!(d11["state"], "changed");
    assert_eq!(
        (
            d11["added"].as_u64(),
            d11["changed"].as_u64(),
            d11["removed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(d11["bytes_added"].as_u64().unwrap() > 0 && d11["bytes_removed"].as_u64().unwrap() > 0);
    assert_eq!(d11["rerun"], "succeeded");
    assert!(d11["blobs_read"].as_u64().unwrap() > 0);
    assert_eq!(d12["state"], "unchanged");
    assert_eq!(d12["blobs_read"], 0);
    assert_eq!(
        d12["features_refreshed"], "succeeded",
        "its look-back changed"
    );
    assert_eq!(report["rerun"], serde_json::json!([DATES[1]]));
    assert_eq!(report["refreshed"], serde_json::json!([DATES[2]]));
    assert_eq!(d11["dependents"], serde_json::json!([DATES[2]]));
    assert_eq!(d12["refreshed_for"], serde_json::json!([DATES[1]]));
    booby.remove();

    // The same tables as a clean run of every date over the final container.
    assert_as_a_clean_run(dir.path(), &raw, &lake);
    assert!(rows_without_run(&lake, "telemetry")
        .iter()
        .any(|r| r.contains("grown-1")));

    // A second catch-up finds nothing to do.
    let (code, report, err) = catchup(
        raw.to_str().unwrap(),
        lake.to_str().unwrap(),
        &["--from", DATES[0], "--to", DATES[2]],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["rerun"], serde_json::json!([]));
}

/// A catch-up whose dependent's refresh fails leaves that refresh owed in the
/// lake: the next catch-up, which finds the rerun date unchanged, still
/// refreshes the dependent, the tables then equal a clean run's, and nothing
/// is owed any more.
#[test]
fn a_refresh_a_failed_catchup_owed_is_done_by_the_next() {
    let (dir, raw, lake) = three_dates_run();
    change_2024_03_11(&raw);
    // 2024-03-12's device_health folder is a file: its refresh fails at that commit.
    let way = InTheWay::put(
        dir.path(),
        &lake,
        &format!("device_health/health_date={}", DATES[2]),
    );
    let range = ["--from", DATES[0], "--to", DATES[2]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    assert_eq!(entry(&report, DATES[1])["rerun"], "succeeded", "{report}");
    assert_eq!(
        entry(&report, DATES[2])["features_refreshed"],
        "failed",
        "{report}"
    );
    let owed = || -> Vec<String> {
        let prefix = format!("{}.after.{}.", DATES[2], DATES[1]);
        owed_in(&lake)
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    };
    assert_eq!(owed().len(), 1, "the refresh is owed");
    // A dry run says so.
    let mut dry = range.to_vec();
    dry.push("--dry-run");
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &dry, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(
        entry(&report, DATES[2])["refreshed_for"],
        serde_json::json!([DATES[1]])
    );

    way.put_back();
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(entry(&report, DATES[1])["state"], "unchanged");
    assert_eq!(report["rerun"], serde_json::json!([]));
    assert_eq!(report["refreshed"], serde_json::json!([DATES[2]]));
    assert_eq!(
        entry(&report, DATES[2])["refreshed_for"],
        serde_json::json!([DATES[1]])
    );
    assert_eq!(owed(), Vec::<String>::new(), "nothing is owed any more");

    // Refreshes owed that cannot be read fail the catch-up (exit 1, so it is
    // retried), though every date it looked at was done.
    let pending = lake.join("_coldpath/pending");
    let _ = std::fs::remove_dir_all(&pending);
    std::fs::write(&pending, b"in the way").unwrap();
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refreshes owed") && error.contains("pending"),
        "{report}"
    );
    std::fs::remove_file(&pending).unwrap();

    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// A run that replaced its silver and then failed (here at device_health's
/// commit) leaves its own derived tables owed a refresh, recorded before its
/// silver commit: a catch-up whose range does not hold the date refreshes
/// them. A run that succeeds leaves nothing owed.
#[test]
fn a_run_that_fails_after_its_silver_commit_leaves_its_own_date_owed() {
    let (dir, raw, lake) = three_dates_run();
    assert_eq!(
        owed_in(&lake),
        Vec::<String>::new(),
        "succeeded runs owe nothing"
    );
    std::fs::write(
        raw.join("telemetry/2024/03/12/09/late_copy.json"),
        reading("late-1", "2024-03-12T09:10:00Z") + &reading("late-1", "2024-03-12T09:40:00Z"),
    )
    .unwrap();
    let way = InTheWay::put(
        dir.path(),
        &lake,
        &format!("device_health/health_date={}", DATES[2]),
    );
    let report = run_failing(DATES[2], &raw, &lake);
    assert!(
        report["tables"]["telemetry"].is_object(),
        "silver committed: {report}"
    );
    let own = format!("{}.after.{}", DATES[2], DATES[2]);
    assert!(
        owed_in(&lake).iter().any(|n| n.starts_with(&own)),
        "{:?}",
        owed_in(&lake)
    );

    way.put_back();
    let range = ["--from", DATES[0], "--to", DATES[1]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(
        report["refreshed"],
        serde_json::json!([DATES[2]]),
        "{report}"
    );
    assert_eq!(owed_in(&lake), Vec::<String>::new());
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// A run that fails before its silver commit, after it recorded its own lag
/// (here the lake's `device_health` log cannot be read when the run looks up
/// the later dates), leaves no record: the date does not lag its silver, and
/// its own record would hold every later date's record after it.
#[test]
fn a_run_that_fails_before_its_silver_commit_leaves_nothing_owed() {
    let (_dir, raw, lake) = three_dates_run();
    let log = lake.join("device_health/_delta_log");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    versions.sort();
    std::fs::write(versions.last().unwrap(), "not json").unwrap();
    let report = run_failing(DATES[0], &raw, &lake);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not committed") && error.contains("device_health"),
        "{report}"
    );
    assert!(report["tables"].get("telemetry").is_none(), "{report}");
    assert_eq!(owed_in(&lake), Vec::<String>::new());
}

/// A rerun of D with a new blob fails at its `features_hourly` (silver
/// committed), then the next date E runs: E's baselines read D's old
/// `features_hourly`, so E stays owed the refresh D's rerun recorded for it
/// until D's own derived tables are done. A catch-up whose range holds neither
/// refreshes D, then E; the tables equal a clean run's.
#[test]
fn a_date_run_while_an_earlier_one_lags_its_silver_stays_owed() {
    let (dir, raw, lake) = three_dates_run();
    std::fs::write(
        raw.join("telemetry/2024/03/10/09/late_copy.json"),
        // pump-01's hour 09 of D moves: E's baselines of pump-01 read it.
        reading("pump-01", "2024-03-10T09:10:30Z") + &reading("pump-01", "2024-03-10T09:40:30Z"),
    )
    .unwrap();
    let way = InTheWay::put(
        dir.path(),
        &lake,
        &format!("features_hourly/feature_date={}", DATES[0]),
    );
    let report = run_failing(DATES[0], &raw, &lake);
    assert!(report["tables"]["telemetry"].is_object(), "{report}");
    way.put_back();

    let owes = |date: &str, cause: &str| {
        let prefix = format!("{date}.after.{cause}.");
        owed_in(&lake).iter().any(|n| n.starts_with(&prefix))
    };
    assert!(
        owes(DATES[0], DATES[0]) && owes(DATES[1], DATES[0]),
        "{:?}",
        owed_in(&lake)
    );
    run(DATES[1], &raw, &lake);
    assert!(
        owes(DATES[1], DATES[0]),
        "cleared by E's run: {:?}",
        owed_in(&lake)
    );

    let range = ["--from", DATES[2], "--to", DATES[2]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    let refreshed = report["refreshed"].as_array().unwrap();
    for date in [DATES[0], DATES[1]] {
        assert!(refreshed.iter().any(|d| d == date), "{date}: {report}");
    }
    assert_eq!(owed_in(&lake), Vec::<String>::new());
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// A backfill whose first date's features fail (its partition's folder is in
/// the way) still refreshes the dates after it, whose baselines then read that
/// date's `features_hourly` as it was (none): each is recorded owed a refresh
/// after it. A catch-up while the first date's refresh still fails leaves
/// them waiting for it; once it succeeds, a catch-up refreshes the first date,
/// then the others; the tables equal a clean run's.
#[test]
fn dates_refreshed_while_an_earlier_one_lags_are_owed_a_refresh_after_it() {
    let dir = temp_lake();
    let (raw, lake) = (dir.path().join("raw"), dir.path().join("lake"));
    copy_dir(&fixtures_raw(), &raw);
    let folder = lake.join(format!("features_hourly/feature_date={}", DATES[0]));
    std::fs::create_dir_all(folder.parent().unwrap()).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();
    let (raw_s, lake_s) = (raw.to_str().unwrap(), lake.to_str().unwrap());
    let range = ["--from", DATES[0], "--to", DATES[2]];
    let (code, report, err) = coldpath_with("backfill", LABELS, raw_s, lake_s, &range, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    let owes = |date: &str, cause: &str| {
        let prefix = format!("{date}.after.{cause}.");
        owed_in(&lake).iter().any(|n| n.starts_with(&prefix))
    };
    for date in DATES {
        assert!(owes(date, DATES[0]), "{date}: {:?}", owed_in(&lake));
    }
    assert!(!owes(DATES[2], DATES[1]), "{:?}", owed_in(&lake));
    // While the first date's refresh still fails, the others wait for it.
    let range = ["--from", DATES[2], "--to", DATES[2]];
    let (code, report, err) = catchup(raw_s, lake_s, &range, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    assert_eq!(
        report["refreshed"],
        serde_json::json!([DATES[0]]),
        "{report}"
    );
    for date in &DATES[1..] {
        let why = entry(&report, date)["why"].as_str().unwrap_or_default();
        assert!(
            why.contains(&format!("waits for {}", DATES[0])),
            "{date}: {report}"
        );
        assert!(owes(date, DATES[0]), "{date}: {:?}", owed_in(&lake));
    }
    std::fs::remove_file(&folder).unwrap();

    let range = ["--from", DATES[2], "--to", DATES[2]];
    let (code, report, err) = catchup(raw_s, lake_s, &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["refreshed"], serde_json::json!(DATES), "{report}");
    assert_eq!(owed_in(&lake), Vec::<String>::new());
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// A rerun of a date whose blobs did not change, failing after its silver commit
/// (here at `rejects`, the last): the date's last manifest was set aside before
/// that commit, so the date reads `manifest_missing`, not `unchanged`, and a
/// catch-up runs it again; its `rejects` are then the new run's, not the ones
/// the failed run left.
#[test]
fn a_rerun_that_fails_after_its_silver_commit_is_run_again_by_a_catchup() {
    let (dir, raw, lake) = three_dates_run();
    let rejects_run = || -> Vec<String> {
        let mut ids: Vec<String> = read_rows(&lake, "rejects")
            .iter()
            .filter(|r| get(r, "run_date") == DATES[1])
            .map(|r| get(r, "run_id").as_str().unwrap().to_string())
            .collect();
        ids.dedup();
        ids
    };
    let first = rejects_run();
    assert_eq!(first.len(), 1, "one run's rejects: {first:?}");
    let way = InTheWay::put(dir.path(), &lake, &format!("rejects/run_date={}", DATES[1]));
    let report = run_failing(DATES[1], &raw, &lake);
    assert!(report["tables"]["features_hourly"].is_object(), "{report}");
    way.put_back();
    assert_eq!(
        rejects_run(),
        first,
        "the failed run left the last run's rejects"
    );
    assert_eq!(
        plan(DATES[1], &raw, &lake)["manifest"]["state"],
        "manifest_missing"
    );

    let range = ["--from", DATES[0], "--to", DATES[2]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(
        entry(&report, DATES[1])["state"],
        "manifest_missing",
        "{report}"
    );
    assert_eq!(report["rerun"], serde_json::json!([DATES[1]]), "{report}");
    let now = rejects_run();
    assert_eq!(now.len(), 1);
    assert_ne!(now, first, "the catch-up's rerun wrote the date's rejects");
    assert_eq!(owed_in(&lake), Vec::<String>::new());
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// A late blob in the first hour of a catch-up's first date that holds the
/// evening before: that date's look-ahead read it, so the catch-up looks at the
/// date before its range too and runs it again. Its records reach silver.
#[test]
fn a_late_blob_of_the_date_before_the_range_is_caught_up() {
    let (dir, raw, lake) = three_dates_run();
    std::fs::write(
        raw.join("telemetry/2024/03/11/00/late_copy.json"),
        reading("late-1", "2024-03-10T23:50:00Z"),
    )
    .unwrap();
    let range = ["--from", DATES[1], "--to", DATES[2]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(entry(&report, DATES[0])["state"], "changed", "{report}");
    assert_eq!(entry(&report, DATES[0])["before_range"], true, "{report}");
    assert_eq!(
        report["rerun"],
        serde_json::json!([DATES[0], DATES[1]]),
        "{report}"
    );
    let rows = rows_of_date(&lake, "telemetry", "event_date", DATES[0]);
    assert!(rows.iter().any(|r| r.contains("\"late-1\"")), "{rows:?}");
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

#[test]
fn dry_runs_missing_dates_and_old_manifests() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    let lake = dir.path().join("lake");
    copy_dir(&fixtures_raw(), &raw);
    run(DATES[0], &raw, &lake);
    run(DATES[1], &raw, &lake);
    // A manifest from an older format: the date is run again, to be safe.
    std::fs::write(
        lake.join(format!("_coldpath/manifests/{}.json", DATES[1])),
        r#"{"format": 0, "date": "2024-03-11", "files": ["a"]}"#,
    )
    .unwrap();
    // No manifest, but rows: a first run stopped after its silver commit. Run again.
    std::fs::remove_file(lake.join(format!("_coldpath/manifests/{}.json", DATES[0]))).unwrap();
    let versions = |lake: &Path| -> Vec<Option<u64>> {
        TABLES
            .iter()
            .map(|t| open_table(lake, t).version())
            .collect()
    };
    let before = versions(&lake);
    let (raw_s, lake_s) = (raw.to_str().unwrap(), lake.to_str().unwrap());
    let range = ["--from", DATES[0], "--to", DATES[2]];

    let (code, report, err) = catchup(raw_s, lake_s, &[&range[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(entry(&report, DATES[1])["state"], "manifest_unreadable");
    assert!(entry(&report, DATES[1])["why"]
        .as_str()
        .unwrap()
        .contains("format 0"));
    assert_eq!(entry(&report, DATES[0])["state"], "manifest_missing");
    assert!(entry(&report, DATES[0])["why"]
        .as_str()
        .unwrap()
        .contains("no manifest"));
    assert_eq!(entry(&report, DATES[2])["state"], "never_run");
    assert_eq!(report["rerun"], serde_json::json!([]));
    assert_eq!(versions(&lake), before, "a dry run writes nothing");

    let (code, report, err) = catchup(raw_s, lake_s, &range, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["rerun"], serde_json::json!([DATES[0], DATES[1]]));
    assert!(lake
        .join(format!("_coldpath/manifests/{}.json", DATES[0]))
        .is_file());
    assert!(
        entry(&report, DATES[2]).get("rerun").is_none(),
        "never-run dates wait for --include-missing"
    );
    assert!(!lake
        .join(format!("_coldpath/manifests/{}.json", DATES[2]))
        .exists());

    let (code, report, err) = catchup(
        raw_s,
        lake_s,
        &[&range[..], &["--include-missing"]].concat(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["rerun"], serde_json::json!([DATES[2]]));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(lake.join(format!("_coldpath/manifests/{}.json", DATES[1])))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["format"], 1);
}

#[test]
fn a_catchup_racing_a_run_of_the_same_date_is_settled_by_the_lock() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    let lake = dir.path().join("lake");
    copy_dir(&fixtures_raw(), &raw);
    run(DATES[1], &raw, &lake);
    change_2024_03_11(&raw);
    let args = run_args(DATES[1], raw.to_str().unwrap(), lake.to_str().unwrap());
    let job = job_file();
    // Both start while the date's first lock is held here, and are seen waiting
    // for it before it is given back: one takes the date, the other waits for it to end.
    let held = hold_local_lock(&lake, "telemetry", DATES[1]);
    let catchup_args = [
        "catchup",
        "--job",
        job.to_str().unwrap(),
        "--source",
        raw.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
        "--from",
        DATES[1],
        "--to",
        DATES[1],
        "--labels-as-of",
        LABELS,
    ];
    use crate::lock::{Watched, WAITING};
    let mut c = Watched::of(command(&catchup_args, &[]));
    let mut n = Watched::of(command(&args, &[]));
    c.wait_for(WAITING);
    n.wait_for(WAITING);
    drop(held);
    for (code, report, log) in [c.finish(), n.finish()] {
        assert_eq!(code, 0, "{report}\n{log:#?}");
    }
    let clean = dir.path().join("clean");
    run(DATES[1], &raw, &clean);
    assert_eq!(all_rows(&lake), all_rows(&clean));
}

/// A run of `date` on the emulator's lake (through `env`: the emulator, or a proxy before it).
fn run_on(date: &str, env: &[(&str, String)]) -> std::process::Command {
    let mut args = run_args(date, "az://raw/", "az://lake/iot");
    args.extend(["--lock-wait".to_string(), "1m".to_string()]);
    command(&args, env)
}

/// A run of `date` on the emulator (or a proxy, by `env`) that must succeed: its report.
fn run_ok_on(date: &str, env: &[(&str, String)]) -> Value {
    let out = run_on(date, env).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A catch-up of `from`..=`to` on the emulator's lake that must succeed: its report.
fn caught_up_on(az: &Azurite, from: &str, to: &str) -> Value {
    let range = ["--from", from, "--to", to];
    let (code, report, err) = catchup("az://raw/", "az://lake/iot", &range, &az.env());
    assert_eq!(code, 0, "{report}\n{err}");
    report
}

/// A run of `date` through `stall`, once the request the proxy holds is held.
fn run_until_held(date: &str, stall: &crate::azurite::Stall) -> std::process::Child {
    let child = run_on(date, &stall.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        stall.wait_stalled(std::time::Duration::from_secs(60)),
        "never held"
    );
    child
}

/// A rerun of D that replaces D's silver while the first run of D+1 is
/// going (after D+1's look-back read D, before D+1's silver is committed, so
/// the rerun cannot name D+1 as a dependent): D+1's run records itself as
/// owed a refresh after D, and the next catch-up does it.
#[test]
fn a_rerun_of_an_earlier_date_racing_a_run_leaves_that_run_owed_a_refresh() {
    let az = Azurite::with_fixtures();
    run_ok_on(DATES[1], &az.env());
    // The 12th's silver commit (version 1) is held.
    let stall = crate::azurite::Stall::start(&az, "telemetry/_delta_log/00000000000000000001");
    let later = run_until_held(DATES[2], &stall);
    // Meanwhile the 11th is run again, straight to the emulator: its commit is version 1.
    run_ok_on(DATES[1], &az.env());
    stall.release();
    let out = later.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables"]["telemetry"]["version"], 2, "{report}");

    let run_id = report["run_id"].as_str().unwrap();
    assert_eq!(
        owed_on(&az),
        [format!("{}.after.{}.{run_id}", DATES[2], DATES[1])],
        "the 12th is owed a refresh after the 11th"
    );
    let report = caught_up_on(&az, DATES[1], DATES[2]);
    assert_eq!(
        report["refreshed"],
        serde_json::json!([DATES[2]]),
        "{report}"
    );
}

/// Azurite with the fixtures, the 11th and the 12th run into its lake.
fn two_dates_on_azurite() -> Azurite {
    let az = Azurite::with_fixtures();
    for date in [DATES[1], DATES[2]] {
        run_ok_on(date, &az.env());
    }
    az
}

/// A run of `date` through `refuse`, which refused what it was to: its exit code and report.
fn run_refused(date: &str, refuse: &crate::azurite::Refuse) -> (Option<i32>, Value) {
    let out = run_on(date, &refuse.env()).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(refuse.refused(), "nothing refused: {log}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report)
}

/// A rerun of D whose refresh records after its silver commit fail (the
/// second record of D+1 is refused): the run succeeds, the tables whole, and
/// D keeps its own record, since whether a run replaced what it read
/// meanwhile is not known; the next catch-up refreshes D, then D+1, and
/// leaves nothing owed.
#[test]
fn a_run_whose_records_after_its_silver_commit_fail_keeps_its_own() {
    let az = two_dates_on_azurite();
    // The first record of the 12th after the 11th comes before the commit, the second after it.
    let marker = format!("{}.after.{}", DATES[2], DATES[1]);
    let refuse = crate::azurite::Refuse::start(&az, &marker, 2);
    let (code, report) = run_refused(DATES[1], &refuse);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["tables"]["telemetry"]["version"], 2, "{report}");
    let run_id = report["run_id"].as_str().unwrap();
    let mut expected = vec![
        format!("{}.after.{}.{run_id}", DATES[1], DATES[1]),
        format!("{}.after.{}.{run_id}", DATES[2], DATES[1]),
    ];
    expected.sort();
    assert_eq!(owed_on(&az), expected);

    let report = caught_up_on(&az, DATES[1], DATES[2]);
    assert_eq!(
        report["refreshed"],
        serde_json::json!([DATES[1], DATES[2]]),
        "{report}"
    );
    assert_eq!(owed_on(&az), Vec::<String>::new());
}

/// A rerun of D whose first record, its own lag, is refused: it records
/// nothing else (D+1's record comes after its own) and commits nothing, so
/// nothing is owed and the tables are as they were.
#[test]
fn a_run_whose_own_record_fails_records_nothing_after_it() {
    let az = two_dates_on_azurite();
    let marker = format!("{}.after.{}", DATES[1], DATES[1]);
    let refuse = crate::azurite::Refuse::start(&az, &marker, 1);
    let (code, report) = run_refused(DATES[1], &refuse);
    assert_eq!(code, Some(1), "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("not committed"), "{report}");
    assert!(report["tables"].get("telemetry").is_none(), "{report}");
    assert_eq!(owed_on(&az), Vec::<String>::new());
}

/// A catch-up while the first run of D is under way (held at its silver
/// commit, its records written): D was never run, but its lock is held, so
/// the catch-up removes neither D's own record nor D+1's after D, and D+1
/// waits for D. Once that run is done, the next catch-up refreshes D+1 and
/// leaves nothing owed.
#[test]
fn a_catchup_leaves_a_first_run_under_way_its_records() {
    let az = Azurite::with_fixtures();
    run_ok_on(DATES[2], &az.env());
    // The 11th's first silver commit (telemetry's version 1) is held.
    let stall = crate::azurite::Stall::start(&az, "telemetry/_delta_log/00000000000000000001");
    let first = run_until_held(DATES[1], &stall);
    let held = owed_on(&az);
    let own = format!("{0}.after.{0}.", DATES[1]);
    assert!(held.iter().any(|r| r.starts_with(&own)), "{held:?}");
    let range = ["--from", DATES[2], "--to", DATES[2]];
    let (_, report, err) = catchup("az://raw/", "az://lake/iot", &range, &az.env());
    assert_eq!(owed_on(&az), held, "{report}\n{err}");
    stall.release();
    let out = first.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let report = caught_up_on(&az, DATES[2], DATES[2]);
    assert_eq!(
        report["refreshed"],
        serde_json::json!([DATES[2]]),
        "{report}"
    );
    assert_eq!(owed_on(&az), Vec::<String>::new());
}

#[test]
fn catchup_on_azurite_reruns_the_date_a_late_blob_landed_in() {
    let az = two_dates_on_azurite();
    let store = az.store("raw");
    block_on(async {
        use deltalake::logstore::object_store::{
            path::Path as StorePath, ObjectStoreExt, PutPayload,
        };
        store
            .put(
                &StorePath::from("telemetry/2024/03/11/22/late_copy.json"),
                PutPayload::from(reading("late-az", "2024-03-11T22:30:00Z").into_bytes()),
            )
            .await
            .unwrap();
    });
    let report = caught_up_on(&az, DATES[1], DATES[2]);
    assert_eq!(entry(&report, DATES[1])["added"], 1);
    assert_eq!(report["rerun"], serde_json::json!([DATES[1]]));
    assert_eq!(entry(&report, DATES[2])["blobs_read"], 0);
    assert_eq!(report["refreshed"], serde_json::json!([DATES[2]]));
    let local = temp_lake();
    az.download("lake", "iot/telemetry", &local.path().join("telemetry"));
    assert!(rows_without_run(local.path(), "telemetry")
        .iter()
        .any(|r| r.contains("late-az")));
}

/// `coldpath <command>` over the held-out container into `lake`, which must exit 0.
fn week_cmd(command: &str, raw: &Path, lake: &Path, extra: &[&str]) -> Value {
    let (raw, lake) = (raw.to_str().unwrap(), lake.to_str().unwrap());
    let (code, report, err) = coldpath_with(command, WEEK_LABELS, raw, lake, extra, &[]);
    assert_eq!(code, 0, "{command} {extra:?}: {report}\n{err}");
    report
}

/// A command of many dates opened its site (storage, layout, lake) and read the
/// reference logs once, as its log says (`run::site`).
fn assert_opened_once(log: &str, command: &str) {
    for event in ["site opened", "reference logs read"] {
        assert_eq!(
            log.matches(event).count(),
            1,
            "{command}: \"{event}\" in\n{log}"
        );
    }
}

/// The files of one hour's folder, sorted by name.
fn blobs_of(raw: &Path, date: &str, hour: &str) -> Vec<PathBuf> {
    let dir = raw
        .join("telemetry")
        .join(date.replace('-', "/"))
        .join(hour);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A reading as a JSON line, with a message id of its own.
fn reading_at(device: &str, time: &str, temperature: f64, vibration: f64) -> String {
    format!(
        "{{\"deviceId\":\"{device}\",\"deviceType\":\"pump\",\"timestamp\":\"{time}\",\"temperature\":{temperature},\"pressure\":101.5,\"vibration\":{vibration},\"messageId\":\"late-{device}-{time}\"}}\n"
    )
}

/// Three dates change after they were run, none in another date's look-ahead hours:
/// 2024-05-02 gets a new blob of a device never seen before, one of 2024-05-04's
/// JSON-lines blobs grows by readings of its own device, and one of 2024-05-06's goes.
fn change_three_dates(raw: &Path) {
    let newcomer: String = (0..12)
        .map(|i| {
            let time = format!("2024-05-02T14:{:02}:07.25Z", i * 5);
            reading_at("newcomer-77", &time, 55.5 + f64::from(i) * 0.37, 3.3)
        })
        .collect();
    let hour = blobs_of(raw, "2024-05-02", "14");
    std::fs::write(hour[0].with_file_name("late_newcomer.json"), newcomer).unwrap();

    let grown = blobs_of(raw, "2024-05-04", "10")
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|e| e == "json")
                && std::fs::read_to_string(p).is_ok_and(|t| t.starts_with('{') && t.ends_with('\n'))
        })
        .expect("a JSON-lines blob at 2024-05-04 10:00");
    let mut text = std::fs::read_to_string(&grown).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let device = first["deviceId"].as_str().expect("deviceId").to_string();
    for (i, temperature) in [91.125, 93.5, 97.75].into_iter().enumerate() {
        let time = format!("2024-05-04T10:59:5{i}.5Z");
        text.push_str(&reading_at(&device, &time, temperature, 44.25));
    }
    std::fs::write(&grown, text).unwrap();

    std::fs::remove_file(&blobs_of(raw, "2024-05-06", "12")[0]).unwrap();
}

/// One table's rows of one date (`column` = `date`), without the run's columns.
fn rows_of_date(lake: &Path, table: &str, column: &str, date: &str) -> Vec<String> {
    let tag = format!("\"{column}\":\"{date}\"");
    rows_without_run(lake, table)
        .into_iter()
        .filter(|r| r.contains(&tag))
        .collect()
}

fn dates(v: &[&str]) -> Value {
    serde_json::json!(v)
}

/// Issue 32: eight dates run, three of them change, one catch-up; then every table
/// equals, row for row and bit for bit, a clean backfill of the final container,
/// and the catch-up read no blob of a date that did not change.
#[test]
fn a_catchup_of_three_changed_dates_in_eight_refreshes_every_dependent_and_equals_a_clean_backfill()
{
    let dir = tempfile::tempdir().unwrap();
    crate::held_out::generate(dir.path());
    let raw = dir.path().join("raw");
    let lake = dir.path().join("lake");
    for date in WEEK {
        week_cmd("run", &raw, &lake, &["--date", date]);
    }
    let last_before = (
        rows_of_date(&lake, "features_hourly", "feature_date", WEEK[7]),
        rows_of_date(&lake, "device_health", "health_date", WEEK[7]),
    );
    change_three_dates(&raw);
    // Blobs of dates that did not change, garbage of the same size and time: read, they would show.
    let boobies = [
        Booby::plant_at(blobs_of(&raw, WEEK[0], "12")[0].clone()),
        Booby::plant_at(blobs_of(&raw, WEEK[6], "12")[0].clone()),
    ];

    let plan = plan(WEEK[3], &raw, &lake);
    assert_eq!(plan["dependents"], dates(&WEEK[4..]), "{plan}");

    let (code, report, err) = coldpath_with(
        "catchup",
        WEEK_LABELS,
        raw.to_str().unwrap(),
        lake.to_str().unwrap(),
        &["--from", WEEK[0], "--to", WEEK[7]],
        &[],
    );
    assert_eq!(code, 0, "{report}\n{err}");
    // Seven dates rerun or refreshed, on one site: storage opened and the logs read once.
    assert_opened_once(&err, "catchup");
    let (rerun, refreshed) = (
        [WEEK[1], WEEK[3], WEEK[5]],
        [WEEK[2], WEEK[4], WEEK[6], WEEK[7]],
    );
    assert_eq!(report["rerun"], dates(&rerun), "{report}");
    assert_eq!(report["refreshed"], dates(&refreshed), "{report}");
    for date in WEEK {
        let e = entry(&report, date);
        let changed = rerun.contains(&date);
        assert_eq!(e["state"], if changed { "changed" } else { "unchanged" });
        if changed {
            assert_eq!(e["rerun"], "succeeded", "{e}");
            assert!(e["blobs_read"].as_u64() > Some(0), "{e}");
            assert!(e.get("features_refreshed").is_none(), "{e}");
        } else {
            assert_eq!(e["blobs_read"], 0, "{date} was read: {e}");
        }
        if refreshed.contains(&date) {
            assert_eq!(e["features_refreshed"], "succeeded", "{e}");
        }
    }
    assert_eq!(entry(&report, WEEK[1])["dependents"], dates(&WEEK[2..]));
    assert_eq!(entry(&report, WEEK[5])["dependents"], dates(&WEEK[6..]));
    assert_eq!(entry(&report, WEEK[7])["refreshed_for"], dates(&rerun));
    assert_eq!(entry(&report, WEEK[2])["refreshed_for"], dates(&WEEK[1..2]));
    assert!(entry(&report, WEEK[0]).get("features_refreshed").is_none());
    for booby in boobies {
        booby.remove();
    }

    let clean = dir.path().join("clean");
    let (code, report, err) = coldpath_with(
        "backfill",
        WEEK_LABELS,
        raw.to_str().unwrap(),
        clean.to_str().unwrap(),
        &["--from", WEEK[0], "--to", WEEK[7]],
        &[],
    );
    assert_eq!(code, 0, "{report}\n{err}");
    assert_opened_once(&err, "backfill");
    let mut differ = Vec::new();
    for table in TABLES {
        let (got, want) = (
            rows_without_run(&lake, table),
            rows_without_run(&clean, table),
        );
        assert!(!want.is_empty(), "{table}");
        if got != want {
            let n = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let first = got.iter().zip(&want).find(|(a, b)| a != b);
            differ.push(format!(
                "{table}: {} rows after the catch-up, {} in a clean backfill, {n} differ; first: {first:?}",
                got.len(),
                want.len()
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    // Not vacuous: the last date reads every changed date, and its rows are not the ones it had.
    let last_after = (
        rows_of_date(&lake, "features_hourly", "feature_date", WEEK[7]),
        rows_of_date(&lake, "device_health", "health_date", WEEK[7]),
    );
    assert_ne!(
        last_after.0, last_before.0,
        "the baselines read the changed dates"
    );
    assert_ne!(
        last_after.1, last_before.1,
        "the history reads the changed dates"
    );
    assert!(
        last_after
            .1
            .iter()
            .any(|r| r.contains("\"device_id\":\"newcomer-77\"")
                && r.contains("\"status\":\"SILENT\"")),
        "the device first seen in a late blob is known on the last date, silent"
    );
}

/// `run --date D --refresh-dependents` of `raw` into `lake`: it succeeds; the dates its
/// report lists as dependents, each refreshed successfully.
fn run_refreshing_dependents(date: &str, raw: &Path, lake: &Path) -> Vec<String> {
    let mut args = run_args(date, raw.to_str().unwrap(), lake.to_str().unwrap());
    args.push("--refresh-dependents".into());
    let out = command(&args, &[]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    let dependents = report["dependents"].as_array().unwrap();
    assert!(
        dependents.iter().all(|d| d["status"] == "succeeded"),
        "{report}"
    );
    dependents
        .iter()
        .map(|d| d["date"].as_str().unwrap().to_string())
        .collect()
}

/// A date with no readings at all still has `device_health` rows (every device known from
/// its history, `SILENT`): it reads the silver of the dates before it, so a rerun of one of
/// them refreshes it too, and it ends as a clean run leaves it.
#[test]
fn a_date_without_readings_is_refreshed_after_a_date_it_reads() {
    const QUIET: &str = "2024-03-13";
    let (dir, raw, lake) = three_dates_run();
    run(QUIET, &raw, &lake);
    let quiet = rows_of_date(&lake, "device_health", "health_date", QUIET);
    assert!(!quiet.is_empty(), "a quiet date has device_health rows");
    assert!(
        quiet.iter().all(|r| r.contains("\"status\":\"SILENT\"")),
        "{quiet:?}"
    );
    std::fs::write(
        raw.join("telemetry/2024/03/10/20/late_newcomer.json"),
        reading("newcomer-10", "2024-03-10T20:15:00Z"),
    )
    .unwrap();
    let listed = run_refreshing_dependents(DATES[0], &raw, &lake);
    assert_eq!(listed, [DATES[1], DATES[2], QUIET]);

    let after = rows_of_date(&lake, "device_health", "health_date", QUIET);
    assert!(
        after
            .iter()
            .any(|r| r.contains("newcomer-10") && r.contains("SILENT")),
        "the device of the late blob is known on the quiet date: {after:?}"
    );
    let clean = dir.path().join("clean");
    for date in DATES.iter().chain([&QUIET]) {
        run(date, &raw, &clean);
    }
    assert_eq!(all_rows(&lake), all_rows(&clean));
}

/// `run --date D --refresh-dependents`: an old date run again after a late blob, then
/// every later date that reads its silver, in date order; the report lists them.
#[test]
fn a_run_of_an_old_date_with_refresh_dependents_leaves_the_tables_of_a_clean_run() {
    let (dir, raw, lake) = three_dates_run();
    std::fs::write(
        raw.join("telemetry/2024/03/10/20/late_newcomer.json"),
        reading("newcomer-10", "2024-03-10T20:15:00Z")
            + &reading("newcomer-10", "2024-03-10T20:16:00Z"),
    )
    .unwrap();
    let listed = run_refreshing_dependents(DATES[0], &raw, &lake);
    assert_eq!(listed, [DATES[1], DATES[2]]);

    assert_as_a_clean_run(dir.path(), &raw, &lake);
    let last = rows_of_date(&lake, "device_health", "health_date", DATES[2]);
    assert!(last.iter().any(|r| r.contains("newcomer-10")), "{last:?}");

    // Silver alone has no derived rows of its own to refresh after: refused before anything runs.
    let mut args = run_args(DATES[0], raw.to_str().unwrap(), lake.to_str().unwrap());
    args.extend(["--refresh-dependents".into(), "--silver-only".into()]);
    let out = command(&args, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A nightly label refresh over the 14 dates before stops short of the dates
/// whose 14-day labels settle; `--refresh-labels` takes those too, the day
/// their last hour's horizon is over (2024-03-12: its 23:00 hour predicts at
/// 03-13 00:00 and looks to 03-27 00:00), not a microsecond before.
#[test]
fn a_label_refresh_also_takes_the_dates_whose_labels_just_settled() {
    let (_dir, raw, lake) = three_dates_run();
    let open = |date: &str| {
        let rows = crate::features::features_of(&lake, date);
        rows.iter()
            .filter(|r| get(r, "failure_within_14d").is_null())
            .count()
    };
    assert!(
        open("2024-03-12") > 0,
        "with LABELS, 2024-03-12 has open labels"
    );
    let refresh = |labels: &str, date: &str| label_refresh(&raw, &lake, labels, date);
    let before = refresh("2024-03-26T23:59:59.999999Z", "2024-03-26");
    // The range's own date was never run: nothing to refresh there.
    assert_eq!(before, serde_json::json!(["2024-03-10", "2024-03-11"]));
    assert!(open("2024-03-12") > 0, "not refreshed before it settles");
    let at = refresh("2024-03-27T00:00:00Z", "2024-03-27");
    assert_eq!(at, serde_json::json!(DATES));
    let (failures, cut_off) = (fixture_failures(), 1_711_497_600_000_000); // 2024-03-27
    let mut trues = 0;
    for date in DATES {
        for r in crate::features::features_of(&lake, date) {
            let (device, ws) = (
                get(&r, "device_id").as_str().unwrap(),
                get(&r, "window_start"),
            );
            let want = label_within(&failures, device, ws.as_i64().unwrap(), cut_off, 14);
            assert_eq!(get(&r, "failure_within_14d"), &want, "{date} {device} {ws}");
            trues += usize::from(want == Value::Bool(true));
        }
    }
    assert!(trues > 0, "not vacuous: some labels are true");
}

/// [`owed_in`] of the Azurite lake `az://lake/iot`, read from a local copy.
fn owed_on(az: &Azurite) -> Vec<String> {
    let dir = temp_lake();
    let lake = dir.path().join("lake");
    az.download("lake", "iot", &lake);
    owed_in(&lake)
}

/// The refreshes owed in `lake` (`_coldpath/pending`), each as
/// `<date>.after.<cause>.<run id>` once, however many times that run recorded it.
fn owed_in(lake: &Path) -> Vec<String> {
    let mut owed: Vec<String> = documents_owed(lake)
        .iter()
        .map(|n| {
            let stem = n.strip_suffix(".json").unwrap();
            stem.rsplit_once('.')
                .map_or(stem, |(head, _n)| head)
                .to_string()
        })
        .collect();
    owed.dedup();
    owed
}

/// The names of the documents in `lake`'s `_coldpath/pending`, sorted.
fn documents_owed(lake: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(lake.join("_coldpath/pending")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A `--silver-only` rerun replaces its date's silver and leaves its derived
/// tables as they were: the date owes itself a refresh (and its dependents
/// theirs), so the next catch-up, which finds its blobs unchanged since that
/// run, refreshes both, and the tables equal a clean run's.
#[test]
fn a_silver_only_run_leaves_its_own_date_owed_a_refresh() {
    let (dir, raw, lake) = three_dates_run();
    change_2024_03_11(&raw);
    let mut args = run_args(DATES[1], raw.to_str().unwrap(), lake.to_str().unwrap());
    args.push("--silver-only".into());
    let out = coldpath(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let owed = owed_in(&lake);
    let by = |date: &str| {
        owed.iter()
            .filter(|n| n.starts_with(&format!("{date}.after.{}.", DATES[1])))
            .count()
    };
    assert_eq!(
        (by(DATES[1]), by(DATES[2]), owed.len()),
        (1, 1, 2),
        "{owed:?}"
    );
    let range = ["--from", DATES[0], "--to", DATES[2]];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["rerun"], serde_json::json!([]));
    assert_eq!(report["refreshed"], serde_json::json!([DATES[1], DATES[2]]));
    assert_eq!(
        entry(&report, DATES[1])["refreshed_for"],
        serde_json::json!([DATES[1]])
    );
    assert_eq!(
        owed_in(&lake),
        Vec::<String>::new(),
        "nothing is owed any more"
    );
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// The refreshes a rerun makes owed are recorded before its silver commit: where
/// they cannot be, the run fails and commits nothing, so no new silver lands
/// that no catch-up would know to refresh the later dates for.
#[test]
fn a_rerun_that_cannot_record_what_it_makes_owed_commits_nothing() {
    let (_dir, raw, lake) = three_dates_run();
    change_2024_03_11(&raw);
    let before = all_rows(&lake);
    // The folder is there, empty (every run records its own date and clears it).
    let _ = std::fs::remove_dir_all(lake.join("_coldpath/pending"));
    std::fs::write(lake.join("_coldpath/pending"), b"in the way").unwrap();
    let report = run_failing(DATES[1], &raw, &lake);
    assert!(
        report["error"].as_str().unwrap().contains("pending"),
        "{report}"
    );
    assert!(
        report["tables"].as_object().is_none_or(|t| t.is_empty()),
        "{report}"
    );
    assert_eq!(all_rows(&lake), before, "every table as it was");
    assert_nothing_uncommitted(&lake);
}

/// A refresh of D+1 that runs while a rerun of D is between its silver commit
/// and its `features_hourly` commit reads D's old features for its baselines,
/// and clears the record the rerun made: the rerun records D+1 as owed once more
/// after its own features, so the next catch-up refreshes D+1 again.
#[test]
fn a_refresh_between_a_reruns_silver_and_its_features_stays_owed() {
    let az = Azurite::with_fixtures();
    for date in DATES {
        let out = run_on(date, &az.env()).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The rerun of the 11th: its features_hourly commit (version 3) is held.
    let stall =
        crate::azurite::Stall::start(&az, "features_hourly/_delta_log/00000000000000000003");
    let rerun = run_until_held(DATES[1], &stall);
    // Meanwhile the 12th is refreshed, straight to the emulator.
    let (code, report, err) = coldpath_with(
        "features",
        LABELS,
        "az://raw/",
        "az://lake/iot",
        &["--date", DATES[2]],
        &az.env(),
    );
    assert_eq!(code, 0, "{report}\n{err}");
    stall.release();
    let out = rerun.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    let run_id = report["run_id"].as_str().unwrap();
    assert_eq!(
        owed_on(&az),
        [format!("{}.after.{}.{run_id}", DATES[2], DATES[1])],
        "the 12th is owed a refresh after the 11th's features"
    );
}

/// A date that cannot be listed (a directory loop in its 05:00 folder) fails
/// alone: the dates on either side, each with a late blob, are run again, the
/// middle one is refreshed for the first, reported with its listing's error,
/// and the catch-up exits 1. Once the loop is gone the next catch-up finds the
/// middle date unchanged, and the tables equal a clean run's.
#[test]
fn a_date_that_cannot_be_listed_fails_alone() {
    let (dir, raw, lake) = three_dates_run();
    for (date, device) in [(DATES[0], "late-10"), (DATES[2], "late-12")] {
        let path = raw.join(format!("telemetry/{}/22/late.json", date.replace('-', "/")));
        std::fs::write(path, reading(device, &format!("{date}T22:10:00Z"))).unwrap();
    }
    let looped = raw.join("telemetry/2024/03/11/05/loop");
    std::os::unix::fs::symlink(".", &looped).unwrap();
    let range = ["--from", DATES[0], "--to", DATES[2]];
    let (raw_s, lake_s) = (raw.to_str().unwrap(), lake.to_str().unwrap());

    let (code, report, err) = catchup(raw_s, lake_s, &range, &[]);
    assert_eq!(
        (code, &report["status"]),
        (1, &Value::from("failed")),
        "{report}\n{err}"
    );
    assert_eq!(
        report["rerun"],
        serde_json::json!([DATES[0], DATES[2]]),
        "{report}"
    );
    let d11 = entry(&report, DATES[1]);
    assert_eq!(d11["state"], "listing_failed", "{report}");
    assert!(
        d11["error"]
            .as_str()
            .unwrap()
            .contains("telemetry/2024/03/11/05/"),
        "{d11}"
    );
    assert_eq!(d11["features_refreshed"], "succeeded", "{d11}");
    assert_eq!(d11["refreshed_for"], serde_json::json!([DATES[0]]));
    assert!(err.contains("catchup of 2024-03-11 failed"), "{err}");
    let telemetry = rows_without_run(&lake, "telemetry");
    for device in ["late-10", "late-12"] {
        assert!(telemetry.iter().any(|r| r.contains(device)), "{device}");
    }

    std::fs::remove_file(&looped).unwrap();
    let (code, report, err) = catchup(raw_s, lake_s, &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(entry(&report, DATES[1])["state"], "unchanged");
    assert_eq!(report["rerun"], serde_json::json!([]));
    assert_as_a_clean_run(dir.path(), &raw, &lake);
}

/// `catchup --refresh-labels` of `date` alone at cut-off `labels`, which must
/// succeed: the dates it refreshed.
fn label_refresh(raw: &Path, lake: &Path, labels: &str, date: &str) -> Value {
    let range = ["--from", date, "--to", date, "--refresh-labels"];
    let (raw, lake) = (raw.to_str().unwrap(), lake.to_str().unwrap());
    let (code, report, err) = coldpath_with("catchup", labels, raw, lake, &range, &[]);
    assert_eq!(code, 0, "{report}\n{err}");
    report["refreshed"].clone()
}

/// Sets `path`'s modification time to `at` (RFC 3339): when a log was last written.
fn written_at(path: &Path, at: &str) {
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.timestamp() as u64);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(time).unwrap();
}

/// The fixtures' three dates run, their failure log standing still at 2024-03-01
/// through a label refresh on 2024-03-28 (which settles nothing), then written on
/// 2024-04-10: the label refresh of `range` on 2024-04-11 refreshes the three
/// dates, and every 7- and 14-day label of them is then final, as the definition
/// gives it at the log's time. The lake and the raw container, for more.
fn a_log_jump_refreshed_by(range: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, raw, lake) = three_dates_run();
    let log = raw.join("reference/failures.csv");
    written_at(&log, "2024-03-01T00:00:00Z");
    let refreshed = label_refresh(&raw, &lake, "2024-03-28T00:00:00Z", "2024-03-28");
    assert_eq!(refreshed, serde_json::json!([]));
    written_at(&log, "2024-04-10T00:00:00Z");
    let refreshed = label_refresh(&raw, &lake, "2024-04-11T00:00:00Z", range);
    assert_eq!(refreshed, serde_json::json!(DATES));
    let cut_off = 1_712_707_200_000_000; // 2024-04-10
    let seen = crate::features::labels_as_defined(&lake, &DATES, cut_off);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["false", "true"],
        "{seen:?}"
    );
    (dir, raw, lake)
}

/// A failure log written only when something fails stands still, then jumps:
/// the labels' cut-off is its last write, so no date settles while it stands
/// (a refresh then would leave the labels null), and once it is written every
/// date settled since the last label refresh is refreshed, not only the
/// newest three. Settled once, a date is not taken again.
#[test]
fn a_failure_log_written_late_settles_every_date_it_held_back() {
    let (_dir, raw, lake) = a_log_jump_refreshed_by("2024-04-11");
    let again = label_refresh(&raw, &lake, "2024-04-11T00:00:00Z", "2024-04-11");
    assert_eq!(again, serde_json::json!([]));
}

/// The first label refresh after the log jumped may be of a range before the
/// dates it settles (an old window rerun from the Data Factory monitor): it
/// refreshes them still, after its range, as the watermark it moves says.
#[test]
fn a_label_refresh_of_an_earlier_range_takes_the_dates_settled_after_it() {
    a_log_jump_refreshed_by("2024-03-01");
}

/// A date whose run cannot be looked up (its manifest unreadable: a folder
/// where the document would be) fails its refresh alone: a label refresh of the
/// range still refreshes the dates after it, and the catch-up exits 1.
#[test]
fn a_date_whose_run_cannot_be_looked_up_fails_its_refresh_alone() {
    let (_dir, raw, lake) = three_dates_run();
    std::fs::create_dir_all(lake.join("_coldpath/manifests/2024-03-09.json")).unwrap();
    let range = ["--from", "2024-03-09", "--to", DATES[2], "--refresh-labels"];
    let (code, report, err) = catchup(raw.to_str().unwrap(), lake.to_str().unwrap(), &range, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    let first = entry(&report, "2024-03-09");
    assert_eq!(first["features_refreshed"], "failed", "{report}");
    assert!(
        first["error"].as_str().unwrap().contains("manifest"),
        "{first}"
    );
    for date in DATES {
        assert_eq!(
            entry(&report, date)["features_refreshed"],
            "succeeded",
            "{report}"
        );
    }
}
