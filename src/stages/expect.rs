//! Declared expectations: a team's own row rules (`[[expectations]]` in the job file), checked on the rows silver would get.
//!
//! Each expectation is a boolean SQL expression over the silver columns and an
//! action (`warn`, `drop`, `fail`). The expression is parsed and planned by
//! DataFusion, which deltalake already brings (its `datafusion` feature): its
//! SQL parser (sqlparser), its type coercion and its physical expressions,
//! evaluated on the Arrow batch of the rows. That costs no new dependency and no
//! rebuild, where Polars' own SQL parser would need its `sql` feature (a
//! rebuild of Polars for everyone), and an sqlparser → Polars translation would
//! be a second SQL dialect to maintain by hand. Everything is checked when the
//! job is loaded: a syntax error, an unknown column, a function that is not a
//! row function (an aggregate), or a result that is not boolean is a
//! configuration error naming the expectation, before anything is read or locked.
//!
//! A row *fails* an expectation when the expression is not true: `false`, and
//! also SQL `NULL` (as a `WHERE` clause keeps only true rows, and as a Delta
//! `CHECK` constraint refuses a null result). Databricks describes an
//! expectation as a statement that returns true or false and a failure as false;
//! it leaves null to the author, so here the author says it:
//! `temperature IS NULL OR temperature <> 0` lets rows without a temperature pass.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::datafusion::common::tree_node::TreeNode;
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::logical_expr::{Expr, ExprSchemable};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

pub use crate::config::expect::{Action, Declared};

#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// The declaration cannot be checked (a configuration error).
    #[error("expectation `{name}` (`{expr}`): {message}")]
    Invalid {
        name: String,
        expr: String,
        message: String,
    },
    /// Evaluating a valid expression on rows failed.
    #[error("expectation `{name}`: evaluating it on {rows} rows: {message}")]
    Eval {
        name: String,
        rows: usize,
        message: String,
    },
}

/// One expectation, planned against the silver schema.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub name: String,
    pub expr: String,
    pub action: Action,
    check: Arc<dyn PhysicalExpr>,
}

/// The job's expectations in declaration order (empty: none declared).
#[derive(Debug, Clone)]
pub struct Expectations {
    pub list: Vec<Expectation>,
    /// The silver columns the expressions name, in silver's order: the batch they are evaluated on.
    columns: SchemaRef,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            list: Vec::new(),
            columns: Arc::new(Schema::empty()),
        }
    }
}

/// The longest expectation name: it lands in `rejects.detail` and the `expectations` table.
pub const MAX_NAME: usize = 128;

/// The most expectations a job declares: a dropped row's `detail` joins the
/// names of every one it failed, and 60 of the longest, with their `, `, fit
/// the 8,000 bytes Synapse's `rejects` view gives `detail` (a longer value
/// fails the whole query there).
pub const MAX_EXPECTATIONS: usize = 60;

/// A name of letters, digits, `_`, `-` and `.`: safe in `detail`, where several are joined by `, `.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a name has 1 to {MAX_NAME} characters"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(format!(
            "`{c}` is not allowed in a name (letters, digits, `_`, `-`, `.`)"
        )),
        None => Ok(()),
    }
}

impl Expectations {
    /// Parses and plans every declaration against `schema` (silver's columns).
    pub fn compile(declared: &[Declared], schema: &Schema) -> Result<Expectations, ExpectError> {
        let df_schema = DFSchema::try_from(schema.clone()).map_err(|e| ExpectError::Invalid {
            name: String::new(),
            expr: String::new(),
            message: format!("the silver schema: {e}"),
        })?;
        if let Some(past) = declared.get(MAX_EXPECTATIONS) {
            let message = format!(
                "{} expectations, over the {MAX_EXPECTATIONS} a job may declare (a dropped row's detail names every one it failed)",
                declared.len()
            );
            return Err(invalid(past, message));
        }
        let ctx = SessionContext::new();
        let mut logical: Vec<(&Declared, Expr)> = Vec::with_capacity(declared.len());
        for d in declared {
            check_name(&d.name).map_err(|m| invalid(d, m))?;
            if logical.iter().any(|(e, _)| e.name == d.name) {
                return Err(invalid(d, "the name is declared twice".into()));
            }
            let expr = row_rule(&ctx, &d.expr, &df_schema).map_err(|m| invalid(d, m))?;
            logical.push((d, expr));
        }
        // Only the columns the expressions name are made Arrow for them.
        let columns = named_columns(schema, logical.iter().map(|(_, e)| e));
        let projected =
            DFSchema::try_from(columns.as_ref().clone()).map_err(|e| ExpectError::Invalid {
                name: String::new(),
                expr: String::new(),
                message: format!("the silver columns named: {e}"),
            })?;
        let mut list = Vec::with_capacity(logical.len());
        for (d, expr) in logical {
            let check = ctx
                .create_physical_expr(expr, &projected)
                .map_err(|e| invalid(d, e.to_string()))?;
            list.push(Expectation {
                name: d.name.clone(),
                expr: d.expr.clone(),
                action: d.action,
                check,
            });
        }
        Ok(Expectations { list, columns })
    }

    /// The silver columns the expressions name, in silver's order (at least one):
    /// [`Expectations::failures`] takes a batch of exactly these.
    pub fn columns(&self) -> &SchemaRef {
        &self.columns
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// For each expectation, which rows of `batch` fail it (not true: false or null).
    pub fn failures(&self, batch: &RecordBatch) -> Result<Vec<Vec<bool>>, ExpectError> {
        self.list.iter().map(|e| e.failures(batch)).collect()
    }
}

/// The configuration error of declaration `d`.
fn invalid(d: &Declared, message: String) -> ExpectError {
    ExpectError::Invalid {
        name: d.name.clone(),
        expr: d.expr.clone(),
        message,
    }
}

/// The fields of `schema` that `exprs` name, in its order; its first field when they name none.
fn named_columns<'e>(schema: &Schema, exprs: impl Iterator<Item = &'e Expr>) -> SchemaRef {
    let mut named = std::collections::HashSet::new();
    for e in exprs {
        named.extend(e.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| named.contains(f.name()))
        .cloned()
        .collect();
    match (fields.is_empty(), schema.fields().first()) {
        (true, Some(first)) => Arc::new(Schema::new(vec![first.clone()])),
        _ => Arc::new(Schema::new(fields)),
    }
}

/// A SQL expression parsed and typed over `schema` as a boolean row rule, or why not.
fn row_rule(ctx: &SessionContext, sql: &str, schema: &DFSchema) -> Result<Expr, String> {
    if sql.trim().is_empty() {
        return Err("the expression is empty".into());
    }
    let expr = ctx.parse_sql_expr(sql, schema).map_err(|e| e.to_string())?;
    let whole_table = expr
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::AggregateFunction(_) | Expr::WindowFunction(_)
            ))
        })
        .unwrap_or(false);
    if whole_table {
        return Err("an aggregate or window function is not a row rule: an expectation checks one row at a time".into());
    }
    let ty = expr.get_type(schema).map_err(|e| e.to_string())?;
    if ty != DataType::Boolean {
        return Err(format!("the expression is of type {ty}, not boolean"));
    }
    Ok(expr)
}

impl Expectation {
    /// Which rows of `batch` fail this expectation.
    fn failures(&self, batch: &RecordBatch) -> Result<Vec<bool>, ExpectError> {
        let rows = batch.num_rows();
        let err = |message: String| ExpectError::Eval {
            name: self.name.clone(),
            rows,
            message,
        };
        let value = self
            .check
            .evaluate(batch)
            .and_then(|v| v.into_array(rows))
            .map_err(|e| err(e.to_string()))?;
        let Some(passed) = value.as_boolean_opt() else {
            return Err(err(format!("gave {}, not boolean", value.data_type())));
        };
        Ok((0..rows)
            .map(|i| !(passed.is_valid(i) && passed.value(i)))
            .collect())
    }
}

/// One expectation's figures for a date: the report's `expectations` and a row of the `expectations` table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub expr: String,
    pub action: Action,
    /// Rows checked: every row that passed the contract's rules and dedup.
    pub checked: u64,
    pub passed: u64,
    pub failed: u64,
}

impl Outcome {
    /// The zero figures of each expectation of `set`.
    pub fn zeros(set: &Expectations) -> Vec<Outcome> {
        set.list
            .iter()
            .map(|e| Outcome {
                name: e.name.clone(),
                expr: e.expr.clone(),
                action: e.action,
                checked: 0,
                passed: 0,
                failed: 0,
            })
            .collect()
    }

    /// Adds one batch's failures (`failed[row]`).
    pub fn add(&mut self, failed: &[bool]) {
        let n = failed.iter().filter(|f| **f).count() as u64;
        self.checked += failed.len() as u64;
        self.failed += n;
        self.passed = self.checked - self.failed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Float64Array, StringArray};
    use deltalake::arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("device_type", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
        ])
    }

    fn declared(name: &str, expr: &str, action: Action) -> Declared {
        Declared {
            name: name.into(),
            expr: expr.into(),
            action,
        }
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(schema()),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(StringArray::from(vec![
                    Some("pump"),
                    None,
                    Some("fan"),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(0.0),
                    Some(21.5),
                    None,
                    Some(-3.0),
                ])),
            ],
        )
        .unwrap()
    }

    /// The test batch's columns that `set` names.
    fn named(set: &Expectations) -> RecordBatch {
        let all = batch();
        let at: Vec<usize> = set
            .columns()
            .fields()
            .iter()
            .map(|f| all.schema().index_of(f.name()).unwrap())
            .collect();
        all.project(&at).unwrap()
    }

    /// At most 60 expectations: their longest names, joined, fit `detail`'s
    /// 8,000 bytes in Synapse; one more is a configuration error.
    #[test]
    fn a_job_declares_at_most_sixty_expectations() {
        const { assert!((MAX_NAME + 2) * MAX_EXPECTATIONS <= 8000) };
        let many = |n: usize| -> Vec<Declared> {
            (0..n)
                .map(|i| declared(&format!("e{i:0>127}"), "temperature > -100", Action::Drop))
                .collect()
        };
        assert!(Expectations::compile(&many(MAX_EXPECTATIONS), &schema()).is_ok());
        let err = Expectations::compile(&many(MAX_EXPECTATIONS + 1), &schema()).unwrap_err();
        assert!(
            err.to_string().contains("61 expectations, over the 60"),
            "{err}"
        );
    }

    #[test]
    fn rows_fail_on_false_and_on_null() {
        let set = Expectations::compile(
            &[
                declared("not_zero", "temperature <> 0", Action::Warn),
                declared("typed", "device_type IS NOT NULL", Action::Drop),
                declared(
                    "null_ok",
                    "temperature IS NULL OR temperature > -1",
                    Action::Fail,
                ),
            ],
            &schema(),
        )
        .unwrap();
        let columns: Vec<&str> = set
            .columns()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            columns,
            ["device_type", "temperature"],
            "only those named, in order"
        );
        let f = set.failures(&named(&set)).unwrap();
        // temperature 0, 21.5, null, -3: `<> 0` is false, true, null, true.
        assert_eq!(f[0], vec![true, false, true, false]);
        assert_eq!(f[1], vec![false, true, false, true]);
        assert_eq!(f[2], vec![false, false, false, true]);
        let mut o = Outcome::zeros(&set);
        o[0].add(&f[0]);
        assert_eq!((o[0].checked, o[0].passed, o[0].failed), (4, 2, 2));
    }

    #[test]
    fn the_docs_expressions_plan_against_silver() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut docs = vec![root.join("README.md")];
        let mut more: Vec<_> = std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        docs.append(&mut more);
        let silver = crate::lake::telemetry_table().schema;
        let mut found = 0;
        for doc in docs {
            let text = std::fs::read_to_string(&doc).unwrap();
            for line in text.lines() {
                let Some((_, rest)) = line.split_once("expr = \"") else {
                    continue;
                };
                let expr = rest.split('"').next().unwrap();
                let declared = [declared("r", expr, Action::Warn)];
                if let Err(e) = Expectations::compile(&declared, &silver) {
                    panic!("{}: {expr}: {e}", doc.display());
                }
                found += 1;
            }
        }
        // docs/job-file.md's own examples at least.
        assert!(found >= 4, "{found} expressions found in the docs");
    }

    #[test]
    fn the_sql_forms_the_docs_name_plan_against_silver() {
        let silver = crate::lake::telemetry_table().schema;
        for expr in [
            "temperature IS NULL OR temperature <> 0",
            "device_type IN ('pump', 'fan') AND NOT (pressure BETWEEN 0 AND 1)",
            "device_id LIKE 'pump-%' OR CASE WHEN vibration > 50 THEN false ELSE true END",
            "abs(temperature) < 100 AND length(lower(device_id)) <= 64",
            "date_part('hour', event_time) < 24",
            "event_time < TIMESTAMP '2030-01-01T00:00:00Z' AND enqueued_time >= event_time",
            "source_file LIKE 'telemetry/%' AND event_date = DATE '2024-03-11'",
        ] {
            let declared = [declared("r", expr, Action::Warn)];
            if let Err(e) = Expectations::compile(&declared, &silver) {
                panic!("{expr}: {e}");
            }
        }
    }

    #[test]
    fn bad_declarations_are_named() {
        for (expr, says) in [
            ("temperature >", "SQL"),
            ("humidity > 3", "humidity"),
            ("temperature + 1", "not boolean"),
            ("count(*) > 1", "aggregate"),
            ("", "empty"),
        ] {
            let err = Expectations::compile(&[declared("rule_1", expr, Action::Warn)], &schema())
                .unwrap_err()
                .to_string();
            assert!(err.contains("`rule_1`"), "{expr}: {err}");
            assert!(err.contains(says), "{expr}: {err}");
        }
        let constant =
            Expectations::compile(&[declared("c", "1 < 2", Action::Warn)], &schema()).unwrap();
        assert_eq!(
            constant.columns().fields().len(),
            1,
            "a batch needs a column"
        );
        assert_eq!(
            constant.failures(&named(&constant)).unwrap()[0],
            vec![false; 4]
        );
        let twice = [
            declared("a", "true", Action::Warn),
            declared("a", "true", Action::Drop),
        ];
        let err = Expectations::compile(&twice, &schema()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = Expectations::compile(&[declared("a, b", "true", Action::Warn)], &schema())
            .unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
}
