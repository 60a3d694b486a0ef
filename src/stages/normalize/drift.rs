//! Schema drift in normalize: declared columns beyond the canonical ones, and `_rescued_data`, the record's fields the column map does not name.
//!
//! Used only when the job has a `[drift]` section with `rescue = true` or its
//! column map declares columns; otherwise [`super::to_row`] runs as it always
//! did and nothing here is touched (the hot path stays as measured).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    number_field, text_field, timestamp_field, to_row_with, Failure, Mismatched, Reason, Row,
    StrColumn,
};
use crate::config::drift::{DriftSettings, OnTypeMismatch};
use crate::config::schema::{Column, DeclaredColumn, FieldType, TelemetrySchema};
use crate::stages::source::decode::{Fields, Found};
use crate::stages::source::flat::Member;

/// The silver column that holds the rescued fields.
pub const RESCUED: &str = "_rescued_data";

/// The drift rules of a run, built once from the column map and `[drift]`.
#[derive(Debug, Clone)]
pub struct DriftRules {
    /// Silver has `_rescued_data`.
    pub rescue: bool,
    /// Wrong-typed optional values are rescued, not rejected.
    pub mismatch: bool,
    /// The declared columns' names, in order.
    pub declared: Arc<Vec<String>>,
    /// Top-level names the map names (whole aliases and a dotted alias's first part).
    named: Vec<String>,
    ignore: Vec<String>,
}

impl DriftRules {
    /// `None` when drift is off and nothing is declared: the tables are as the contract's §2.
    pub fn new(schema: &TelemetrySchema, settings: &DriftSettings) -> Option<DriftRules> {
        if !settings.rescue && schema.declared.is_empty() {
            return None;
        }
        let mut named = Vec::new();
        for alias in schema.columns().flat_map(|c| c.aliases.iter()) {
            named.push(alias.clone());
            if let Some((first, _)) = alias.split_once('.') {
                named.push(first.to_string());
            }
        }
        Some(DriftRules {
            rescue: settings.rescue,
            mismatch: settings.rescue && settings.on_type_mismatch == OnTypeMismatch::Rescue,
            declared: Arc::new(schema.declared.iter().map(|d| d.name.clone()).collect()),
            named,
            ignore: schema.rescue_ignore.clone(),
        })
    }

    /// Whether a top-level field `key` belongs in `_rescued_data`.
    fn keeps(&self, key: &str) -> bool {
        let is = |k: &String| k.eq_ignore_ascii_case(key);
        !self.named.iter().any(is) && !self.ignore.iter().any(is)
    }
}

/// A declared column's value in one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra<'a> {
    Str(Option<Cow<'a, str>>),
    Num(Option<f64>),
    Ts(Option<i64>),
}

impl Extra<'_> {
    #[cfg(test)]
    fn into_owned_num(self) -> Option<f64> {
        match self {
            Extra::Num(v) => v,
            _ => None,
        }
    }

    fn null(ty: FieldType) -> Extra<'static> {
        match ty {
            FieldType::String => Extra::Str(None),
            FieldType::Double => Extra::Num(None),
            FieldType::Timestamp => Extra::Ts(None),
        }
    }

    /// As [`super::soften`]: a wrong-typed value is null and noted when rescuing.
    pub(crate) fn soften<'f, 's>(
        value: Result<Extra<'f>, Failure>,
        col: &'s Column,
        rescue: &mut Option<&mut Mismatched<'s>>,
    ) -> Result<Extra<'f>, Failure> {
        match (value, rescue) {
            (Err((Reason::TypeMismatch | Reason::InvalidTimestamp, _)), Some(bad)) => {
                bad.push(col);
                Ok(Extra::null(col.ty))
            }
            (other, _) => other,
        }
    }
}

/// A declared column's value, typed and range-checked as the canonical ones are.
pub(crate) fn extra_value<'f>(
    d: &DeclaredColumn,
    fields: &'f Fields<'_>,
    range_failure: &mut Option<Failure>,
) -> Result<Extra<'f>, Failure> {
    match d.column.ty {
        FieldType::String => text_field(&d.name, &d.column, fields).map(Extra::Str),
        FieldType::Double => {
            number_field(&d.name, &d.column, fields, range_failure).map(Extra::Num)
        }
        FieldType::Timestamp => timestamp_field(&d.name, &d.column, fields).map(Extra::Ts),
    }
}

/// The rescued fields of one record: a JSON object and its field names, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescued {
    pub json: String,
    pub fields: Vec<String>,
}

/// What drift adds to one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Drifted<'a> {
    pub extra: Vec<Extra<'a>>,
    pub rescued: Option<Rescued>,
}

/// [`super::to_row`] under drift rules: declared columns mapped, wrong-typed
/// optional values rescued (with `on_type_mismatch = "rescue"`), unnamed fields rescued.
pub fn to_drifted_row<'f, 's>(
    fields: &'f Fields<'_>,
    raw: &str,
    schema: &'s TelemetrySchema,
    rules: &DriftRules,
) -> Result<(Row<'f>, Drifted<'f>), Failure> {
    let mut bad: Mismatched<'s> = Vec::new();
    let mut extra = Vec::with_capacity(schema.declared.len());
    let rescue = if rules.mismatch { Some(&mut bad) } else { None };
    let row = to_row_with(fields, schema, rescue, Some(&mut extra))?;
    let rescued = if rules.rescue {
        rescue_of(fields, raw, rules, &bad)
    } else {
        None
    };
    Ok((row, Drifted { extra, rescued }))
}

/// The record's top-level fields with a value (not null, not an empty CSV cell), as written.
fn top_keys<'f>(fields: &'f Fields<'_>) -> Vec<&'f str> {
    match fields {
        Fields::Flat { flat, .. } => flat
            .members
            .iter()
            .filter(|(_, m)| *m != Member::Null)
            .map(|(k, _)| k.as_ref())
            .collect(),
        Fields::Json(map) => keys_of(map).collect(),
        Fields::Envelope { envelope, body } => keys_of(body).chain(keys_of(envelope)).collect(),
        Fields::Csv {
            headers, values, ..
        } => headers
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, _)| h.as_str())
            .collect(),
    }
}

fn keys_of(map: &Map<String, Value>) -> impl Iterator<Item = &str> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
}

/// The record's name for the field that fed `col`: the top-level key as written, or the dotted alias.
fn key_of(fields: &Fields<'_>, col: &Column) -> Option<String> {
    let alias = col
        .aliases
        .iter()
        .find(|a| fields.get(std::slice::from_ref(*a)) != Found::Missing)?;
    let written = top_keys(fields)
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(alias));
    Some(written.unwrap_or(alias).to_string())
}

/// `_rescued_data` of one record, or `None` when nothing is left over.
fn rescue_of(
    fields: &Fields<'_>,
    raw: &str,
    rules: &DriftRules,
    bad: &[&Column],
) -> Option<Rescued> {
    // Sets and maps, not scans: a 1 MiB record may hold 150,000 keys.
    let mut names: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let top = top_keys(fields);
    let keys = top.iter().filter(|k| rules.keeps(k));
    let mismatched = bad.iter().filter_map(|c| key_of(fields, c));
    for name in keys.map(|k| k.to_string()).chain(mismatched) {
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return None;
    }
    // In the record's order (a nested path, not a top-level key, last).
    let mut order: HashMap<&str, usize> = HashMap::with_capacity(top.len());
    for (at, key) in top.iter().enumerate() {
        order.entry(key).or_insert(at);
    }
    names.sort_by_key(|n| order.get(n.as_str()).copied().unwrap_or(usize::MAX));
    let index = Index::of(fields);
    let mut reparsed = None;
    let mut json = String::from("{");
    let mut kept = Vec::with_capacity(names.len());
    for name in names {
        let value = match index.value(fields, &name, raw, &mut reparsed) {
            Some(v) if !v.is_null() => v,
            _ => continue,
        };
        if !kept.is_empty() {
            json.push(',');
        }
        json.push_str(&Value::String(name.clone()).to_string());
        json.push(':');
        json.push_str(&value.to_string());
        kept.push(name);
    }
    json.push('}');
    (!kept.is_empty()).then_some(Rescued { json, fields: kept })
}

/// Where a record's fields are, by name, for a record whose values are looked
/// up by position ([`value_of`] scans them, once a name).
enum Index {
    /// A JSON object's members: the first of each exact key.
    Flat(HashMap<String, usize>),
    /// A CSV row's columns: the first header of each name, in ASCII lower case.
    Csv(HashMap<String, usize>),
    /// Keyed already (serde_json's maps).
    Keyed,
}

impl Index {
    fn of(fields: &Fields<'_>) -> Index {
        let first = |names: &mut dyn Iterator<Item = String>| {
            let mut at = HashMap::new();
            for (i, name) in names.enumerate() {
                at.entry(name).or_insert(i);
            }
            at
        };
        match fields {
            Fields::Flat { flat, .. } => {
                Index::Flat(first(&mut flat.members.iter().map(|(k, _)| k.to_string())))
            }
            Fields::Csv { headers, .. } => {
                Index::Csv(first(&mut headers.iter().map(|h| h.to_ascii_lowercase())))
            }
            _ => Index::Keyed,
        }
    }

    /// [`value_of`], the same value, without a scan for a name the index holds.
    fn value(
        &self,
        fields: &Fields<'_>,
        name: &str,
        raw: &str,
        reparsed: &mut Option<Value>,
    ) -> Option<Value> {
        match (self, fields) {
            (Index::Flat(at), Fields::Flat { flat, .. }) => match at.get(name) {
                Some(&i) => flat
                    .members
                    .get(i)
                    .and_then(|(_, m)| member_value(m))
                    .or_else(|| {
                        let whole = reparsed.get_or_insert_with(|| {
                            serde_json::from_str(raw).unwrap_or(Value::Null)
                        });
                        whole.as_object().and_then(|m| value_at(m, name))
                    }),
                None => value_of(fields, name, raw, reparsed),
            },
            (Index::Csv(at), Fields::Csv { values, .. }) => at
                .get(&name.to_ascii_lowercase())
                .and_then(|&i| values.get(i))
                .map(|v| Value::String(v.clone())),
            _ => value_of(fields, name, raw, reparsed),
        }
    }
}

/// The value of field `name` (a top-level key or a dotted path) as JSON.
fn value_of(
    fields: &Fields<'_>,
    name: &str,
    raw: &str,
    reparsed: &mut Option<Value>,
) -> Option<Value> {
    match fields {
        Fields::Flat { flat, .. } => flat.lookup(name).and_then(member_value).or_else(|| {
            // An array somewhere in the value: `Flat` keeps no array content, the text does.
            let whole =
                reparsed.get_or_insert_with(|| serde_json::from_str(raw).unwrap_or(Value::Null));
            whole.as_object().and_then(|m| value_at(m, name))
        }),
        Fields::Json(map) => value_at(map, name),
        Fields::Envelope { envelope, body } => {
            value_at(body, name).or_else(|| value_at(envelope, name))
        }
        Fields::Csv {
            headers, values, ..
        } => headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .and_then(|i| values.get(i))
            .map(|v| Value::String(v.clone())),
    }
}

/// A borrowed member as a JSON value; `None` when it holds an array (not kept).
fn member_value(member: &Member<'_>) -> Option<Value> {
    Some(match member {
        Member::Null => Value::Null,
        Member::Bool(b) => Value::Bool(*b),
        Member::Num(n) => Value::Number(n.clone()),
        Member::Str(s) => Value::String(s.to_string()),
        Member::Object(inner) => {
            let mut map = Map::new();
            for (k, m) in &inner.members {
                map.insert(k.to_string(), member_value(m)?);
            }
            Value::Object(map)
        }
        Member::Array => return None,
    })
}

/// A key (exact, then any case) or a dotted path into nested objects.
fn value_at(map: &Map<String, Value>, name: &str) -> Option<Value> {
    let get = |m: &Map<String, Value>, k: &str| -> Option<Value> {
        m.get(k)
            .or_else(|| {
                m.iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            })
            .cloned()
    };
    get(map, name).or_else(|| {
        let (first, rest) = name.split_once('.')?;
        value_at(get(map, first)?.as_object()?, rest)
    })
}

/// The drift columns of many rows (beside [`super::RowColumns`]'s canonical ones).
#[derive(Debug)]
pub struct DriftColumns {
    pub names: Arc<Vec<String>>,
    pub extra: Vec<ExtraColumn>,
    /// `None` when the job does not rescue (declared columns only).
    pub rescued: Option<StrColumn>,
}

/// One declared column's values.
#[derive(Debug)]
pub enum ExtraColumn {
    Str(StrColumn),
    Num(Vec<Option<f64>>),
    Ts(Vec<Option<i64>>),
}

impl DriftColumns {
    /// About the bytes the declared and rescued columns hold.
    pub fn held_bytes(&self) -> usize {
        let extra: usize = self
            .extra
            .iter()
            .map(|c| match c {
                ExtraColumn::Str(s) => s.held_bytes(),
                ExtraColumn::Num(v) => v.len() * 16,
                ExtraColumn::Ts(v) => v.len() * 16,
            })
            .sum();
        extra + self.rescued.as_ref().map_or(0, StrColumn::held_bytes)
    }

    /// Empty columns shaped like `row`'s drift values.
    pub fn for_row(names: Arc<Vec<String>>, drifted: &Drifted<'_>, rescue: bool) -> DriftColumns {
        let extra = drifted
            .extra
            .iter()
            .map(|e| match e {
                Extra::Str(_) => ExtraColumn::Str(StrColumn::default()),
                Extra::Num(_) => ExtraColumn::Num(Vec::new()),
                Extra::Ts(_) => ExtraColumn::Ts(Vec::new()),
            })
            .collect();
        DriftColumns {
            names,
            extra,
            rescued: rescue.then(StrColumn::default),
        }
    }

    pub fn push(&mut self, drifted: Drifted<'_>) {
        for (col, value) in self.extra.iter_mut().zip(drifted.extra) {
            match (col, value) {
                (ExtraColumn::Str(c), Extra::Str(v)) => c.push(v.as_deref()),
                (ExtraColumn::Num(c), Extra::Num(v)) => c.push(v),
                (ExtraColumn::Ts(c), Extra::Ts(v)) => c.push(v),
                // Shapes come from the one column map of the run: they always agree.
                (ExtraColumn::Str(c), _) => c.push(None),
                (ExtraColumn::Num(c), _) => c.push(None),
                (ExtraColumn::Ts(c), _) => c.push(None),
            }
        }
        if let Some(r) = &mut self.rescued {
            r.push(drifted.rescued.as_ref().map(|r| r.json.as_str()));
        }
    }

    pub fn append(&mut self, other: DriftColumns) {
        for (mine, theirs) in self.extra.iter_mut().zip(other.extra) {
            match (mine, theirs) {
                (ExtraColumn::Str(a), ExtraColumn::Str(b)) => a.append(b),
                (ExtraColumn::Num(a), ExtraColumn::Num(mut b)) => a.append(&mut b),
                (ExtraColumn::Ts(a), ExtraColumn::Ts(mut b)) => a.append(&mut b),
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (&mut self.rescued, other.rescued) {
            a.append(b);
        }
    }
}

/// What one blob's rows of the date carried in `_rescued_data`.
#[derive(Debug, Default, Clone)]
pub struct DriftTally {
    /// The date's rows read (before dedup), the share's denominator.
    pub rows: u64,
    pub rescued_records: u64,
    pub rescued_fields: u64,
    /// Rows per rescued field name: at most [`MAX_TALLIED_NAMES`] names of at
    /// most [`MAX_TALLIED_NAME`] bytes.
    pub by_field: HashMap<String, u64>,
    /// Rescued fields under names past those bounds, counted but not by name.
    pub untallied: u64,
}

/// The most distinct field names a date's drift tally counts by name: a
/// producer that writes a new key in every record (random keys, ids as keys)
/// would otherwise grow it, and the run report, with the date's input.
pub const MAX_TALLIED_NAMES: usize = 1000;
/// The longest field name a drift tally counts by name, in bytes.
pub const MAX_TALLIED_NAME: usize = 256;

impl DriftTally {
    pub fn row(&mut self, rescued: Option<&Rescued>) {
        self.rows += 1;
        if let Some(r) = rescued {
            self.rescued_records += 1;
            self.rescued_fields += r.fields.len() as u64;
            for f in &r.fields {
                self.count(f, 1);
            }
        }
    }

    pub fn add(&mut self, other: DriftTally) {
        self.rows += other.rows;
        self.rescued_records += other.rescued_records;
        self.rescued_fields += other.rescued_fields;
        self.untallied += other.untallied;
        for (k, v) in other.by_field {
            self.count(&k, v);
        }
    }

    /// Counts `n` rows of field `name`: by name while within the bounds (a
    /// name counted already always is), else in `untallied`.
    fn count(&mut self, name: &str, n: u64) {
        if let Some(rows) = self.by_field.get_mut(name) {
            *rows += n;
        } else if self.by_field.len() < MAX_TALLIED_NAMES && name.len() <= MAX_TALLIED_NAME {
            self.by_field.insert(name.to_string(), n);
        } else {
            self.untallied += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rescued(names: &[String]) -> Rescued {
        Rescued {
            json: String::new(),
            fields: names.to_vec(),
        }
    }

    /// The index finds what the scan finds, name by name: the first of
    /// duplicate keys, the exact key before another case, arrays through the
    /// text, dotted paths, CSV headers in any case, and a name that is not there.
    #[test]
    fn the_index_finds_what_the_scan_finds() {
        let line = r#"{"A":1,"a":2,"a":3,"n":{"x":[1,2]},"arr":[1,{"b":2}],"m":null}"#;
        let names = ["A", "a", "n", "arr", "n.x", "N", "m", "missing"];
        let fields = Fields::Flat {
            flat: crate::stages::source::flat::Flat::parse(line).unwrap(),
            shape: None,
            seen: Default::default(),
        };
        let index = Index::of(&fields);
        for name in names {
            let (mut a, mut b) = (None, None);
            assert_eq!(
                index.value(&fields, name, line, &mut a),
                value_of(&fields, name, line, &mut b),
                "{name}"
            );
        }
        let headers = ["T".to_string(), "t".to_string(), "u".to_string()];
        let fields = Fields::Csv {
            headers: &headers,
            values: vec!["1".into(), "2".into(), "3".into()],
            decimal_comma: false,
        };
        let index = Index::of(&fields);
        for name in ["T", "t", "U", "v"] {
            let (mut a, mut b) = (None, None);
            assert_eq!(
                index.value(&fields, name, "", &mut a),
                value_of(&fields, name, "", &mut b),
                "{name}"
            );
        }
    }

    /// A tally counts at most 1,000 names by name, each at most 256 bytes; the
    /// rest are counted, not named. A name counted before the bound still is
    /// after it, and two tallies merged keep the bound.
    #[test]
    fn a_drift_tally_names_at_most_a_thousand_fields() {
        let name = |i: usize| format!("k{i}");
        let mut tally = DriftTally::default();
        for i in 0..1_500 {
            tally.row(Some(&rescued(&[name(i)])));
        }
        tally.row(Some(&rescued(&[name(0), "x".repeat(257)])));
        assert_eq!(tally.by_field.len(), MAX_TALLIED_NAMES);
        assert_eq!(tally.by_field["k0"], 2);
        assert_eq!(tally.untallied, 500 + 1);
        let mut other = DriftTally::default();
        other.row(Some(&rescued(&[name(1), name(2_000), "y".repeat(256)])));
        tally.add(other);
        assert_eq!(tally.by_field.len(), MAX_TALLIED_NAMES);
        assert_eq!((tally.by_field["k1"], tally.untallied), (2, 503));
        assert_eq!(tally.rescued_fields, 1_500 + 2 + 3);
    }
    use crate::config::drift::DriftSettings;

    fn schema_with(declared: &str) -> TelemetrySchema {
        let text = format!(
            "{}\n{declared}",
            include_str!("../../../schemas/telemetry.toml")
        );
        TelemetrySchema::parse(std::path::Path::new("s.toml"), &text).unwrap()
    }

    fn rules(schema: &TelemetrySchema, mismatch: OnTypeMismatch) -> DriftRules {
        let settings = DriftSettings {
            rescue: true,
            on_type_mismatch: mismatch,
            ..DriftSettings::default()
        };
        DriftRules::new(schema, &settings).unwrap()
    }

    /// The rescued JSON of one JSON-lines record, read through the hot path's `Flat`.
    fn rescued_json(line: &str, mismatch: OnTypeMismatch) -> Result<Option<String>, Reason> {
        let schema = schema_with("");
        let flat = crate::stages::source::flat::Flat::parse(line).unwrap();
        let fields = Fields::Flat {
            flat,
            shape: None,
            seen: Default::default(),
        };
        to_drifted_row(&fields, line, &schema, &rules(&schema, mismatch))
            .map(|(_, d)| d.rescued.map(|r| r.json))
            .map_err(|(r, _)| r)
    }

    const BASE: &str = r#""deviceId":"p1","timestamp":"2024-03-11T10:00:00Z""#;

    #[test]
    fn unknown_fields_are_rescued_as_written_and_system_fields_are_not() {
        let line = format!(
            r#"{{{BASE},"Humidity":41.5,"fw":"2.1","tags":[1,{{"a":null}}],"EventProcessedUtcTime":"x","PartitionId":3,"IoTHub":{{"StreamId":null}},"gone":null}}"#
        );
        assert_eq!(
            rescued_json(&line, OnTypeMismatch::Reject)
                .unwrap()
                .as_deref(),
            Some(r#"{"Humidity":41.5,"fw":"2.1","tags":[1,{"a":null}]}"#)
        );
        let plain =
            format!(r#"{{{BASE},"temp":20,"EventEnqueuedUtcTime":"2024-03-11T10:00:01Z"}}"#);
        assert_eq!(rescued_json(&plain, OnTypeMismatch::Reject).unwrap(), None);
    }

    #[test]
    fn a_wrong_type_is_rejected_or_rescued_under_its_field_name() {
        let line = format!(r#"{{{BASE},"vibration":{{"x":1.5,"y":[2]}},"temp":"hot"}}"#);
        assert_eq!(
            rescued_json(&line, OnTypeMismatch::Reject),
            Err(Reason::TypeMismatch)
        );
        assert_eq!(
            rescued_json(&line, OnTypeMismatch::Rescue)
                .unwrap()
                .as_deref(),
            Some(r#"{"vibration":{"x":1.5,"y":[2]},"temp":"hot"}"#)
        );
        // Required columns and range failures are never rescued.
        let range = format!(r#"{{{BASE},"temperature":151}}"#);
        assert_eq!(
            rescued_json(&range, OnTypeMismatch::Rescue),
            Err(Reason::OutOfRange)
        );
        let id = r#"{"deviceId":{"id":1},"timestamp":"2024-03-11T10:00:00Z"}"#;
        assert_eq!(
            rescued_json(id, OnTypeMismatch::Rescue),
            Err(Reason::TypeMismatch)
        );
    }

    #[test]
    fn declared_columns_are_typed_and_their_aliases_are_not_rescued() {
        let schema = schema_with(
            "[[declared]]\nname = \"humidity\"\naliases = [\"humidity\", \"hum\"]\ntype = \"double\"\nmax = 100.0\n",
        );
        let r = rules(&schema, OnTypeMismatch::Rescue);
        let run = |line: &str| {
            let flat = crate::stages::source::flat::Flat::parse(line).unwrap();
            let fields = Fields::Flat {
                flat,
                shape: None,
                seen: Default::default(),
            };
            to_drifted_row(&fields, line, &schema, &r)
                .map(|(_, d)| {
                    (
                        d.extra[0].clone().into_owned_num(),
                        d.rescued.map(|r| r.json),
                    )
                })
                .map_err(|(r, _)| r)
        };
        assert_eq!(
            run(&format!(r#"{{{BASE},"hum":"55.5"}}"#)),
            Ok((Some(55.5), None))
        );
        assert_eq!(
            run(&format!(r#"{{{BASE},"humidity":true}}"#)),
            Ok((None, Some(r#"{"humidity":true}"#.to_string())))
        );
        assert_eq!(
            run(&format!(r#"{{{BASE},"humidity":101}}"#)),
            Err(Reason::OutOfRange)
        );
    }

    #[test]
    fn csv_extra_columns_and_envelope_body_fields() {
        let schema = schema_with("");
        let r = rules(&schema, OnTypeMismatch::Rescue);
        let headers =
            ["deviceId", "timestamp", "temperature", "humidity", "note"].map(String::from);
        let values = ["p1", "2024-03-11T10:00:00Z", "x", "40", ""].map(String::from);
        let fields = Fields::Csv {
            headers: &headers,
            values: values.to_vec(),
            decimal_comma: false,
        };
        let (row, d) = to_drifted_row(&fields, "", &schema, &r).unwrap();
        assert_eq!(row.temperature, None);
        assert_eq!(
            d.rescued.unwrap(),
            Rescued {
                // In the record's order: `temperature` is the third column.
                json: r#"{"temperature":"x","humidity":"40"}"#.into(),
                fields: vec!["temperature".into(), "humidity".into()],
            }
        );
        let serde_json::Value::Object(envelope) = serde_json::json!({
            "EnqueuedTimeUtc": "2024-03-11T10:00:01Z", "Properties": {},
            "SystemProperties": {"connectionDeviceId": "p2", "contentType": "application/json"}
        }) else {
            unreachable!()
        };
        let serde_json::Value::Object(body) =
            serde_json::json!({"timestamp": "2024-03-11T10:00:00Z", "rpm": 1200})
        else {
            unreachable!()
        };
        let fields = Fields::Envelope { envelope, body };
        let (row, d) = to_drifted_row(&fields, "", &schema, &r).unwrap();
        assert_eq!(row.device_id, "p2");
        assert_eq!(d.rescued.unwrap().json, r#"{"rpm":1200}"#);
    }
}
