//! The report page in a real browser: headless Chromium (Debian's `chromium`, installed by scripts/test.sh) renders it without console errors, its charts drew, hostile ids stay text, nothing loads.
//!
//! What the charts must show is computed here from the fixture generator's
//! expected silver rows and rejects (fixtures/expected/), never from the page
//! or the tables: hours with rows, device-hours, devices, reasons.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::Value;

use crate::common::*;

const DATE: &str = "2024-03-11";
/// A device id that runs a script if the page does not escape it.
const HOSTILE: &str = "<script>document.body.dataset.pwned=1</script>";
const ROWS_RGB: [u8; 3] = [0x2b, 0x6c, 0xb0];

/// The browser: `COLDPATH_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("COLDPATH_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("Chromium is not installed: run ./scripts/test.sh, which installs Debian's `chromium` (apt-get), or set COLDPATH_CHROMIUM")
    })
}

/// What headless Chromium made of a page: the DOM after its scripts ran, and every console line.
pub(crate) struct Rendered {
    pub(crate) dom: String,
    pub(crate) console: Vec<String>,
}

/// Opens `page` in headless Chromium with `mode` (`--dump-dom`, `--screenshot=…`).
pub(crate) fn headless(page: &Path, mode: &str) -> Rendered {
    headless_in(page, mode, "1280,2400")
}

/// [`headless`] in a window of `size` (`width,height` in pixels).
fn headless_in(page: &Path, mode: &str, size: &str) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url::Url::from_file_path(page).unwrap().as_str())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
    }
}

/// A page that ran clean: its script finished (`data-ready`) and nothing was written to the console
/// (the page logs nothing itself, so any line is an error, an uncaught exception or a blocked load).
pub(crate) fn assert_clean(r: &Rendered) {
    assert!(r.console.is_empty(), "console: {:#?}", r.console);
    assert!(
        r.dom.contains("<body data-ready=\"1\">"),
        "the page's script did not finish"
    );
}

/// What the page measures of itself in the browser, once its layout is done: the
/// window's width and the page's, every element that reaches past the window's
/// right edge (or before its left), the colours each chart draws with and its
/// legend's (as the browser computed them), the table names under table
/// versions, the lake, and each reject reason's legend text.
const MEASURE: &str = r##"
(function () {
  "use strict";
  var w = window.innerWidth, out = { width: w, scroll: document.documentElement.scrollWidth, wide: [] };
  document.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5)) {
      out.wide.push(el.tagName + "#" + el.id + "." + (el.getAttribute("class") || "") + " " + Math.round(r.left) + ".." + Math.round(r.right));
    }
  });
  function set(sel, prop) {
    var s = {};
    document.querySelectorAll(sel).forEach(function (el) { s[getComputedStyle(el)[prop]] = 1; });
    return Object.keys(s).sort();
  }
  out.hours = set("#hours rect", "fill");
  out.hours_legend = set("#legend-hours .key", "backgroundColor");
  out.heatmap = set("#heatmap rect", "fill");
  out.heatmap_legend = set("#legend-heatmap .key", "backgroundColor");
  out.versions = Array.prototype.map.call(document.querySelectorAll("#versions tr td:first-child"), function (td) { return td.textContent; });
  var lake = document.getElementById("lake");
  out.lake = lake ? lake.textContent : null;
  out.reasons = {};
  document.querySelectorAll("#legend-hours li[data-reason]").forEach(function (li) { out.reasons[li.getAttribute("data-reason")] = li.textContent; });
  var map = document.getElementById("heatmap").getBoundingClientRect(), hours = document.getElementById("hours").getBoundingClientRect();
  out.heatmap_box = [Math.round(map.top + window.scrollY), Math.round(map.bottom + window.scrollY)];
  out.hours_box = [Math.round(hours.top + window.scrollY), Math.round(hours.bottom + window.scrollY)];
  document.getElementById("measured").textContent = JSON.stringify(out);
})();
"##;

/// [`MEASURE`] of `page` in a window of `size`: run on a copy of the page with the script added at its end.
fn measure(page: &Path, size: &str) -> Value {
    let html = std::fs::read_to_string(page).unwrap();
    let copy = page.with_extension("measured.html");
    let script = format!("<pre id=\"measured\" hidden></pre><script>{MEASURE}</script></body>");
    std::fs::write(&copy, html.replacen("</body>", &script, 1)).unwrap();
    let r = headless_in(&copy, "--dump-dom", size);
    assert_clean(&r);
    let open = "<pre id=\"measured\" hidden=\"\">";
    let start = r.dom.find(open).expect("the measurement") + open.len();
    let end = start + r.dom[start..].find("</pre>").unwrap();
    let text = r.dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A JSON array of strings as a set.
fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The silver rows the generator expects on DATE, plus the hostile blob's one row: (device, hour).
fn expected_readings() -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = expected(DATE)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let us = r["event_time"].as_i64().unwrap();
            (
                r["device_id"].as_str().unwrap().to_string(),
                (us / 3_600_000_000 % 24) as usize,
            )
        })
        .collect();
    out.push((HOSTILE.to_string(), 5));
    out
}

/// The fixtures' raw container with one more blob, at 05:30, from a device whose id is markup.
fn source_with_hostile_blob(dir: &Path) {
    copy_dir(&fixtures_raw(), dir);
    let line = format!(
        "{{\"deviceId\": {}, \"deviceType\": \"pump\", \"timestamp\": \"2024-03-11T05:30:00.000Z\", \"temperature\": 40.0, \"pressure\": 100, \"vibration\": 5.0, \"messageId\": \"hostile-1\", \"EventEnqueuedUtcTime\": \"2024-03-11T05:30:02.000000Z\"}}\n",
        serde_json::to_string(HOSTILE).unwrap()
    );
    std::fs::write(
        dir.join("telemetry/2024/03/11/05/9999_hostile_1.json"),
        line,
    )
    .unwrap();
}

/// Runs 2024-03-10 and DATE of the fixtures (plus the hostile blob) into `lake`, DATE with `--html page`.
fn run_fixtures(source: &Path, lake: &Path, page: &Path) -> Value {
    source_with_hostile_blob(source);
    let src = source.to_str().unwrap();
    let (code, report) = run_date("2024-03-10", lake, &["--source", src]);
    assert_eq!(code, 0, "{report}");
    let html = page.to_str().unwrap();
    let (code, report) = run_date(
        DATE,
        lake,
        &["--source", src, "--labels-as-of", LABELS, "--html", html],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["rows_written"], 417,
        "the fixtures' 416 rows and the hostile one"
    );
    report
}

#[test]
fn the_page_of_a_run_renders_in_chromium_and_draws_one_bar_per_hour_and_one_cell_per_device_hour() {
    let (source, lake, out) = (
        tempfile::tempdir().unwrap(),
        temp_lake(),
        tempfile::tempdir().unwrap(),
    );
    let page = out.path().join("page.html");
    run_fixtures(source.path(), lake.path(), &page);
    let readings = expected_readings();
    let hours: BTreeSet<usize> = readings.iter().map(|r| r.1).collect();
    let device_hours: BTreeSet<&(String, usize)> = readings.iter().collect();
    let devices: BTreeSet<&str> = readings.iter().map(|r| r.0.as_str()).collect();
    // Rejects: one segment per (hour of the blob's partition folder, reason).
    let segments: BTreeSet<(String, String)> = expected(DATE)["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let file = r["source_file"].as_str().unwrap();
            (
                file.split('/').nth(4).unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(segments.len() >= 8, "the comparison is not vacuous");

    let r = headless(&page, "--dump-dom");
    assert_clean(&r);
    assert_eq!(r.dom.matches("class=\"bar-rows\"").count(), hours.len());
    assert_eq!(
        r.dom.matches("class=\"bar-reject\"").count(),
        segments.len()
    );
    assert_eq!(r.dom.matches("class=\"cell\"").count(), device_hours.len());
    assert_eq!(r.dom.matches("class=\"device\"").count(), devices.len());
    // The run wrote device_health: the fixtures' devices as the generator has them, and the
    // hostile one (a single reading, so no interval to expect by, and a gap of hours: DEGRADED).
    let health = expected(DATE)["health"].as_array().unwrap().clone();
    let count = |s: &str| health.iter().filter(|h| h["status"] == s).count();
    assert!(r.dom.contains(&format!(
        "{} devices known: {} OK, {} DEGRADED, {} SILENT.",
        health.len() + 1,
        count("OK"),
        count("DEGRADED") + 1,
        count("SILENT")
    )));
    assert!(!r.dom.contains("id=\"no-health\""));
    // Nothing in the rendered page points elsewhere (and its policy would refuse it).
    for link in [
        "http://",
        "https://",
        "src=",
        "href=",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(!r.dom.contains(link), "the page holds {link}");
    }
    assert!(r.dom.contains("content=\"default-src 'none';"));
    // The run's own report is on the page: its run id and its timings.
    assert!(r.dom.contains("<table id=\"timings\">"));
    // The hostile id is text, and its script never ran.
    assert!(!r.dom.contains("data-pwned"));
    assert_eq!(
        r.dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(r
        .dom
        .contains("&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;"));
    // The same page from `coldpath report`, reading the report the run stored in the lake.
    let again = out.path().join("again.html");
    let job = job_file();
    let out_report = coldpath(&[
        "report",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake.path().to_str().unwrap(),
        "--date",
        DATE,
        "--html",
        again.to_str().unwrap(),
    ]);
    assert!(
        out_report.status.success(),
        "{}",
        String::from_utf8_lossy(&out_report.stderr)
    );
    let r2 = headless(&again, "--dump-dom");
    assert_clean(&r2);
    assert_eq!(r2.dom.matches("class=\"cell\"").count(), device_hours.len());
    assert!(
        r2.dom.contains("<table id=\"timings\">"),
        "the stored run report is shown"
    );
}

#[test]
fn a_screenshot_of_the_page_shows_the_bars_and_each_devices_hours_in_the_heatmap() {
    let (source, lake, out) = (
        tempfile::tempdir().unwrap(),
        temp_lake(),
        tempfile::tempdir().unwrap(),
    );
    let page = out.path().join("page.html");
    run_fixtures(source.path(), lake.path(), &page);
    let shot = out.path().join("page.png");
    let r = headless(&page, &format!("--screenshot={}", shot.display()));
    assert!(r.console.is_empty(), "console: {:#?}", r.console);
    let png = Png::decode(&std::fs::read(&shot).unwrap());

    let readings = expected_readings();
    let hours: BTreeSet<usize> = readings.iter().map(|r| r.1).collect();
    // Where the two charts are on the screen, as the browser laid them out (the same window).
    let boxes = measure(&page, "1280,2400");
    let lines = |name: &str| {
        let b = boxes[name].as_array().unwrap();
        b[0].as_u64().unwrap() as usize..b[1].as_u64().unwrap() as usize
    };
    let (chart, grid) = (lines("hours_box"), lines("heatmap_box"));
    assert!(grid.end <= png.h, "the heatmap is on the screenshot");
    // The rows bars: one blue run per hour with rows, on a line just above the axis.
    // (The first band of that blue is the chart; the legend's square comes after it.)
    let bottom = png
        .bands(|p| p == ROWS_RGB)
        .first()
        .expect("no rows bar drawn")
        .1;
    assert!(chart.contains(&bottom));
    assert_eq!(png.runs(bottom - 1, |p| p == ROWS_RGB), hours.len());
    // Every reject reason's colour is in the chart (stacked segments), not only in its legend.
    let want_rejects = expected(DATE);
    let reasons: BTreeSet<&str> = want_rejects["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for reason in reasons {
        let rgb = REASON_RGB
            .iter()
            .find(|r| r.0 == reason)
            .unwrap_or_else(|| panic!("{reason}: a reason without a colour"))
            .1;
        let drawn: usize = chart.clone().map(|y| png.runs(y, |p| p == rgb)).sum();
        assert!(drawn > 0, "no {reason} segment drawn");
    }
    // The heatmap: one band of cell colours per device with readings, in id order, and in
    // each band one run per hour the device has readings.
    let mut per_device: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (d, h) in &readings {
        per_device.entry(d).or_default().insert(*h);
    }
    let want: Vec<usize> = per_device.values().map(BTreeSet::len).collect();
    let cell = |p: [u8; 3]| COVERAGE_RGB.contains(&p) || COUNT_RGB.contains(&p);
    let bands: Vec<(usize, usize)> = png
        .bands(cell)
        .into_iter()
        .filter(|b| grid.contains(&b.0))
        .collect();
    assert_eq!(bands.len(), per_device.len(), "device rows drawn");
    let got: Vec<usize> = bands
        .iter()
        .map(|(a, b)| png.runs((a + b) / 2, cell))
        .collect();
    assert_eq!(got, want, "hours drawn per device, in device id order");
}

/// The reject reasons' colours as the page defines them: Paul Tol's "muted" palette, in its order.
const REASON_RGB: [(&str, [u8; 3]); 9] = [
    ("malformed_record", [0xcc, 0x66, 0x77]),
    ("missing_device_id", [0xdd, 0xcc, 0x77]),
    ("invalid_timestamp", [0x88, 0xcc, 0xee]),
    ("type_mismatch", [0xaa, 0x44, 0x99]),
    ("out_of_range", [0x88, 0x22, 0x55]),
    ("late_beyond_window", [0x99, 0x99, 0x33]),
    ("event_time_in_future", [0x44, 0xaa, 0x99]),
    ("unreadable_file", [0x33, 0x22, 0x88]),
    ("failed_expectation", [0x11, 0x77, 0x33]),
];

/// The coverage grid's colours against the expected readings (ColorBrewer's PRGn):
/// 90 % or more of the hour's expected readings, 50 % to 90 %, under 50 %.
const COVERAGE_RGB: [[u8; 3]; 3] = [[0x1b, 0x78, 0x37], [0xc2, 0xa5, 0xcf], [0x76, 0x2a, 0x83]];

/// Its greys for a device without expected readings, against the date's busiest device-hour:
/// two thirds of it or more, a third to two thirds, under a third.
const COUNT_RGB: [[u8; 3]; 3] = [[0x52, 0x52, 0x52], [0x96, 0x96, 0x96], [0xcc, 0xcc, 0xcc]];

/// The coverage grid's colour of `n` readings in an hour that expects `per_hour`, by the same definition, as hex.
fn coverage_hex(n: usize, per_hour: f64) -> &'static str {
    match n as f64 / per_hour {
        r if r >= 0.9 => "#1b7837",
        r if r >= 0.5 => "#c2a5cf",
        _ => "#762a83",
    }
}

#[test]
fn the_console_check_fails_on_a_throwing_script_a_broken_page_script_and_a_load_from_the_network() {
    let out = tempfile::tempdir().unwrap();
    let page = coldpath::testing::render(&coldpath::testing::Page {
        date: DATE.into(),
        ..Default::default()
    });
    let write = |name: &str, inject: &str| {
        let p = out.path().join(name);
        std::fs::write(&p, page.replacen("<body>", &format!("<body>{inject}"), 1)).unwrap();
        headless(&p, "--dump-dom")
    };
    assert_clean(&write("clean.html", ""));
    let thrown = write("throws.html", "<script>null.x();</script>");
    assert!(
        thrown
            .console
            .iter()
            .any(|l| l.contains("Uncaught TypeError")),
        "{:?}",
        thrown.console
    );
    // The page's own script breaks: no data-ready, and the exception is on the console.
    let broken = write(
        "broken.html",
        "<script>document.querySelectorAll = null;</script>",
    );
    assert!(!broken.dom.contains("<body data-ready=\"1\">"));
    assert!(
        broken.console.iter().any(|l| l.contains("Uncaught")),
        "{:?}",
        broken.console
    );
    // A load from elsewhere is refused by the page's policy, and the refusal is on the console.
    let loads = write("loads.html", "<img src=\"http://127.0.0.1:9/x.png\">");
    assert!(
        loads
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:?}",
        loads.console
    );
}

#[test]
fn the_page_lists_silent_and_degraded_devices_from_device_health_and_scales_the_heatmap_by_them() {
    let (source, lake, out) = (
        tempfile::tempdir().unwrap(),
        temp_lake(),
        tempfile::tempdir().unwrap(),
    );
    let page = out.path().join("first.html");
    run_fixtures(source.path(), lake.path(), &page);
    // compressor-07: expected 1440 a day, 60 an hour; ghost-99 is known (maintenance) but silent.
    write_health(
        lake.path(),
        &[
            ("compressor-07", "OK", 100, Some(1440), 1.5, 0),
            ("pump-01", "DEGRADED", 90, Some(2880), 1.5, 0),
            (HOSTILE, "DEGRADED", 1, None, 1.5, 0),
            ("ghost-99", "SILENT", 0, Some(1440), 1.5, 0),
        ],
    );
    let html = out.path().join("health.html");
    let job = job_file();
    let o = coldpath(&[
        "report",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake.path().to_str().unwrap(),
        "--date",
        DATE,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = headless(&html, "--dump-dom");
    assert_clean(&r);
    assert!(r
        .dom
        .contains("4 devices known: 1 OK, 2 DEGRADED, 1 SILENT."));
    let table = |id: &str| table_in(&r.dom, id);
    assert!(table("silent").contains("<td>ghost-99</td>"));
    assert_eq!(
        table("silent").matches("<tr>").count(),
        2,
        "a heading and one device"
    );
    assert!(table("degraded").contains("<td>pump-01</td>"));
    assert!(
        table("degraded").contains("&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;")
    );
    assert!(!r.dom.contains("data-pwned"));
    // ghost-99 gets a heatmap row without cells; the devices with readings keep theirs.
    let devices: BTreeSet<String> = expected_readings().into_iter().map(|r| r.0).collect();
    assert_eq!(r.dom.matches("class=\"device\"").count(), devices.len() + 1);
    // compressor-07's hour 0 against 1440 / 24 = 60 expected: the scale's band of n / 60.
    let n = expected_readings()
        .iter()
        .filter(|r| r.0 == "compressor-07" && r.1 == 0)
        .count();
    assert!(n > 0);
    let tip = format!("compressor-07 · 00:00 · {n} readings of 60.0 expected\" x=\"250\"");
    let at = r.dom.find(&tip).expect("compressor-07's first cell");
    let rect = &r.dom[at..at + r.dom[at..].find('>').unwrap()];
    assert!(
        rect.contains(&format!("fill=\"{}\"", coverage_hex(n, 60.0))),
        "{rect}"
    );
}

/// The health table `id` (`silent`, `degraded`) of a page's DOM.
fn table_in(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("<table class=\"sortable\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no {id} table"));
    let end = start + dom[start..].find("</table>").unwrap();
    dom[start..end].to_string()
}

/// Text as a browser's DOM dump writes it.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `coldpath report` of DATE from `lake` (as given: a relative one from `cwd`) to `page`.
fn report_page(cwd: &Path, lake: &str, page: &Path) {
    let job = job_file();
    let args = [
        "report",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake,
        "--date",
        DATE,
        "--html",
        page.to_str().unwrap(),
    ];
    let o = command(&args, &[]).current_dir(cwd).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The tables a lake holds, each once: the contract's five and the declared expectations' table.
const TABLES: [&str; 6] = [
    "device_health",
    "expectations",
    "features_hourly",
    "rejects",
    "telemetry",
    "telemetry_minute",
];

#[test]
fn the_page_names_each_table_once_and_a_relative_lake_by_its_folder_and_every_colour_drawn_has_a_legend_entry(
) {
    let (source, work, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let lake = work.path().join("lake");
    run_fixtures(source.path(), &lake, &out.path().join("run.html"));
    let page = out.path().join("page.html");
    report_page(work.path(), "lake", &page);
    let m = measure(&page, "1280,2400");
    let names = strings(&m["versions"]);
    assert_eq!(
        names.len(),
        m["versions"].as_array().unwrap().len(),
        "a table named twice: {}",
        m["versions"]
    );
    assert_eq!(names, BTreeSet::from(TABLES.map(String::from)));
    // The lake by the folder it is, not by the word on the command line.
    let folder = lake.canonicalize().unwrap();
    assert_eq!(m["lake"], folder.to_str().unwrap());
    // Each chart: every colour it draws (as the browser computed it) is in its legend.
    for (chart, legend) in [("hours", "hours_legend"), ("heatmap", "heatmap_legend")] {
        let (drawn, keys) = (strings(&m[chart]), strings(&m[legend]));
        assert!(drawn.len() >= 2, "{chart} draws {drawn:?}");
        let missing: Vec<&String> = drawn.difference(&keys).collect();
        assert!(
            missing.is_empty(),
            "{chart}: {missing:?} without a legend entry ({keys:?})"
        );
    }
    // Every reason of the date says what it means, beside its colour.
    let want = expected(DATE);
    for r in want["rejects"].as_array().unwrap() {
        let reason = r["reason"].as_str().unwrap();
        let text = m["reasons"][reason]
            .as_str()
            .unwrap_or_else(|| panic!("{reason}: no legend entry"));
        assert!(
            text.starts_with(&format!("{reason}: ")) && text.len() > reason.len() + 20,
            "{text}"
        );
    }
}

#[test]
fn silent_and_degraded_devices_fit_a_1400_pixel_window_and_each_degraded_one_says_why() {
    let (source, lake, out) = (
        tempfile::tempdir().unwrap(),
        temp_lake(),
        tempfile::tempdir().unwrap(),
    );
    run_fixtures(source.path(), lake.path(), &out.path().join("run.html"));
    let rows: [HealthRow; 8] = [
        ("compressor-07", "OK", 1440, Some(1440), 900.0, 0),
        ("pump-01", "DEGRADED", 90, Some(2880), 900.0, 0),
        (
            "press-line-4-station-12-hydraulic-unit-0001",
            "DEGRADED",
            1440,
            Some(1440),
            7260.0,
            0,
        ),
        ("kiln-02", "DEGRADED", 1400, Some(1440), 60.0, 3),
        ("mixer-05", "DEGRADED", 100, Some(1440), 20000.0, 1),
        (HOSTILE, "DEGRADED", 1, None, 66600.0, 0),
        ("ghost-99", "SILENT", 0, Some(1440), 86400.0, 0),
        (
            "silent-conveyor-belt-drive-motor-north-0042",
            "SILENT",
            0,
            Some(96),
            86400.0,
            0,
        ),
    ];
    write_health(lake.path(), &rows);
    let page = out.path().join("health.html");
    report_page(&repo(), lake.path().to_str().unwrap(), &page);
    // Nothing reaches past the right edge of a 1,400-pixel window.
    let m = measure(&page, "1400,2400");
    assert_eq!(m["width"], 1400);
    assert!(
        m["scroll"].as_u64().unwrap() <= 1400,
        "the page is {} wide",
        m["scroll"]
    );
    assert_eq!(m["wide"], serde_json::json!([]), "wider than the window");
    // Each DEGRADED device names the causes its figures meet, by the contract's rule:
    // coverage (readings / expected) < 0.9, max_gap_s > 3600, stuck temperature hours > 0.
    let r = headless(&page, "--dump-dom");
    assert_clean(&r);
    let degraded = table_in(&r.dom, "degraded");
    for (id, _, readings, expected, gap, stuck) in rows.iter().filter(|r| r.1 == "DEGRADED") {
        let mut want = BTreeSet::new();
        if expected.is_some_and(|e| (*readings as f64) / (e as f64) < 0.9) {
            want.insert("coverage");
        }
        if *gap > 3600.0 {
            want.insert("gap");
        }
        if *stuck > 0 {
            want.insert("stuck");
        }
        let at = degraded
            .find(&format!("<tr><td>{}</td>", dom_text(id)))
            .unwrap_or_else(|| panic!("{id}: no row"));
        let row = &degraded[at..at + degraded[at..].find("</tr>").unwrap()];
        let got: BTreeSet<&str> = row
            .split("data-cause=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        assert_eq!(got, want, "{row}");
    }
    // In words: 7,260 s is 2 h 1 min.
    assert!(degraded.contains("2 h 1 min without a reading, over 1 h"));
    assert_eq!(
        table_in(&r.dom, "silent")
            .matches("no reading on this date")
            .count(),
        2
    );
}

/// A `device_health` row to write: device, status, readings, expected readings, max_gap_s, stuck temperature hours.
type HealthRow<'a> = (&'a str, &'a str, i64, Option<i64>, f64, i64);

/// A `device_health` partition for DATE with the contract's columns (coverage = readings / expected).
fn write_health(lake: &Path, rows: &[HealthRow]) {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let ints = [
        "readings",
        "expected_readings",
        "gaps_over_5m",
        "duplicates",
        "rejected",
        "late_readings",
        "stuck_temperature_hours",
    ];
    let floats = ["coverage", "max_gap_s", "transit_p50_s", "transit_p95_s"];
    let mut fields = vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("device_type", DataType::Utf8, true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec![Some("pump"); rows.len()])),
    ];
    for name in ints {
        fields.push(Field::new(name, DataType::Int64, true));
        let v: Vec<Option<i64>> = rows
            .iter()
            .map(|r| match name {
                "readings" => Some(r.2),
                "expected_readings" => r.3,
                "stuck_temperature_hours" => Some(r.5),
                _ => Some(0),
            })
            .collect();
        cols.push(Arc::new(Int64Array::from(v)));
    }
    for name in floats {
        fields.push(Field::new(name, DataType::Float64, true));
        let v: Vec<Option<f64>> = rows
            .iter()
            .map(|r| match name {
                "coverage" => r.3.map(|e| r.2 as f64 / e as f64),
                "max_gap_s" => Some(r.4),
                _ => Some(1.5),
            })
            .collect();
        cols.push(Arc::new(Float64Array::from(v)));
    }
    for name in ["first_seen", "last_seen"] {
        fields.push(Field::new(name, ts(), true));
        let v = vec![Some(1_710_115_200_000_000i64); rows.len()];
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(v).with_timezone("UTC"),
        ));
    }
    fields.push(Field::new("status", DataType::Utf8, true));
    cols.push(Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    )));
    fields.push(Field::new("health_date", DataType::Date32, true));
    cols.push(Arc::new(Date32Array::from(vec![19793; rows.len()])));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    std::fs::create_dir_all(lake.join("device_health")).unwrap();
    block_on(async {
        let table = deltalake::DeltaTable::try_from_url_with_storage_options(
            table_url(lake, "device_health"),
            Default::default(),
        )
        .await
        .unwrap();
        // Replaces what the run wrote for the date.
        table
            .write([batch])
            .with_partition_columns(["health_date"])
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .with_replace_where("health_date = '2024-03-11'")
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .await
            .unwrap();
    });
}

/// A decoded PNG (8-bit RGB or RGBA, not interlaced: what Chromium writes).
struct Png {
    w: usize,
    h: usize,
    channels: usize,
    data: Vec<u8>,
}

impl Png {
    fn decode(bytes: &[u8]) -> Png {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let (mut w, mut h, mut channels, mut idat, mut i) = (0, 0, 0, Vec::new(), 8);
        while i + 8 <= bytes.len() {
            let len = be(&bytes[i..]);
            let (kind, data) = (&bytes[i + 4..i + 8], &bytes[i + 8..i + 8 + len]);
            match kind {
                b"IHDR" => {
                    (w, h) = (be(data), be(&data[4..]));
                    assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                    channels = match data[9] {
                        2 => 3,
                        6 => 4,
                        c => panic!("colour type {c}"),
                    };
                }
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => break,
                _ => {}
            }
            i += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .unwrap();
        Png {
            w,
            h,
            channels,
            data: unfilter(&raw, w * channels, h, channels),
        }
    }

    fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.w + x) * self.channels;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Separate runs of pixels matching `is` on line `y`.
    fn runs(&self, y: usize, is: impl Fn([u8; 3]) -> bool) -> usize {
        let hits: Vec<bool> = (0..self.w).map(|x| is(self.rgb(x, y))).collect();
        hits.iter()
            .enumerate()
            .filter(|(x, h)| **h && (*x == 0 || !hits[x - 1]))
            .count()
    }

    /// Runs of lines holding a pixel matching `is`: (first, last) line of each.
    fn bands(&self, is: impl Fn([u8; 3]) -> bool) -> Vec<(usize, usize)> {
        let lines: Vec<bool> = (0..self.h)
            .map(|y| (0..self.w).any(|x| is(self.rgb(x, y))))
            .collect();
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (y, _) in lines.iter().enumerate().filter(|(_, h)| **h) {
            match out.last_mut() {
                Some(band) if band.1 + 1 == y => band.1 = y,
                _ => out.push((y, y)),
            }
        }
        out
    }
}

/// PNG's five scanline filters undone (the spec's section 9).
fn unfilter(raw: &[u8], stride: usize, h: usize, bpp: usize) -> Vec<u8> {
    let mut out = vec![0u8; stride * h];
    for y in 0..h {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= bpp {
                out[y * stride + x - bpp]
            } else {
                0
            } as i32;
            let b = if y > 0 { out[(y - 1) * stride + x] } else { 0 } as i32;
            let c = if x >= bpp && y > 0 {
                out[(y - 1) * stride + x - bpp]
            } else {
                0
            } as i32;
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => paeth(a, b, c),
                f => panic!("filter {f}"),
            };
            out[y * stride + x] = (i32::from(line[x]) + add) as u8;
        }
    }
    out
}

fn paeth(a: i32, b: i32, c: i32) -> i32 {
    let p = a + b - c;
    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

#[test]
fn a_run_stores_its_report_in_the_lake_as_printed_and_a_gate_failure_stores_one_too() {
    let (lake, out) = (temp_lake(), tempfile::tempdir().unwrap());
    let printed = out.path().join("run.json");
    let job = job_file();
    let (job, lake_s) = (job.to_str().unwrap(), lake.path().to_str().unwrap());
    let run = coldpath(&[
        "run",
        "--job",
        job,
        "--lake",
        lake_s,
        "--date",
        DATE,
        "--report",
        printed.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stored = || -> Value {
        let path = lake.path().join(format!("_coldpath/reports/{DATE}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let want: Value = serde_json::from_slice(&std::fs::read(&printed).unwrap()).unwrap();
    assert_eq!(stored(), want);

    // The same date under a job that accepts no reject: exit 3, and its report replaces the first.
    let strict = out.path().join("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "name = \"strict\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {lake_s:?}\nmax_reject_ratio = 0.0\n",
            fixtures_raw().to_str().unwrap()
        ),
    )
    .unwrap();
    let (code, report) = run_job(&strict, DATE, lake.path(), &[]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(stored()["status"], "quality_gate_failed");
    assert_eq!(stored()["run_id"], report["run_id"]);
    let page = out.path().join("page.html");
    let o = coldpath(&[
        "report",
        "--job",
        job,
        "--lake",
        lake_s,
        "--date",
        DATE,
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!(
        "Run <code>{}</code>: <b>quality_gate_failed</b>",
        report["run_id"].as_str().unwrap()
    )));
}

#[test]
fn on_azure_storage_the_run_stores_its_report_and_the_page_reads_the_tables_and_the_report_back() {
    let az = crate::azurite::Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw());
    let out = tempfile::tempdir().unwrap();
    let args = run_args(DATE, "az://raw/", "az://lake/iot");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = out.path().join("run.html");
    args.extend(["--html", first.to_str().unwrap()]);
    let run = coldpath_env(&args, &az.env());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();

    let page = out.path().join("page.html");
    let job = job_file();
    let o = coldpath_env(
        &[
            "report",
            "--job",
            job.to_str().unwrap(),
            "--lake",
            "az://lake/iot",
            "--date",
            DATE,
            "--html",
            page.to_str().unwrap(),
        ],
        &az.env(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let readings: BTreeSet<(String, usize)> = expected(DATE)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_id"].as_str().unwrap().to_string(),
                (r["event_time"].as_i64().unwrap() / 3_600_000_000 % 24) as usize,
            )
        })
        .collect();
    assert_eq!(html.matches("class=\"cell\"").count(), readings.len());
    // The report stored in the container, shown on the page.
    let run_id = report["run_id"].as_str().unwrap();
    assert!(
        html.contains(&format!("Run <code>{run_id}</code>: <b>succeeded</b>")),
        "the stored report"
    );
    assert!(html.contains("<tr><td>telemetry</td><td>0</td></tr>"));
    let copy = temp_lake();
    az.download("lake", "iot/_coldpath/reports", copy.path());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(copy.path().join(format!("{DATE}.json"))).unwrap())
            .unwrap();
    assert_eq!(stored, report);
    // Both pages are the same but for the minute each was written in.
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("Written by"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(std::fs::read_to_string(&first).unwrap()), strip(html));
}
