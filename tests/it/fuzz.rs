//! Property tests of every decoder on random and mutated blobs: no panic, no
//! abort, a bounded peak of memory, and every record that went in accepted or
//! rejected. `cargo test` runs proptest's default 256 cases per property;
//! `scripts/fuzz.sh` runs many more (`PROPTEST_CASES`).

use std::io::Write;

use base64::Engine;
use coldpath::testing::{
    process_blob, Blob, BlobOutcome, CsvDialect, Declared, Limits, Partition, Pieces, Rules,
    TelemetrySchema, Window,
};
use proptest::prelude::*;

use crate::memory::peak_of;

const LIMITS: Limits = Limits {
    max_blob_bytes: 4 << 20,
    max_record_bytes: 64 << 10,
    memory: 2 << 30,
    file_size: 128 << 20,
    devices: 250_000,
};

/// What one blob may hold at its peak: a record, the sniffed head, buffers, a
/// 4 MiB Avro container, and the rows of a few thousand records. Far below
/// what an unbounded decoder would take for the bombs below.
const PEAK_BOUND: usize = 48 << 20;

fn rules() -> Rules {
    Rules {
        schema: TelemetrySchema::embedded().unwrap(),
        day_start_us: 1_710_115_200_000_000, // 2024-03-11T00:00:00Z
        late_arrival_us: 2 * 3_600_000_000,
        clock_skew_us: 5 * 60_000_000,
        format: Declared::Auto,
        csv: CsvDialect::default(),
        limits: LIMITS,
        drift: None,
    }
}

fn blob(path: &str, size: usize) -> Blob {
    Blob {
        path: format!("telemetry/2024/03/11/10/{path}"),
        size: size as u64,
        partition: Partition {
            start: chrono::DateTime::from_timestamp(1_710_151_200, 0).unwrap(),
            width: chrono::Duration::hours(1),
        },
        window: Window::Own,
        last_modified: chrono::Utc::now(),
        etag: None,
    }
}

/// Decodes `bytes` as blob `name`: never a panic, memory within the bound, the identity held.
fn decode(name: &str, bytes: &[u8]) -> BlobOutcome {
    decode_with_peak(name, bytes).0
}

/// [`decode`], and the most it held at once.
fn decode_with_peak(name: &str, bytes: &[u8]) -> (BlobOutcome, usize) {
    let rules = rules();
    let blob = blob(name, bytes.len());
    let (outcome, peak) = peak_of(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process_blob(0, &blob, bytes, &rules)
        }))
    });
    let outcome = outcome.unwrap_or_else(|_| panic!("decoding {name} panicked"));
    assert!(peak < PEAK_BOUND, "{name}: {peak} bytes at the peak");
    let rows: usize = outcome.hours.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(
        outcome.own_records,
        rows as u64 + outcome.other_dates + outcome.rejects.len() as u64,
        "{name}: every record is a row, another date's, or a reject"
    );
    (outcome, peak)
}

/// An outcome's counts and rejects, as text to compare.
fn outcome_text(out: &BlobOutcome) -> String {
    format!(
        "records {} other dates {} look-ahead {} empty {} rejects {:?}",
        out.own_records, out.other_dates, out.look_ahead_rows, out.empty, out.rejects
    )
}

/// An outcome's rows, hour by hour, as text to compare (every column, nulls kept).
fn rows_of(out: BlobOutcome) -> Vec<(usize, String)> {
    out.hours
        .into_iter()
        .map(|(hour, rows)| {
            let frame = coldpath::testing::frame_of(rows).unwrap();
            let columns: Vec<Vec<String>> = frame
                .columns()
                .iter()
                .map(|c| {
                    let s = c.as_materialized_series();
                    s.iter().map(|v| format!("{}: {v:?}", s.name())).collect()
                })
                .collect();
            (hour, format!("{columns:?}"))
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// One telemetry record's JSON object, valid or not in every way a field can be.
fn record() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("d1".to_string()), "[a-z0-9]{0,6}", Just(String::new())],
        prop_oneof![
            Just("\"2024-03-11T10:15:00Z\"".to_string()),
            Just("1710152100".to_string()),
            Just("\"noon\"".to_string()),
            Just("null".to_string()),
        ],
        prop_oneof![
            any::<f64>().prop_map(|f| if f.is_finite() { f.to_string() } else { "NaN".into() }),
            Just("\"21,5\"".to_string()),
            Just("{\"nested\":1}".to_string()),
        ],
        "[a-zA-Z0-9 _-]{0,12}",
    )
        .prop_map(|(dev, ts, temp, msg)| {
            format!(
                "{{\"deviceId\":\"{dev}\",\"timestamp\":{ts},\"temperature\":{temp},\"messageId\":\"{msg}\"}}"
            )
        })
}

/// Bytes with some flipped, some cut: what a bad disk or a hostile producer gives.
fn mutate(mut data: Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if !data.is_empty() {
        for (at, x) in flips {
            let i = at % data.len();
            data[i] ^= x;
        }
    }
    if let Some(cut) = cut {
        data.truncate(cut % (data.len() + 1));
    }
    data
}

fn flips() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        prop::collection::vec((any::<usize>(), 1u8..), 0..4),
        prop::option::of(any::<usize>()),
    )
}

/// Avro's zig-zag varint.
fn zz(n: i64, out: &mut Vec<u8>) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn avro_bytes(b: &[u8], out: &mut Vec<u8>) {
    zz(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// An IoT Hub routing Avro container: records of (device, time, Body bytes) in blocks.
fn avro(blocks: &[Vec<(String, String, String)>], codec: &str) -> (Vec<u8>, usize) {
    let schema = r#"{"type":"record","name":"Message","fields":[
        {"name":"EnqueuedTimeUtc","type":"string"},
        {"name":"Properties","type":{"type":"map","values":"string"}},
        {"name":"SystemProperties","type":{"type":"map","values":"string"}},
        {"name":"Body","type":["null","bytes"]}]}"#;
    let sync = [9u8; 16];
    let mut out = b"Obj\x01".to_vec();
    zz(2, &mut out);
    for (k, v) in [("avro.schema", schema), ("avro.codec", codec)] {
        avro_bytes(k.as_bytes(), &mut out);
        avro_bytes(v.as_bytes(), &mut out);
    }
    zz(0, &mut out);
    out.extend_from_slice(&sync);
    let mut n = 0;
    for block in blocks {
        let mut body = Vec::new();
        for (dev, time, text) in block {
            avro_bytes(time.as_bytes(), &mut body);
            zz(0, &mut body); // no properties
            zz(1, &mut body);
            avro_bytes(b"connectionDeviceId", &mut body);
            avro_bytes(dev.as_bytes(), &mut body);
            zz(0, &mut body);
            zz(1, &mut body); // Body: bytes
            avro_bytes(text.as_bytes(), &mut body);
            n += 1;
        }
        let body = if codec == "deflate" {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&body).unwrap();
            z.finish().unwrap()
        } else {
            body
        };
        zz(block.len() as i64, &mut out);
        zz(body.len() as i64, &mut out);
        out.extend_from_slice(&body);
        out.extend_from_slice(&sync);
    }
    (out, n)
}

proptest! {
    #[test]
    fn any_bytes_under_any_name(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        name in prop_oneof![Just("a.json"), Just("a.csv"), Just("a.avro"), Just("a.json.gz"), Just("05"), Just("a.tsv.gz")],
        gz in any::<bool>(),
    ) {
        let bytes = if gz { gzip(&data) } else { data };
        decode(name, &bytes);
    }

    #[test]
    fn json_lines_every_line_counted(
        lines in prop::collection::vec(prop_oneof![record(), "[^\n]{0,40}", Just(String::new())], 0..40),
        gz in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        // A first line of `{`: a blob whose first byte is `[` is read as a JSON array.
        let first = r#"{"deviceId":"first","timestamp":"2024-03-11T10:00:00Z"}"#.to_string();
        let lines: Vec<String> = std::iter::once(first).chain(lines).collect();
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let blank = |l: &String| l.bytes().all(|b| b.is_ascii_whitespace());
        let want = lines.iter().filter(|l| !blank(l)).count() as u64;
        let bytes = if gz { gzip(text.as_bytes()) } else { text.into_bytes() };
        let out = decode(if gz { "x.json.gz" } else { "x.json" }, &bytes);
        prop_assert_eq!(out.own_records, want);
    }

    #[test]
    fn json_lines_read_in_pieces_come_to_what_they_read_whole(
        lines in prop::collection::vec(prop_oneof![
            4 => record(),
            1 => "[^\n]{0,40}",
            1 => Just(String::new()),
            1 => Just("\u{fffd}\u{00e9}".to_string()),
        ], 0..60),
        longs in prop::collection::vec((0usize..60, 0usize..200), 0..3),
        bom in any::<bool>(),
        crlf in any::<bool>(),
        last_newline in any::<bool>(),
        cuts in prop::collection::vec(1usize..400, 1..40),
    ) {
        let first = r#"{"deviceId":"first","timestamp":"2024-03-11T10:00:00Z"}"#.to_string();
        let mut lines: Vec<String> = std::iter::once(first).chain(lines).collect();
        for (at, more) in longs {
            // A line over max_record_bytes is one reject, and reading goes on at
            // the next line, read either way (a piece may end inside it).
            let at = 1 + at.min(lines.len() - 1);
            lines.insert(at, format!("{{\"deviceId\":\"{}\"}}", "x".repeat(LIMITS.max_record_bytes + more)));
        }
        let mut text = lines.join(if crlf { "\r\n" } else { "\n" });
        if last_newline {
            text.push('\n');
        }
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(text.as_bytes());
        // A stray byte that is not UTF-8, inside a line.
        if bytes.len() > 200 {
            bytes[150] = 0xFF;
        }
        let whole = decode("x.json", &bytes);
        // The first piece holds the head the format is sniffed from, as in a run.
        let mut at = bytes.len().min(256 + cuts[0]);
        let rules = std::sync::Arc::new(rules());
        let pieces = Pieces::start(0, blob("x.json", bytes.len()), rules, &bytes[..at]);
        let mut pieces = pieces.expect("a blob of JSON lines is read in pieces");
        pieces.feed(&bytes[..at]);
        for cut in cuts.iter().cycle().skip(1) {
            if at == bytes.len() {
                break;
            }
            let end = (at + cut).min(bytes.len());
            pieces.feed(&bytes[at..end]);
            at = end;
        }
        let read = pieces.finish();
        prop_assert_eq!(outcome_text(&read), outcome_text(&whole));
        prop_assert_eq!(rows_of(read), rows_of(whole));
    }

    #[test]
    fn json_arrays_every_element_counted(
        records in prop::collection::vec(record(), 0..30),
        pretty in any::<bool>(),
    ) {
        let sep = if pretty { ",\n  " } else { "," };
        let text = format!("[{}]", records.join(sep));
        let out = decode("x.json", text.as_bytes());
        prop_assert_eq!(out.own_records, records.len() as u64);
    }

    #[test]
    fn csv_every_row_counted(
        rows in prop::collection::vec(("[a-z0-9]{0,5}", "(2024-03-11T10:1[0-9]:00Z|x)", "[0-9.,]{0,5}"), 0..30),
        semi in any::<bool>(),
    ) {
        let d = if semi { ";" } else { "," };
        let mut text = format!("deviceId{d}timestamp{d}temperature\n");
        for (a, b, c) in &rows {
            let c = if semi { c.clone() } else { c.replace(',', ".") };
            text.push_str(&format!("\"{a}\"{d}{b}{d}\"{c}\"\n"));
        }
        let mut rules = rules();
        if semi {
            rules.csv.delimiter = b';';
        }
        let out = process_blob(0, &blob("x.csv", text.len()), text.as_bytes(), &rules);
        prop_assert_eq!(out.own_records, rows.len() as u64);
        decode("x.csv", text.as_bytes());
    }

    #[test]
    fn avro_every_record_counted_and_mutations_survive(
        blocks in prop::collection::vec(
            prop::collection::vec(("[a-z0-9]{0,5}", prop_oneof![Just("2024-03-11T10:15:00Z".to_string()), Just("?".to_string())], record()), 0..5),
            0..5),
        deflate in any::<bool>(),
        (flips, cut) in flips(),
    ) {
        let (file, n) = avro(&blocks, if deflate { "deflate" } else { "null" });
        let out = decode("x.avro", &file);
        prop_assert_eq!(out.own_records, n as u64);
        decode("x.avro", &mutate(file, &flips, cut));
    }

    #[test]
    fn envelopes_with_base64_bodies_and_mutations_survive(
        bodies in prop::collection::vec(record(), 1..10),
        (flips, cut) in flips(),
        gz in any::<bool>(),
    ) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let text: String = bodies
            .iter()
            .map(|b| format!(
                "{{\"EnqueuedTimeUtc\":\"2024-03-11T10:15:01Z\",\"SystemProperties\":{{\"connectionDeviceId\":\"e1\"}},\"Properties\":{{}},\"Body\":\"{}\"}}\n",
                b64.encode(b)
            ))
            .collect();
        let out = decode("05", text.as_bytes());
        prop_assert_eq!(out.own_records, bodies.len() as u64);
        let bytes = if gz { gzip(text.as_bytes()) } else { text.into_bytes() };
        decode("05", &mutate(bytes, &flips, cut));
    }

    #[test]
    fn mutated_json_arrays_and_csv_survive(
        records in prop::collection::vec(record(), 0..10),
        (flips, cut) in flips(),
        gz in any::<bool>(),
    ) {
        for (name, text) in [
            ("x.json", format!("[{}]", records.join(","))),
            ("x.csv", format!("deviceId,timestamp\n{}", records.join("\n"))),
        ] {
            let bytes = if gz { gzip(text.as_bytes()) } else { text.into_bytes() };
            decode(name, &mutate(bytes, &flips, cut));
        }
    }
}

/// Bombs far past the limits: each stops at its limit, with its memory bounded.
#[test]
fn bombs_stop_at_their_limits_in_bounded_memory() {
    // 64 MiB of whitespace lines from ~64 KB of gzip members: stopped at 4 MiB.
    let member = gzip(
        &(b" "
            .repeat(1023)
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>())
        .repeat(1024),
    );
    let bytes = member.repeat(64);
    let out = decode("w.json.gz", &bytes);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0].detail.contains("max_blob_bytes"),
        "{}",
        out.rejects[0].detail
    );

    // Under the blob limit, whitespace lines are streamed, never held: 3 MiB inflated, a small peak.
    let (out, peak) = decode_with_peak("w.json.gz", &member.repeat(3));
    assert!(out.empty && out.rejects.is_empty());
    assert!(peak < 2 << 20, "{peak} bytes held for 3 MiB of blank lines");

    // One line of 8 MiB, past max_blob_bytes before it ends: the records before
    // it kept, the rest one unreadable_file naming both limits.
    let mut bytes = gzip(b"{\"deviceId\":\"a\",\"timestamp\":\"2024-03-11T10:00:00Z\"}\n");
    bytes.extend(gzip(&b"x".repeat(8 << 20)));
    let out = decode("l.json.gz", &bytes);
    assert_eq!(out.hours.iter().map(|(_, r)| r.len()).sum::<usize>(), 1);
    assert!(out.rejects[0].detail.contains("max_record_bytes"));
    assert!(out.rejects[0].detail.contains("max_blob_bytes"));
    assert!(out.rejects[0].detail.contains("line 2"));
    // The same line ending within the blob limit: one reject, the lines after it read, not held.
    let mut bytes = gzip(b"{\"deviceId\":\"a\",\"timestamp\":\"2024-03-11T10:00:00Z\"}\n");
    bytes.extend(gzip(&b"x".repeat(3 << 20)));
    bytes.extend(gzip(
        b"\n{\"deviceId\":\"b\",\"timestamp\":\"2024-03-11T10:01:00Z\"}\n",
    ));
    let (out, peak) = decode_with_peak("l.json.gz", &bytes);
    assert_eq!(out.hours.iter().map(|(_, r)| r.len()).sum::<usize>(), 2);
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].line, Some(2));
    assert!(out.rejects[0].detail.contains("max_record_bytes"));
    assert!(peak < 2 << 20, "{peak} bytes held for a line of 3 MiB");

    // A million bad records in 5 KB of gzip: 10,000 rejects, then the rest is one
    // unreadable_file; the blob never holds a reject per record.
    let zeros = gzip(&b"0\n".repeat(1_000_000));
    let (out, peak) = decode_with_peak("zeros.json.gz", &zeros);
    assert_eq!(
        out.rejects.len(),
        coldpath::testing::MAX_REJECTS_PER_BLOB + 1
    );
    assert!(out
        .rejects
        .iter()
        .any(|r| r.detail.contains("the rest, from line 10001")));
    assert!(
        peak < 16 << 20,
        "{peak} bytes held for a million bad records"
    );

    // An uncompressed blob over the blob limit is not read at all.
    let big = vec![b' '; (4 << 20) + 1];
    let out = decode("big.json", &big);
    assert_eq!(out.rejects.len(), 1);
    assert!(out.rejects[0].detail.contains("over max_blob_bytes"));
}

/// A blob of mostly good records with a stuck sensor's out-of-range readings
/// among them (1 in 25) keeps every good one past 10,000 rejects; a blob that is
/// 40 % bad stops only at the 100,000 rejects any blob may hold, and the rest is
/// one unreadable_file from the line after. Gzip, one blob each, within 4 MiB.
#[test]
fn a_mostly_good_blob_keeps_its_good_records_past_ten_thousand_rejects() {
    let line = |i: usize, bad: bool| {
        format!(
            "{{\"deviceId\":\"d\",\"timestamp\":\"2024-03-11T10:{:02}:{:02}.{:06}Z\",\"temperature\":{}}}\n",
            (i / 60_000_000) % 60,
            (i / 1_000_000) % 60,
            i % 1_000_000,
            if bad { 200 } else { 20 }
        )
    };
    let mut rules = rules();
    rules.limits.max_blob_bytes = 64 << 20;
    let decode = |text: String| -> BlobOutcome {
        let bytes = gzip(text.as_bytes());
        let out = process_blob(0, &blob("b.json.gz", bytes.len()), &bytes, &rules);
        let rows: usize = out.hours.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(out.own_records, (rows + out.rejects.len()) as u64);
        out
    };
    let rows = |out: &BlobOutcome| out.hours.iter().map(|(_, r)| r.len()).sum::<usize>();

    let stuck: String = (0..260_000).map(|i| line(i, i % 25 == 0)).collect();
    let out = decode(stuck);
    assert_eq!(rows(&out), 249_600);
    assert_eq!(out.rejects.len(), 10_400);
    assert!(
        out.rejects.iter().all(|r| r.detail.contains("temperature")),
        "no unreadable_file"
    );

    let n = 300_000;
    let bad = |i: usize| i % 5 < 2;
    let forty: String = (0..n).map(|i| line(i, bad(i))).collect();
    let out = decode(forty);
    let cap = coldpath::testing::MAX_REJECTS_ANY_BLOB;
    // The 100,000th reject is record 249,996 (0-based 249,995): 2 of every 5.
    let last_bad = (0..n).filter(|&i| bad(i)).nth(cap - 1).unwrap();
    assert_eq!(out.rejects.len(), cap + 1);
    let rest = out
        .rejects
        .iter()
        .find(|r| r.line.is_none_or(|l| l > last_bad as u64 + 1));
    let rest = rest.expect("one reject for the rest");
    assert!(
        rest.detail.contains("as many as a blob may hold"),
        "{}",
        rest.detail
    );
    assert!(
        rest.detail.contains(&format!("from line {}", last_bad + 2)),
        "{}",
        rest.detail
    );
    assert_eq!(rows(&out), (0..=last_bad).filter(|&i| !bad(i)).count());
}

/// A reject quotes at most 1 KiB of the value that failed in its `detail` (the
/// record is in its `raw`, cut at 4 KiB): a gzip blob of long bad values, 60 KB
/// a line, would otherwise hold 60 KB a reject, and a blob of them a MiB a line.
#[test]
fn a_rejects_detail_quotes_at_most_a_kib_of_the_bad_value() {
    let long = |c: char| c.to_string().repeat(60_000);
    let mut text = String::new();
    for _ in 0..20 {
        let lines = [
            format!(r#"{{"deviceId":"d1","timestamp":"{}"}}"#, long('x')),
            format!(
                r#"{{"deviceId":"d1","timestamp":"2024-03-11T10:00:00Z","temperature":"{}"}}"#,
                long('é').split_at(60_000).0
            ),
        ];
        text.push_str(&lines.join("\n"));
        text.push('\n');
    }
    let out = decode("long.json.gz", &gzip(text.as_bytes()));
    assert_eq!(out.rejects.len(), 40, "{}", outcome_text(&out));
    for r in &out.rejects {
        let cut = r
            .detail
            .strip_suffix("… (cut)")
            .unwrap_or_else(|| panic!("{:?}: {}", r.reason, &r.detail[..200.min(r.detail.len())]));
        assert!(cut.len() <= 1024 && cut.len() > 1000, "{} bytes", cut.len());
        assert!(r.raw.len() <= 4096, "{} bytes of raw", r.raw.len());
    }
    let reasons: std::collections::BTreeSet<String> = out
        .rejects
        .iter()
        .map(|r| format!("{:?}", r.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
}

/// A nested object takes memory by its members, not a dozen slots whatever
/// it holds: a 63 KB record of 9,000 empty objects (`"a":{}`) held about 7 MB
/// while it was parsed.
#[test]
fn a_record_of_empty_objects_takes_memory_by_its_members() {
    let members = "\"a\":{},".repeat(9_000);
    let line = format!("{{{members}\"deviceId\":\"d1\",\"timestamp\":\"2024-03-11T10:00:00Z\"}}\n");
    let (out, peak) = decode_with_peak("objects.json", line.as_bytes());
    let plain = format!(
        "{{\"deviceId\":\"d1\",\"timestamp\":\"2024-03-11T10:00:00Z\",\"note\":\"{}\"}}\n",
        "x".repeat(line.len() - 70)
    );
    let (_, plain_peak) = decode_with_peak("plain.json", plain.as_bytes());
    assert_eq!(out.rejects.len(), 0, "{}", outcome_text(&out));
    assert!(
        peak < plain_peak + (1 << 20),
        "{peak} bytes at the peak, {plain_peak} for a plain record of its size"
    );
}
