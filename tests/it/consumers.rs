//! The files consumers use, checked against the tables a real run writes: Synapse
//! serverless views (`sql/synapse/*.sql`) and the Azure ML `MLTable` of `features_hourly`.

use serde_json::Value;

use crate::common::*;

const TABLES: [&str; 5] = [
    "telemetry",
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "rejects",
];
const UTF8: &str = "Latin1_General_100_BIN2_UTF8";

/// One column of a view's `WITH (…)` clause.
#[derive(Debug)]
struct SqlColumn {
    name: String,
    /// The type as written, lower case: `varchar(256)`, `datetime2(6)`, `float`, …
    ty: String,
    collate: Option<String>,
}

impl SqlColumn {
    fn base(&self) -> &str {
        self.ty.split('(').next().unwrap()
    }
    /// `n` of `varchar(n)`, `usize::MAX` for `varchar(max)`.
    fn width(&self) -> Option<usize> {
        let inner = self.ty.split_once('(')?.1.trim_end_matches(')');
        match inner {
            "max" => Some(usize::MAX),
            n => n.parse().ok(),
        }
    }
}

/// The view's name, its BULK location, its FORMAT and its WITH columns.
fn parse_view(sql: &str) -> (String, String, String, Vec<SqlColumn>) {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let after = |marker: &str| -> &str {
        let i = code.find(marker).unwrap_or_else(|| panic!("no `{marker}`"));
        &code[i + marker.len()..]
    };
    let name = after("CREATE VIEW ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let quoted = |s: &str| s.split('\'').nth(1).unwrap().to_string();
    let bulk = quoted(after("BULK"));
    let format = quoted(after("FORMAT ="));
    let with = after(") WITH (");
    // The clause ends at the parenthesis that closes it (types hold their own).
    let mut depth = 0;
    let mut end = 0;
    for (i, c) in with.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = i;
                break;
            }
            ')' => depth -= 1,
            _ => {}
        }
    }
    let columns = with[..end]
        .split(",\n")
        .map(|entry| {
            let words: Vec<&str> = entry.split_whitespace().collect();
            let collate = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("COLLATE"))
                .map(|i| words[i + 1].to_string());
            SqlColumn {
                // A bracketed name (`[order]`) is the name.
                name: words[0]
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                ty: words[1].to_ascii_lowercase(),
                collate,
            }
        })
        .collect();
    (name, bulk, format, columns)
}

/// The SQL type a Delta primitive type reads as in Synapse.
fn sql_base(delta: &str) -> &'static str {
    match delta {
        "string" => "varchar",
        "long" => "bigint",
        "integer" => "int",
        "double" => "float",
        "boolean" => "bit",
        "date" => "date",
        "timestamp" => "datetime2",
        other => panic!("no Synapse type for Delta `{other}`"),
    }
}

/// (name, Delta type) of each column of a table as written, in order.
fn delta_columns(lake: &std::path::Path, table: &str) -> Vec<(String, String)> {
    let t = open_table(lake, table);
    let schema = serde_json::to_value(t.snapshot().unwrap().schema().as_ref()).unwrap();
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A lake with every table written by real runs on the fixtures.
fn written_lake() -> tempfile::TempDir {
    let lake = temp_lake();
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    lake
}

#[test]
fn the_synapse_views_type_every_column_of_the_tables_as_written() {
    let lake = written_lake();
    for table in TABLES {
        assert_view_types(lake.path(), table);
    }
}

/// `sql/synapse/<table>.sql` against the table as written in `lake`: the columns in
/// order with the Synapse type of each Delta type, the UTF-8 collation on every
/// string and nothing else, every string written within its declared width.
pub fn assert_view_types(lake: &std::path::Path, table: &str) {
    let sql = std::fs::read_to_string(repo().join(format!("sql/synapse/{table}.sql"))).unwrap();
    let (name, bulk, format, columns) = parse_view(&sql);
    assert_eq!(name, format!("dbo.{table}"));
    assert!(bulk.starts_with("https://"), "{bulk}");
    assert!(
        bulk.ends_with(&format!("/{table}/")),
        "{table}: BULK is the table's root: {bulk}"
    );
    assert_eq!(format, "DELTA");
    let written = delta_columns(lake, table);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let want: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, want, "{table}: the view's columns");
    for (col, (_, delta)) in columns.iter().zip(&written) {
        assert_eq!(col.base(), sql_base(delta), "{table}.{}", col.name);
        if col.base() == "varchar" {
            assert_eq!(col.collate.as_deref(), Some(UTF8), "{table}.{}", col.name);
            assert!(col.width().is_some(), "{table}.{}: a width", col.name);
        } else {
            assert_eq!(col.collate, None, "{table}.{}", col.name);
        }
        if col.base() == "datetime2" {
            // Microseconds, as the tables store them.
            assert_eq!(col.width(), Some(6), "{table}.{}", col.name);
        }
    }
    // Every string the runs wrote fits its column (varchar counts UTF-8 bytes).
    let rows = read_rows(lake, table);
    assert!(!rows.is_empty());
    for col in columns.iter().filter(|c| c.base() == "varchar") {
        let longest = rows
            .iter()
            .filter_map(|r| get(r, &col.name).as_str().map(str::len))
            .max()
            .unwrap_or(0);
        assert!(
            longest <= col.width().unwrap(),
            "{table}.{}: {longest} bytes in a {}",
            col.name,
            col.ty
        );
    }
    assert_widths_hold_what_ingest_keeps(table, &columns);
    if table == "rejects" {
        // A record's raw is cut at 4 KiB, a dropped row's is whole: no width holds it.
        let raw = columns.iter().find(|c| c.name == "raw").unwrap();
        assert_eq!(raw.width(), Some(usize::MAX), "{}", raw.ty);
    }
}

/// Every string column whose values ingest bounds is at least that wide, so no
/// row a run keeps fails a Synapse query ("String or binary data would be
/// truncated"): device ids up to 1,024 bytes, device types, priorities and
/// message ids up to theirs (`MAX_TEXT_BYTES`).
fn assert_widths_hold_what_ingest_keeps(table: &str, columns: &[SqlColumn]) {
    use coldpath::testing::{MAX_DEVICE_ID_BYTES, MAX_TEXT_BYTES};
    // A blob's path: Azure allows 1,024 characters, so 4,096 bytes of UTF-8.
    let bounds = [
        ("device_id", MAX_DEVICE_ID_BYTES),
        ("source_file", 4 * 1024),
    ]
    .into_iter()
    .chain(MAX_TEXT_BYTES);
    for (name, bound) in bounds {
        if let Some(col) = columns.iter().find(|c| c.name == name) {
            let width = col.width().unwrap_or(0);
            assert!(
                width >= bound,
                "{table}.{name}: {} holds less than {bound} bytes",
                col.ty
            );
        }
    }
}

#[test]
fn the_mltable_pins_a_version_of_features_hourly_and_lists_its_columns() {
    let lake = written_lake();
    let text = std::fs::read_to_string(repo().join("mltable/features_hourly/MLTable")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    let value = |key: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
            .map(|v| v.trim().to_string())
            .collect()
    };
    assert_eq!(value("type:"), ["mltable"]);
    let folders = value("folder:");
    assert_eq!(folders.len(), 1);
    assert!(folders[0].ends_with("/features_hourly/"), "{}", folders[0]);
    // A version, not a timestamp.
    let versions = value("version_as_of:");
    assert_eq!(versions.len(), 1, "{text}");
    assert!(versions[0].parse::<u64>().is_ok(), "{}", versions[0]);
    assert!(value("timestamp_as_of:").is_empty());
    // keep_columns: the list after it, one `- name` per line.
    let start = lines
        .iter()
        .position(|l| l.trim() == "- keep_columns:")
        .unwrap();
    let listed: Vec<String> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim_start().starts_with("- ") && !l.trim().ends_with(':'))
        .map(|l| l.trim().trim_start_matches("- ").to_string())
        .collect();
    // Every column the table has but its partition column, which Azure ML's
    // reader drops (a keep_columns naming it would name a column it never has).
    let written: Vec<String> = delta_columns(lake.path(), "features_hourly")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "feature_date")
        .collect();
    assert_eq!(listed, written);
    let versioned: Value = serde_json::json!(open_table(lake.path(), "features_hourly").version());
    assert!(
        versioned.as_i64().unwrap() >= 1,
        "the runs wrote versions to pin"
    );
}

/// pyarrow 14 and Azure ML's rslex refuse a Parquet file whose embedded Arrow
/// schema holds a string view (issue 32): every table's files, as runs write
/// them and as `maintain` compacts them, declare plain strings.
#[test]
fn no_table_file_declares_a_string_view() {
    let lake = written_lake();
    for table in TABLES {
        let files = table_parquet_files(&lake.path().join(table));
        assert!(!files.is_empty(), "{table}: no files to check");
        let declared = declared_arrow_types(&files[0]);
        assert!(
            declared.iter().any(|t| t.ends_with(": Utf8")),
            "{table}: {declared:?}"
        );
    }
    assert_no_view_types(lake.path());
    // Compaction rewrites the small files of a date: they stay plain.
    maintain_with_no_retention(lake.path());
    assert_no_view_types(lake.path());
}

/// The lines of `text` after `- keep_columns:` (an MLTable), one `- name` each.
fn kept_columns(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "- keep_columns:")
        .expect("a keep_columns list");
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim().trim_start_matches("- ").to_string())
        .collect()
}

#[test]
fn explain_gives_the_mltable_and_the_synapse_view_of_a_declared_set() {
    // The worked example (jobs/pdm.toml) writes its declared columns; the MLTable and
    // the view `features --explain` prints must name exactly the table's columns.
    let lake = temp_lake();
    let job = repo().join("jobs/pdm.toml");
    let (code, report) = run_job(&job, "2024-03-11", lake.path(), &[]);
    assert_eq!(code, 0, "{report}");
    let written: Vec<(String, String)> = delta_columns(lake.path(), "features_hourly");
    assert!(
        written.iter().any(|(n, _)| n == "pressure_slope_24h"),
        "{written:?}"
    );
    let explain = |format: &str| {
        let out = coldpath(&[
            "features",
            "--job",
            job.to_str().unwrap(),
            "--explain",
            format,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let names = |skip_partition: bool| -> Vec<String> {
        written
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !(skip_partition && n == "feature_date"))
            .collect()
    };
    assert_eq!(kept_columns(&explain("mltable")), names(true));
    let (_, _, _, view) = parse_view(&explain("synapse"));
    assert_widths_hold_what_ingest_keeps("features_hourly (explain)", &view);
    let viewed: Vec<String> = view.iter().map(|c| c.name.clone()).collect();
    assert_eq!(viewed, names(false));
    // Typed as the table has them, the attributes too: --explain reads their
    // file and types each column as a run does (`age` a double, `model` text).
    for (c, (_, delta)) in view.iter().zip(&written) {
        assert_eq!(c.base(), sql_base(delta), "{}", c.name);
    }
    assert!(
        written
            .iter()
            .any(|(n, t)| n == "age" && sql_base(t) == "float"),
        "{written:?}"
    );
    // Each definition line names its column once, in the markdown.
    let markdown = explain("markdown");
    for (name, _) in &written {
        assert!(
            markdown.contains(&format!("| {name} |")),
            "{name} undefined"
        );
    }
}
