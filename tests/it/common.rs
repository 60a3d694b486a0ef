//! Helpers: run the binary, read Delta tables back, load the fixture generator's expectations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::DeltaTable;
use serde_json::{Map, Value};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures_raw() -> PathBuf {
    repo().join("fixtures/raw")
}

pub fn job_file() -> PathBuf {
    repo().join("jobs/local.toml")
}

/// The label cut-off the fixtures' expectations were computed with.
pub const LABELS: &str = "2024-03-20T00:00:00Z";

/// `run` of the local job for `date` with `source` and `lake` overridden and the fixtures' label cut-off.
pub fn run_args(date: &str, source: &str, lake: &str) -> Vec<String> {
    let job = job_file();
    [
        "run",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--source",
        source,
        "--lake",
        lake,
        "--labels-as-of",
        LABELS,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `coldpath` with `args` from the repository root (job files resolve their own relative paths).
pub fn coldpath(args: &[&str]) -> Output {
    coldpath_env(args, &[])
}

/// The binary under test: cargo's, or `COLDPATH_TEST_BIN` when set (a copy kept
/// outside a target directory that another checkout's build may relink meanwhile).
pub fn bin() -> PathBuf {
    std::env::var_os("COLDPATH_TEST_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_coldpath")))
}

/// The `coldpath` command with `args`, from the repository root, with extra
/// environment variables. The tester's own `COLDPATH_*` and `AZURE_*` variables
/// are not passed on (an exported `COLDPATH_REPORT` or `COLDPATH_SOURCE` would
/// change what every test runs): a test sets the ones it means.
pub fn command<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(repo());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("COLDPATH_") || name.starts_with("AZURE_") {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `coldpath` with extra environment variables (Azure credentials, the emulator's address).
pub fn coldpath_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = command(args, env);
    cmd.output().expect("run coldpath")
}

/// `coldpath run` of the local job for `date` into `lake`; returns the exit code and the parsed report.
pub fn run_date(date: &str, lake: &Path, extra: &[&str]) -> (i32, Value) {
    run_job(&job_file(), date, lake, extra)
}

/// `coldpath run` of the job file `job` for `date` into `lake`; the exit code and the parsed report.
pub fn run_job(job: &Path, date: &str, lake: &Path, extra: &[&str]) -> (i32, Value) {
    let lake = lake.to_str().unwrap();
    let mut args = vec![
        "run",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--lake",
        lake,
    ];
    args.extend_from_slice(extra);
    let out = coldpath(&args);
    let code = out.status.code().expect("exit code");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}); exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if code == 0 {
        assert_accounted(&report);
    }
    (code, report)
}

/// Every record read ends in exactly one place: `records_read = rows_written +
/// rejected + duplicates + other_dates` (CONTRACT.md), for every run a test makes
/// that succeeded.
pub fn assert_accounted(report: &Value) {
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("the report has no `{k}`: {report}"))
    };
    let (read, written) = (n("records_read"), n("rows_written"));
    let (rejected, duplicates, other) = (n("rejected"), n("duplicates"), n("other_dates"));
    assert_eq!(
        read,
        written + rejected + duplicates + other,
        "records_read {read} against rows_written {written} + rejected {rejected} + duplicates {duplicates} + other_dates {other}: {report}"
    );
}

/// The generator's expectations for a date (fixtures/expected/<date>.json).
pub fn expected(date: &str) -> Value {
    let path = repo().join(format!("fixtures/expected/{date}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn table_url(lake: &Path, table: &str) -> url::Url {
    url::Url::from_directory_path(lake.join(table)).unwrap()
}

pub fn open_table(lake: &Path, table: &str) -> DeltaTable {
    block_on(async {
        let mut t = deltalake::DeltaTableBuilder::from_url(table_url(lake, table))
            .unwrap()
            .build()
            .unwrap();
        t.load().await.unwrap();
        t
    })
}

/// Every row of a loaded table (partition columns included), as delta-rs scans it.
pub fn scan(table: &DeltaTable) -> Vec<RecordBatch> {
    block_on(async {
        let (_, stream) = table.scan_table().await.unwrap();
        deltalake::operations::collect_sendable_stream(stream)
            .await
            .unwrap()
    })
}

/// Every row of a table as JSON objects; timestamps as µs since the epoch, dates as `YYYY-MM-DD`.
pub fn read_rows(lake: &Path, table: &str) -> Vec<Map<String, Value>> {
    let batches = scan(&open_table(lake, table));
    let mut rows = Vec::new();
    for batch in batches {
        // arrow's JSON writer writes nothing at all (not `[]`) for no rows.
        if batch.num_rows() == 0 {
            continue;
        }
        let mut cols = Vec::new();
        let mut fields = Vec::new();
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let (ty, col) = match field.data_type() {
                DataType::Timestamp(_, _) => {
                    (DataType::Int64, cast(col, &DataType::Int64).unwrap())
                }
                DataType::Date32 => (DataType::Utf8, cast(col, &DataType::Utf8).unwrap()),
                other => (other.clone(), col.clone()),
            };
            fields.push(deltalake::arrow::datatypes::Field::new(
                field.name(),
                ty,
                true,
            ));
            cols.push(col);
        }
        let schema = std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(fields));
        let batch = RecordBatch::try_new(schema, cols).unwrap();
        let mut w = deltalake::arrow::json::ArrayWriter::new(Vec::new());
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let json: Vec<Map<String, Value>> =
            serde_json::from_slice(&w.into_inner()).unwrap_or_else(|e| {
                panic!("{table}: a batch of {} rows as JSON: {e}", batch.num_rows())
            });
        assert_eq!(json.len(), batch.num_rows(), "{table}");
        rows.extend(json);
    }
    rows
}

/// A fresh temporary lake folder.
pub fn temp_lake() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The value of `key` in a row, `null` when absent (arrow's JSON writer omits nulls).
pub fn get<'a>(row: &'a Map<String, Value>, key: &str) -> &'a Value {
    row.get(key).unwrap_or(&Value::Null)
}

/// The `userMetadata` JSON of a table's commit `version`, read from its log file.
pub fn user_metadata(lake: &Path, table: &str, version: u64) -> Value {
    let info = commit_info(lake, table, version);
    serde_json::from_str(info["userMetadata"].as_str().unwrap()).unwrap()
}

/// The `commitInfo` action of a table's commit `version`, read from its log file.
pub fn commit_info(lake: &Path, table: &str, version: u64) -> Value {
    let log = std::fs::read_to_string(
        lake.join(table)
            .join(format!("_delta_log/{version:020}.json")),
    )
    .unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find_map(|v| v.get("commitInfo").cloned())
        .unwrap()
}

/// Holds the local lake's lock file of `table` and `date` with an OS lock, as another run would.
pub fn hold_local_lock(lake: &Path, table: &str, date: &str) -> std::fs::File {
    let path = lake.join(format!("_coldpath/locks/{table}/{date}.lock"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("free at the start");
    file
}

/// Every row of a table without the columns that name the run, as JSON text, sorted: a
/// multiset, so two tables compare equal only with the same rows the same number of times.
pub fn rows_without_run(lake: &Path, table: &str) -> Vec<String> {
    let mut rows: Vec<String> = read_rows(lake, table)
        .into_iter()
        .map(|mut r: Map<String, Value>| {
            r.remove("run_id");
            r.remove("ingested_at");
            Value::Object(r).to_string()
        })
        .collect();
    rows.sort();
    rows
}

/// The tables a job without expectations writes.
pub const RUN_TABLES: [&str; 5] = [
    "telemetry",
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "rejects",
];

/// Each of `tables` as it stands: its version and its rows without the run's
/// columns. Two snapshots are equal only when no table changed.
pub fn snapshot(
    lake: &Path,
    tables: &[&str],
) -> Vec<(Option<deltalake::kernel::Version>, Vec<String>)> {
    tables
        .iter()
        .map(|t| (open_table(lake, t).version(), rows_without_run(lake, t)))
        .collect()
}

/// The `rejects` rows of `date` against the generator's designed rejects
/// (fixtures/expected/<date>.json): the same `(source_file, line, reason)` the same number
/// of times (a multiset), and each `detail` naming what the design says it must (README,
/// "Reject precedence": which field and value failed; each group of alternatives matched
/// case-insensitively by one of its words).
pub fn assert_rejects_as_designed(rejects: &[Map<String, Value>], date: &str) {
    type Key = (String, Option<i64>, String);
    let mut got: std::collections::BTreeMap<Key, Vec<String>> = Default::default();
    for r in rejects.iter().filter(|r| get(r, "run_date") == date) {
        let key = (
            get(r, "source_file").as_str().unwrap().to_string(),
            get(r, "line").as_i64(),
            get(r, "reason").as_str().unwrap().to_string(),
        );
        let detail = get(r, "detail").as_str().unwrap_or_default().to_string();
        got.entry(key).or_default().push(detail);
    }
    let exp = expected(date);
    let mut want: std::collections::BTreeMap<Key, Vec<&Value>> = Default::default();
    for r in exp["rejects"].as_array().unwrap() {
        let key = (
            r["source_file"].as_str().unwrap().to_string(),
            r["line"].as_i64(),
            r["reason"].as_str().unwrap().to_string(),
        );
        want.entry(key).or_default().push(&r["detail_names"]);
    }
    let got_counts: Vec<(&Key, usize)> = got.iter().map(|(k, v)| (k, v.len())).collect();
    let want_counts: Vec<(&Key, usize)> = want.iter().map(|(k, v)| (k, v.len())).collect();
    assert_eq!(
        got_counts, want_counts,
        "{date}: rejects (file, line, reason) × count"
    );
    for (key, names) in &want {
        let mut details = got[key].clone();
        for groups in names {
            let fits = |detail: &String| {
                let detail = detail.to_lowercase();
                groups.as_array().unwrap().iter().all(|group| {
                    group
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|w| detail.contains(&w.as_str().unwrap().to_lowercase()))
                })
            };
            let at = details.iter().position(fits).unwrap_or_else(|| {
                panic!("{date}: {key:?}: no detail in {details:?} names {groups}")
            });
            let detail = details.remove(at);
            assert!(!detail.trim().is_empty(), "{date}: {key:?}: empty detail");
        }
    }
    for r in rejects.iter().filter(|r| get(r, "run_date") == date) {
        assert_raw_is_the_record(r);
    }
}

/// A record's reject keeps the record as the blob holds it (`raw`): for a line
/// of a plain text blob of the fixtures, that line, cut to 4 KiB at a character
/// boundary (CONTRACT.md). Read from the blob here, not from coldpath.
fn assert_raw_is_the_record(reject: &Map<String, Value>) {
    const RAW_BYTES: usize = 4096;
    let file = get(reject, "source_file").as_str().unwrap();
    let (Some(line), true) = (
        get(reject, "line").as_u64(),
        file.ends_with(".json") || file.ends_with(".csv"),
    ) else {
        return;
    };
    let text = std::fs::read_to_string(fixtures_raw().join(file)).unwrap();
    let record = text
        .split('\n')
        .nth(line as usize - 1)
        .unwrap_or_else(|| panic!("{file} has no line {line}"));
    let record = record.strip_suffix('\r').unwrap_or(record);
    let mut cut = record.len().min(RAW_BYTES);
    while !record.is_char_boundary(cut) {
        cut -= 1;
    }
    assert_eq!(
        get(reject, "raw").as_str(),
        Some(&record[..cut]),
        "{file} line {line}"
    );
}

/// Parquet files under a table folder that its current version does not reference.
pub fn unreferenced(lake: &Path, table: &str) -> Vec<std::path::PathBuf> {
    let t = open_table(lake, table);
    let referenced: Vec<String> = t.get_file_uris().unwrap().collect();
    let mut all = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    walk(&lake.join(table), &mut all);
    all.into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            !referenced.iter().any(|uri| uri.ends_with(name))
        })
        .collect()
}

/// `coldpath maintain` of the local job's lake with a 0 s retention (so every
/// file no version references goes); it must succeed.
pub fn maintain_with_no_retention(lake: &Path) -> serde_json::Value {
    let job = job_file();
    let out = coldpath(&[
        "maintain",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
        "--vacuum-retention",
        "0s",
        "--unsafe-retention",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copies a folder tree (a raw container to change without touching the fixtures).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `coldpath features` with the local job, `source` holding only what the command may read.
pub fn features_cmd(lake: &Path, source: &Path, extra: &[&str]) -> (i32, Value, String) {
    let job = job_file();
    let mut args = vec![
        "features",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
        "--source",
        source.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = coldpath(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stderr}"));
    (out.status.code().unwrap(), report, stderr)
}

/// Every Parquet file under `lake`'s table folders (not `_delta_log`, not coldpath's own `_coldpath/`).
pub fn table_parquet_files(lake: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if path.is_dir() && name != "_delta_log" && name != "_coldpath" {
                walk(&path, out);
            } else if name.ends_with(".parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(lake, &mut out);
    out.sort();
    out
}

/// The Arrow types a Parquet file's footer declares: its embedded Arrow schema
/// (`ARROW:schema`, which readers follow) applied to its Parquet schema, as
/// `column: type` per column, nested fields included.
pub fn declared_arrow_types(file: &Path) -> Vec<String> {
    use deltalake::arrow::datatypes::Field;
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    let embedded = meta
        .key_value_metadata()
        .is_some_and(|kv| kv.iter().any(|kv| kv.key == "ARROW:schema"));
    assert!(
        embedded,
        "{}: no ARROW:schema (the check would be empty)",
        file.display()
    );
    let schema = deltalake::parquet::arrow::parquet_to_arrow_schema(
        meta.schema_descr(),
        meta.key_value_metadata(),
    )
    .unwrap();
    fn types(prefix: &str, field: &Field, out: &mut Vec<String>) {
        let name = format!("{prefix}{}", field.name());
        out.push(format!("{name}: {}", field.data_type()));
        match field.data_type() {
            DataType::Struct(children) => {
                for child in children {
                    types(&format!("{name}."), child, out);
                }
            }
            DataType::List(child) | DataType::LargeList(child) | DataType::Map(child, _) => {
                types(&format!("{name}."), child, out)
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for field in schema.fields() {
        types("", field, &mut out);
    }
    out
}

/// No table file under `lake` declares a view type (`Utf8View`, `BinaryView`):
/// pyarrow 14 (`Unrecognized type: 24`) and Azure ML's rslex (`Type <UNKNOWN 24>
/// not supported`) refuse such a file. Returns how many files were checked.
pub fn assert_no_view_types(lake: &Path) -> usize {
    let files = table_parquet_files(lake);
    for file in &files {
        let views: Vec<String> = declared_arrow_types(file)
            .into_iter()
            .filter(|t| t.contains("View"))
            .collect();
        assert!(views.is_empty(), "{}: {views:?}", file.display());
    }
    files.len()
}

/// The names of the data files any commit in the table's log added (every
/// version's, not only the latest's: a replaced file stays for time travel).
pub fn logged_files(table_dir: &Path) -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    for entry in std::fs::read_dir(table_dir.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(add) = action["add"]["path"].as_str() {
                    names.insert(add.rsplit('/').next().unwrap().to_string());
                }
            }
        }
    }
    names
}

/// No Parquet file in any table folder of `lake` is outside the table's Delta
/// log (in no version; a table without a log has no file at all): what a run
/// that committed nothing must leave (issue 32).
pub fn assert_nothing_uncommitted(lake: &Path) {
    if !lake.is_dir() {
        return;
    }
    for entry in std::fs::read_dir(lake).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        if !dir.is_dir() || name.starts_with('_') {
            continue;
        }
        let logged = if dir.join("_delta_log").is_dir() {
            logged_files(&dir)
        } else {
            Default::default()
        };
        let left: Vec<PathBuf> = table_parquet_files(&dir)
            .into_iter()
            .filter(|f| !logged.contains(f.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert!(left.is_empty(), "{name}: files in no version: {left:?}");
    }
}

/// Silver rows against the rows a generator computed from the contract (device,
/// event time, values, message id, enqueued time and source file: which copy dedup
/// kept), value for value; both sides sorted by (device, event time, source file).
pub fn assert_rows_as_designed(got: &[&Map<String, Value>], want: &[Value], what: &str) {
    fn key(r: &Value) -> (String, i64, String) {
        (
            r["device_id"].as_str().unwrap_or_default().to_string(),
            r["event_time"].as_i64().unwrap_or_default(),
            r["source_file"].as_str().unwrap_or_default().to_string(),
        )
    }
    let mut got: Vec<Value> = got.iter().map(|r| Value::Object((*r).clone())).collect();
    got.sort_by_key(key);
    let mut want = want.to_vec();
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len(), "{what}: silver row count");
    for (g, w) in got.iter().zip(&want) {
        for col in [
            "device_id",
            "device_type",
            "event_time",
            "priority",
            "message_id",
            "enqueued_time",
            "source_file",
        ] {
            assert_eq!(g[col], w[col], "{what}: {col} of {w}");
        }
        for col in ["temperature", "pressure", "vibration"] {
            assert_eq!(g[col].as_f64(), w[col].as_f64(), "{what}: {col} of {w}");
        }
        assert!(
            g["run_id"].is_string() && g["ingested_at"].is_i64(),
            "{what}: {g}"
        );
    }
}

/// `dir/raw`: a raw container with the reference logs (headers only) and nothing else yet.
pub fn empty_container(dir: &Path) -> PathBuf {
    let raw = dir.join("raw");
    std::fs::create_dir_all(raw.join("reference")).unwrap();
    std::fs::write(
        raw.join("reference/maintenance.csv"),
        "device_id,maintenance_date,kind\n",
    )
    .unwrap();
    std::fs::write(
        raw.join("reference/failures.csv"),
        "device_id,failure_time,component\n",
    )
    .unwrap();
    raw
}

/// Ages every commit file of `table`'s log 40 days, past delta-rs's log
/// retention (30 days by default): the table's next commit after a checkpoint
/// removes those before the checkpoint, as it would a month on.
pub fn age_log(lake: &Path, table: &str) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    let log = lake.join(table).join("_delta_log");
    for entry in std::fs::read_dir(&log).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(old).unwrap();
        }
    }
}

/// Whether `table`'s log still holds the commit file of `version`.
pub fn log_holds(lake: &Path, table: &str, version: u64) -> bool {
    lake.join(table)
        .join(format!("_delta_log/{version:020}.json"))
        .exists()
}

/// The failures of the fixtures' log: device and time in microseconds.
pub fn fixture_failures() -> Vec<(String, i64)> {
    let text = std::fs::read_to_string(fixtures_raw().join("reference/failures.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let at = chrono::DateTime::parse_from_rfc3339(cols[1]).unwrap();
            (cols[0].to_string(), at.timestamp_micros())
        })
        .collect()
}

/// `failure_within_<days>d` as CONTRACT.md defines it, worked out here from the log:
/// with t = window_start + 1 h, true when the device fails in [t, t + days); else
/// false once t + days is at or before the cut-off; else null.
pub fn label_within(
    failures: &[(String, i64)],
    device: &str,
    window_start: i64,
    cut_off: i64,
    days: i64,
) -> Value {
    const HOUR: i64 = 3_600_000_000;
    let (t, end) = (window_start + HOUR, window_start + HOUR + days * 24 * HOUR);
    if failures
        .iter()
        .any(|(d, at)| d == device && t <= *at && *at < end)
    {
        Value::Bool(true)
    } else if end <= cut_off {
        Value::Bool(false)
    } else {
        Value::Null
    }
}

/// The shipped column map with `humidity` declared (a double of 0 to 100,
/// aliases `humidity`, `hum`), written into `dir`.
pub fn schema_with_humidity(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("schemas/telemetry.toml")).unwrap();
    let path = dir.join("humidity.toml");
    std::fs::write(
        &path,
        format!("{text}\n[[declared]]\nname = \"humidity\"\naliases = [\"humidity\", \"hum\"]\ntype = \"double\"\nmin = 0.0\nmax = 100.0\n"),
    )
    .unwrap();
    path
}
