//! The telemetry column map (`schemas/telemetry.toml`): aliases, types and valid ranges as data, not code.
//!
//! The canonical columns are fixed by the silver table; the file decides which
//! raw names feed them and which values are valid. The default file is also
//! embedded in the binary so a job file may omit `schema`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

const EMBEDDED: &str = include_str!("../../schemas/telemetry.toml");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Double,
    Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    name: String,
    aliases: Vec<String>,
    #[serde(rename = "type")]
    ty: FieldType,
    #[serde(default)]
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    /// Raw fields never kept in `_rescued_data` (producer and envelope system fields).
    #[serde(default)]
    rescue_ignore: Vec<String>,
    columns: Vec<ColumnSpec>,
    /// Columns beyond the canonical ones, added to `telemetry` by schema evolution.
    #[serde(default)]
    declared: Vec<ColumnSpec>,
}

/// One canonical column: where its value comes from and what is valid.
#[derive(Debug, Clone)]
pub struct Column {
    pub aliases: Vec<String>,
    /// The column's place in [`TelemetrySchema::columns`]: what a record shape's
    /// memo of positions is indexed by (`stages/source/shape.rs`).
    pub slot: usize,
    pub ty: FieldType,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Column {
    /// Whether `v` lies inside the column's valid range (inclusive).
    pub fn in_range(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// The canonical silver columns that raw records are mapped onto, with their expected types.
pub const CANONICAL: [(&str, FieldType); 9] = [
    ("device_id", FieldType::String),
    ("device_type", FieldType::String),
    ("event_time", FieldType::Timestamp),
    ("temperature", FieldType::Double),
    ("pressure", FieldType::Double),
    ("vibration", FieldType::Double),
    ("priority", FieldType::String),
    ("message_id", FieldType::String),
    ("enqueued_time", FieldType::Timestamp),
];

/// A column declared beyond the canonical ones: a nullable silver column of its own.
#[derive(Debug, Clone)]
pub struct DeclaredColumn {
    pub name: String,
    pub column: Column,
}

/// Silver's own columns besides the canonical ones, and the hour frames' own
/// (`blob`, `line`: where each row was read): a declared column may not take these names.
pub const RESERVED: [&str; 7] = [
    "source_file",
    "ingested_at",
    "run_id",
    "event_date",
    "_rescued_data",
    "blob",
    "line",
];

/// The validated column map, one field per canonical column.
#[derive(Debug, Clone)]
pub struct TelemetrySchema {
    /// The device that sent the reading.
    pub device_id: Column,
    /// The kind of device.
    pub device_type: Column,
    /// When the reading was taken (its UTC hour places the row).
    pub event_time: Column,
    /// The temperature reading.
    pub temperature: Column,
    /// The pressure reading.
    pub pressure: Column,
    /// The vibration reading.
    pub vibration: Column,
    /// The message's priority.
    pub priority: Column,
    /// The message's id (dedup's key with the device).
    pub message_id: Column,
    /// When the hub enqueued the message.
    pub enqueued_time: Column,
    /// Declared columns, in the file's order.
    pub declared: Vec<DeclaredColumn>,
    /// Raw top-level field names (any case) left out of `_rescued_data`.
    pub rescue_ignore: Vec<String>,
}

impl TelemetrySchema {
    /// Every column records are mapped onto: the canonical ones in
    /// [`CANONICAL`]'s order, then the declared ones; the `n`th has slot `n`.
    pub fn columns(&self) -> impl Iterator<Item = &Column> {
        [
            &self.device_id,
            &self.device_type,
            &self.event_time,
            &self.temperature,
            &self.pressure,
            &self.vibration,
            &self.priority,
            &self.message_id,
            &self.enqueued_time,
        ]
        .into_iter()
        .chain(self.declared.iter().map(|d| &d.column))
    }

    /// The column map in the file at `path`, validated.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The default column map shipped in `schemas/telemetry.toml`.
    pub fn embedded() -> Result<Self, SchemaError> {
        Self::parse(Path::new("<embedded schemas/telemetry.toml>"), EMBEDDED)
    }

    /// The column map `text` (read from `path`, which errors name), validated.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SchemaError> {
        let invalid = |message: String| SchemaError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: SchemaFile =
            toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        let declared = declared_columns(file.declared, &invalid)?;
        let mut found: Vec<Option<Column>> = vec![None; CANONICAL.len()];
        for spec in file.columns {
            let (idx, column) = canonical_column(spec).map_err(&invalid)?;
            if found[idx].is_some() {
                return Err(invalid(format!(
                    "column `{}` appears twice",
                    CANONICAL[idx].0
                )));
            }
            found[idx] = Some(column);
        }
        let mut cols = found.into_iter().zip(CANONICAL);
        let mut next = || -> Result<Column, SchemaError> {
            let (col, (name, _)) = cols.next().ok_or_else(|| invalid("internal".into()))?;
            col.ok_or_else(|| invalid(format!("column `{name}` is missing")))
        };
        let schema = TelemetrySchema {
            device_id: next()?,
            device_type: next()?,
            event_time: next()?,
            temperature: next()?,
            pressure: next()?,
            vibration: next()?,
            priority: next()?,
            message_id: next()?,
            enqueued_time: next()?,
            declared,
            rescue_ignore: file.rescue_ignore,
        };
        if !schema.device_id.required || !schema.event_time.required {
            return Err(invalid(
                "device_id and event_time must be `required = true`".into(),
            ));
        }
        Ok(schema)
    }
}

/// One of the contract's columns as the map gives it, and its place among them:
/// a known name, its type, aliases, and min/max only on doubles.
fn canonical_column(spec: ColumnSpec) -> Result<(usize, Column), String> {
    let idx = CANONICAL
        .iter()
        .position(|(n, _)| *n == spec.name)
        .ok_or_else(|| {
            format!(
                "unknown column `{}` (the silver columns are: {})",
                spec.name,
                CANONICAL.map(|c| c.0).join(", ")
            )
        })?;
    let expected = CANONICAL[idx].1;
    if spec.ty != expected {
        return Err(format!(
            "column `{}` must have type {:?}, not {:?}",
            spec.name, expected, spec.ty
        ));
    }
    if spec.aliases.is_empty() {
        return Err(format!("column `{}` has no aliases", spec.name));
    }
    if (spec.min.is_some() || spec.max.is_some()) && spec.ty != FieldType::Double {
        return Err(format!(
            "column `{}`: min/max only apply to double columns",
            spec.name
        ));
    }
    let column = Column {
        aliases: spec.aliases,
        slot: idx,
        ty: spec.ty,
        required: spec.required,
        min: spec.min,
        max: spec.max,
    };
    Ok((idx, column))
}

/// Checks the `[[declared]]` columns: a new, plain name (lower case, digits,
/// `_`, as Synapse and Spark take it unquoted), aliases, and min/max only on doubles.
fn declared_columns(
    specs: Vec<ColumnSpec>,
    invalid: &dyn Fn(String) -> SchemaError,
) -> Result<Vec<DeclaredColumn>, SchemaError> {
    let mut out: Vec<DeclaredColumn> = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.name;
        let plain = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(invalid(format!(
                "declared column `{name}`: a name is lower-case letters, digits and `_`, starting with a letter"
            )));
        }
        let taken = CANONICAL.iter().any(|(n, _)| *n == name)
            || RESERVED.contains(&name.as_str())
            || out.iter().any(|d| d.name == name);
        if taken {
            return Err(invalid(format!(
                "declared column `{name}` is already a silver column"
            )));
        }
        if spec.aliases.is_empty() {
            return Err(invalid(format!("declared column `{name}` has no aliases")));
        }
        if spec.required {
            return Err(invalid(format!(
                "declared column `{name}` cannot be required (older partitions read null)"
            )));
        }
        if (spec.min.is_some() || spec.max.is_some()) && spec.ty != FieldType::Double {
            return Err(invalid(format!(
                "declared column `{name}`: min/max only apply to double columns"
            )));
        }
        let column = Column {
            aliases: spec.aliases,
            slot: CANONICAL.len() + out.len(),
            ty: spec.ty,
            required: false,
            min: spec.min,
            max: spec.max,
        };
        out.push(DeclaredColumn { name, column });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_has_contract_ranges() {
        let s = TelemetrySchema::embedded().unwrap();
        assert!(s.temperature.in_range(-40.0) && s.temperature.in_range(150.0));
        assert!(!s.temperature.in_range(150.01) && !s.temperature.in_range(-40.5));
        assert!(s.pressure.in_range(0.0) && !s.pressure.in_range(-0.1));
        assert!(s.vibration.in_range(500.0) && !s.vibration.in_range(500.1));
        assert_eq!(s.device_id.aliases[0], "deviceId");
        assert!(s.priority.in_range(1e300), "no range means anything goes");
    }

    #[test]
    fn missing_column_is_named() {
        let text = EMBEDDED.replace("name = \"priority\"", "name = \"nope\"");
        let err = TelemetrySchema::parse(Path::new("s.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let text = EMBEDDED.replace(
            "aliases = [\"pressure\"]\ntype = \"double\"",
            "aliases = [\"pressure\"]\ntype = \"string\"",
        );
        let err = TelemetrySchema::parse(Path::new("s.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pressure"), "{err}");
    }

    #[test]
    fn every_column_s_slot_is_its_place_in_columns() {
        let decl = "[[declared]]\nname = \"humidity\"\naliases = [\"humidity\"]\ntype = \"double\"\n\n[[declared]]\nname = \"rpm\"\naliases = [\"rpm\"]\ntype = \"double\"\n";
        let s =
            TelemetrySchema::parse(Path::new("s.toml"), &format!("{EMBEDDED}\n{decl}")).unwrap();
        let slots: Vec<usize> = s.columns().map(|c| c.slot).collect();
        assert_eq!(slots, (0..CANONICAL.len() + 2).collect::<Vec<_>>());
        assert_eq!(
            s.columns().nth(2).map(|c| &c.aliases),
            Some(&s.event_time.aliases)
        );
        assert_eq!(
            s.columns().last().map(|c| &c.aliases),
            Some(&s.declared[1].column.aliases)
        );
    }

    #[test]
    fn declared_columns_are_checked() {
        let with = |decl: &str| {
            TelemetrySchema::parse(Path::new("s.toml"), &format!("{EMBEDDED}\n{decl}"))
                .map_err(|e| e.to_string())
        };
        let s = with("[[declared]]\nname = \"humidity\"\naliases = [\"humidity\", \"hum\"]\ntype = \"double\"\nmin = 0.0\nmax = 100.0\n").unwrap();
        assert_eq!(s.declared.len(), 1);
        assert_eq!(s.declared[0].name, "humidity");
        assert!(s.declared[0].column.in_range(100.0) && !s.declared[0].column.in_range(100.5));
        for (bad, says) in [
            (
                "name = \"temperature\"\naliases = [\"t\"]\ntype = \"double\"",
                "already",
            ),
            (
                "name = \"_rescued_data\"\naliases = [\"t\"]\ntype = \"string\"",
                "lower-case",
            ),
            // Where each row was read: a column of that name would take their place.
            (
                "name = \"line\"\naliases = [\"line\"]\ntype = \"double\"",
                "already",
            ),
            (
                "name = \"blob\"\naliases = [\"blob\"]\ntype = \"string\"",
                "already",
            ),
            (
                "name = \"run_id\"\naliases = [\"r\"]\ntype = \"string\"",
                "already",
            ),
            (
                "name = \"Humidity\"\naliases = [\"t\"]\ntype = \"double\"",
                "lower-case",
            ),
            (
                "name = \"fw\"\naliases = []\ntype = \"string\"",
                "no aliases",
            ),
            (
                "name = \"fw\"\naliases = [\"fw\"]\ntype = \"string\"\nmax = 1.0",
                "min/max",
            ),
        ] {
            let err = with(&format!("[[declared]]\n{bad}\n")).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn embedded_ignore_list_names_the_producers_system_fields() {
        let s = TelemetrySchema::embedded().unwrap();
        for f in [
            "EventProcessedUtcTime",
            "PartitionId",
            "EventEnqueuedUtcTime",
        ] {
            assert!(s.rescue_ignore.iter().any(|i| i == f), "{f}");
        }
        assert!(s.declared.is_empty(), "the shipped map declares no column");
    }
}
