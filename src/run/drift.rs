//! Schema drift in a run: silver's table spec with the declared columns and `_rescued_data`, and the report's drift figures.

use deltalake::arrow::datatypes::{DataType, Field};

use crate::config::drift::DriftSettings;
use crate::config::schema::{FieldType, TelemetrySchema};
use crate::lake::{self, Lake, TableSpec};
use crate::report::drift::DriftReport;
use crate::stages::normalize::drift::{DriftTally, RESCUED};
use crate::Error;

/// `telemetry` as this job writes it: the contract's columns, then the declared
/// ones, then `_rescued_data` when the job rescues.
pub fn silver_spec(schema: &TelemetrySchema, drift: &DriftSettings) -> TableSpec {
    let mut extra: Vec<Field> = schema
        .declared
        .iter()
        .map(|d| {
            let ty = match d.column.ty {
                FieldType::String => DataType::Utf8,
                FieldType::Double => DataType::Float64,
                FieldType::Timestamp => lake::utc_ts(),
            };
            Field::new(&d.name, ty, true)
        })
        .collect();
    if drift.rescue {
        extra.push(Field::new(RESCUED, DataType::Utf8, true));
    }
    lake::telemetry_table_with(extra)
}

/// Whether the job changes silver at all (rescue on, or columns declared).
pub fn active(schema: &TelemetrySchema, drift: &DriftSettings) -> bool {
    drift.rescue || !schema.declared.is_empty()
}

/// The columns a run of this job would add to `telemetry` now.
pub async fn columns_to_add(
    lake: &Lake,
    schema: &TelemetrySchema,
    drift: &DriftSettings,
) -> Result<Vec<String>, Error> {
    if !active(schema, drift) {
        return Ok(Vec::new());
    }
    Ok(lake::columns_to_add(lake, &silver_spec(schema, drift)).await?)
}

/// The report's drift figures from the pass's tally.
pub fn report_of(tally: &DriftTally, drift: &DriftSettings, added: Vec<String>) -> DriftReport {
    let share = drift.candidate_share;
    let mut candidate_columns: Vec<String> = tally
        .by_field
        .iter()
        .filter(|(_, n)| tally.rows > 0 && **n as f64 > share * tally.rows as f64)
        .map(|(name, _)| name.clone())
        .collect();
    candidate_columns.sort();
    DriftReport {
        rows: tally.rows,
        rescued_records: tally.rescued_records,
        rescued_fields: tally.rescued_fields,
        rescued_by_field: tally
            .by_field
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        rescued_untallied_fields: tally.untallied,
        candidate_columns,
        candidate_share: share,
        added_columns: added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_over_the_share_not_at_it() {
        let mut tally = DriftTally {
            rows: 200,
            ..DriftTally::default()
        };
        tally.by_field.insert("humidity".into(), 3); // 1.5 % > 1 %
        tally.by_field.insert("fw".into(), 2); // exactly 1 %: not over
        let r = report_of(&tally, &DriftSettings::default(), vec![]);
        assert_eq!(r.candidate_columns, vec!["humidity".to_string()]);
    }

    #[test]
    fn spec_adds_declared_then_rescued_nullable() {
        let text = format!(
            "{}\n[[declared]]\nname = \"humidity\"\naliases = [\"humidity\"]\ntype = \"double\"\n",
            include_str!("../../schemas/telemetry.toml")
        );
        let schema = TelemetrySchema::parse(std::path::Path::new("s"), &text).unwrap();
        let on = DriftSettings {
            rescue: true,
            ..DriftSettings::default()
        };
        let spec = silver_spec(&schema, &on);
        let names: Vec<&str> = spec
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            &names[names.len() - 3..],
            ["event_date", "humidity", "_rescued_data"]
        );
        assert!(spec
            .schema
            .fields()
            .iter()
            .skip(13)
            .all(|f| f.is_nullable()));
        let off = silver_spec(
            &TelemetrySchema::embedded().unwrap(),
            &DriftSettings::default(),
        );
        assert_eq!(off.schema, lake::telemetry_table().schema);
    }
}
