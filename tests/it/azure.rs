//! Source and lake on a real Azurite: the same tables as the local run, and clear errors for what goes wrong.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::azurite::Azurite;
use crate::common::*;

/// Every row of a table without the columns that name the run.
fn rows_without_run(lake: &std::path::Path, table: &str) -> BTreeSet<String> {
    read_rows(lake, table)
        .into_iter()
        .map(|mut r: Map<String, Value>| {
            r.remove("run_id");
            r.remove("ingested_at");
            Value::Object(r).to_string()
        })
        .collect()
}

fn run_on(
    az: &Azurite,
    date: &str,
    source: &str,
    lake: &str,
    extra_env: &[(&str, String)],
) -> (i32, String, String) {
    let mut env = az.env();
    env.extend(extra_env.iter().cloned());
    let args = run_args(date, source, lake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = coldpath_env(&args, &env);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_run_on_azurite_gives_the_same_tables_as_the_local_run() {
    let az = Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw());

    let local = temp_lake();
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, out, err) = run_on(&az, date, "az://raw/", "az://lake/iot", &[]);
        assert_eq!(code, 0, "{out}{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            report["rows_written"],
            expected(date)["rows_written"],
            "{date}"
        );
        let (code, report) = run_date(date, local.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    let copy = temp_lake();
    az.download("lake", "iot", copy.path());
    for table in ["telemetry", "features_hourly", "rejects"] {
        let on_azure = rows_without_run(copy.path(), table);
        assert!(!on_azure.is_empty(), "{table}");
        assert_eq!(on_azure, rows_without_run(local.path(), table), "{table}");
    }
    // The look-back was read from the table on Azurite.
    let features = read_rows(copy.path(), "features_hourly");
    assert!(features
        .iter()
        .filter(|r| get(r, "feature_date") == "2024-03-11")
        .all(|r| get(r, "lookback_complete") == true));
}

#[test]
fn a_missing_container_is_named_and_is_a_configuration_error() {
    let az = Azurite::start();
    az.create_container("lake");
    let (code, out, err) = run_on(&az, "2024-03-11", "az://nosuch/", "az://lake/iot", &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("container `nosuch` does not exist"), "{err}");
}

#[test]
fn a_wrong_key_is_an_authentication_error_and_the_key_is_never_printed() {
    let az = Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw().join("reference"));
    // A well-formed key that is not the account's.
    let wrong = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmdrc2VjcmV0c2VjcmV0c2VjcmV0MTIzNDU2Nzg5MA==";
    let (code, out, err) = run_on(
        &az,
        "2024-03-11",
        "az://raw/",
        "az://lake/iot",
        &[("AZURE_STORAGE_ACCOUNT_KEY", wrong.to_string())],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("authentication"), "{err}");
    assert!(
        !out.contains(wrong) && !err.contains(wrong),
        "the key leaked"
    );
    assert!(
        !out.contains(&wrong[..20]) && !err.contains(&wrong[..20]),
        "part of the key leaked"
    );
}
