//! Every table's data files read by pyarrow 14, the oldest pyarrow the tables
//! promise to serve (docs/tables.md), from the virtual environment
//! `scripts/test.sh` installs (`.venv-pyarrow14/`, or `$COLDPATH_PYARROW14_VENV`).
//! `tests/pyarrow14/read.py` reads each file the log's latest version lists; the
//! expected schema comes from the Delta log's own schema and the expected rows
//! from delta-rs, never from pyarrow's output.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::delta_rows::{delta_at, reader_json, reader_lines, reader_rows, venv_python, Cell};

fn python() -> PathBuf {
    venv_python(
        "COLDPATH_PYARROW14_VENV",
        ".venv-pyarrow14",
        "pyarrow 14 (tests/pyarrow14/requirements.txt)",
    )
}

/// What read.py printed for one file.
struct File {
    /// (name, pyarrow's type)
    schema: Vec<(String, String)>,
    rows: Vec<Vec<Cell>>,
}

/// Runs read.py on `files` in one Python process; one result per file, `Err`
/// with pyarrow's message. Every read must say it was pyarrow 14.
fn pyarrow_reads(files: &[String]) -> Vec<Result<File, String>> {
    let lines = reader_lines(&python(), "tests/pyarrow14/read.py", files);
    lines.iter().map(|l| parse_file(l)).collect()
}

fn parse_file(line: &str) -> Result<File, String> {
    let v = reader_json(line)?;
    let version = v["pyarrow"].as_str().unwrap();
    assert!(
        version.starts_with("14."),
        "the venv holds pyarrow {version}"
    );
    let schema: Vec<(String, String)> = v["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
        .collect();
    let rows = reader_rows(&v, &schema);
    Ok(File { schema, rows })
}

/// The pyarrow type a Delta primitive type must be read as: the Delta protocol's
/// mapping, timestamps in µs and UTC (CONTRACT.md), strings never `string_view`.
fn pyarrow_type(delta: &str) -> &'static str {
    match delta {
        "string" => "string",
        "long" => "int64",
        "integer" => "int32",
        "short" => "int16",
        "byte" => "int8",
        "double" => "double",
        "float" => "float",
        "boolean" => "bool",
        "timestamp" => "timestamp[us, tz=UTC]",
        other => panic!("the Delta type {other} is not one the tables hold"),
    }
}

/// A table's latest version as its log describes it.
struct Latest {
    version: u64,
    /// (name, Delta type) in schema order, from the log's schema.
    columns: Vec<(String, String)>,
    /// Each data file's path and the (column, value) partitions its path carries.
    files: Vec<(String, Vec<(String, String)>)>,
}

/// `table`'s latest version: its columns and types from the log's schema, and
/// its data files with the partition values their paths carry.
fn latest(lake: &Path, table: &str) -> Latest {
    let t = open_table(lake, table);
    let version = t.version().unwrap();
    let schema = serde_json::to_value(t.snapshot().unwrap().schema().as_ref()).unwrap();
    let columns = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let ty = f["type"].as_str().unwrap_or_else(|| panic!("{table}: {f}"));
            (f["name"].as_str().unwrap().to_string(), ty.to_string())
        })
        .collect();
    let files = t
        .get_file_uris()
        .unwrap()
        .map(|uri| {
            let path = uri.strip_prefix("file://").unwrap_or(&uri).to_string();
            let parts = path
                .split('/')
                .filter_map(|s| s.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (path, parts)
        })
        .collect();
    Latest {
        version,
        columns,
        files,
    }
}

/// Every table of `lake` at its latest version: each file's schema is the log's
/// (partition columns left out, as they are of a Delta file), and the files'
/// rows with their partition values are the table's rows, value for value, the
/// same number of times. Returns the rows compared.
fn assert_pyarrow14_reads(lake: &Path) -> usize {
    let mut compared = 0;
    for table in table_names(lake) {
        let Latest {
            version,
            columns,
            files,
        } = latest(lake, &table);
        let delta = delta_at(lake, &table, version);
        let in_file: Vec<(String, &str)> = columns
            .iter()
            .filter(|(c, _)| !delta.partitions.contains(c))
            .map(|(c, t)| (c.clone(), pyarrow_type(t)))
            .collect();
        let paths: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        let mut got = Vec::new();
        for ((path, parts), read) in files.iter().zip(pyarrow_reads(&paths)) {
            let read = read.unwrap_or_else(|e| panic!("{table}: pyarrow 14 refused {path}: {e}"));
            let schema: Vec<(String, &str)> = read
                .schema
                .iter()
                .map(|(n, t)| (n.clone(), t.as_str()))
                .collect();
            assert_eq!(schema, in_file, "{table}: {path}");
            for row in read.rows {
                let mut values = row.into_iter();
                let full: Vec<Cell> = delta
                    .columns
                    .iter()
                    .map(|c| match parts.iter().find(|(k, _)| k == c) {
                        Some((_, v)) => Cell::Str(v.clone()),
                        None => values.next().unwrap(),
                    })
                    .collect();
                got.push(full);
            }
        }
        let mut want = delta.rows;
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "{table} v{version}: rows");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{table} v{version}: row {i} of {} (sorted) differs\npyarrow 14: {:?}\nDelta:      {:?}\ncolumns: {:?}",
                got.len(),
                got[i],
                want[i],
                delta.columns
            );
        }
        compared += got.len();
    }
    compared
}

/// The tables under `lake` (its folders but `_coldpath`).
fn table_names(lake: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lake)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    names
}

/// Two dates of the local job with a warn-only expectation (every table,
/// `expectations` and `rejects` included) and files rolled at 1 KiB, then `maintain`'s compaction, which
/// writes its own files; and two dates of the worked declared set
/// (`jobs/pdm.toml`). pyarrow 14 reads every file of every table, each time.
#[test]
fn pyarrow_14_reads_every_table_written_and_compacted() {
    python(); // missing: fail before the runs
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.toml");
    let text = std::fs::read_to_string(job_file())
        .unwrap()
        .replace("\"../", &format!("\"{}/", repo().display()))
        + "\n[[expectations]]\nname = \"calm\"\nexpr = \"vibration < 90\"\naction = \"warn\"\n";
    // The runs roll files at 1 KiB; maintain compacts them at the default size.
    let compact = dir.path().join("compact.toml");
    std::fs::write(&compact, &text).unwrap();
    std::fs::write(&local, text + "\n[limits]\nfile_size = \"1KiB\"\n").unwrap();
    let pdm = repo().join("jobs/pdm.toml");
    for (job, name) in [(&local, "lake"), (&pdm, "pdm")] {
        let lake = dir.path().join(name);
        for date in ["2024-03-10", "2024-03-11"] {
            let (code, report) = run_job(job, date, &lake, &["--labels-as-of", LABELS]);
            assert_eq!(code, 0, "{name} {date}: {report}");
        }
        // Every table but `expectations`, which only the local job declares.
        let names = table_names(&lake);
        assert!(names.len() >= 5, "{name}: {names:?}");
        let rows = assert_pyarrow14_reads(&lake);
        assert!(rows > 0, "{name}: no rows compared");
    }
    // Files rolled at 1 KiB, so maintain has something to compact.
    let lake = dir.path().join("lake");
    let files = |t: &str| open_table(&lake, t).get_file_uris().unwrap().count();
    let before = files("telemetry");
    let out = coldpath(&[
        "maintain",
        "--job",
        compact.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        files("telemetry") < before,
        "maintain compacted nothing: {before} files"
    );
    assert_pyarrow14_reads(&lake);
}
