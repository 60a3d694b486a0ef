//! Every table read by Azure ML's own reader: `mltable` (rslex underneath, pandas
//! on top) at the versions `tests/mltable/requirements.txt` pins, from the
//! virtual environment `scripts/test.sh` installs (`.venv-mltable/`, or
//! `$COLDPATH_MLTABLE_VENV`). `tests/mltable/read.py` prints what the reader
//! hands back; the expected rows come from the Delta log, read here with delta-rs
//! at the same version, never from the reader's own output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltalake::arrow::datatypes::DataType;

use crate::common::*;
use crate::delta_rows::{
    delta_at, reader_json, reader_lines, reader_rows, venv_python, Cell, Delta,
};

/// Each table a run writes, its partition column, and the column whose UTC date
/// the partition is (what an Azure ML user filters on instead), where it has one.
const TABLES: [(&str, &str, Option<&str>); 6] = [
    ("telemetry", "event_date", Some("event_time")),
    ("features_hourly", "feature_date", Some("window_start")),
    ("telemetry_minute", "event_date", Some("minute_start")),
    ("device_health", "health_date", None),
    ("rejects", "run_date", None),
    ("expectations", "run_date", None),
];

/// What docs/tables.md says pandas makes of columns with nulls: (table, column,
/// dtype), at the later version, whose rows hold nulls there.
const NULLABLE_DTYPES: [(&str, &str, &str); 3] = [
    ("rejects", "line", "float64"),
    ("features_hourly", "days_since_maintenance", "float64"),
    ("features_hourly", "failure_within_14d", "object"),
];

/// What the reader printed for one read (tests/mltable/read.py).
struct Read {
    versions: BTreeMap<String, String>,
    /// (name, pandas dtype)
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Cell>>,
}

fn python() -> PathBuf {
    venv_python(
        "COLDPATH_MLTABLE_VENV",
        ".venv-mltable",
        "Azure ML's mltable (tests/mltable/requirements.txt)",
    )
}

/// The `name==version` pins of tests/mltable/requirements.txt (extras dropped).
fn pins() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("tests/mltable/requirements.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, version) = l.trim().split_once("==").expect("an exact pin");
            let name = name.split('[').next().unwrap();
            (name.to_string(), version.to_string())
        })
        .collect()
}

/// Runs read.py on `specs` (`delta:<version>:<table root>` or `mltable:<folder>`),
/// in one Python process; one result per spec, `Err` with the reader's message.
fn mltable_reads(specs: &[String]) -> Vec<Result<Read, String>> {
    let lines = reader_lines(&python(), "tests/mltable/read.py", specs);
    lines.iter().map(|l| parse_read(l)).collect()
}

fn parse_read(line: &str) -> Result<Read, String> {
    let v = reader_json(line)?;
    let versions = v["versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let columns: Vec<(String, String)> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let rows = reader_rows(&v, &columns);
    Ok(Read {
        versions,
        columns,
        rows,
    })
}

/// The Delta rows without the partition column, in the reader's column order,
/// each value as pandas can hold it: an integer column pandas made float64 (it
/// has nulls, which int64 cannot hold) compared as that float.
fn expected_rows(delta: &Delta, read: &Read, what: &str) -> Vec<Vec<Cell>> {
    let index: Vec<usize> = read
        .columns
        .iter()
        .map(|(name, _)| {
            delta
                .columns
                .iter()
                .position(|c| c == name)
                .unwrap_or_else(|| panic!("{what}: mltable has a column {name} the table has not"))
        })
        .collect();
    let mut rows: Vec<Vec<Cell>> = delta
        .rows
        .iter()
        .map(|row| {
            index
                .iter()
                .zip(&read.columns)
                .map(|(&i, (name, dtype))| match &row[i] {
                    Cell::Int(v) if dtype == "float64" => {
                        let f = *v as f64;
                        assert_eq!(f as i64, *v, "{what}.{name}: {v} is not exact as a float");
                        Cell::F64(f.to_bits())
                    }
                    cell => cell.clone(),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// The reader's `read` of `table` against the Delta log's `delta`: the columns
/// (all but the partition column, which must be gone), timestamps typed UTC,
/// and every row, value for value, the same number of times.
fn assert_same(table: &str, version: u64, delta: &Delta, read: &Read) {
    let what = format!("{table} v{version}");
    let partition = &delta.partitions[0];
    let names: Vec<&str> = read.columns.iter().map(|(n, _)| n.as_str()).collect();
    // The claim the MLTable and docs/tables.md make: Azure ML's reader drops it.
    assert!(
        !names.contains(&partition.as_str()),
        "{what}: mltable now reads the partition column {partition}: \
         the MLTable's comment and docs/tables.md say it drops it"
    );
    let want: Vec<&str> = delta
        .columns
        .iter()
        .filter(|c| *c != partition)
        .map(String::as_str)
        .collect();
    assert_eq!(names, want, "{what}: the columns mltable reads");
    for ((name, dtype), ty) in read.columns.iter().zip(
        delta
            .columns
            .iter()
            .zip(&delta.types)
            .filter(|(c, _)| *c != partition)
            .map(|(_, t)| t),
    ) {
        if matches!(ty, DataType::Timestamp(_, _)) {
            assert!(
                dtype.starts_with("datetime64[") && dtype.ends_with(", UTC]"),
                "{what}.{name}: pandas dtype {dtype}, not a UTC timestamp"
            );
        }
    }
    let want = expected_rows(delta, read, &what);
    let mut got = read.rows.clone();
    got.sort();
    assert_eq!(got.len(), want.len(), "{what}: rows");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: row {i} of {} (sorted) differs\nmltable: {:?}\nDelta:   {:?}\ncolumns: {names:?}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// jobs/local.toml with absolute paths and a warn-only expectation, so a run
/// writes every table, `expectations` included, and the same rows otherwise.
fn job_with_expectations(dir: &Path) -> PathBuf {
    let local = std::fs::read_to_string(job_file()).unwrap();
    let text = local.replace("\"../", &format!("\"{}/", repo().display()))
        + "\n[[expectations]]\nname = \"calm\"\nexpr = \"vibration < 90\"\naction = \"warn\"\n";
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The shipped MLTable (or another) with its folder set to `table_root` and its
/// version to `version`, in a folder of its own for `mltable.load`.
fn mltable_folder(text: &str, table_root: &Path, version: u64, dir: &Path) -> PathBuf {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if let Some((indent, _)) = l.split_once("- folder:") {
                format!("{indent}- folder: {}/", table_root.display())
            } else if let Some((indent, _)) = l.split_once("version_as_of:") {
                format!("{indent}version_as_of: {version}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("MLTable"), lines.join("\n") + "\n").unwrap();
    dir.to_path_buf()
}

#[test]
fn azure_ml_reads_every_table_at_a_pinned_version_as_the_delta_log_has_it() {
    python(); // missing: fail before the runs
    let dir = tempfile::tempdir().unwrap();
    let job = job_with_expectations(dir.path());
    let lake = dir.path().join("lake");
    // v0: 2024-03-10; v1: 2024-03-11; v2: 2024-03-10 again, replacing v0's date
    // (new run ids): what a pinned version is for.
    for date in ["2024-03-10", "2024-03-11", "2024-03-10"] {
        let (code, report) = run_job(&job, date, &lake, &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{date}: {report}");
    }
    let on_disk: Vec<String> = std::fs::read_dir(&lake)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    let mut listed: Vec<&str> = TABLES.iter().map(|t| t.0).collect();
    let mut on_disk: Vec<&str> = on_disk.iter().map(String::as_str).collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(on_disk, listed, "the test reads every table the run wrote");

    let versions = [0u64, 2];
    let mut specs = Vec::new();
    for (table, _, _) in TABLES {
        for v in versions {
            specs.push(format!("delta:{v}:{}", lake.join(table).display()));
        }
    }
    // The shipped MLTable and `--explain mltable`'s, pointed at this lake at v0.
    let shipped = std::fs::read_to_string(repo().join("mltable/features_hourly/MLTable")).unwrap();
    let out = coldpath(&[
        "features",
        "--job",
        job_file().to_str().unwrap(),
        "--explain",
        "mltable",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let explained = String::from_utf8(out.stdout).unwrap();
    let features = lake.join("features_hourly");
    for (name, text) in [("shipped", &shipped), ("explained", &explained)] {
        let folder = mltable_folder(text, &features, 0, &dir.path().join(name));
        specs.push(format!("mltable:{}", folder.display()));
    }
    let mut reads = mltable_reads(&specs).into_iter();

    let pinned = pins();
    for (table, partition, time) in TABLES {
        let mut seen = Vec::new();
        for v in versions {
            let delta = delta_at(&lake, table, v);
            assert_eq!(delta.partitions, [partition], "{table}");
            assert!(
                v == 0 || !delta.rows.is_empty(),
                "{table} v{v}: no rows to compare"
            );
            // The documented replacement: the time column's UTC date is the partition.
            if let Some(time) = time {
                let (p, t) = (
                    delta.columns.iter().position(|c| c == partition).unwrap(),
                    delta.columns.iter().position(|c| c == time).unwrap(),
                );
                for row in &delta.rows {
                    let Cell::UtcMicros(us) = row[t] else {
                        panic!("{table}.{time}: {:?}", row[t])
                    };
                    let date = chrono::DateTime::from_timestamp_micros(us)
                        .unwrap()
                        .date_naive()
                        .to_string();
                    assert_eq!(
                        row[p],
                        Cell::Str(date),
                        "{table}: {partition} against {time}"
                    );
                }
            }
            match reads.next().unwrap() {
                Ok(read) => {
                    for (name, version) in &read.versions {
                        if let Some(pin) = pinned.get(name) {
                            assert_eq!(version, pin, "{name}: the venv holds another version");
                        }
                    }
                    assert!(read.versions.contains_key("mltable"));
                    assert!(
                        !delta.rows.is_empty(),
                        "{table} v{v}: mltable now reads a version without a file; \
                         docs/tables.md says it fails"
                    );
                    assert_same(table, v, &delta, &read);
                    let documented = NULLABLE_DTYPES.iter().filter(|d| d.0 == table && v == 2);
                    for (_, column, dtype) in documented {
                        let got = read.columns.iter().find(|c| c.0 == *column).unwrap();
                        assert_eq!(&got.1, dtype, "{table}.{column}: docs/tables.md");
                    }
                }
                // A version without a file (rejects of a clean first date) is
                // refused, not read as no rows.
                Err(e) => {
                    assert!(
                        delta.rows.is_empty(),
                        "{table} v{v}: mltable failed on {} rows: {e}",
                        delta.rows.len()
                    );
                    assert!(
                        e.contains("Unable to find any parquet files"),
                        "{table} v{v}: {e}"
                    );
                }
            }
            let mut rows = delta.rows;
            rows.sort();
            seen.push(rows);
        }
        // The pin matters: the versions differ, so a reader that ignored
        // version_as_of would have failed above.
        assert_ne!(seen[0], seen[1], "{table}: v0 and v2 hold the same rows");
    }
    // The MLTables read features_hourly at v0: the same rows as the log has.
    let delta = delta_at(&lake, "features_hourly", 0);
    for name in ["shipped", "explained"] {
        let read = reads
            .next()
            .unwrap()
            .unwrap_or_else(|e| panic!("the {name} MLTable: {e}"));
        assert_same("features_hourly", 0, &delta, &read);
    }
}

/// The worked declared set (`jobs/pdm.toml`: windows and slopes, event counts,
/// per-component maintenance and labels with their nulls, a text and a number
/// attribute) is read by Azure ML through its `features --explain mltable`, value
/// for value as the Delta log has it, every declared column typed.
#[test]
fn azure_ml_reads_a_declared_feature_set_through_its_explained_mltable() {
    python(); // missing: fail before the runs
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = repo().join("jobs/pdm.toml");
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, report) = run_job(&job, date, &lake, &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{date}: {report}");
    }
    let out = coldpath(&[
        "features",
        "--job",
        job.to_str().unwrap(),
        "--explain",
        "mltable",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let explained = String::from_utf8(out.stdout).unwrap();
    let features = lake.join("features_hourly");
    let folder = mltable_folder(&explained, &features, 1, &dir.path().join("explained"));
    let mut reads = mltable_reads(&[format!("mltable:{}", folder.display())]).into_iter();
    let read = reads
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("the explained MLTable: {e}"));
    let delta = delta_at(&lake, "features_hourly", 1);
    for column in [
        "errors_error1_count_24h",
        "failure_bearing_within_24h",
        "model",
        "age",
    ] {
        assert!(
            read.columns.iter().any(|c| c.0 == column),
            "{column}: {:?}",
            read.columns
        );
    }
    assert_same("features_hourly", 1, &delta, &read);
}
