//! `coldpath features --explain`: every `features_hourly` column of a job with
//! its definition (for a model card), or the Azure ML MLTable and the Synapse
//! view that match the job's declared columns. Reads nothing but the job file,
//! and the device attributes' file when the job declares one: a run types an
//! attribute column by its values (numbers: double), and the Synapse view must
//! say the type the table has.

use crate::config::features::{Aggregate, Declared, FeatureSet};

/// What `--explain` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    /// A markdown table: column, type, definition.
    Markdown,
    /// An MLTable file for Azure ML (`keep_columns` = the job's columns).
    Mltable,
    /// A Synapse serverless SQL view (the `WITH` clause = the job's columns).
    Synapse,
}

/// A column: name, type (Delta / Spark SQL), definition.
struct Def {
    name: String,
    ty: &'static str,
    text: String,
}

const T: &str = "prediction time t = window_start + 1 h";

/// The default set (CONTRACT.md, docs/tables.md), in the table's order.
const DEFAULTS: [(&str, &str, &str); 31] = [
    ("device_id", "string", "the device"),
    ("window_start", "timestamp", "start of the UTC hour the row summarizes; the row's prediction time t is its end"),
    ("device_type", "string", "the device's most recent non-null type in the hour"),
    ("reading_count", "bigint", "readings in the hour [window_start, t)"),
    ("temp_mean", "double", "mean temperature in the hour"),
    ("temp_min", "double", "minimum temperature in the hour"),
    ("temp_max", "double", "maximum temperature in the hour"),
    ("temp_std", "double", "sample std (n-1) of temperature in the hour; null below 2 values"),
    ("pressure_mean", "double", "mean pressure in the hour"),
    ("vibration_mean", "double", "mean vibration in the hour"),
    ("vibration_std", "double", "sample std of vibration in the hour"),
    ("vibration_max", "double", "maximum vibration in the hour"),
    ("temp_rolling_mean_6h", "double", "mean temperature over [t - 6 h, t)"),
    ("temp_rolling_std_6h", "double", "sample std of temperature over [t - 6 h, t)"),
    ("vibration_rolling_std_6h", "double", "sample std of vibration over [t - 6 h, t)"),
    ("temp_spike_count", "bigint", "readings in the hour more than 3 rolling stds from the rolling mean"),
    ("hour", "int", "UTC hour of window_start, 0-23"),
    ("day_of_week", "int", "0 = Monday ... 6 = Sunday, of window_start"),
    ("days_since_maintenance", "int", "whole days from the latest maintenance before t to t (a date-only entry counts from the end of its date); null if none"),
    ("maintenance_status", "string", "CRITICAL if vibration_mean > 50 and vibration_std > 10; WARNING if > 40 and > 5; else NORMAL"),
    ("failure_within_7d", "boolean", "LABEL: a failure of the device in [t, t + 7 d); false only when that span is before the label cut-off, else null"),
    ("failure_within_14d", "boolean", "LABEL: a failure of the device in [t, t + 14 d), as above"),
    ("lookback_complete", "boolean", "the previous date's silver existed, so the 6 h windows were whole"),
    ("coverage", "double", "readings / (3600 / the device's median interval that date)"),
    ("max_gap_s", "double", "longest gap in the hour in seconds, the hour's edges included"),
    ("baseline_hours", "bigint", "the device's features_hourly rows in [window_start - 168 h, window_start)"),
    ("temp_baseline_mean", "double", "mean of temp_mean over the baseline hours"),
    ("temp_baseline_std", "double", "sample std of temp_mean over the baseline hours"),
    ("temp_zscore", "double", "(temp_mean - baseline mean) / baseline std; null below 24 baseline hours"),
    ("vibration_zscore", "double", "as temp_zscore, over vibration_mean"),
    ("feature_date", "date", "partition column: the date of window_start (Azure ML's reader drops it: use window_start)"),
];

/// What an aggregate is, and when it is null (or 0).
fn agg_text(a: Aggregate) -> (&'static str, &'static str) {
    match a {
        Aggregate::Count => ("number of non-null values", "0 when none"),
        Aggregate::Mean => ("mean", "null when none"),
        Aggregate::Std => ("sample std (n-1)", "null below 2 values"),
        Aggregate::Min => ("minimum", "null when none"),
        Aggregate::Max => ("maximum", "null when none"),
        Aggregate::Last => (
            "value of the latest reading (ties: the largest)",
            "null when none",
        ),
        Aggregate::Slope => (
            "least-squares slope per hour against event_time",
            "null below 2 values or when all share one time",
        ),
    }
}

/// Every column of the job's `features_hourly`, defaults first.
fn definitions(set: &FeatureSet, numeric: &[(String, bool)]) -> Vec<Def> {
    let mut out: Vec<Def> = DEFAULTS
        .iter()
        .map(|(n, ty, text)| Def {
            name: n.to_string(),
            ty,
            text: text.to_string(),
        })
        .collect();
    out.extend(set.declared().iter().map(|d| declared_def(d, numeric)));
    out
}

/// A declared column's type and meaning.
fn declared_def(d: &Declared<'_>, numeric: &[(String, bool)]) -> Def {
    let (ty, text) = match *d {
        Declared::Signal {
            signal,
            window,
            aggregate,
        } => {
            let (what, null) = agg_text(aggregate);
            let ty = if aggregate == Aggregate::Count {
                "bigint"
            } else {
                "double"
            };
            let w = &window.name;
            (ty, format!("{what} of {signal} over readings in [t - {w}, t); {null}"))
        }
        Declared::Maintenance { component } => (
            "int",
            format!("as days_since_maintenance, over maintenance of kind `{component}`"),
        ),
        Declared::Event { log, code, window } => (
            "bigint",
            format!(
                "entries of event log `{}` with code `{code}` and event_time in [t - {}, t)",
                log.name, window.name
            ),
        ),
        Declared::Attribute { column, path } => (
            match numeric.iter().find(|(c, _)| c == column) {
                Some((_, true)) => "double",
                Some((_, false)) => "string",
                None => "double or string",
            },
            format!("device attribute `{column}` from {path} (its value as of the run)"),
        ),
        Declared::Label { horizon } => (
            "boolean",
            format!(
                "LABEL: a failure of the device in [t, t + {}), true/false/null as failure_within_7d",
                horizon.name
            ),
        ),
        Declared::ComponentLabel { component, horizon } => (
            "boolean",
            format!(
                "LABEL: a failure of component `{component}` in [t, t + {}), true/false/null as failure_within_7d; also null where a failure naming no component is in that span",
                horizon.name
            ),
        ),
    };
    Def {
        name: d.name(),
        ty,
        text,
    }
}

/// The text `--explain` prints for `set`, in `format`.
/// `numeric`: the attributes' columns and whether each is numeric ([`crate::stages::features::reference::attribute_types`]);
/// a column not in it is `double or string` (and `varchar` in the view).
pub fn render(
    set: &FeatureSet,
    job: &str,
    format: ExplainFormat,
    numeric: &[(String, bool)],
) -> String {
    let defs = definitions(set, numeric);
    match format {
        ExplainFormat::Markdown => markdown(&defs, job),
        ExplainFormat::Mltable => mltable(&defs, job),
        ExplainFormat::Synapse => synapse(&defs, job),
    }
}

fn markdown(defs: &[Def], job: &str) -> String {
    let mut s = format!(
        "# features_hourly of job `{job}`\n\nOne row per device and UTC hour with a reading; {T}. \
Features use only what was known before t; labels look at [t, t + horizon).\n\n\
| column | type | definition |\n| --- | --- | --- |\n"
    );
    for d in defs {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            d.name,
            d.ty,
            d.text.replace('|', "/")
        ));
    }
    s
}

fn mltable(defs: &[Def], job: &str) -> String {
    let mut s = format!(
        "# features_hourly of job `{job}` for Azure ML, pinned to one Delta version.\n\
# Set `folder` to your lake's table root and `version_as_of` to the version to train on.\n\
# Azure ML's reader drops the partition column (feature_date): use window_start.\n\
$schema: https://azuremlschemas.azureedge.net/latest/MLTable.schema.json\ntype: mltable\npaths:\n\
  - folder: <lake>/features_hourly/\ntransformations:\n  - read_delta_lake:\n      version_as_of: 1\n  - keep_columns:\n"
    );
    for d in defs.iter().filter(|d| d.name != "feature_date") {
        s.push_str(&format!("      - {}\n", d.name));
    }
    s
}

fn synapse(defs: &[Def], job: &str) -> String {
    let sql = |ty: &str| match ty {
        "string" => "varchar(256) COLLATE Latin1_General_100_BIN2_UTF8",
        "timestamp" => "datetime2(6)",
        "bigint" => "bigint",
        "int" => "int",
        "boolean" => "bit",
        "date" => "date",
        "double" => "float",
        _ => "varchar(256) COLLATE Latin1_General_100_BIN2_UTF8",
    };
    // Bracketed: a declared name may be a T-SQL keyword (`order`, `key`) or start with a digit.
    let width = defs.iter().map(|d| d.name.len() + 2).max().unwrap_or(0);
    // A device id may be up to 1,024 bytes (normalize's MAX_DEVICE_ID_BYTES).
    let column = |d: &Def| match d.name.as_str() {
        "device_id" => "varchar(1024) COLLATE Latin1_General_100_BIN2_UTF8",
        _ => sql(d.ty),
    };
    let cols: Vec<String> = defs
        .iter()
        .map(|d| format!("    {:width$} {}", format!("[{}]", d.name), column(d)))
        .collect();
    format!(
        "-- features_hourly of job `{job}` for Synapse serverless SQL. Replace the BULK path with your lake's.\n\
-- An attribute column's type is float when every value in its file is a number (read now).\n\
CREATE VIEW dbo.features_hourly AS\nSELECT *\nFROM OPENROWSET(\n    BULK '<lake>/features_hourly/',\n    FORMAT = 'DELTA'\n) WITH (\n{}\n) AS rows;\n",
        cols.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_the_tables_columns_in_order() {
        let defs = definitions(&FeatureSet::default(), &[]);
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, crate::config::features::DEFAULT_COLUMNS);
        let spec = crate::lake::features_table();
        let table: Vec<&str> = spec
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, table);
    }

    /// Every column of the view is bracketed, so a declared name that is a T-SQL
    /// keyword or starts with a digit still makes a view Synapse takes.
    #[test]
    fn the_views_names_are_bracketed() {
        let file: crate::config::features::FeaturesFile = toml::from_str(
            "[[events]]\nname = \"1errors\"\npath = \"e.csv\"\ncodes = [\"e1\"]\nwindows = [\"24h\"]\n\
             [attributes]\npath = \"a.csv\"\ncolumns = [\"order\"]",
        )
        .unwrap();
        let schema = crate::config::schema::TelemetrySchema::embedded().unwrap();
        let set = FeatureSet::parse(&file, &schema).unwrap();
        let sql = synapse(&definitions(&set, &[]), "t");
        for name in ["[device_id]", "[1errors_e1_count_24h]", "[order]"] {
            assert!(sql.contains(&format!("    {name} ")), "{name}: {sql}");
        }
        assert!(!sql.contains("    order "), "{sql}");
    }
}
