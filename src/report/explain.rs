//! The words the report page uses to explain itself: what a reject reason, a run stage and a device's status mean.
//!
//! The page is read by plant engineers who do not have the data contract at
//! hand, so every name it shows (a reason, a stage, a `device_health` column or
//! status) comes with a short plain sentence from here. The thresholds are the
//! contract's `device_health` rule: `DEGRADED` when coverage < 0.9, the longest
//! gap > 3600 s, or any stuck temperature hour.

use super::page::Health;

/// `device_health`: below this coverage a device with readings is `DEGRADED`.
pub const COVERAGE_MIN: f64 = 0.9;

/// `device_health`: a gap without a reading longer than this (seconds) makes a device `DEGRADED`.
pub const GAP_MAX_S: f64 = 3600.0;

/// What a reject reason means, in a sentence.
pub fn reason_meaning(reason: &str) -> &'static str {
    match reason {
        "malformed_record" => "the record could not be parsed: a broken JSON or CSV line, a record cut off at the end of a blob, or not an object",
        "missing_device_id" => "the record names no device",
        "invalid_timestamp" => "the record's event time is missing or is not a time (ISO-8601, or epoch seconds or milliseconds)",
        "type_mismatch" => "a value has the wrong type, such as text where a number belongs",
        "out_of_range" => "a value is outside its valid range (by default temperature −40 to 150, pressure 0 to 1000, vibration 0 to 500)",
        "late_beyond_window" => "the event time is earlier than the blob's time folder by more than the late-arrival allowance (2 h by default)",
        "event_time_in_future" => "the event time is later than the end of the blob's time folder plus the clock-skew allowance (5 min by default): the device clock is probably wrong",
        "unreadable_file" => "a whole blob, or the rest of it, could not be read (corrupt, not the expected format, or over a size limit): one reject per blob",
        "failed_expectation" => "the row failed one of the job's declared expectations whose action is drop (the expectation is named in the reject's detail)",
        _ => "a reason this page does not know (written by another version of coldpath)",
    }
}

/// The run's stages in the order a run goes through them; `total` is shown last.
pub const STAGES: [(&str, &str); 8] = [
    ("lock", "waiting for and taking the date's run lock"),
    ("list", "listing the date's blobs in the source"),
    (
        "history",
        "reading back the earlier dates the features and device health compare with",
    ),
    ("read", "fetching, decoding and checking every blob"),
    ("dedup", "removing repeated copies of a reading"),
    (
        "features",
        "hourly features, minute aggregates and device health",
    ),
    ("write", "writing and committing the tables"),
    ("total", "the whole run, start to end"),
];

/// A stage's place in [`STAGES`] (unknown stages after the known ones, `total` last) and what it does.
pub fn stage(name: &str) -> (usize, &'static str) {
    match STAGES.iter().position(|s| s.0 == name) {
        Some(i) if name == "total" => (usize::MAX, STAGES[i].1),
        Some(i) => (i, STAGES[i].1),
        None => (STAGES.len(), ""),
    }
}

/// Why a device is `DEGRADED`: (a short key, a sentence) per cause its row shows.
pub fn degraded_causes(h: &Health) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(c) = h.number("coverage").filter(|c| *c < COVERAGE_MIN) {
        let of = match (h.number("readings"), h.number("expected_readings")) {
            (Some(r), Some(e)) => format!(" ({r:.0} of {e:.0} expected readings)"),
            _ => String::new(),
        };
        out.push(("coverage", format!("coverage {c:.2}{of}, below 0.9")));
    }
    if let Some(g) = h.number("max_gap_s").filter(|g| *g > GAP_MAX_S) {
        out.push((
            "gap",
            format!("{} without a reading, over 1 h", duration_words(g)),
        ));
    }
    if let Some(n) = h.number("stuck_temperature_hours").filter(|n| *n > 0.0) {
        let hours = if n == 1.0 { "hour" } else { "hours" };
        out.push((
            "stuck",
            format!("temperature stuck (10 or more readings, all equal) in {n:.0} {hours}"),
        ));
    }
    if out.is_empty() {
        out.push((
            "unknown",
            "none of the three causes shows in the row's figures".to_string(),
        ));
    }
    out
}

/// Seconds for people: `45 s`, `12 min`, `18 h 30 min`.
pub fn duration_words(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ if s % 3600 < 60 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// What the page says about device health, before its tables: the statuses and the rule.
pub const HEALTH_INTRO: &str = "A device is <i>known</i> on a date when it sent readings on it or in the 7 dates \
before, or is in the maintenance log. <b>SILENT</b>: no reading on the date. <b>DEGRADED</b>: it sent readings, \
but its coverage (readings ÷ expected readings) is below 0.9, or it went more than 1 hour (3,600 s) without \
a reading, or its temperature was stuck in at least one hour. <b>OK</b>: none of these. The column <i>why</i> \
says which cause each device shows.";

/// The `device_health` columns the tables show: (column, heading, what it means).
pub const HEALTH_TERMS: [(&str, &str, &str); 11] = [
    ("readings", "readings", "readings on the date, after removing copies"),
    (
        "expected_readings",
        "expected",
        "readings the device usually sends in a day: 86,400 s ÷ its median interval between readings over the 7 dates before (over this date when those have too few)",
    ),
    ("coverage", "coverage", "readings ÷ expected (1 = all of them)"),
    (
        "max_gap_s",
        "longest gap",
        "the longest time without a reading, counting from midnight and to the next midnight",
    ),
    ("gaps_over_5m", "gaps over 5 min", "times between readings longer than 5 minutes"),
    (
        "stuck_temperature_hours",
        "stuck temp. hours",
        "UTC hours with 10 or more temperatures, all equal (a stuck sensor)",
    ),
    ("duplicates", "duplicates", "repeated copies of a reading, removed"),
    ("rejected", "rejected", "records of the device the run rejected (see the reasons above)"),
    (
        "late_readings",
        "late",
        "readings that arrived after the date, in the hours the run waits for late data",
    ),
    (
        "transit_p50_s",
        "transit p50 (s)",
        "median seconds from the reading to its arrival in the hub",
    ),
    (
        "transit_p95_s",
        "transit p95 (s)",
        "95th percentile of those seconds",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::page::HEALTH_NUMBERS;

    fn row(coverage: Option<f64>, gap: f64, stuck: f64) -> Health {
        let mut numbers = vec![None; HEALTH_NUMBERS.len()];
        numbers[0] = Some(50.0);
        numbers[1] = Some(100.0);
        numbers[2] = coverage;
        numbers[3] = Some(gap);
        numbers[5] = Some(stuck);
        Health {
            numbers,
            ..Default::default()
        }
    }

    #[test]
    fn each_cause_of_degraded_is_named_from_the_contracts_thresholds() {
        let keys = |h: &Health| -> Vec<&str> { degraded_causes(h).iter().map(|c| c.0).collect() };
        assert_eq!(keys(&row(Some(0.5), 900.0, 0.0)), ["coverage"]);
        assert_eq!(keys(&row(Some(0.9), 3601.0, 0.0)), ["gap"]);
        assert_eq!(keys(&row(Some(1.0), 3600.0, 2.0)), ["stuck"]);
        assert_eq!(
            keys(&row(Some(0.1), 7200.0, 1.0)),
            ["coverage", "gap", "stuck"]
        );
        assert_eq!(keys(&row(None, 3600.0, 0.0)), ["unknown"]);
        assert_eq!(
            degraded_causes(&row(Some(0.5), 66600.0, 0.0))[0].1,
            "coverage 0.50 (50 of 100 expected readings), below 0.9"
        );
        assert_eq!(
            degraded_causes(&row(Some(1.0), 66600.0, 0.0))[0].1,
            "18 h 30 min without a reading, over 1 h"
        );
    }

    #[test]
    fn durations_and_stages_read_in_order() {
        assert_eq!(duration_words(45.0), "45 s");
        assert_eq!(duration_words(900.0), "15 min");
        assert_eq!(duration_words(7200.0), "2 h");
        assert_eq!(stage("lock").0, 0);
        assert!(stage("write").0 < stage("other").0);
        assert!(stage("other").0 < stage("total").0);
        assert_eq!(HEALTH_TERMS.map(|t| t.0), HEALTH_NUMBERS);
    }
}
