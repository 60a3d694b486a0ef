//! The page an engineer opens after a run (`coldpath report --html`, `run --html`): one self-contained HTML file.
//!
//! Rendering only: the data comes in as a [`Page`] (read from the lake by
//! [`crate::lake::look`]) and leaves as a `String`, so every rule of the page is
//! unit-tested without a lake or a browser. The file loads nothing: the styles, the
//! script and the charts (SVG) are inline, and its Content-Security-Policy forbids
//! any load from elsewhere. Every string that comes from the data is escaped:
//! device ids and reasons are producer input. Every colour a chart uses has a
//! legend entry, and every name the page shows is explained in words
//! ([`super::explain`]) for readers without the data contract at hand.

use std::fmt::Write;

use super::explain::{self, HEALTH_INTRO, HEALTH_TERMS};
pub use super::page::{Health, Page, RejectCount, HEALTH_NUMBERS, HOURS};

/// The colour of the rows bars.
pub const ROWS_COLOUR: &str = "#2b6cb0";

/// A reject reason's colour: Paul Tol's "muted" qualitative palette, whose nine
/// colours stay apart for the common colour-vision deficiencies; grey for a
/// reason the page does not know.
pub fn reason_colour(reason: &str) -> &'static str {
    match reason {
        "malformed_record" => "#cc6677",
        "missing_device_id" => "#ddcc77",
        "invalid_timestamp" => "#88ccee",
        "type_mismatch" => "#aa4499",
        "out_of_range" => "#882255",
        "late_beyond_window" => "#999933",
        "event_time_in_future" => "#44aa99",
        "unreadable_file" => "#332288",
        "failed_expectation" => "#117733",
        _ => "#bbbbbb",
    }
}

/// A coverage-grid colour scale: (lowest share it stands for, colour, legend text), highest first.
pub type Scale = [(f64, &'static str, &'static str); 3];

/// Readings against the device's expected per hour (ColorBrewer's PRGn, colour-blind safe).
pub const COVERAGE_SCALE: Scale = [
    (
        0.9,
        "#1b7837",
        "90 % or more of the readings expected in the hour",
    ),
    (0.5, "#c2a5cf", "50 % to 90 % of them"),
    (0.0, "#762a83", "under 50 % of them"),
];

/// Readings against the date's busiest device-hour, for a device without expected
/// readings (greys: no verdict, only more or fewer).
pub const COUNT_SCALE: Scale = [
    (
        2.0 / 3.0,
        "#525252",
        "two thirds of the busiest device-hour or more",
    ),
    (1.0 / 3.0, "#969696", "a third to two thirds of it"),
    (0.0, "#cccccc", "under a third of it"),
];

/// A device-hour without readings (the row's background).
pub const EMPTY_COLOUR: &str = "#edf2f7";

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
h1{font-size:20px}h2{font-size:16px;margin-top:28px}p{max-width:75em}code{overflow-wrap:anywhere}\
table{border-collapse:collapse;margin:8px 0;max-width:100%}td,th{border:1px solid #cbd5e0;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#edf2f7;cursor:pointer}\
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;max-width:75em}dt{font-weight:600}dd{margin:0}\
.note{background:#fffbea;border:1px solid #f6e05e;padding:6px 10px;display:inline-block}\
.legend{list-style:none;padding:0;margin:6px 0;max-width:75em}.legend li{margin:3px 0}\
.key{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;outline:1px solid #a0aec0}\
.tbar{display:inline-block;height:10px;background:#718096}tr.total td{font-weight:600}td.text{text-align:left}\
#silent,#degraded{width:100%}#silent td:first-child,#degraded td:first-child{overflow-wrap:anywhere;min-width:8em}\
#silent th,#degraded th{font-size:12px}#silent td,#degraded td,#silent th,#degraded th{padding:3px 5px}.why,.text{text-align:left}td.why{min-width:14em}ul.why{margin:0;padding-left:16px}\
#tip{position:fixed;right:12px;top:12px;background:#1a202c;color:#fff;padding:4px 8px;font-size:12px}\
svg text{font-size:11px;fill:#1a202c}";

/// What the page is, in two sentences, under its title.
const INTRO: &str = "What one date of telemetry became: the tables it was written to, the rows each hour \
brought and the records rejected, the readings of each device per hour, and the devices that went silent \
or degraded. Every time is UTC. Point at a bar or a cell for its numbers; click a column heading to sort a table.";

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
    let job = if page.job.is_empty() {
        String::new()
    } else {
        format!("<dt>job</dt><dd>{}</dd>", esc(&page.job))
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <title>coldpath {date}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>coldpath: {date}</h1>\n<p>{INTRO}</p>\n\
         <dl class=\"facts\" id=\"about\"><dt>date</dt><dd>{date} (UTC)</dd>{job}\
         <dt>lake (where the tables are)</dt><dd><code id=\"lake\">{lake}</code></dd></dl>\n\
         <p>Written by {by}.</p>\n",
        date = esc(&page.date),
        lake = esc(&page.lake),
        by = esc(&page.generated_by),
    );
}

fn run_section(out: &mut String, page: &Page) {
    out.push_str(
        "<h2>Table versions and the run</h2>\n<p>A Delta table's version goes up by one with every \
         commit to it; <i>no table yet</i>: nothing has written that table in this lake.</p>\n\
         <table id=\"versions\"><tr><th>table</th><th>current version</th></tr>\n",
    );
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
        "<p id=\"run\">Run <code>{}</code>: <b>{}</b>. {} records read, {} rows written, {} rejected, {} duplicates, {} other dates.</p>\n\
         <p>Every record read ends in one place: a row written, a reject (below, by reason), a duplicate \
         (a repeated copy of a reading already kept) or another date (a reading of the day before or after).</p>",
        esc(&text("run_id")),
        esc(&text("status")),
        esc(&text("records_read")),
        esc(&text("rows_written")),
        esc(&text("rejected")),
        esc(&text("duplicates")),
        esc(&text("other_dates")),
    );
    if let Some(durations) = report.get("durations").and_then(|d| d.as_object()) {
        timings(out, durations);
    }
}

/// The stages' times in the order a run goes through them, `total` last, each with a bar and what it is.
fn timings(out: &mut String, durations: &serde_json::Map<String, serde_json::Value>) {
    let mut stages: Vec<(&str, u64)> = durations
        .iter()
        .map(|(k, v)| (k.trim_end_matches("_ms"), v.as_u64().unwrap_or(0)))
        .collect();
    stages.sort_by_key(|(name, _)| (explain::stage(name).0, *name));
    let most = stages.iter().map(|s| s.1).max().unwrap_or(0).max(1);
    out.push_str("<table id=\"timings\"><tr><th>stage</th><th>time (ms)</th><th></th><th class=\"text\">what it is</th></tr>\n");
    for (stage, ms) in stages {
        let class = if stage == "total" {
            " class=\"total\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr{class}><td>{}</td><td>{ms}</td><td style=\"text-align:left\"><span class=\"tbar\" style=\"width:{}px\"></span></td><td class=\"text\">{}</td></tr>",
            esc(stage),
            ms * 200 / most,
            explain::stage(stage).1
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

/// The value axis's ticks: 0 and each multiple of a round step (1, 2 or 5 × 10ⁿ,
/// the smallest that gives at most six ticks) up to `most`, the top of the plot.
pub fn ticks(most: u64) -> Vec<u64> {
    let rough = most.div_ceil(6).max(1);
    let mut power = 1u64;
    while power.saturating_mul(10) <= rough {
        power *= 10;
    }
    let step = [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10 * power);
    (0..=most / step).map(|i| i * step).collect()
}

/// A tick's label: `950`, `4000`, `12k`, `2.5M`.
pub fn compact(v: u64) -> String {
    let short = |v: u64, unit: u64, suffix: &str| {
        if v.is_multiple_of(unit) {
            format!("{}{suffix}", v / unit)
        } else {
            format!("{:.1}{suffix}", v as f64 / unit as f64)
        }
    };
    match v {
        0..10_000 => v.to_string(),
        10_000..1_000_000 => short(v, 1000, "k"),
        _ => short(v, 1_000_000, "M"),
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
        PLOT_H + TOP + 44
    );
    value_axis(out, most, width);
    for (h, hour_rejects) in rejects.iter().enumerate().take(columns) {
        let rows = page.rows.get(h).copied().unwrap_or(0);
        hour_bar(out, h, rows, hour_rejects, most);
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">hour of the event (UTC)</text></svg>",
        LEFT + columns * BAR_PITCH / 2,
        TOP + PLOT_H + 34
    );
    hours_legend(out, page);
    rejects_table(out, &rejects);
}

/// The value axis: a grid line and a label per tick, and the unit along the side.
fn value_axis(out: &mut String, most: u64, width: usize) {
    let middle = TOP + PLOT_H / 2;
    let _ = write!(
        out,
        "<text class=\"unit\" x=\"12\" y=\"{middle}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {middle})\">rows per hour</text>"
    );
    for v in ticks(most) {
        let y = TOP + PLOT_H - v * PLOT_H / most.max(1);
        let colour = if v == 0 { "#a0aec0" } else { "#e2e8f0" };
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            width - 10,
            LEFT - 6,
            y + 4,
            compact(v)
        );
    }
}

/// The chart's key: the rows' colour, and each reason's colour with what the reason means.
fn hours_legend(out: &mut String, page: &Page) {
    let _ = write!(
        out,
        "<ul class=\"legend\" id=\"legend-hours\"><li><span class=\"key\" style=\"background:{ROWS_COLOUR}\"></span>\
         <b>rows</b>: readings written to the tables</li>"
    );
    let mut reasons: Vec<&str> = page.rejects.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    for reason in reasons {
        let _ = write!(
            out,
            "<li data-reason=\"{name}\"><span class=\"key\" style=\"background:{}\"></span><b>{name}</b>: {}</li>",
            reason_colour(reason),
            explain::reason_meaning(reason),
            name = esc(reason),
        );
    }
    out.push_str("</ul>\n");
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

/// The most devices the heatmap draws, and each table of `device_health`
/// lists: a page of a fleet of 250,000 would be gigabytes. Past it, the devices
/// that are not `OK` come first, and the page says how many are left out.
pub const MAX_DEVICES_SHOWN: usize = 1_000;

/// The heatmap's rows: every device with readings, and every device of
/// `device_health` (a silent one has an empty row), in device id order; at most
/// [`MAX_DEVICES_SHOWN`], those not `OK` first. Also how many were left out.
fn heat_rows(page: &Page) -> (Vec<HeatRow<'_>>, usize) {
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
    let mut rows: Vec<HeatRow<'_>> = rows.into_values().collect();
    let left_out = rows.len().saturating_sub(MAX_DEVICES_SHOWN);
    if left_out > 0 {
        // Stable: within a rank, id order stays.
        rows.sort_by_key(|r| r.status.is_none_or(|s| s == "OK"));
        rows.truncate(MAX_DEVICES_SHOWN);
        rows.sort_by(|a, b| a.device_id.cmp(b.device_id));
    }
    (rows, left_out)
}

/// A cell's colour: the device-hour's readings against the device's expected
/// readings per hour when known ([`COVERAGE_SCALE`]), else against the date's
/// busiest device-hour ([`COUNT_SCALE`]).
pub fn cell_colour(count: u64, expected: Option<f64>, busiest: u64) -> &'static str {
    let (share, scale) = match expected {
        Some(e) => (count as f64 / e, &COVERAGE_SCALE),
        None => (count as f64 / busiest.max(1) as f64, &COUNT_SCALE),
    };
    scale
        .iter()
        .find(|s| share >= s.0)
        .map_or(scale[2].1, |s| s.1)
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
    let (rows, left_out) = heat_rows(page);
    let busiest = rows.iter().flat_map(|r| r.counts).max().unwrap_or(0);
    let against = if page.health.is_some() {
        "the readings the device is expected to send in an hour (device_health's expected readings ÷ 24);          a device without expected readings, with the date's busiest device-hour"
    } else {
        "the date's busiest device-hour (there is no device_health to compare with)"
    };
    let height = 24 + rows.len() * ROW_PITCH;
    let _ = writeln!(
        out,
        "<h2>Coverage: readings per device and hour</h2>\n<p>From <code>telemetry_minute</code>: one row per \
         device (its status in brackets), one cell per UTC hour; a cell's colour compares its readings with {against}.</p>\n\
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
    if left_out > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"heatmap-left-out\">{left_out} more devices are not drawn: the heatmap shows {MAX_DEVICES_SHOWN}, those not OK first.</p>"
        );
    }
    heatmap_legend(out, &rows, busiest);
}

/// The grid's key: each colour of the scales its cells use, and the empty cell.
fn heatmap_legend(out: &mut String, rows: &[HeatRow<'_>], busiest: u64) {
    let drawn = |r: &&HeatRow<'_>| r.counts.iter().any(|n| *n > 0);
    let expected = rows.iter().filter(drawn).any(|r| r.expected.is_some());
    let counted = rows.iter().filter(drawn).any(|r| r.expected.is_none());
    out.push_str("<ul class=\"legend\" id=\"legend-heatmap\">");
    if expected {
        scale_legend(
            out,
            "Against the device's expected readings",
            &COVERAGE_SCALE,
        );
    }
    if counted {
        let title = format!(
            "Without expected readings, against the busiest device-hour ({busiest} readings)"
        );
        scale_legend(out, &title, &COUNT_SCALE);
    }
    let _ = writeln!(
        out,
        "<li><span class=\"key\" style=\"background:{EMPTY_COLOUR}\"></span>no reading in the hour</li></ul>"
    );
}

fn scale_legend(out: &mut String, title: &str, scale: &Scale) {
    let _ = write!(out, "<li><b>{title}:</b></li>");
    for (_, colour, text) in scale {
        let _ = write!(
            out,
            "<li><span class=\"key\" style=\"background:{colour}\"></span>{text}</li>"
        );
    }
}

fn heat_row(out: &mut String, row: &HeatRow<'_>, y: usize, busiest: u64) {
    let id = esc(row.device_id);
    // A cell's tip names the device by its label (the row's title has the whole id).
    let short_id = esc(&short(row.device_id));
    let status = row
        .status
        .map(|s| format!(" ({})", esc(s)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<g class=\"device\" data-device=\"{id}\"><text x=\"0\" y=\"{}\">{}{status}<title>{id}</title></text>\
         <rect class=\"row-bg\" x=\"{LABEL_W}\" y=\"{y}\" width=\"{}\" height=\"{CELL_H}\" fill=\"{EMPTY_COLOUR}\"/>",
        y + 11,
        esc(&short(row.device_id)),
        HOURS * CELL_PITCH - (CELL_PITCH - CELL_W)
    );
    for (h, n) in row.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let of = row
            .expected
            .map(|e| format!(" of {e:.1} expected"))
            .unwrap_or_default();
        let tip = format!("{short_id} · {h:02}:00 · {n} readings{of}");
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
        "<p id=\"health-intro\">{HEALTH_INTRO}</p>\n<p id=\"health-counts\">{} devices known: {} OK, {} DEGRADED, {} SILENT.</p>",
        health.len(),
        count("OK"),
        count("DEGRADED"),
        count("SILENT")
    );
    for status in ["SILENT", "DEGRADED"] {
        health_table(out, health, status, &page.date);
    }
    health_terms(out);
}

fn health_table(out: &mut String, health: &[Health], status: &str, date: &str) {
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
        "<h3>{status}</h3>\n<table class=\"sortable\" id=\"{id}\"><tr><th>device_id</th><th>device_type</th><th class=\"why\">why</th>"
    );
    for (column, heading, meaning) in HEALTH_TERMS {
        let _ = write!(
            out,
            "<th title=\"{column}: {}\">{heading}</th>",
            esc(meaning)
        );
    }
    out.push_str("<th>first reading (UTC)</th><th>last reading (UTC)</th></tr>\n");
    for h in rows.iter().take(MAX_DEVICES_SHOWN) {
        health_row(out, h, status, date);
    }
    out.push_str("</table>\n");
    if rows.len() > MAX_DEVICES_SHOWN {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"{id}-left-out\">{} more {status} devices are not listed: the table shows the first {MAX_DEVICES_SHOWN} by device id.</p>",
            rows.len() - MAX_DEVICES_SHOWN
        );
    }
}

fn health_row(out: &mut String, h: &Health, status: &str, date: &str) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td>{}</td><td class=\"why\">{}</td>",
        esc(&h.device_id),
        esc(h.device_type.as_deref().unwrap_or("–")),
        why(h, status)
    );
    for n in HEALTH_NUMBERS {
        let v = h.number(n);
        match v.filter(|_| n == "max_gap_s") {
            Some(s) => {
                let _ = write!(
                    out,
                    "<td data-sort=\"{}\" title=\"{} s\">{}</td>",
                    num(v),
                    num(v),
                    explain::duration_words(s)
                );
            }
            None => {
                let _ = write!(out, "<td>{}</td>", num(v));
            }
        }
    }
    let _ = writeln!(
        out,
        "<td>{}</td><td>{}</td></tr>",
        esc(&time_of_day(h.first_seen.as_deref(), date)),
        esc(&time_of_day(h.last_seen.as_deref(), date))
    );
}

/// A timestamp of `date` as its time of day (`2024-03-11T05:30:00Z` → `05:30:00`); another as it is.
fn time_of_day(t: Option<&str>, date: &str) -> String {
    let Some(t) = t else {
        return "–".to_string();
    };
    t.strip_prefix(date)
        .and_then(|r| r.strip_prefix(['T', ' ']))
        .map_or(t, |r| {
            r.trim_end_matches('Z').split('.').next().unwrap_or(r)
        })
        .to_string()
}

/// Why the device has its status: no reading (SILENT), or each cause of DEGRADED its row shows.
fn why(h: &Health, status: &str) -> String {
    if status != "DEGRADED" {
        return "<span data-cause=\"silent\">no reading on this date</span>".to_string();
    }
    let causes: String = explain::degraded_causes(h)
        .into_iter()
        .map(|(key, text)| format!("<li data-cause=\"{key}\">{}</li>", esc(&text)))
        .collect();
    format!("<ul class=\"why\">{causes}</ul>")
}

/// What each column of the two tables means.
fn health_terms(out: &mut String) {
    out.push_str("<dl class=\"facts\" id=\"health-terms\">");
    for (column, heading, meaning) in HEALTH_TERMS {
        let _ = write!(
            out,
            "<dt>{heading}</dt><dd>{} <code>({column})</code></dd>",
            esc(meaning)
        );
    }
    out.push_str("</dl>\n");
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
    var c = row.cells[i], t = c.getAttribute("data-sort") || c.textContent, n = parseFloat(t);
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
    use crate::report::page::{DeviceHours, TableVersion};

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
            job: "plant".into(),
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

    /// A fleet past [`MAX_DEVICES_SHOWN`]: the heatmap draws that many, those not
    /// OK first, and says how many it left out; so does each health table. A
    /// device id of 1,024 quotes is in each cell's tip as its 24-character label.
    #[test]
    fn a_large_fleet_is_drawn_and_listed_up_to_the_cap() {
        let mut p = page();
        let id = |i: usize| format!("dev-{i:05}");
        p.devices = (0..1_200)
            .map(|i| DeviceHours {
                device_id: id(i),
                counts: hours(&[(1, 5), (2, 5)]),
            })
            .collect();
        let quotes = "\"".repeat(1_024);
        p.devices[1_199].device_id = quotes.clone();
        // The last five are silent, and so are 1,100 devices with no row at all.
        let mut known: Vec<Health> = (1_195..1_200)
            .map(|i| health(&p.devices[i].device_id, "SILENT", 0.0, Some(240.0)))
            .collect();
        known.extend((0..1_100).map(|i| health(&format!("gone-{i:05}"), "SILENT", 0.0, None)));
        p.health = Some(known);
        let html = render(&p);
        assert_eq!(
            html.matches("<g class=\"device\"").count(),
            MAX_DEVICES_SHOWN
        );
        assert!(
            html.contains(&format!("data-device=\"{}\"", id(1_198))),
            "the silent first"
        );
        assert!(
            html.contains("id=\"heatmap-left-out\">1300 more devices"),
            "2,300 devices"
        );
        let silent = html
            .split("<table class=\"sortable\" id=\"silent\">")
            .nth(1)
            .unwrap();
        let silent = silent.split("</table>").next().unwrap();
        assert_eq!(silent.matches("<tr><td>").count(), MAX_DEVICES_SHOWN);
        assert!(html.contains("id=\"silent-left-out\">105 more SILENT devices"));
        let tip_id = format!("data-v=\"{}…", "&quot;".repeat(23));
        assert!(html.contains(&tip_id), "the tips carry the label");
        assert!(html.len() < 4 << 20, "{} bytes", html.len());
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
        // No device_health: raw counts against the busiest device-hour (60): 30 is a half,
        // between a third and two thirds: #969696.
        assert!(html.contains(
            "30 readings\" x=\"250\" y=\"20\" width=\"22\" height=\"14\" fill=\"#969696\""
        ));
        assert!(html.contains("id=\"no-health\">No device_health for 2024-03-11"));
        let mut p = page();
        // 2400 expected a day is 100 an hour: 60 is 0.6, from 50 % to 90 %: #c2a5cf; 40 is under 50 %: #762a83.
        p.health = Some(vec![
            health("pump-01", "DEGRADED", 100.0, Some(2400.0)),
            health("silent-9", "SILENT", 0.0, Some(2400.0)),
        ]);
        let html = render(&p);
        assert!(html.contains("60 readings of 100.0 expected\" x=\"250\" y=\"36\" width=\"22\" height=\"14\" fill=\"#c2a5cf\""));
        assert!(html.contains("40 readings of 100.0 expected\" x=\"370\" y=\"36\" width=\"22\" height=\"14\" fill=\"#762a83\""));
        // The silent device has a row and no cell.
        assert_eq!(html.matches("class=\"device\"").count(), 3);
        assert_eq!(html.matches("class=\"cell\"").count(), 3);
        assert!(html.contains("2 devices known: 0 OK, 1 DEGRADED, 1 SILENT."));
        assert!(html.contains("<table class=\"sortable\" id=\"silent\"><tr><th>device_id</th>"));
        assert!(html.contains("<tr><td>silent-9</td><td>pump</td><td class=\"why\"><span data-cause=\"silent\">no reading on this date</span></td><td>0</td><td>2400</td>"));
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
    fn stage_timings_follow_the_run_and_end_with_the_total() {
        let mut p = page();
        p.run = Some(serde_json::json!({"durations": {
            "dedup_ms": 5, "features_ms": 6, "history_ms": 3, "list_ms": 2, "lock_ms": 1,
            "read_ms": 4, "total_ms": 30, "write_ms": 7, "zeta_ms": 8
        }}));
        let html = render(&p);
        let order = [
            "lock", "list", "history", "read", "dedup", "features", "write", "zeta", "total",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|s| html.find(&format!("<td>{s}</td>")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        assert!(html.contains("<tr class=\"total\"><td>total</td><td>30</td>"));
    }

    #[test]
    fn the_value_axis_has_round_ticks_and_a_unit() {
        assert_eq!(ticks(100), [0, 20, 40, 60, 80, 100]);
        assert_eq!(ticks(417), [0, 100, 200, 300, 400]);
        assert_eq!(ticks(1), [0, 1]);
        assert_eq!(ticks(0), [0]);
        assert_eq!(
            ticks(2_600_000),
            [0, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000]
        );
        assert_eq!(compact(4000), "4000");
        assert_eq!(compact(20_000), "20k");
        assert_eq!(compact(1_500_000), "1.5M");
        let html = render(&page());
        // 100 at the top (y 10), 0 on the axis (y 190): a line and a label every 20, 36 px apart.
        assert_eq!(html.matches("<line class=\"tick\"").count(), 6);
        assert!(html.contains("y1=\"46\" y2=\"46\" stroke=\"#e2e8f0\"/><text x=\"50\" y=\"50\" text-anchor=\"end\">80</text>"));
        assert!(html.contains(">rows per hour</text>"));
        assert!(html.contains(">hour of the event (UTC)</text>"));
    }

    #[test]
    fn every_colour_drawn_has_a_legend_entry_and_every_reason_a_meaning() {
        let mut p = page();
        p.health = Some(vec![health("pump-01", "DEGRADED", 100.0, Some(2400.0))]);
        for html in [render(&page()), render(&p)] {
            let legend: Vec<&str> = html
                .split("<span class=\"key\" style=\"background:")
                .skip(1)
                .map(|s| &s[..7])
                .collect();
            for fill in html.split(" fill=\"").skip(1).map(|s| &s[..7]) {
                assert!(legend.contains(&fill), "{fill} has no legend entry");
            }
        }
        let html = render(&page());
        assert!(html.contains("<b>out_of_range</b>: a value is outside its valid range"));
        assert!(html.contains("<b>unreadable_file</b>: a whole blob"));
    }

    #[test]
    fn the_reject_colours_are_all_different() {
        let reasons = [
            "malformed_record",
            "missing_device_id",
            "invalid_timestamp",
            "type_mismatch",
            "out_of_range",
            "late_beyond_window",
            "event_time_in_future",
            "unreadable_file",
            "failed_expectation",
            "something_else",
        ];
        let mut colours: Vec<&str> = reasons.iter().map(|r| reason_colour(r)).collect();
        colours.push(ROWS_COLOUR);
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), reasons.len() + 1);
    }

    #[test]
    fn a_degraded_device_says_why() {
        let mut p = page();
        let mut h = health("pump-01", "DEGRADED", 100.0, Some(2400.0));
        h.numbers[2] = Some(100.0 / 2400.0);
        h.numbers[3] = Some(66600.0);
        p.health = Some(vec![h]);
        let html = render(&p);
        assert!(html.contains("<td class=\"why\"><ul class=\"why\"><li data-cause=\"coverage\">coverage 0.04 (100 of 2400 expected readings), below 0.9</li>\
            <li data-cause=\"gap\">18 h 30 min without a reading, over 1 h</li></ul></td>"));
        assert!(html.contains("<td data-sort=\"66600\" title=\"66600 s\">18 h 30 min</td>"));
    }

    #[test]
    fn a_time_of_the_date_reads_as_a_time_of_day() {
        assert_eq!(
            time_of_day(Some("2024-03-11T05:30:00Z"), "2024-03-11"),
            "05:30:00"
        );
        assert_eq!(
            time_of_day(Some("2024-03-11 23:59:59.999"), "2024-03-11"),
            "23:59:59"
        );
        assert_eq!(
            time_of_day(Some("2024-03-12T00:00:00Z"), "2024-03-11"),
            "2024-03-12T00:00:00Z"
        );
        assert_eq!(time_of_day(None, "2024-03-11"), "–");
    }

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(num(Some(86400.0)), "86400");
        assert_eq!(num(Some(0.91234)), "0.912");
        assert_eq!(num(None), "–");
        assert_eq!(short(&"x".repeat(40)).chars().count(), LABEL_CHARS);
    }
}
