//! `[features]` in the job file: a declared feature set (signals, windows,
//! aggregates, event logs, components, device attributes, label horizons),
//! checked before anything is read.
//!
//! Declarations only: what each column means is `docs/features.md`, and the
//! stage that computes them is `stages/features/declared.rs`. With no
//! `[features]` table the set is empty and `features_hourly` has exactly its
//! default columns.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::config::schema::{FieldType, TelemetrySchema};

const HOUR_US: i64 = 3_600_000_000;

/// The longest window or horizon a job may declare.
pub const MAX_WINDOW_HOURS: i64 = 30 * 24;

/// `features_hourly`'s default columns: a declared column may not take these names.
pub const DEFAULT_COLUMNS: [&str; 31] = [
    "device_id",
    "window_start",
    "device_type",
    "reading_count",
    "temp_mean",
    "temp_min",
    "temp_max",
    "temp_std",
    "pressure_mean",
    "vibration_mean",
    "vibration_std",
    "vibration_max",
    "temp_rolling_mean_6h",
    "temp_rolling_std_6h",
    "vibration_rolling_std_6h",
    "temp_spike_count",
    "hour",
    "day_of_week",
    "days_since_maintenance",
    "maintenance_status",
    "failure_within_7d",
    "failure_within_14d",
    "lookback_complete",
    "coverage",
    "max_gap_s",
    "baseline_hours",
    "temp_baseline_mean",
    "temp_baseline_std",
    "temp_zscore",
    "vibration_zscore",
    "feature_date",
];

/// Label horizons the default set already has (`failure_within_7d`, `_14d`), in hours.
pub const DEFAULT_HORIZONS: [i64; 2] = [7 * 24, 14 * 24];
/// How the default horizons are spelled in their columns' names.
const DEFAULT_HORIZON_NAMES: [&str; 2] = ["7d", "14d"];

/// The most columns `features_hourly` may have, declared ones included: what a
/// Synapse serverless view or table takes (1,024), less `run_id`.
pub const MAX_TABLE_COLUMNS: usize = 1_023;

/// `[features]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesFile {
    #[serde(default)]
    signals: Vec<String>,
    #[serde(default)]
    windows: Vec<String>,
    #[serde(default)]
    aggregates: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    label_horizons: Vec<String>,
    #[serde(default)]
    events: Vec<EventsFile>,
    #[serde(default)]
    attributes: Option<AttributesFile>,
}

/// `[[features.events]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsFile {
    name: String,
    path: String,
    codes: Vec<String>,
    windows: Vec<String>,
}

/// `[features.attributes]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributesFile {
    path: String,
    columns: Vec<String>,
}

/// An aggregate over a signal's values in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Mean,
    Std,
    Min,
    Max,
    Last,
    Slope,
}

impl Aggregate {
    const ALL: [(&'static str, Aggregate); 7] = [
        ("count", Aggregate::Count),
        ("mean", Aggregate::Mean),
        ("std", Aggregate::Std),
        ("min", Aggregate::Min),
        ("max", Aggregate::Max),
        ("last", Aggregate::Last),
        ("slope", Aggregate::Slope),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(n, _)| n)
    }
}

/// A trailing window or a label horizon: whole hours, and its name as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// As written, lower case (`24h`, `7d`): the column-name suffix.
    pub name: String,
    pub hours: i64,
}

impl Span {
    pub fn us(&self) -> i64 {
        self.hours * HOUR_US
    }
}

/// An event log and what is counted from it.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub name: String,
    pub path: String,
    pub codes: Vec<String>,
    pub windows: Vec<Span>,
}

/// The device attributes file and the columns joined from it.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub path: String,
    pub columns: Vec<String>,
}

/// One declared column, and the declarations it comes from ([`FeatureSet::declared`]).
#[derive(Debug, Clone, Copy)]
pub enum Declared<'a> {
    /// `<signal>_<aggregate>_<window>`.
    Signal {
        signal: &'a str,
        window: &'a Span,
        aggregate: Aggregate,
    },
    /// `days_since_maintenance_<component>`.
    Maintenance { component: &'a str },
    /// `<log>_<code>_count_<window>`.
    Event {
        log: &'a EventLog,
        code: &'a str,
        window: &'a Span,
    },
    /// A device attribute, named as declared.
    Attribute { column: &'a str, path: &'a str },
    /// `failure_within_<horizon>` (a horizon the default set does not have).
    Label { horizon: &'a Span },
    /// `failure_<component>_within_<horizon>`.
    ComponentLabel {
        component: &'a str,
        horizon: &'a Span,
    },
}

impl Declared<'_> {
    /// The column's name.
    pub fn name(&self) -> String {
        match *self {
            Declared::Signal {
                signal,
                window,
                aggregate,
            } => signal_column(signal, aggregate.name(), &window.name),
            Declared::Maintenance { component } => maintenance_column(component),
            Declared::Event { log, code, window } => event_column(&log.name, code, &window.name),
            Declared::Attribute { column, .. } => column.to_string(),
            Declared::Label { horizon } => label_column(&horizon.name),
            Declared::ComponentLabel { component, horizon } => {
                component_label_column(component, &horizon.name)
            }
        }
    }
}

/// A validated feature set; [`FeatureSet::is_empty`] when the job declares none.
#[derive(Debug, Clone, Default)]
pub struct FeatureSet {
    pub signals: Vec<String>,
    pub windows: Vec<Span>,
    pub aggregates: Vec<Aggregate>,
    pub components: Vec<String>,
    pub horizons: Vec<Span>,
    pub events: Vec<EventLog>,
    pub attributes: Option<Attributes>,
}

/// A refused declaration: the key and why.
pub type Refusal = (&'static str, String);

impl FeatureSet {
    pub fn is_empty(&self) -> bool {
        self.columns().is_empty()
    }

    /// Whether any window over telemetry signals is declared.
    pub fn has_signal_windows(&self) -> bool {
        !self.signals.is_empty() && !self.windows.is_empty() && !self.aggregates.is_empty()
    }

    /// The longest signal window in hours (0 when none).
    pub fn longest_window_hours(&self) -> i64 {
        if !self.has_signal_windows() {
            return 0;
        }
        self.windows.iter().map(|w| w.hours).max().unwrap_or(0)
    }

    /// The longest look back of any declared window (signals and events), in hours.
    #[cfg(test)]
    pub fn longest_lookback_hours(&self) -> i64 {
        let events = self.events.iter().flat_map(|e| e.windows.iter());
        events
            .map(|w| w.hours)
            .chain([self.longest_window_hours()])
            .max()
            .unwrap_or(0)
    }

    /// The longest label horizon in hours: the default set's 14 days, or a longer declared one.
    pub fn longest_horizon_hours(&self) -> i64 {
        let declared = self.horizons.iter().map(|h| h.hours);
        declared.chain(DEFAULT_HORIZONS).max().unwrap_or(0)
    }

    /// Label horizons that add a device-level column (not a default one).
    pub fn new_horizons(&self) -> impl Iterator<Item = &Span> {
        self.horizons
            .iter()
            .filter(|h| !DEFAULT_HORIZONS.contains(&h.hours))
    }

    /// Every declared column, in the table's order: the one list of them, which
    /// the schema, the computed frame and `--explain` all follow.
    pub fn declared(&self) -> Vec<Declared<'_>> {
        let mut out = Vec::new();
        if self.has_signal_windows() {
            for signal in &self.signals {
                for window in &self.windows {
                    for &aggregate in &self.aggregates {
                        out.push(Declared::Signal {
                            signal,
                            window,
                            aggregate,
                        });
                    }
                }
            }
        }
        out.extend(
            self.components
                .iter()
                .map(|c| Declared::Maintenance { component: c }),
        );
        for log in &self.events {
            for code in &log.codes {
                for window in &log.windows {
                    out.push(Declared::Event { log, code, window });
                }
            }
        }
        if let Some(a) = &self.attributes {
            out.extend(a.columns.iter().map(|column| Declared::Attribute {
                column,
                path: &a.path,
            }));
        }
        out.extend(
            self.new_horizons()
                .map(|horizon| Declared::Label { horizon }),
        );
        for horizon in &self.horizons {
            for component in &self.components {
                out.push(Declared::ComponentLabel { component, horizon });
            }
        }
        out
    }

    /// Every declared column's name, in the table's order.
    pub fn columns(&self) -> Vec<String> {
        self.declared().iter().map(Declared::name).collect()
    }

    /// Validates `[features]` against the telemetry schema (its numeric columns).
    pub fn parse(file: &FeaturesFile, schema: &TelemetrySchema) -> Result<FeatureSet, Refusal> {
        let set = FeatureSet {
            signals: signals(&file.signals, schema)?,
            windows: spans("features.windows", &file.windows)?,
            aggregates: aggregates(&file.aggregates)?,
            components: names("features.components", &file.components)?,
            horizons: horizons(&file.label_horizons)?,
            events: events(&file.events)?,
            attributes: attributes(file.attributes.as_ref())?,
        };
        let partial =
            !set.signals.is_empty() || !set.windows.is_empty() || !set.aggregates.is_empty();
        if partial && !set.has_signal_windows() {
            return Err((
                "features.signals",
                "signals, windows and aggregates go together: declare all three or none".into(),
            ));
        }
        set.check_count()?;
        set.check_names()?;
        Ok(set)
    }

    /// How many columns the set declares, counted without naming them.
    fn count(&self) -> usize {
        let signals = if self.has_signal_windows() {
            self.signals.len() * self.windows.len() * self.aggregates.len()
        } else {
            0
        };
        let events: usize = self
            .events
            .iter()
            .map(|e| e.codes.len() * e.windows.len())
            .sum();
        let attributes = self.attributes.as_ref().map_or(0, |a| a.columns.len());
        signals
            + self.components.len()
            + events
            + attributes
            + self.new_horizons().count()
            + self.horizons.len() * self.components.len()
    }

    /// No more columns than Synapse's views can read ([`MAX_TABLE_COLUMNS`]).
    fn check_count(&self) -> Result<(), Refusal> {
        let most = MAX_TABLE_COLUMNS - DEFAULT_COLUMNS.len();
        let n = self.count();
        if n > most {
            return Err((
                "features",
                format!(
                    "the set declares {n} columns; features_hourly takes at most {most} beside its \
                     {} default ones ({MAX_TABLE_COLUMNS} in all, what a Synapse view reads)",
                    DEFAULT_COLUMNS.len()
                ),
            ));
        }
        Ok(())
    }

    /// No declared column may repeat another or take a default column's name.
    fn check_names(&self) -> Result<(), Refusal> {
        let mut seen: BTreeSet<String> = DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect();
        for name in self.columns() {
            if !seen.insert(name.clone()) {
                return Err((
                    "features",
                    format!(
                        "column `{name}` is declared twice or is already a features_hourly column"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `<signal>_<aggregate>_<window>`. The column names of a declared set are made here
/// only, for the table's schema, the computed frame and `features --explain` alike.
pub fn signal_column(signal: &str, aggregate: &str, window: &str) -> String {
    format!("{signal}_{aggregate}_{window}")
}

/// `days_since_maintenance_<component>`.
pub fn maintenance_column(component: &str) -> String {
    format!("days_since_maintenance_{component}")
}

/// `<log>_<code>_count_<window>`.
pub fn event_column(log: &str, code: &str, window: &str) -> String {
    format!("{log}_{code}_count_{window}")
}

/// `failure_within_<horizon>`.
pub fn label_column(horizon: &str) -> String {
    format!("failure_within_{horizon}")
}

/// `failure_<component>_within_<horizon>`.
pub fn component_label_column(component: &str, horizon: &str) -> String {
    format!("failure_{component}_within_{horizon}")
}

fn signals(list: &[String], schema: &TelemetrySchema) -> Result<Vec<String>, Refusal> {
    const CANONICAL: [&str; 3] = ["temperature", "pressure", "vibration"];
    let mut out: Vec<String> = Vec::new();
    for s in list {
        let numeric = CANONICAL.contains(&s.as_str())
            || schema
                .declared
                .iter()
                .any(|d| d.name == *s && d.column.ty == FieldType::Double);
        if !numeric {
            let declared: Vec<&str> = schema.declared.iter().map(|d| d.name.as_str()).collect();
            return Err((
                "features.signals",
                format!(
                    "`{s}` is not a numeric telemetry column (canonical: {}; declared in the schema: {})",
                    CANONICAL.join(", "),
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ),
            ));
        }
        if out.contains(s) {
            return Err(("features.signals", format!("`{s}` is declared twice")));
        }
        out.push(s.clone());
    }
    Ok(out)
}

/// Parses `<n>h` or `<n>d`: whole hours, 1 h up to [`MAX_WINDOW_HOURS`].
pub fn span(key: &'static str, text: &str) -> Result<Span, Refusal> {
    let t = text.trim().to_ascii_lowercase();
    let bad = |why: &str| {
        (
            key,
            format!("`{text}`: {why} (write e.g. \"3h\", \"24h\" or \"7d\")"),
        )
    };
    let (digits, per) = match t.strip_suffix('h') {
        Some(d) => (d, 1),
        None => match t.strip_suffix('d') {
            Some(d) => (d, 24),
            None => return Err(bad("a window is whole hours or days")),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
        return Err(bad("not a whole number of hours or days"));
    }
    let n: i64 = digits.parse().map_err(|_| bad("not a number"))?;
    let hours = n * per;
    if hours == 0 {
        return Err(bad("a window of 0 holds nothing"));
    }
    if hours > MAX_WINDOW_HOURS {
        return Err(bad("longer than 30 days"));
    }
    Ok(Span { name: t, hours })
}

fn spans(key: &'static str, list: &[String]) -> Result<Vec<Span>, Refusal> {
    let mut out: Vec<Span> = Vec::new();
    for text in list {
        let s = span(key, text)?;
        if out.iter().any(|o| o.hours == s.hours || o.name == s.name) {
            return Err((key, format!("`{text}` is declared twice")));
        }
        out.push(s);
    }
    Ok(out)
}

/// The label horizons: as [`spans`], and a default horizon only as the default
/// column spells it (`7d`, not `168h`, which would name no column of its own).
fn horizons(list: &[String]) -> Result<Vec<Span>, Refusal> {
    let key = "features.label_horizons";
    let out = spans(key, list)?;
    for h in &out {
        let default = DEFAULT_HORIZONS.iter().zip(DEFAULT_HORIZON_NAMES);
        if let Some((_, name)) = default.into_iter().find(|(hours, _)| **hours == h.hours) {
            if h.name != name {
                return Err((
                    key,
                    format!(
                        "`{}` is the default horizon `{name}` (failure_within_{name}): write `{name}`",
                        h.name
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn aggregates(list: &[String]) -> Result<Vec<Aggregate>, Refusal> {
    let mut out = Vec::new();
    for text in list {
        let a = Aggregate::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text.trim()))
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                (
                    "features.aggregates",
                    format!(
                        "`{text}` is not an aggregate (one of {})",
                        Aggregate::ALL.map(|(n, _)| n).join(", ")
                    ),
                )
            })?;
        if out.contains(&a) {
            return Err(("features.aggregates", format!("`{text}` is declared twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// A name that becomes part of a column name: letters, digits, `_`.
fn plain(key: &'static str, what: &str, name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err((
            key,
            format!("{what} `{name}`: a name is 1-64 letters, digits and `_` (it becomes part of a column name)"),
        ))
    }
}

fn names(key: &'static str, list: &[String]) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    for name in list {
        plain(key, "name", name)?;
        if out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            return Err((key, format!("`{name}` is declared twice")));
        }
        out.push(name.to_ascii_lowercase());
    }
    Ok(out)
}

fn events(list: &[EventsFile]) -> Result<Vec<EventLog>, Refusal> {
    let mut out: Vec<EventLog> = Vec::new();
    for e in list {
        plain("features.events.name", "event log", &e.name)?;
        if e.path.trim().is_empty() {
            return Err((
                "features.events.path",
                format!("event log `{}` has no path", e.name),
            ));
        }
        if e.codes.is_empty() || e.windows.is_empty() {
            return Err((
                "features.events",
                format!("event log `{}` needs `codes` and `windows` (the columns are counts per code and window)", e.name),
            ));
        }
        out.push(EventLog {
            name: e.name.to_lowercase(),
            path: e.path.clone(),
            codes: names("features.events.codes", &e.codes)?,
            windows: spans("features.events.windows", &e.windows)?,
        });
    }
    Ok(out)
}

fn attributes(file: Option<&AttributesFile>) -> Result<Option<Attributes>, Refusal> {
    let Some(a) = file else {
        return Ok(None);
    };
    if a.path.trim().is_empty() {
        return Err(("features.attributes.path", "no path".into()));
    }
    if a.columns.is_empty() {
        return Err(("features.attributes.columns", "no column to join".into()));
    }
    let mut columns: Vec<String> = Vec::new();
    for c in &a.columns {
        plain("features.attributes.columns", "column", c)?;
        if c.eq_ignore_ascii_case("device_id") {
            return Err((
                "features.attributes.columns",
                "`device_id` is the join key, not an attribute".into(),
            ));
        }
        if columns.iter().any(|o| o.eq_ignore_ascii_case(c)) {
            return Err((
                "features.attributes.columns",
                format!("`{c}` is declared twice"),
            ));
        }
        columns.push(c.to_lowercase());
    }
    Ok(Some(Attributes {
        path: a.path.clone(),
        columns,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FeatureSet, Refusal> {
        let file: FeaturesFile = toml::from_str(text).unwrap();
        FeatureSet::parse(&file, &TelemetrySchema::embedded().unwrap())
    }

    #[test]
    fn no_declaration_is_the_default_set() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn the_longest_horizon_is_the_default_14_days_or_a_longer_declared_one() {
        assert_eq!(parse("").unwrap().longest_horizon_hours(), 14 * 24);
        let shorter = parse(r#"label_horizons = ["24h", "7d"]"#).unwrap();
        assert_eq!(shorter.longest_horizon_hours(), 14 * 24);
        let longer = parse(r#"label_horizons = ["24h", "30d"]"#).unwrap();
        assert_eq!(longer.longest_horizon_hours(), 30 * 24);
    }

    #[test]
    fn columns_are_named_and_ordered_as_documented() {
        let set = parse(
            r#"signals = ["pressure"]
windows = ["3h", "1D"]
aggregates = ["mean", "slope"]
components = ["comp1"]
label_horizons = ["24h", "7d"]
[[events]]
name = "errors"
path = "e.csv"
codes = ["E1"]
windows = ["24h"]
[attributes]
path = "m.csv"
columns = ["model", "age"]
"#,
        )
        .unwrap();
        assert_eq!(
            set.columns(),
            [
                "pressure_mean_3h",
                "pressure_slope_3h",
                "pressure_mean_1d",
                "pressure_slope_1d",
                "days_since_maintenance_comp1",
                "errors_e1_count_24h",
                "model",
                "age",
                "failure_within_24h",
                "failure_comp1_within_24h",
                "failure_comp1_within_7d",
            ]
        );
        assert_eq!(set.longest_lookback_hours(), 24);
    }

    #[test]
    fn bad_declarations_name_their_key() {
        let cases = [
            (
                "signals = [\"humidity\"]\nwindows=[\"1h\"]\naggregates=[\"mean\"]",
                "features.signals",
            ),
            (
                "signals = [\"pressure\"]\nwindows=[\"0h\"]\naggregates=[\"mean\"]",
                "features.windows",
            ),
            (
                "signals = [\"pressure\"]\nwindows=[\"90m\"]\naggregates=[\"mean\"]",
                "features.windows",
            ),
            (
                "signals = [\"pressure\"]\nwindows=[\"31d\"]\naggregates=[\"mean\"]",
                "features.windows",
            ),
            (
                "signals = [\"pressure\"]\nwindows=[\"1h\"]\naggregates=[\"median\"]",
                "features.aggregates",
            ),
            ("signals = [\"pressure\"]", "features.signals"),
            (
                "label_horizons = [\"24h\", \"1d\"]",
                "features.label_horizons",
            ),
            ("components = [\"comp 1\"]", "features.components"),
            (
                "[attributes]\npath = \"m.csv\"\ncolumns = [\"temp_mean\"]",
                "features",
            ),
        ];
        for (text, key) in cases {
            let (got, why) = parse(text).unwrap_err();
            assert_eq!(got, key, "{text}: {why}");
        }
    }

    /// A default horizon spelled in hours would name no column of its own (the
    /// default one is `failure_within_7d`): refused, pointing at the spelling.
    #[test]
    fn a_default_horizon_is_spelled_as_its_column_is() {
        for (text, name) in [("168h", "7d"), ("336h", "14d")] {
            let (key, why) = parse(&format!("label_horizons = [\"{text}\"]")).unwrap_err();
            assert_eq!(key, "features.label_horizons");
            assert!(why.contains(&format!("write `{name}`")), "{why}");
        }
        let set = parse("label_horizons = [\"7d\", \"167h\", \"169h\"]").unwrap();
        let new: Vec<&str> = set.new_horizons().map(|h| h.name.as_str()).collect();
        assert_eq!(new, ["167h", "169h"]);
    }

    /// Up to 1,023 columns in all, what a Synapse view reads: 31 default, 992
    /// declared. Counted by the definition: one column per event code and window.
    #[test]
    fn a_set_of_more_columns_than_synapse_reads_is_refused() {
        let declare = |codes: usize| {
            let codes: Vec<String> = (0..codes).map(|i| format!("\"c{i}\"")).collect();
            format!(
                "[[events]]\nname = \"alarms\"\npath = \"a.csv\"\ncodes = [{}]\nwindows = [\"1h\", \"2h\"]",
                codes.join(",")
            )
        };
        assert_eq!(parse(&declare(496)).unwrap().columns().len(), 992);
        let (key, why) = parse(&declare(497)).unwrap_err();
        assert_eq!(key, "features");
        assert!(why.contains("declares 994 columns"), "{why}");
    }
}
