//! The page an engineer opens after a run (`coldpath report --html`, `run --html`): one self-contained HTML file.
//!
//! Rendering only: the data comes in as a [`Page`] (read from the lake by
//! [`crate::lake::look`]) and leaves as a `String`, so every rule of the page is
//! unit-tested without a lake or a browser. The file loads nothing: the styles, the
//! script and the charts (SVG) are inline, and its Content-Security-Policy forbids
//! any load from elsewhere. Every string that comes from the data is escaped:
//! device ids and reasons are producer input.

use std::fmt::Write;

/// UTC hours of a date.
pub const HOURS: usize = 24;

/// The `device_health` columns the page shows as numbers, in column order.
pub const HEALTH_NUMBERS: [&str; 11] = [
    "readings",
    "expected_readings",
    "coverage",
    "max_gap_s",
    "gaps_over_5m",
    "stuck_temperature_hours",
    "duplicates",
    "rejected",
    "late_readings",
    "transit_p50_s",
    "transit_p95_s",
];

/// Everything the page shows about one date.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub date: String,
    /// The lake, redacted.
    pub lake: String,
    /// Which coldpath wrote the page, and when.
    pub generated_by: String,
    /// The table the rows per hour were counted in (`telemetry_minute` or `telemetry`).
    pub rows_from: String,
    pub rows: [u64; HOURS],
    pub rejects: Vec<RejectCount>,
    pub devices: Vec<DeviceHours>,
    /// `device_health` of the date; `None` when the table or the partition is missing.
    pub health: Option<Vec<Health>>,
    pub versions: Vec<TableVersion>,
    /// The run report the date's last run stored in the lake.
    pub run: Option<serde_json::Value>,
}

/// Rejects of one reason placed in one hour (`None`: the hour is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectCount {
    pub hour: Option<usize>,
    pub reason: String,
    pub count: u64,
}

/// A device's readings per UTC hour of the date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHours {
    pub device_id: String,
    pub counts: [u64; HOURS],
}

/// One `device_health` row, as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub device_id: String,
    pub device_type: Option<String>,
    pub status: Option<String>,
    /// The values of [`HEALTH_NUMBERS`], in that order.
    pub numbers: Vec<Option<f64>>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

impl Health {
    /// The value of the numeric column `name` (one of [`HEALTH_NUMBERS`]).
    pub fn number(&self, name: &str) -> Option<f64> {
        let i = HEALTH_NUMBERS.iter().position(|n| *n == name)?;
        self.numbers.get(i).copied().flatten()
    }

    /// The readings the device is expected to send per hour: `expected_readings / 24`.
    pub fn expected_per_hour(&self) -> Option<f64> {
        self.number("expected_readings")
            .map(|e| e / HOURS as f64)
            .filter(|e| *e > 0.0)
    }
}

/// A table's current Delta version (`None`: no table yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableVersion {
    pub name: String,
    pub version: Option<u64>,
}

/// The colour of the rows bars.
pub const ROWS_COLOUR: &str = "#2b6cb0";

/// A reject reason's colour: warm hues, none blue or green (those are the rows and the heatmap).
pub fn reason_colour(reason: &str) -> &'static str {
    match reason {
        "malformed_record" => "#c53030",
        "missing_device_id" => "#dd6b20",
        "invalid_timestamp" => "#b7791f",
        "type_mismatch" => "#805ad5",
        "out_of_range" => "#d53f8c",
        "late_beyond_window" => "#9c4221",
        "event_time_in_future" => "#553c9a",
        "unreadable_file" => "#1a202c",
        "failed_expectation" => "#ed64a6",
        _ => "#718096",
    }
}

/// Text made safe for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for people: whole numbers without decimals, others with three.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The page's policy: nothing may load from anywhere; inline styles and script only.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1a202c;background:#fff}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #cbd5e0;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#edf2f7;cursor:pointer}\
.note{background:#fffbea;border:1px solid #f6e05e;padding:6px 10px;display:inline-block}\
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}\
.tbar{display:inline-block;height:10px;background:#718096}\
#tip{position:fixed;right:12px;top:12px;background:#1a202c;color:#fff;padding:4px 8px;font-size:12px}\
svg text{font-size:11px;fill:#1a202c}";

/// Renders the page.
pub fn render(page: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, page);
    run_section(&mut out, page);
    hours_section(&mut out, page);
    heatmap_section(&mut out, page);
    health_section(&mut out, page);
    let _ = write!(
        out,
        "<div id=\"tip\" hidden></div>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

fn head(out: &mut String, page: &Page) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <title>coldpath {date}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>coldpath: {date}</h1>\n<p>Lake <code>{lake}</code>. Written by {by}.</p>\n",
        date = esc(&page.date),
        lake = esc(&page.lake),
        by = esc(&page.generated_by),
    );
}

fn run_section(out: &mut String, page: &Page) {
    out.push_str("<h2>Table versions and the run</h2>\n<table id=\"versions\"><tr><th>table</th><th>current version</th></tr>\n");
    for t in &page.versions {
        let v = t
            .version
            .map_or("no table yet".to_string(), |v| v.to_string());
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(&t.name), v);
    }
    out.push_str("</table>\n");
    match &page.run {
        Some(report) => run_report(out, report),
        None => {
            let _ = writeln!(
                out,
                "<p class=\"note\" id=\"no-run\">No run report stored for {}: runs store theirs in the lake \
                 (<code>_coldpath/reports/</code>) since this build.</p>",
                esc(&page.date)
            );
        }
    }
}

/// The stored run report: who ran, what it counted, and where the time went.
fn run_report(out: &mut String, report: &serde_json::Value) {
    let text = |k: &str| report.get(k).map(json_text).unwrap_or_default();
    let _ = writeln!(
        out,
        "<p id=\"run\">Run <code>{}</code>: <b>{}</b>. {} records read, {} rows written, {} rejected, {} duplicates, {} other dates.</p>",
        esc(&text("run_id")),
        esc(&text("status")),
        esc(&text("records_read")),
        esc(&text("rows_written")),
        esc(&text("rejected")),
        esc(&text("duplicates")),
        esc(&text("other_dates")),
    );
    let Some(durations) = report.get("durations").and_then(|d| d.as_object()) else {
        return;
    };
    let most = durations
        .values()
        .filter_map(|v| v.as_u64())
        .max()
        .unwrap_or(0)
        .max(1);
    out.push_str("<table id=\"timings\"><tr><th>stage</th><th>ms</th><th></th></tr>\n");
    for (stage, ms) in durations {
        let ms = ms.as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{ms}</td><td style=\"text-align:left\"><span class=\"tbar\" style=\"width:{}px\"></span></td></tr>",
            esc(stage.trim_end_matches("_ms")),
            ms * 200 / most
        );
    }
    out.push_str("</table>\n");
}

/// A JSON value as plain text (strings without their quotes).
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rejects per hour (index 24: the hour is unknown), by reason, reasons in name order.
fn rejects_by_hour(page: &Page) -> Vec<Vec<(&str, u64)>> {
    let mut by: Vec<std::collections::BTreeMap<&str, u64>> = vec![Default::default(); HOURS + 1];
    for r in &page.rejects {
        let h = r.hour.filter(|h| *h < HOURS).unwrap_or(HOURS);
        *by[h].entry(r.reason.as_str()).or_default() += r.count;
    }
    by.into_iter().map(|m| m.into_iter().collect()).collect()
}

const PLOT_H: u64 = 180;
const BAR_PITCH: usize = 30;
const BAR_W: usize = 24;
const LEFT: usize = 56;
const TOP: u64 = 10;

/// A bar's height in pixels: proportional, and at least 1 for anything above 0.
fn bar_px(n: u64, most: u64) -> u64 {
    if n == 0 {
        0
    } else {
        (n * PLOT_H / most.max(1)).max(1)
    }
}

fn hours_section(out: &mut String, page: &Page) {
    let rejects = rejects_by_hour(page);
    let unknown = !rejects[HOURS].is_empty();
    let columns = HOURS + usize::from(unknown);
    let most = (0..columns)
        .map(|h| {
            page.rows.get(h).copied().unwrap_or(0) + rejects[h].iter().map(|r| r.1).sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let width = LEFT + columns * BAR_PITCH + 10;
    let _ = writeln!(
        out,
        "<h2>Rows per event hour, rejects stacked on them</h2>\n<p>Rows from <code>{}</code>; rejects from <code>rejects</code> (run_date {}), \
         each at the hour its blob's time partition starts; rejects whose blob path gives no hour are in the column <b>?</b>.</p>\n\
         <svg id=\"hours\" width=\"{width}\" height=\"{}\" shape-rendering=\"crispEdges\" role=\"img\">",
        esc(&page.rows_from),
        esc(&page.date),
        PLOT_H + TOP + 30
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{most}</text><line x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#a0aec0\"/>",
        LEFT - 6,
        TOP + 10,
        width - 10,
        TOP + PLOT_H,
        TOP + PLOT_H
    );
    for (h, hour_rejects) in rejects.iter().enumerate().take(columns) {
        let rows = page.rows.get(h).copied().unwrap_or(0);
        hour_bar(out, h, rows, hour_rejects, most);
    }
    out.push_str("</svg>\n<p id=\"legend-hours\">");
    let _ = write!(
        out,
        "<span class=\"key\" style=\"background:{ROWS_COLOUR}\"></span>rows"
    );
    let mut reasons: Vec<&str> = page.rejects.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    for reason in reasons {
        let _ = write!(
            out,
            "<span class=\"key\" style=\"background:{}\"></span>{}",
            reason_colour(reason),
            esc(reason)
        );
    }
    out.push_str("</p>\n");
    rejects_table(out, &rejects);
}

/// One column: the rows bar, and the hour's rejects stacked on it by reason.
fn hour_bar(out: &mut String, h: usize, rows: u64, rejects: &[(&str, u64)], most: u64) {
    let x = LEFT + h * BAR_PITCH + (BAR_PITCH - BAR_W) / 2;
    let label = if h < HOURS {
        format!("{h:02}")
    } else {
        "?".to_string()
    };
    let mut y = TOP + PLOT_H;
    if rows > 0 {
        let px = bar_px(rows, most);
        y -= px;
        let _ = write!(
            out,
            "<rect class=\"bar-rows\" data-hour=\"{label}\" data-v=\"{label}:00 · {rows} rows\" x=\"{x}\" y=\"{y}\" width=\"{BAR_W}\" height=\"{px}\" fill=\"{ROWS_COLOUR}\"><title>{label}:00 · {rows} rows</title></rect>"
        );
    }
    for (reason, n) in rejects {
        let px = bar_px(*n, most);
        y = y.saturating_sub(px);
        let tip = format!("{label}:00 · {n} rejected: {}", esc(reason));
        let _ = write!(
            out,
            "<rect class=\"bar-reject\" data-hour=\"{label}\" data-reason=\"{}\" data-v=\"{tip}\" x=\"{x}\" y=\"{y}\" width=\"{BAR_W}\" height=\"{px}\" fill=\"{}\"><title>{tip}</title></rect>",
            esc(reason),
            reason_colour(reason)
        );
    }
    if h.is_multiple_of(3) || h == HOURS {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            x + BAR_W / 2,
            TOP + PLOT_H + 16
        );
    }
}

/// The rejects as numbers: one row per reason, one column per hour that has any.
fn rejects_table(out: &mut String, rejects: &[Vec<(&str, u64)>]) {
    let hours: Vec<usize> = (0..rejects.len())
        .filter(|h| !rejects[*h].is_empty())
        .collect();
    if hours.is_empty() {
        out.push_str("<p id=\"no-rejects\">No rejects.</p>\n");
        return;
    }
    let mut reasons: Vec<&str> = rejects.iter().flatten().map(|r| r.0).collect();
    reasons.sort_unstable();
    reasons.dedup();
    out.push_str("<table id=\"rejects\"><tr><th>reason</th>");
    for h in &hours {
        let label = if *h < HOURS {
            format!("{h:02}")
        } else {
            "?".into()
        };
        let _ = write!(out, "<th>{label}</th>");
    }
    out.push_str("<th>total</th></tr>\n");
    for reason in reasons {
        let _ = write!(out, "<tr><td>{}</td>", esc(reason));
        let mut total = 0;
        for h in &hours {
            let n: u64 = rejects[*h]
                .iter()
                .filter(|r| r.0 == reason)
                .map(|r| r.1)
                .sum();
            total += n;
            let _ = write!(out, "<td>{n}</td>");
        }
        let _ = writeln!(out, "<td>{total}</td></tr>");
    }
    out.push_str("</table>\n");
}

const LABEL_W: usize = 250;
const CELL_PITCH: usize = 24;
const CELL_W: usize = 22;
const ROW_PITCH: usize = 16;
const CELL_H: usize = 14;
const LABEL_CHARS: usize = 24;

/// One heatmap row: a device, its counts, its expected readings per hour and status.
struct HeatRow<'a> {
    device_id: &'a str,
    counts: [u64; HOURS],
    expected: Option<f64>,
    status: Option<&'a str>,
}

/// The heatmap's rows: every device with readings, and every device of
/// `device_health` (a silent one has an empty row), in device id order.
fn heat_rows(page: &Page) -> Vec<HeatRow<'_>> {
    let mut rows: std::collections::BTreeMap<&str, HeatRow<'_>> = std::collections::BTreeMap::new();
    for d in &page.devices {
        rows.insert(
            &d.device_id,
            HeatRow {
                device_id: &d.device_id,
                counts: d.counts,
                expected: None,
                status: None,
            },
        );
    }
    for h in page.health.iter().flatten() {
        let row = rows.entry(&h.device_id).or_insert(HeatRow {
            device_id: &h.device_id,
            counts: [0; HOURS],
            expected: None,
            status: None,
        });
        row.expected = h.expected_per_hour();
        row.status = h.status.as_deref();
    }
    rows.into_values().collect()
}

/// A cell's colour: against the device's expected readings per hour when known
/// (red for none, through yellow, to green for all), else the count against the
/// day's busiest device-hour (light to dark green).
pub fn cell_colour(count: u64, expected: Option<f64>, busiest: u64) -> String {
    match expected {
        Some(e) => {
            let ratio = (count as f64 / e).min(1.0);
            format!("hsl({:.0},65%,45%)", 120.0 * ratio)
        }
        None => {
            let ratio = count as f64 / busiest.max(1) as f64;
            format!("hsl(150,60%,{:.0}%)", 80.0 - 52.0 * ratio)
        }
    }
}

/// A label cut to [`LABEL_CHARS`] characters (the full id is in its title).
fn short(id: &str) -> String {
    if id.chars().count() <= LABEL_CHARS {
        id.to_string()
    } else {
        let cut: String = id.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

fn heatmap_section(out: &mut String, page: &Page) {
    let rows = heat_rows(page);
    let busiest = rows.iter().flat_map(|r| r.counts).max().unwrap_or(0);
    let scale = if page.health.is_some() {
        "colour = readings against the device's expected per hour (device_health's expected_readings / 24): red none, green all"
    } else {
        "colour = readings, light to dark up to the busiest device-hour (no device_health to compare with)"
    };
    let height = 24 + rows.len() * ROW_PITCH;
    let _ = writeln!(
        out,
        "<h2>Coverage: readings per device and hour</h2>\n<p>From <code>telemetry_minute</code>; {scale}.</p>\n\
         <svg id=\"heatmap\" width=\"{}\" height=\"{height}\" shape-rendering=\"crispEdges\" role=\"img\">",
        LABEL_W + HOURS * CELL_PITCH + 10
    );
    for h in (0..HOURS).step_by(3) {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"12\" text-anchor=\"middle\">{h:02}</text>",
            LABEL_W + h * CELL_PITCH + CELL_W / 2
        );
    }
    for (i, row) in rows.iter().enumerate() {
        heat_row(out, row, 20 + i * ROW_PITCH, busiest);
    }
    out.push_str("</svg>\n");
}

fn heat_row(out: &mut String, row: &HeatRow<'_>, y: usize, busiest: u64) {
    let id = esc(row.device_id);
    let status = row
        .status
        .map(|s| format!(" ({})", esc(s)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<g class=\"device\" data-device=\"{id}\"><text x=\"0\" y=\"{}\">{}{status}<title>{id}</title></text>\
         <rect class=\"row-bg\" x=\"{LABEL_W}\" y=\"{y}\" width=\"{}\" height=\"{CELL_H}\" fill=\"#edf2f7\"/>",
        y + 11,
        esc(&short(row.device_id)),
        HOURS * CELL_PITCH - (CELL_PITCH - CELL_W)
    );
    for (h, n) in row.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let of = row
            .expected
            .map(|e| format!(" of {e:.1} expected"))
            .unwrap_or_default();
        let tip = format!("{id} · {h:02}:00 · {n} readings{of}");
        let _ = write!(
            out,
            "<rect class=\"cell\" data-hour=\"{h}\" data-v=\"{tip}\" x=\"{}\" y=\"{y}\" width=\"{CELL_W}\" height=\"{CELL_H}\" fill=\"{}\"><title>{tip}</title></rect>",
            LABEL_W + h * CELL_PITCH,
            cell_colour(*n, row.expected, busiest)
        );
    }
    out.push_str("</g>\n");
}

fn health_section(out: &mut String, page: &Page) {
    out.push_str("<h2>Silent and degraded devices</h2>\n");
    let Some(health) = &page.health else {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"no-health\">No device_health for {}: the table or its partition \
             <code>health_date = {}</code> is not in the lake.</p>",
            esc(&page.date),
            esc(&page.date)
        );
        return;
    };
    let count = |s: &str| {
        health
            .iter()
            .filter(|h| h.status.as_deref() == Some(s))
            .count()
    };
    let _ = writeln!(
        out,
        "<p id=\"health-counts\">{} devices known: {} OK, {} DEGRADED, {} SILENT.</p>",
        health.len(),
        count("OK"),
        count("DEGRADED"),
        count("SILENT")
    );
    for status in ["SILENT", "DEGRADED"] {
        health_table(out, health, status);
    }
}

fn health_table(out: &mut String, health: &[Health], status: &str) {
    let rows: Vec<&Health> = health
        .iter()
        .filter(|h| h.status.as_deref() == Some(status))
        .collect();
    let id = status.to_ascii_lowercase();
    if rows.is_empty() {
        let _ = writeln!(out, "<p id=\"{id}-none\">No {status} device.</p>");
        return;
    }
    let _ = write!(
        out,
        "<table class=\"sortable\" id=\"{id}\"><tr><th>device_id</th><th>device_type</th>"
    );
    for n in HEALTH_NUMBERS {
        let _ = write!(out, "<th>{n}</th>");
    }
    out.push_str("<th>first_seen</th><th>last_seen</th></tr>\n");
    for h in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            esc(&h.device_id),
            esc(h.device_type.as_deref().unwrap_or("–"))
        );
        for n in HEALTH_NUMBERS {
            let _ = write!(out, "<td>{}</td>", num(h.number(n)));
        }
        let _ = writeln!(
            out,
            "<td>{}</td><td>{}</td></tr>",
            esc(h.first_seen.as_deref().unwrap_or("–")),
            esc(h.last_seen.as_deref().unwrap_or("–"))
        );
    }
    out.push_str("</table>\n");
}

/// The page's only script: a value box for what the pointer is on, tables
/// sorted by a click on a heading, and `data-ready` on the body once it ran
/// (the browser test's sign that the script did not throw).
const SCRIPT: &str = r#"
(function () {
  "use strict";
  var tip = document.getElementById("tip");
  document.querySelectorAll("[data-v]").forEach(function (el) {
    el.addEventListener("mouseenter", function () { tip.textContent = el.getAttribute("data-v"); tip.hidden = false; });
    el.addEventListener("mouseleave", function () { tip.hidden = true; });
  });
  function key(row, i) {
    var t = row.cells[i].textContent, n = parseFloat(t);
    return isNaN(n) ? t : n;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var rows = Array.prototype.slice.call(table.rows, 1);
        var down = th.getAttribute("data-down") !== "1";
        rows.sort(function (a, b) {
          var x = key(a, i), y = key(b, i);
          return (x < y ? -1 : x > y ? 1 : 0) * (down ? -1 : 1);
        });
        th.setAttribute("data-down", down ? "1" : "0");
        rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>document.body.dataset.pwned=1</script>\"'&x";

    fn hours(pairs: &[(usize, u64)]) -> [u64; HOURS] {
        let mut h = [0; HOURS];
        for (i, n) in pairs {
            h[*i] = *n;
        }
        h
    }

    fn health(id: &str, status: &str, readings: f64, expected: Option<f64>) -> Health {
        let mut numbers = vec![None; HEALTH_NUMBERS.len()];
        numbers[0] = Some(readings);
        numbers[1] = expected;
        Health {
            device_id: id.into(),
            device_type: Some("pump".into()),
            status: Some(status.into()),
            numbers,
            first_seen: None,
            last_seen: None,
        }
    }

    fn page() -> Page {
        Page {
            date: "2024-03-11".into(),
            lake: "/tmp/lake".into(),
            generated_by: "coldpath test".into(),
            rows_from: "telemetry_minute".into(),
            rows: hours(&[(0, 90), (5, 40)]),
            rejects: vec![
                RejectCount {
                    hour: Some(0),
                    reason: "out_of_range".into(),
                    count: 10,
                },
                RejectCount {
                    hour: None,
                    reason: "unreadable_file".into(),
                    count: 1,
                },
            ],
            devices: vec![
                DeviceHours {
                    device_id: "pump-01".into(),
                    counts: hours(&[(0, 60), (5, 40)]),
                },
                DeviceHours {
                    device_id: HOSTILE.into(),
                    counts: hours(&[(0, 30)]),
                },
            ],
            health: None,
            versions: vec![TableVersion {
                name: "telemetry".into(),
                version: Some(3),
            }],
            run: None,
        }
    }

    #[test]
    fn every_string_from_the_data_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let mut p = page();
        p.health = Some(vec![health(HOSTILE, "SILENT", 0.0, None)]);
        p.rejects.push(RejectCount {
            hour: Some(1),
            reason: HOSTILE.into(),
            count: 1,
        });
        let html = render(&p);
        // The page's own script is the only one; the id shows as text.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("pwned=1</script>"));
        assert!(html.contains(
            "&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;&quot;&#39;&amp;x"
        ));
    }

    #[test]
    fn the_page_loads_nothing_from_anywhere() {
        let mut p = page();
        p.health = Some(vec![health("pump-01", "DEGRADED", 100.0, Some(2400.0))]);
        p.run = Some(serde_json::json!({"run_id": "r", "durations": {"read_ms": 10}}));
        let html = render(&p);
        for banned in [
            "http://",
            "https://",
            "src=",
            "href=",
            "fetch(",
            "XMLHttpRequest",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(banned), "the page holds {banned}");
        }
        assert!(html.contains(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        )));
        assert!(CSP.starts_with("default-src 'none'"));
    }

    #[test]
    fn bars_are_drawn_per_hour_with_rejects_stacked_and_an_unknown_hour_column() {
        let html = render(&page());
        // Rows bars only where there are rows: hours 0 and 5.
        assert_eq!(html.matches("class=\"bar-rows\"").count(), 2);
        // Hour 0: 90 rows + 10 rejects is the tallest column (100 → 180 px):
        // rows 90 * 180 / 100 = 162 px from y = 10 + 180 - 162 = 28, the reject 18 px above, from y = 10.
        assert!(html.contains("data-hour=\"00\" data-v=\"00:00 · 90 rows\" x=\"59\" y=\"28\" width=\"24\" height=\"162\""));
        assert!(html.contains("data-reason=\"out_of_range\" data-v=\"00:00 · 10 rejected: out_of_range\" x=\"59\" y=\"10\" width=\"24\" height=\"18\""));
        // The whole-file reject whose hour is unknown: the 25th column, "?".
        assert!(html.contains("data-hour=\"?\" data-reason=\"unreadable_file\""));
        assert!(html.contains("<td>unreadable_file</td><td>0</td><td>1</td><td>1</td>"));
    }

    #[test]
    fn the_heatmap_has_a_cell_per_device_hour_with_readings_and_a_row_per_known_device() {
        let html = render(&page());
        assert_eq!(html.matches("class=\"cell\"").count(), 3);
        assert_eq!(html.matches("class=\"device\"").count(), 2);
        // No device_health: raw counts against the busiest device-hour (60): 30 → 80 − 26 = 54 %.
        assert!(html.contains(
            "30 readings\" x=\"250\" y=\"20\" width=\"22\" height=\"14\" fill=\"hsl(150,60%,54%)\""
        ));
        assert!(html.contains("id=\"no-health\">No device_health for 2024-03-11"));
        let mut p = page();
        // 2400 expected a day is 100 an hour: 60 is 0.6 → hue 72; 40 → 48.
        p.health = Some(vec![
            health("pump-01", "DEGRADED", 100.0, Some(2400.0)),
            health("silent-9", "SILENT", 0.0, Some(2400.0)),
        ]);
        let html = render(&p);
        assert!(html.contains("60 readings of 100.0 expected\" x=\"250\" y=\"36\" width=\"22\" height=\"14\" fill=\"hsl(72,65%,45%)\""));
        assert!(html.contains("fill=\"hsl(48,65%,45%)\""));
        // The silent device has a row and no cell.
        assert_eq!(html.matches("class=\"device\"").count(), 3);
        assert_eq!(html.matches("class=\"cell\"").count(), 3);
        assert!(html.contains("2 devices known: 0 OK, 1 DEGRADED, 1 SILENT."));
        assert!(html.contains("<table class=\"sortable\" id=\"silent\"><tr><th>device_id</th>"));
        assert!(html.contains("<tr><td>silent-9</td><td>pump</td><td>0</td><td>2400</td>"));
    }

    #[test]
    fn the_run_report_shows_its_timings_and_versions_their_tables() {
        let mut p = page();
        p.versions.push(TableVersion {
            name: "device_health".into(),
            version: None,
        });
        assert!(render(&p).contains("id=\"no-run\""));
        p.run = Some(serde_json::json!({
            "run_id": "r-1", "status": "succeeded", "records_read": 438,
            "durations": {"read_ms": 400, "write_ms": 100}
        }));
        let html = render(&p);
        assert!(html.contains("Run <code>r-1</code>: <b>succeeded</b>. 438 records read"));
        // The longest stage is 200 px wide, the others in proportion: 100 of 400 → 50.
        assert!(html.contains("<td>read</td><td>400</td><td style=\"text-align:left\"><span class=\"tbar\" style=\"width:200px\">"));
        assert!(html.contains("<td>write</td><td>100</td><td style=\"text-align:left\"><span class=\"tbar\" style=\"width:50px\">"));
        assert!(html.contains("<tr><td>telemetry</td><td>3</td></tr>"));
        assert!(html.contains("<tr><td>device_health</td><td>no table yet</td></tr>"));
    }

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(num(Some(86400.0)), "86400");
        assert_eq!(num(Some(0.91234)), "0.912");
        assert_eq!(num(None), "–");
        assert_eq!(short(&"x".repeat(40)).chars().count(), LABEL_CHARS);
    }
}
