//! Hostile and unlucky input: blobs built to crash or exhaust the decoders, a
//! layout that lists nothing, credentials in URLs. Each must end in a contract
//! exit code with every record accounted for, the other rows unchanged and no
//! secret in any output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// The hour folder of 2024-03-11 the hostile blobs are dropped into.
const HOUR: &str = "telemetry/2024/03/11/10";

fn hostile_dir() -> PathBuf {
    repo().join("fixtures/hostile")
}

/// A job over `source` into `<dir>/lake` with the small limits the hostile corpus is built for.
fn job(dir: &Path, source: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"hostile\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\nschema = {:?}\nmax_reject_ratio = 0.5\n{extra}\n[limits]\nmax_blob_bytes = \"4MiB\"\nmax_record_bytes = \"64KiB\"\n",
        source.to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
        repo().join("schemas/telemetry.toml").to_str().unwrap(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(job: &Path, date: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run", "--job", job.to_str().unwrap(), "--date", date];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--labels-as-of", LABELS]);
    let out = coldpath(&args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run's report, checked for the accounting identity (every record read ends
/// in exactly one place: `records_read = rows_written + rejected + duplicates +
/// other_dates`) before its exit code, so a failing run shows the identity or its
/// breach, not only its exit code; then the exit code must be `want`.
fn accounted(want: i32, (code, out, err): &(i32, String, String)) -> Value {
    let report: Value = serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("exit {code}, no report on stdout ({e}): {out}{err}"));
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("exit {code}: the report has no `{k}`: {report}\n{err}"))
    };
    let (read, written, rejected, duplicates, other) = (
        n("records_read"),
        n("rows_written"),
        n("rejected"),
        n("duplicates"),
        n("other_dates"),
    );
    assert_eq!(
        read,
        written + rejected + duplicates + other,
        "exit {code}: records_read {read} against rows_written {written} + rejected {rejected} + duplicates {duplicates} + other_dates {other}\n{report}\n{err}"
    );
    assert_eq!(*code, want, "{out}{err}");
    report
}

fn is_hostile(row: &str) -> bool {
    row.contains("\"device_id\":\"hostile")
}

#[test]
fn hostile_blobs_cost_only_themselves() {
    let expected: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(hostile_dir().join("expected.json")).unwrap(),
    )
    .unwrap();
    assert!(expected.len() >= 15, "the corpus is all there");

    // The clean date, as the fixtures have it.
    let clean = temp_lake();
    let clean_job = job(clean.path(), &fixtures_raw(), "");
    let clean_report = accounted(0, &run(&clean_job, "2024-03-11", &[]));

    // The same container with every hostile blob in one hour folder.
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    for name in expected.keys() {
        std::fs::copy(
            hostile_dir().join("blobs").join(name),
            raw.join(HOUR).join(name),
        )
        .unwrap();
    }
    let job = job(dir.path(), &raw, "");
    let report = accounted(0, &run(&job, "2024-03-11", &[]));

    // Exactly the designed rejects, blob by blob: reason, line and what the detail names.
    let lake = dir.path().join("lake");
    let mut got: BTreeMap<String, Vec<(String, Value, String)>> = BTreeMap::new();
    for row in read_rows(&lake, "rejects") {
        let file = get(&row, "source_file").as_str().unwrap().to_string();
        let name = file.rsplit('/').next().unwrap().to_string();
        if !expected.contains_key(&name) {
            continue;
        }
        got.entry(name).or_default().push((
            get(&row, "reason").as_str().unwrap().to_string(),
            get(&row, "line").clone(),
            get(&row, "detail").as_str().unwrap().to_string(),
        ));
    }
    let mut hostile_rejects = 0;
    let mut hostile_rows = Vec::new();
    for (name, want) in &expected {
        let want_rejects = want["rejects"].as_array().unwrap();
        let have = got.get(name).cloned().unwrap_or_default();
        assert_eq!(have.len(), want_rejects.len(), "{name}: {have:?}");
        for (w, (reason, line, detail)) in want_rejects.iter().zip(&have) {
            assert_eq!(reason, w[0].as_str().unwrap(), "{name}: {detail}");
            assert_eq!(line, &w[1], "{name}: {detail}");
            for word in w[2].as_array().unwrap() {
                assert!(
                    detail.contains(word.as_str().unwrap()),
                    "{name}: `{detail}` lacks {word}"
                );
            }
            assert!(!detail.is_empty());
        }
        hostile_rejects += want_rejects.len() as u64;
        for row in want["rows"].as_array().unwrap() {
            let mut row = row.clone();
            row["source_file"] = Value::from(format!("{HOUR}/{name}"));
            hostile_rows.push(row);
        }
    }
    assert_eq!(
        report["rejected"].as_u64().unwrap(),
        clean_report["rejected"].as_u64().unwrap() + hostile_rejects
    );

    // The clean rows are untouched; the hostile blobs add only their good records.
    let rows = rows_without_run(&lake, "telemetry");
    let clean_rows = rows_without_run(&clean.path().join("lake"), "telemetry");
    let (hostile, others): (Vec<_>, Vec<_>) = rows.iter().partition(|r| is_hostile(r));
    assert_eq!(others.len(), clean_rows.len());
    assert!(others.iter().all(|r| clean_rows.contains(*r)));
    assert_eq!(hostile.len(), hostile_rows.len(), "{hostile:?}");
    // Value for value, as the generator designed them.
    let silver = read_rows(&lake, "telemetry");
    let hostile: Vec<_> = silver
        .iter()
        .filter(|r| {
            get(r, "device_id")
                .as_str()
                .is_some_and(|d| d.starts_with("hostile"))
        })
        .collect();
    assert_rows_as_designed(&hostile, &hostile_rows, "hostile blobs");
}

#[test]
fn a_listing_that_finds_nothing_never_empties_a_date_that_holds_rows() {
    let dir = temp_lake();
    let good = job(dir.path(), &fixtures_raw(), "");
    let (code, out, err) = run(&good, "2024-03-11", &[]);
    assert_eq!(code, 0, "{out}{err}");
    let lake = dir.path().join("lake");
    let before = snapshot(&lake, &RUN_TABLES);
    assert!(!before[0].1.is_empty());

    // A typo in the layout lists nothing: exit 1, every table as it was.
    let typo = dir.path().join("typo.toml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("layout = \"telemetry/", "layout = \"telemetri/");
    std::fs::write(&typo, text).unwrap();
    let (code, out, err) = run(&typo, "2024-03-11", &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--allow-empty") && err.contains("no blobs"),
        "{err}"
    );
    let after = snapshot(&lake, &RUN_TABLES);
    assert_eq!(before, after, "no table changed");

    // Said to be intended, the empty result replaces the date.
    let (code, out, err) = run(&typo, "2024-03-11", &["--allow-empty"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(rows_without_run(&lake, "telemetry").is_empty());

    // A date that never held rows stays an ordinary empty run.
    let (code, out, err) = run(&typo, "2024-03-12", &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn layouts_that_leave_the_source_are_configuration_errors() {
    let dir = temp_lake();
    for layout in [
        "../telemetry/{yyyy}/{MM}/{dd}/{HH}/",
        "telemetry/../../{yyyy}/{MM}/{dd}/",
        "/etc/{yyyy}/{MM}/{dd}/",
    ] {
        let text = format!(
            "name = \"x\"\nsource = {:?}\nlayout = {layout:?}\nlake = {:?}\n",
            fixtures_raw().to_str().unwrap(),
            dir.path().join("lake").to_str().unwrap()
        );
        let path = dir.path().join("job.toml");
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run(&path, "2024-03-11", &[]);
        assert_eq!(code, 2, "{layout}: {out}{err}");
        assert!(err.contains(layout) && err.contains("layout"), "{err}");
        assert!(!dir.path().join("lake/telemetry").exists());
    }
}

#[test]
fn a_sas_in_a_url_is_refused_and_never_printed() {
    let dir = temp_lake();
    let planted = "sig=PLANTEDSECRET0042";
    let url = format!(
        "https://acct.blob.core.windows.net/raw?sv=2022-11-02&se=2030-01-01&skoid=k0042&{planted}"
    );
    let report = dir.path().join("report.json");
    let good = job(dir.path(), &fixtures_raw(), "");
    for flag in ["--source", "--lake"] {
        let (code, out, err) = run(
            &good,
            "2024-03-11",
            &[flag, &url, "--report", report.to_str().unwrap()],
        );
        assert_eq!(code, 2, "{flag}: {out}{err}");
        assert!(err.contains(flag) && err.contains("query string"), "{err}");
        let written = std::fs::read_to_string(&report).unwrap();
        for channel in [&out, &err, &written] {
            for secret in ["PLANTEDSECRET0042", "k0042", "2022-11-02"] {
                assert!(!channel.contains(secret), "{secret} leaked: {channel}");
            }
        }
    }
    // In the job file too.
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("lake = ", &format!("lake = {url:?}\n# was: "));
    let in_file = dir.path().join("sas.toml");
    std::fs::write(&in_file, text).unwrap();
    let (code, out, err) = run(&in_file, "2024-03-11", &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("lake"), "{err}");
    assert!(!format!("{out}{err}").contains("PLANTEDSECRET0042"));
    // And in the other files a job names: the reference logs, an event log, the attributes.
    let others = [
        ("reference.failures", format!("[reference]\nfailures = {url:?}")),
        (
            "features.events.path",
            format!("[[features.events]]\nname = \"alarms\"\npath = {url:?}\ncodes = [\"e1\"]\nwindows = [\"24h\"]"),
        ),
        (
            "features.attributes.path",
            format!("[features.attributes]\npath = {url:?}\ncolumns = [\"model\"]"),
        ),
    ];
    for (key, section) in others {
        let path = job(dir.path(), &fixtures_raw(), &section);
        let (code, out, err) = run(&path, "2024-03-11", &[]);
        assert_eq!(code, 2, "{key}: {out}{err}");
        assert!(err.contains(key) && err.contains("query string"), "{err}");
        assert!(
            !format!("{out}{err}").contains("PLANTEDSECRET0042"),
            "{key}"
        );
    }
}

/// A reference log at its own location that cannot be opened says why (here: a
/// scheme coldpath does not read), not that the file does not exist; a local
/// folder that is not there is a missing file.
#[test]
fn a_reference_location_that_cannot_be_opened_says_why() {
    let dir = temp_lake();
    let gone = dir.path().join("no-such-folder/failures.csv");
    let cases = [
        ("s3://bucket/ref/failures.csv", "unsupported storage scheme"),
        (gone.to_str().unwrap(), "does not exist"),
    ];
    for (location, why) in cases {
        let section = format!("[reference]\nfailures = {location:?}");
        let path = job(dir.path(), &fixtures_raw(), &section);
        let (code, out, err) = run(&path, "2024-03-11", &[]);
        assert_eq!(code, 2, "{location}: {out}{err}");
        assert!(err.contains(why), "{location}: {err}");
        assert!(err.contains(location), "{location}: {err}");
    }
}

#[test]
fn a_lake_that_is_a_file_and_a_name_of_megabytes_are_configuration_errors() {
    let dir = temp_lake();
    let file = dir.path().join("lake-file");
    std::fs::write(&file, "not a folder").unwrap();
    let good = job(dir.path(), &fixtures_raw(), "");
    let (code, out, err) = run(&good, "2024-03-11", &["--lake", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not a folder"), "{err}");

    let text = std::fs::read_to_string(&good).unwrap().replace(
        "name = \"hostile\"",
        &format!("name = \"{}\"", "n".repeat(5000)),
    );
    let long = dir.path().join("long.toml");
    std::fs::write(&long, text).unwrap();
    let (code, out, err) = run(&long, "2024-03-11", &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("`name`") && out.len() + err.len() < 20_000,
        "{err}"
    );
}

/// A JSON line of `len` bytes that starts like a record of device `long-<tag>`.
fn long_line(tag: &str, len: usize) -> String {
    let head =
        format!("{{\"deviceId\":\"long-{tag}\",\"timestamp\":\"2024-03-11T10:30:00Z\",\"pad\":\"");
    format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
}

/// A valid record of hour 10; returns its message id and its line.
fn good_line(tag: &str, i: usize) -> (String, String) {
    let id = format!("good-{tag}-{i}");
    let line = serde_json::json!({
        "deviceId": format!("dev-{tag}"),
        "timestamp": format!("2024-03-11T10:{i:02}:00Z"),
        "temperature": 20.0 + i as f64,
        "messageId": id,
    });
    (id, line.to_string())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Small gzip blobs of one line repeated inflate to more rows than a date may
/// hold: the run stops once the rows decoded and not yet let go pass what
/// `[limits] memory` allows (one per 32 bytes: 2,097,152 at its least, 64 MiB),
/// with exit 1, before any commit, instead of holding every row until the node
/// runs out of memory. Three blobs of 750,000 rows: the third passes it.
#[test]
fn blobs_that_inflate_to_too_many_rows_stop_the_run_before_any_commit() {
    let dir = temp_lake();
    let raw = empty_container(dir.path());
    std::fs::create_dir_all(raw.join(HOUR)).unwrap();
    let line = "{\"deviceId\":\"d\",\"timestamp\":\"2024-03-11T10:00:00Z\"}\n";
    let blob = gzip(line.repeat(750_000).as_bytes());
    assert!(blob.len() < 1 << 20, "{} bytes stored", blob.len());
    for n in 1..=3 {
        std::fs::write(raw.join(HOUR).join(format!("one-line-{n}.json.gz")), &blob).unwrap();
    }
    let text = format!(
        "name = \"dense\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\n[limits]\nmemory = \"64MiB\"\n",
        raw.to_str().unwrap(),
        dir.path().join("lake").to_str().unwrap(),
    );
    let job = dir.path().join("dense.toml");
    std::fs::write(&job, text).unwrap();
    let (code, out, err) = run(&job, "2024-03-11", &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("2250000 rows held")
            && err.contains("over the 2097152")
            && err.contains("one-line-"),
        "{err}"
    );
    let lake = dir.path().join("lake");
    for table in ["telemetry", "features_hourly", "device_health", "rejects"] {
        assert!(
            !lake.join(table).join("_delta_log").exists(),
            "{table} committed"
        );
    }
    assert_nothing_uncommitted(&lake);
}

/// Issue 32: a JSON-lines record over `max_record_bytes` is one `malformed_record`
/// naming the limit and its line, and the lines after it are read; JSON arrays and
/// CSV keep their rule (the rest of the blob is one `unreadable_file`: no newline
/// is a safe place to start again there).
#[test]
fn an_oversized_json_line_is_one_reject_and_the_lines_around_it_are_rows() {
    const MAX: usize = 64 << 10;
    let dir = temp_lake();
    let raw = empty_container(dir.path());
    std::fs::create_dir_all(raw.join(HOUR)).unwrap();

    // (blob, the long lines' 1-based numbers, lines, a final newline, gzip)
    let blobs: [(&str, usize, &[usize], bool, bool); 7] = [
        ("first.json", 3, &[1], true, false),
        ("middle.json", 3, &[2], true, false),
        ("last.json", 3, &[3], false, false),
        ("first.json.gz", 3, &[1], true, true),
        ("middle.json.gz", 4, &[2, 3], true, true),
        ("last.json.gz", 3, &[3], true, true),
        // Over 32 MiB: read 16 MiB at a time, the long line across three pieces.
        ("pieces.json", 4, &[2], true, false),
    ];
    let mut want_rows = Vec::new();
    let mut want_rejects = Vec::new();
    for (name, lines, long_at, newline, gz) in blobs {
        let tag = name.replace('.', "-");
        let mut text = Vec::new();
        for n in 1..=lines {
            if long_at.contains(&n) {
                let len = if name == "pieces.json" {
                    33 << 20
                } else {
                    MAX + 1 + n * 1000
                };
                let line = long_line(&format!("{tag}-{n}"), len);
                want_rejects.push((name.to_string(), n as i64, line[..4096].to_string(), len));
                text.push(line);
            } else {
                let (id, line) = good_line(&tag, n);
                want_rows.push(id);
                text.push(line);
            }
        }
        let mut text = text.join("\n");
        if newline {
            text.push('\n');
        }
        if name == "pieces.json" {
            // More valid lines after the long one.
            for i in 10..13 {
                let (id, line) = good_line(&tag, i);
                want_rows.push(id);
                text.push_str(&line);
                text.push('\n');
            }
            assert!(text.len() > 32 << 20, "read in pieces");
        }
        let bytes = if gz {
            gzip(text.as_bytes())
        } else {
            text.into_bytes()
        };
        std::fs::write(raw.join(HOUR).join(name), bytes).unwrap();
    }
    // JSON arrays and CSV keep today's rule.
    let (array_id, array_good) = good_line("array", 1);
    std::fs::write(
        raw.join(HOUR).join("array.json"),
        format!(
            "[{array_good},\n{}, {}]",
            long_line("array", MAX + 10),
            good_line("array", 3).1
        ),
    )
    .unwrap();
    want_rows.push(array_id);
    std::fs::write(
        raw.join(HOUR).join("table.csv"),
        format!(
            "deviceId,timestamp,messageId\ndev-csv,2024-03-11T10:01:00Z,good-csv-1\n\"{}\"\ndev-csv,2024-03-11T10:03:00Z,good-csv-3\n",
            "z".repeat(MAX + 10)
        ),
    )
    .unwrap();
    want_rows.push("good-csv-1".into());

    let job = job(dir.path(), &raw, "").to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("max_blob_bytes = \"4MiB\"", "max_blob_bytes = \"64MiB\""),
    )
    .unwrap();
    let report = accounted(0, &run(Path::new(&job), "2024-03-11", &[]));
    let records = want_rows.len() + want_rejects.len() + 2;
    assert_eq!(report["records_read"], records as u64, "{report}");
    assert_eq!(report["rows_written"], want_rows.len() as u64, "{report}");
    assert_eq!(
        report["rejected"],
        want_rejects.len() as u64 + 2,
        "{report}"
    );

    let lake = dir.path().join("lake");
    let mut rows: Vec<String> = read_rows(&lake, "telemetry")
        .iter()
        .map(|r| get(r, "message_id").as_str().unwrap().to_string())
        .collect();
    rows.sort();
    want_rows.sort();
    assert_eq!(
        rows, want_rows,
        "every valid record around a long line is a row"
    );

    let mut rejects: Vec<(String, i64, String, String, String)> = read_rows(&lake, "rejects")
        .iter()
        .map(|r| {
            (
                get(r, "source_file")
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                get(r, "line").as_i64().unwrap_or(-1),
                get(r, "reason").as_str().unwrap().to_string(),
                get(r, "detail").as_str().unwrap().to_string(),
                get(r, "raw").as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rejects.sort();
    let (arrays_and_csv, long): (Vec<_>, Vec<_>) = rejects
        .into_iter()
        .partition(|r| r.0 == "array.json" || r.0 == "table.csv");
    want_rejects.sort();
    assert_eq!(long.len(), want_rejects.len(), "{long:?}");
    for ((file, line, reason, detail, raw), (want_file, want_line, want_raw, len)) in
        long.iter().zip(&want_rejects)
    {
        assert_eq!((file, line), (want_file, want_line));
        assert_eq!(reason, "malformed_record", "{file}: {detail}");
        assert!(
            detail.contains(&format!("max_record_bytes = {MAX}")),
            "{detail}"
        );
        assert!(detail.contains(&format!("line {line} ")), "{detail}");
        assert!(detail.contains(&format!("{len} bytes")), "{detail}");
        assert_eq!(raw, want_raw, "{file}: raw is the line's first 4 KiB");
    }
    let kept: Vec<(&str, &str)> = arrays_and_csv
        .iter()
        .map(|r| (r.0.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            ("array.json", "unreadable_file"),
            ("table.csv", "unreadable_file")
        ]
    );
    for r in &arrays_and_csv {
        assert!(r.3.contains("max_record_bytes"), "{r:?}");
    }
}
