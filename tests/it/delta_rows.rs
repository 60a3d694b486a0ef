//! A table's rows as its Delta log has them, read with delta-rs, in a form other
//! readers' output is compared against (`mltable.rs`, `pyarrow14.rs`): each value
//! a [`Cell`], so the expected rows never come from the reader under test. And
//! how those tests run their pinned Python reader, from the venv `scripts/test.sh`
//! installs.

use std::path::{Path, PathBuf};

use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};

use crate::common::*;

/// One value, as both sides are compared: floats by their bits, timestamps as
/// µs since the epoch in UTC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    F64(u64),
    Str(String),
    UtcMicros(i64),
}

/// A table at one version, as the Delta log has it.
pub struct Delta {
    /// The table's columns in schema order, partition column included.
    pub columns: Vec<String>,
    pub partitions: Vec<String>,
    /// Each row's values in `columns` order.
    pub rows: Vec<Vec<Cell>>,
    /// Each column's Arrow type as read.
    pub types: Vec<DataType>,
}

/// `table` at `version`, read from its Delta log with delta-rs.
pub fn delta_at(lake: &Path, table: &str, version: u64) -> Delta {
    let t = block_on(async {
        let mut t = deltalake::DeltaTableBuilder::from_url(table_url(lake, table))
            .unwrap()
            .build()
            .unwrap();
        t.load_version(version as _).await.unwrap();
        t
    });
    let snapshot = t.snapshot().unwrap();
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let schema = serde_json::to_value(snapshot.schema().as_ref()).unwrap();
    let columns: Vec<String> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let batches = scan(&t);
    let mut rows = Vec::new();
    let mut types = Vec::new();
    for batch in &batches {
        let cells: Vec<Vec<Cell>> = columns
            .iter()
            .map(|c| {
                let array = batch
                    .column_by_name(c)
                    .unwrap_or_else(|| panic!("{table}: no column {c} read"));
                delta_cells(array, &format!("{table}.{c}"))
            })
            .collect();
        types = columns
            .iter()
            .map(|c| batch.column_by_name(c).unwrap().data_type().clone())
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(cells.iter().map(|col| col[i].clone()).collect());
        }
    }
    Delta {
        columns,
        partitions,
        rows,
        types,
    }
}

/// An Arrow column as cells: integers as i64, floats by their bits (NaN as null:
/// pandas has one NaN for both), strings, UTC timestamps in µs, dates as text.
pub fn delta_cells(array: &ArrayRef, what: &str) -> Vec<Cell> {
    let to = |ty: &DataType| cast(array, ty).unwrap();
    let cells = |a: &dyn Array, value: &dyn Fn(usize) -> Cell| -> Vec<Cell> {
        (0..a.len())
            .map(|i| if a.is_null(i) { Cell::Null } else { value(i) })
            .collect()
    };
    match array.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = to(&DataType::Int64);
            let a = a.as_primitive::<Int64Type>();
            cells(a, &|i| Cell::Int(a.value(i)))
        }
        DataType::Float32 | DataType::Float64 => {
            let a = to(&DataType::Float64);
            let a = a.as_primitive::<Float64Type>();
            cells(a, &|i| match a.value(i) {
                f if f.is_nan() => Cell::Null,
                f => Cell::F64(f.to_bits()),
            })
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            cells(a, &|i| Cell::Bool(a.value(i)))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32 => {
            let a = to(&DataType::Utf8);
            let a = a.as_string::<i32>();
            cells(a, &|i| Cell::Str(a.value(i).to_string()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            let a = to(&DataType::Int64);
            let a = a.as_primitive::<Int64Type>();
            cells(a, &|i| Cell::UtcMicros(a.value(i)))
        }
        other => panic!("{what}: Delta read it as {other}, which this test does not compare"),
    }
}

/// The Python of the venv `$<var>` (or `default`, relative to the repository);
/// its absence fails the test, naming what installs it (`what`, its pins).
pub fn venv_python(var: &str, default: &str, what: &str) -> PathBuf {
    let venv = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let python = repo().join(venv).join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: this test reads the tables with {what}, which scripts/test.sh \
         installs into {default}/ or ${var}; run scripts/test.sh once",
        python.display()
    );
    python
}

/// Runs the reader `script` (relative to the repository) with `python` on `args`
/// in one process, in a folder of its own; its lines, one per argument.
pub fn reader_lines(python: &Path, script: &str, args: &[String]) -> Vec<String> {
    let cwd = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python)
        .arg(repo().join(script))
        .args(args)
        .current_dir(cwd.path())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), args.len(), "one line per argument: {stdout}");
    lines
}

/// A reader's line as JSON, or `Err` with the reader's own message (`{"error": …}`).
pub fn reader_json(line: &str) -> Result<serde_json::Value, String> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    match v["error"].as_str() {
        Some(e) => Err(e.to_string()),
        None => Ok(v),
    }
}

/// The rows a reader printed (`rows`, each a list in the order of `columns`),
/// as cells.
pub fn reader_rows(v: &serde_json::Value, columns: &[(String, String)]) -> Vec<Vec<Cell>> {
    let rows = v["rows"].as_array().unwrap();
    rows.iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            r.iter()
                .zip(columns)
                .map(|(c, (name, _))| reader_cell(c, name))
                .collect()
        })
        .collect()
}

/// One value as the readers' scripts encode it: `{"f64": bits}` (a NaN is null,
/// as [`delta_cells`] reads it), `{"utc_us": µs}`, or a plain value; a timestamp
/// outside UTC, or a type the tables do not hold, fails here.
fn reader_cell(v: &serde_json::Value, column: &str) -> Cell {
    use serde_json::Value;
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => Cell::Int(n.as_i64().unwrap()),
        Value::String(s) => Cell::Str(s.clone()),
        Value::Object(o) => match (o.get("f64"), o.get("utc_us")) {
            (Some(bits), _) => match bits.as_u64().unwrap() {
                b if f64::from_bits(b).is_nan() => Cell::Null,
                b => Cell::F64(b),
            },
            (_, Some(us)) => Cell::UtcMicros(us.as_i64().unwrap()),
            _ => panic!("{column}: the reader gave {v}, not a UTC timestamp or a plain value"),
        },
        Value::Array(_) => panic!("{column}: {v}"),
    }
}
