//! `coldpath run` on the fixtures' raw container: every record accounted for, tables read back.

use std::collections::BTreeSet;

use deltalake::parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};

use serde_json::{Map, Value};

use crate::common::*;

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];

/// The silver columns a rerun must reproduce exactly (all but run_id and ingested_at).
const STABLE: [&str; 11] = [
    "device_id",
    "device_type",
    "event_time",
    "temperature",
    "pressure",
    "vibration",
    "priority",
    "message_id",
    "enqueued_time",
    "source_file",
    "event_date",
];

fn stable(rows: &[Map<String, Value>]) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| STABLE.iter().map(|c| get(r, c).clone()).collect())
        .collect();
    out.sort_by_key(|r| format!("{r:?}"));
    out
}

fn approx(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or(f64::NAN);
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{got} != {want}"
    );
}

#[test]
fn every_date_matches_the_fixture_expectations_record_by_record() {
    let lake = temp_lake();
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &[]);
        assert_eq!(code, 0, "{report}");
        let exp = expected(date);
        for key in [
            "records_read",
            "rows_written",
            "rejected",
            "duplicates",
            "other_dates",
        ] {
            assert_eq!(report[key], exp[key], "{date}: {key}");
        }
        for (reason, n) in exp["rejects_by_reason"].as_object().unwrap() {
            assert_eq!(&report["rejects_by_reason"][reason], n, "{date}: {reason}");
        }
    }

    let silver = read_rows(lake.path(), "telemetry");
    let rejects = read_rows(lake.path(), "rejects");
    for date in DATES {
        let exp = expected(date);
        // Silver: the same rows, value for value.
        let got: Vec<&Map<String, Value>> = silver
            .iter()
            .filter(|r| get(r, "event_date") == date)
            .collect();
        assert_rows_as_designed(&got, exp["rows"].as_array().unwrap(), date);
        // Rejects: the same (file, line, reason) as many times as designed, nothing more,
        // each detail naming the field and value that failed.
        assert_rejects_as_designed(&rejects, date);
    }
}

#[test]
fn tables_are_what_synapse_reads() {
    let lake = temp_lake();
    let (code, report) = run_date("2024-03-11", lake.path(), &[]);
    assert_eq!(code, 0, "{report}");
    for (name, partition) in [("telemetry", "event_date"), ("rejects", "run_date")] {
        let table = open_table(lake.path(), name);
        let snapshot = table.snapshot().unwrap();
        let protocol = snapshot.protocol();
        assert_eq!(protocol.min_reader_version(), 1, "{name}");
        assert_eq!(protocol.min_writer_version(), 2, "{name}");
        assert_eq!(
            snapshot.metadata().partition_columns(),
            &vec![partition.to_string()]
        );
        let schema = serde_json::to_value(snapshot.schema().as_ref()).unwrap();
        let text = schema.to_string();
        assert!(!text.contains("timestamp_ntz"), "{name}: {text}");
        // Commit info names the run, the job and the date.
        let meta = user_metadata(lake.path(), name, 0);
        assert_eq!(meta["run_id"], report["run_id"]);
        assert_eq!(meta["job"], "local");
        assert_eq!(meta["date"], "2024-03-11");
        // Snappy Parquet under the date's partition folder.
        let dir = lake
            .path()
            .join(name)
            .join(format!("{partition}=2024-03-11"));
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{name}: {files:?}");
        assert!(files[0].ends_with(".snappy.parquet"), "{files:?}");
        // Every column of every file Snappy (CONTRACT.md §2), silver's message
        // ids too, though Snappy shrinks them only by a tenth.
        for (column, codec) in column_codecs(&dir.join(&files[0])) {
            assert_eq!(codec, "SNAPPY", "{name}.{column}");
        }
    }
    let telemetry = open_table(lake.path(), "telemetry");
    let fields: Vec<(String, String, bool)> = telemetry
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
        .collect();
    let expect = [
        ("device_id", "string", false),
        ("device_type", "string", true),
        ("event_time", "timestamp", false),
        ("temperature", "double", true),
        ("pressure", "double", true),
        ("vibration", "double", true),
        ("priority", "string", true),
        ("message_id", "string", true),
        ("enqueued_time", "timestamp", true),
        ("source_file", "string", true),
        ("ingested_at", "timestamp", true),
        ("run_id", "string", true),
        ("event_date", "date", true),
    ];
    let expect: Vec<(String, String, bool)> = expect
        .iter()
        .map(|(n, t, null)| (n.to_string(), t.to_string(), *null))
        .collect();
    assert_eq!(fields, expect);
    // In the Parquet files too: every string column is a UTF-8 byte array, as
    // Synapse reads it (the batches reach the writer as string views).
    let dir = lake.path().join("telemetry/event_date=2024-03-11");
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let strings: Vec<(String, bool)> = schema
            .columns()
            .iter()
            .filter(|c| c.physical_type() == PhysicalType::BYTE_ARRAY)
            .map(|c| {
                let utf8 = c.logical_type_ref() == Some(&LogicalType::String)
                    && c.converted_type() == ConvertedType::UTF8;
                (c.name().to_string(), utf8)
            })
            .collect();
        let want = [
            "device_id",
            "device_type",
            "priority",
            "message_id",
            "source_file",
            "run_id",
        ];
        assert_eq!(strings, want.map(|n| (n.to_string(), true)).to_vec());
    }
}

#[test]
fn rerunning_a_date_leaves_the_same_rows() {
    let lake = temp_lake();
    let mut seen = Vec::new();
    let mut run_ids = BTreeSet::new();
    for attempt in 0..3 {
        let (code, report) = run_date("2024-03-11", lake.path(), &[]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["tables"]["telemetry"]["version"], attempt);
        run_ids.insert(report["run_id"].as_str().unwrap().to_string());
        let rows = read_rows(lake.path(), "telemetry");
        assert!(rows.iter().all(|r| get(r, "run_id") == &report["run_id"]));
        seen.push((
            stable(&rows),
            read_rows(lake.path(), "rejects").len(),
            rows_without_run(lake.path(), "rejects"),
            rows_without_run(lake.path(), "features_hourly"),
            rows_without_run(lake.path(), "telemetry_minute"),
            rows_without_run(lake.path(), "device_health"),
        ));
    }
    assert_eq!(run_ids.len(), 3);
    // Every table's rows, as multisets, value for value (only run_id and ingested_at change).
    assert!(!seen[0].2.is_empty() && !seen[0].3.is_empty() && !seen[0].4.is_empty());
    assert!(!seen[0].5.is_empty());
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    // Only the newest files are live: one per partition, not one per run.
    let table = open_table(lake.path(), "telemetry");
    assert_eq!(table.get_file_uris().unwrap().count(), 1);
    // A rerun declares no schema of its own: silver's batches carry string views,
    // and the table must still say `string` without a new `metaData` action.
    for version in 1..3 {
        let log = lake
            .path()
            .join(format!("telemetry/_delta_log/{version:020}.json"));
        let log = std::fs::read_to_string(log).unwrap();
        assert!(log.contains("\"add\""), "{log}");
        assert!(!log.contains("\"metaData\""), "version {version}: {log}");
    }
}

#[test]
fn a_date_replaces_only_its_own_partition() {
    let lake = temp_lake();
    assert_eq!(run_date("2024-03-11", lake.path(), &[]).0, 0);
    let before: Vec<_> = stable(&read_rows(lake.path(), "telemetry"));
    assert_eq!(run_date("2024-03-10", lake.path(), &[]).0, 0);
    let after = read_rows(lake.path(), "telemetry");
    let day2: Vec<Map<String, Value>> = after
        .into_iter()
        .filter(|r| get(r, "event_date") == "2024-03-11")
        .collect();
    assert_eq!(stable(&day2), before);
}

/// Finds the one silver row of a device at an instant (µs).
fn row_at<'a>(rows: &'a [Map<String, Value>], device: &str, iso: &str) -> &'a Map<String, Value> {
    let t = chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap()
        .timestamp_micros();
    let found: Vec<_> = rows
        .iter()
        .filter(|r| get(r, "device_id") == device && get(r, "event_time").as_i64() == Some(t))
        .collect();
    assert_eq!(found.len(), 1, "{device} at {iso}: {found:?}");
    found[0]
}

#[test]
fn awkward_inputs_each_land_where_the_contract_says() {
    let lake = temp_lake();
    let (code, report) = run_date("2024-03-11", lake.path(), &[]);
    assert_eq!(code, 0, "{report}");
    let rows = read_rows(lake.path(), "telemetry");
    let rejects = read_rows(lake.path(), "rejects");
    let from = |hour: &str| -> Vec<&Map<String, Value>> {
        rows.iter()
            .filter(|r| {
                get(r, "source_file")
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("telemetry/{hour}/"))
            })
            .collect()
    };
    let rejects_in = |hour: &str| -> Vec<(Option<i64>, String)> {
        let mut v: Vec<_> = rejects
            .iter()
            .filter(|r| {
                get(r, "source_file")
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("telemetry/{hour}/"))
            })
            .map(|r| {
                (
                    get(r, "line").as_i64(),
                    get(r, "reason").as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // An empty blob: counted, nothing else.
    assert_eq!(report["blobs"]["empty"], 1);
    // Gzip blob (02) and complete JSON array (03): all 16 readings of the hour.
    assert_eq!(from("2024/03/11/02").len(), 16);
    assert_eq!(from("2024/03/11/03").len(), 16);
    // Array cut before `]` (04): its 4 complete elements kept, the cut one (line 6) rejected.
    assert_eq!(from("2024/03/11/04").len(), 16 + 4);
    assert_eq!(
        rejects_in("2024/03/11/04"),
        vec![(Some(6), "malformed_record".into())]
    );
    // Truncated last line (06): the complete line kept, the cut one (line 2) rejected.
    assert_eq!(
        rejects_in("2024/03/11/06"),
        vec![(Some(2), "malformed_record".into())]
    );
    // BOM + CRLF (07): the record parses.
    row_at(&rows, "fan-03", "2024-03-11T07:51:00Z");
    // Numeric strings and NaN (08).
    let r = row_at(&rows, "pump-01", "2024-03-11T08:51:00Z");
    approx(get(r, "temperature"), 40.0 + (531 % 37) as f64 / 10.0);
    assert_eq!(get(r, "pressure").as_f64(), Some(100.0 + (531 % 11) as f64));
    assert!(get(
        row_at(&rows, "pump-02", "2024-03-11T08:52:00Z"),
        "vibration"
    )
    .is_null());
    assert!(get(
        row_at(&rows, "compressor-07", "2024-03-11T08:53:00Z"),
        "temperature"
    )
    .is_null());
    // Offsets and 7-digit fractions (09): +01:00 and -05:30 normalized to UTC, truncated to µs.
    row_at(&rows, "pump-01", "2024-03-11T09:51:00.123456Z");
    row_at(&rows, "pump-02", "2024-03-11T09:52:00.000005Z");
    row_at(&rows, "compressor-07", "2024-03-11T09:53:00Z");
    // Case-variant names, `temp`, IoTHub-only ids (11).
    let r = row_at(&rows, "pump-01", "2024-03-11T11:51:00Z");
    assert_eq!(get(r, "device_type"), "pump");
    let r = row_at(&rows, "pump-02", "2024-03-11T11:52:00Z");
    assert_eq!(get(r, "message_id"), "pump-02-20240311115200-7");
    // CSV with BOM (12): 16 readings, the short row (line 18) rejected.
    assert_eq!(from("2024/03/11/12").len(), 16);
    assert_eq!(
        rejects_in("2024/03/11/12"),
        vec![(Some(18), "malformed_record".into())]
    );
    // Out of range (13): three rejects, the inclusive edges kept.
    assert_eq!(
        rejects_in("2024/03/11/13"),
        vec![
            (Some(1), "out_of_range".into()),
            (Some(2), "out_of_range".into()),
            (Some(3), "out_of_range".into())
        ]
    );
    assert_eq!(
        get(
            row_at(&rows, "fan-03", "2024-03-11T13:53:00Z"),
            "temperature"
        )
        .as_f64(),
        Some(150.0)
    );
    assert_eq!(
        get(
            row_at(&rows, "pump-01", "2024-03-11T13:54:00Z"),
            "temperature"
        )
        .as_f64(),
        Some(-40.0)
    );
    // Rule failures (14), each with its reason and line; the clock-skew edge kept.
    assert_eq!(
        rejects_in("2024/03/11/14"),
        vec![
            (Some(1), "missing_device_id".into()),
            (Some(2), "invalid_timestamp".into()),
            (Some(3), "type_mismatch".into()),
            (Some(4), "malformed_record".into()),
            (Some(5), "malformed_record".into()),
            (Some(6), "event_time_in_future".into()),
        ]
    );
    row_at(&rows, "fan-03", "2024-03-11T15:05:00Z");
    // Late beyond the window (15), and its edge kept.
    assert_eq!(
        rejects_in("2024/03/11/15"),
        vec![(Some(1), "late_beyond_window".into())]
    );
    row_at(&rows, "pump-02", "2024-03-11T13:00:00Z");
    // Epoch seconds and milliseconds (16).
    row_at(&rows, "pump-01", "2024-03-11T16:51:00Z");
    row_at(&rows, "pump-02", "2024-03-11T16:52:00.250Z");
    // A corrupt gzip (17): one whole-file reject with no line.
    assert_eq!(
        rejects_in("2024/03/11/17"),
        vec![(None, "unreadable_file".into())]
    );
    // Look-ahead (next day's 00 and 01 folders): the late readings of the day are in silver.
    row_at(&rows, "pump-01", "2024-03-11T23:40:00Z");
    row_at(&rows, "compressor-07", "2024-03-11T23:59:59.999999Z");
    assert!(
        rejects_in("2024/03/12/00").is_empty(),
        "look-ahead rejects are the next day's"
    );
    // The day-1 late arrival in 00 is not in day 2's partition.
    assert!(rows.iter().all(|r| get(r, "event_date") == "2024-03-11"));
}

#[test]
fn duplicates_keep_the_earliest_enqueued_copy() {
    let lake = temp_lake();
    assert_eq!(run_date("2024-03-11", lake.path(), &[]).0, 0);
    let rows = read_rows(lake.path(), "telemetry");
    // Hour 10: the retry blob repeats three readings enqueued later (originals win) and one
    // enqueued earlier with a different temperature (the copy wins).
    let hour10: Vec<&Map<String, Value>> = rows
        .iter()
        .filter(|r| {
            get(r, "source_file")
                .as_str()
                .unwrap()
                .starts_with("telemetry/2024/03/11/10/")
        })
        .collect();
    let files: BTreeSet<&str> = hour10
        .iter()
        .map(|r| get(r, "source_file").as_str().unwrap())
        .collect();
    assert_eq!(
        files.len(),
        3,
        "original, retry (one winner) and the smaller no-id blob"
    );
    let copy_winner = row_at(&rows, "fan-03", "2024-03-11T10:00:21Z");
    let (minute, dev_idx) = (600.0, 3.0);
    approx(
        get(copy_winner, "temperature"),
        40.0 + 10.0 * dev_idx + (minute % 37.0) / 10.0 + 0.5,
    );
    // No message id: (device, time) is the key and the smaller source_file wins.
    let dir = fixtures_raw().join("telemetry/2024/03/11/10");
    let mut no_id: Vec<(String, f64)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let line = text.lines().find(|l| l.contains("2024-03-11T10:58:00"))?;
            let v: Value = serde_json::from_str(line).unwrap();
            Some((
                format!("telemetry/2024/03/11/10/{name}"),
                v["temperature"].as_f64().unwrap(),
            ))
        })
        .collect();
    no_id.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(no_id.len(), 2, "two copies without a message id");
    assert_ne!(no_id[0].1, no_id[1].1);
    let r = row_at(&rows, "fan-03", "2024-03-11T10:58:00Z");
    assert_eq!(get(r, "source_file"), no_id[0].0.as_str());
    assert_eq!(get(r, "temperature").as_f64(), Some(no_id[0].1));
    assert!(get(r, "message_id").is_null());
}

/// Records in one raw blob, counted from its bytes alone (README: "Line numbers", "Whole-file
/// problems"): gzip inflated (a gzip that does not inflate is one unreadable record), a BOM
/// dropped; CSV rows after the header; JSON array elements (the generator writes one element a
/// line between `[` and `]`, and a cut array's last element is a record too); JSON lines that
/// are not blank.
fn records_in_blob(path: &std::path::Path) -> (u64, String) {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = if name.ends_with(".gz") {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out) {
            Ok(_) if !out.is_empty() => out,
            _ => return (1, String::new()),
        }
    } else {
        bytes
    };
    let text = String::from_utf8(bytes).unwrap();
    let text = text.trim_start_matches('\u{feff}').to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = if name.contains(".csv") {
        lines.len().saturating_sub(1)
    } else if text.trim_start().starts_with('[') {
        lines
            .iter()
            .filter(|l| !matches!(l.trim(), "[" | "]"))
            .count()
    } else {
        lines.len()
    };
    (n as u64, text)
}

/// A record of a look-ahead blob that the contract counts for `date`: a valid reading whose
/// event date is `date`. The fixtures' look-ahead records are JSON lines with a `timestamp`
/// in UTC (`Z`); valid here means numbers where numbers belong (the one invalid look-ahead
/// record has `"pressure": "high"`).
fn counts_for(line: &str, date: &str) -> bool {
    let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let on_date = rec
        .get("timestamp")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with(date) && t.ends_with('Z'));
    let numbers = ["temperature", "pressure", "vibration"]
        .iter()
        .all(|k| rec.get(*k).is_none_or(|v| v.is_number() || v.is_null()));
    on_date && numbers
}

/// The blobs under the hour folders `telemetry/<day>/<HH>` for `hours` hours from `start`.
fn blobs_of_hours(start: chrono::NaiveDateTime, hours: i64) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for h in 0..hours {
        let t = start + chrono::Duration::hours(h);
        let dir = fixtures_raw().join(t.format("telemetry/%Y/%m/%d/%H").to_string());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            out.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn records_read_counts_every_record_of_the_dates_own_partitions() {
    // The contract's accounting (§3): each record in D's own partitions, plus each valid
    // record of the look-ahead partitions (late_arrival = 2 h) whose event_date is D,
    // counted here from the raw files, not from the generator or the run.
    let lake = temp_lake();
    for date in DATES {
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let own: u64 = blobs_of_hours(day, 24)
            .iter()
            .map(|p| records_in_blob(p).0)
            .sum();
        let ahead: u64 = blobs_of_hours(day + chrono::Duration::days(1), 2)
            .iter()
            .map(|p| {
                let (_, text) = records_in_blob(p);
                text.lines().filter(|l| counts_for(l, date)).count() as u64
            })
            .sum();
        assert!(
            own > 300,
            "{date}: the fixture's own partitions hold {own} records"
        );
        let (code, report) = run_date(date, lake.path(), &[]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(
            report["records_read"].as_u64(),
            Some(own + ahead),
            "{date}: {own} records in its own partitions + {ahead} of its look-ahead"
        );
    }
}

/// The float columns of `table` as Arrow arrays, with the device and time of each row.
fn float_cells(
    lake: &std::path::Path,
    table: &str,
    time: &str,
    columns: &[&str],
) -> Vec<(String, i64, String, Option<f64>)> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{Float64Type, Int64Type};
    let t = open_table(lake, table);
    let batches = block_on(async {
        let (_, stream) = t.scan_table().await.unwrap();
        deltalake::operations::collect_sendable_stream(stream)
            .await
            .unwrap()
    });
    let mut out = Vec::new();
    for b in batches {
        let dev = deltalake::arrow::compute::cast(
            b.column_by_name("device_id").unwrap(),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let dev = dev.as_string::<i32>();
        let at = deltalake::arrow::compute::cast(
            b.column_by_name(time).unwrap(),
            &deltalake::arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        let at = at.as_primitive::<Int64Type>();
        for c in columns {
            let col = b.column_by_name(c).unwrap();
            let col = col.as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let v = (!col.is_null(i)).then(|| col.value(i));
                out.push((dev.value(i).to_string(), at.value(i), c.to_string(), v));
            }
        }
    }
    out
}

#[test]
fn a_bare_nan_is_a_null_in_silver_and_never_a_nan_in_any_table() {
    // Read from the Arrow arrays, not the JSON rows: arrow's JSON writer prints a NaN as
    // null, so `read_rows` cannot tell the two apart.
    let lake = temp_lake();
    let (code, report) = run_date("2024-03-11", lake.path(), &[]);
    assert_eq!(code, 0, "{report}");
    let silver = float_cells(
        lake.path(),
        "telemetry",
        "event_time",
        &["temperature", "pressure", "vibration"],
    );
    let us = |iso: &str| {
        chrono::DateTime::parse_from_rfc3339(iso)
            .unwrap()
            .timestamp_micros()
    };
    // The fixture's NaNs (fixtures/generate.py, hours 08 and 18): the string "NaN" and
    // Python's bare NaN, each a null of its column.
    for (device, at, column) in [
        ("pump-02", "2024-03-11T08:52:00Z", "vibration"),
        ("compressor-07", "2024-03-11T08:53:00Z", "temperature"),
        ("pump-02", "2024-03-11T18:42:00Z", "vibration"),
    ] {
        let cells: Vec<_> = silver
            .iter()
            .filter(|(d, t, c, _)| d == device && *t == us(at) && c == column)
            .collect();
        assert_eq!(cells.len(), 1, "{device} {at}: {cells:?}");
        assert_eq!(cells[0].3, None, "{device} {at} {column} must be null");
    }
    assert!(
        silver.iter().all(|(.., v)| v.is_none_or(|v| !v.is_nan())),
        "a NaN in silver"
    );
    let gold = float_cells(
        lake.path(),
        "features_hourly",
        "window_start",
        &[
            "temp_mean",
            "temp_std",
            "pressure_mean",
            "vibration_mean",
            "vibration_std",
            "vibration_max",
            "temp_rolling_mean_6h",
            "temp_rolling_std_6h",
            "vibration_rolling_std_6h",
        ],
    );
    assert!(!gold.is_empty());
    let nan: Vec<_> = gold
        .iter()
        .filter(|(.., v)| v.is_some_and(f64::is_nan))
        .collect();
    assert!(nan.is_empty(), "NaN in features_hourly: {nan:?}");
}

/// Each column's codec in the first row group of a Parquet file.
fn column_codecs(file: &std::path::Path) -> Vec<(String, String)> {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    group
        .columns()
        .iter()
        .map(|c| (c.column_path().string(), format!("{:?}", c.compression())))
        .collect()
}
