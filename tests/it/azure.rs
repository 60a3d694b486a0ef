//! Source and lake on a real Azurite: the same tables as the local run, and clear errors for what goes wrong.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::azurite::Azurite;
use crate::common::*;

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
        assert!(
            !err.contains("digest"),
            "device_health's digests on the store: {err}"
        );
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            report["rows_written"],
            expected(date)["rows_written"],
            "{date}"
        );
        let (code, report) = run_date(date, local.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    // A rerun of the first date stores its digest under its new silver files' name and
    // removes the old one from the container (listed and deleted through the store).
    let (code, out, err) = run_on(&az, "2024-03-10", "az://raw/", "az://lake/iot", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("digest"), "{err}");
    let copy = temp_lake();
    az.download("lake", "iot", copy.path());
    let digests: BTreeSet<String> = std::fs::read_dir(copy.path().join("_coldpath/history"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("2024-03-10."))
        .collect();
    // One digest per date: device_health's 16 buckets and the devices, under one key.
    assert_eq!(digests.len(), 16 + 1, "{digests:?}");
    let keys: BTreeSet<&str> = digests
        .iter()
        .map(|n| n.split('.').nth(1).unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    // And the next date reads it back from the container.
    let (code, out, err) = run_on(&az, "2024-03-11", "az://raw/", "az://lake/iot", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("digest"), "{err}");
    let copy = temp_lake();
    az.download("lake", "iot", copy.path());
    crate::health::assert_health_is(
        copy.path(),
        "2024-03-11",
        expected("2024-03-11")["health"].as_array().unwrap(),
    );
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
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

/// `coldpath plan` of the local job for `date` on Azurite; exit code, plan JSON, stderr.
fn plan_on(az: &Azurite, date: &str, extra: &[&str]) -> (i32, Value, String) {
    let job = job_file();
    let mut args = vec![
        "plan",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--source",
        "az://raw/",
        "--lake",
        "az://lake/iot",
    ];
    args.extend_from_slice(extra);
    let out = coldpath_env(&args, &az.env());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan is not JSON ({e}): {err}"));
    (out.status.code().unwrap(), plan, err)
}

#[test]
fn an_archived_blob_is_named_before_anything_is_read_and_rehydrate_brings_it_back() {
    let az = Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw());
    let dir = "telemetry/2024/03/11/09";
    let name = std::fs::read_dir(fixtures_raw().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .min()
        .unwrap();
    let blob = format!("{dir}/{name}");
    let size = std::fs::metadata(fixtures_raw().join(&blob)).unwrap().len();
    az.set_tier("raw", &blob, "Archive");

    // plan shows every blob's tier and totals the archived ones.
    let (code, plan, err) = plan_on(&az, DATE_11, &[]);
    assert_eq!(code, 0, "{err}");
    let blobs = plan["blobs"].as_array().unwrap();
    assert_eq!(
        tier_of_plan(&plan, &blob).as_deref(),
        Some("Archive"),
        "{plan}"
    );
    let others: BTreeSet<Option<String>> = blobs
        .iter()
        .filter(|b| b["path"] != blob.as_str())
        .map(|b| b["tier"].as_str().map(str::to_string))
        .collect();
    assert_eq!(others, BTreeSet::from([Some("Hot".to_string())]), "{plan}");
    assert_eq!(plan["archived"]["blobs"], 1);
    assert_eq!(plan["archived"]["bytes"], size);
    assert!(err.contains(&blob), "{err}");

    // A run stops before reading anything, naming the blob, its bytes and the way out.
    let (code, out, err) = run_on(&az, DATE_11, "az://raw/", "az://lake/iot", &[]);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let message = report["error"].as_str().unwrap();
    assert!(message.contains(&blob), "{message}");
    assert!(message.contains(&format!("({size} bytes)")), "{message}");
    assert!(message.contains("--rehydrate"), "{message}");
    assert_eq!(report["blobs"]["archived"], 1);
    assert_eq!(report["blobs"]["read"], 0);
    let store = az.store("lake");
    let written: Vec<String> = block_on(async {
        use futures::TryStreamExt;
        store
            .list(Some(&"iot".into()))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap()
    });
    assert!(
        written.iter().all(|p| p.starts_with("iot/_coldpath/")),
        "{written:?}"
    );

    // --rehydrate asks for it back and exits 1 (not ready yet) ...
    let (code, plan, err) = plan_on(&az, DATE_11, &["--rehydrate"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        plan["archived"]["rehydration_requested"],
        serde_json::json!([blob])
    );
    // ... Azurite rehydrates at once (Azure takes hours): then plan is clear and the run goes.
    let (code, plan, err) = plan_on(&az, DATE_11, &["--rehydrate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(plan["archived"]["blobs"], 0);
    assert_eq!(tier_of_plan(&plan, &blob).as_deref(), Some("Hot"));
    let (code, out, err) = run_on(&az, DATE_11, "az://raw/", "az://lake/iot", &[]);
    assert_eq!(code, 0, "{out}{err}");
}

const DATE_11: &str = "2024-03-11";

fn tier_of_plan(plan: &Value, path: &str) -> Option<String> {
    plan["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"] == path)?["tier"]
        .as_str()
        .map(str::to_string)
}

/// Issue 32: an `abfss://` lake with no credential source that yields a token.
/// Offline and deterministic: no `AZURE_*` variable, and the managed identity
/// endpoint pointed at a local port nobody listens on. The error lists what
/// was tried and what to set, does not blame the storage account (which was
/// never asked), and names the lock's path once, relative to the lake.
#[test]
fn no_credential_lists_what_was_tried_and_does_not_blame_the_account() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = temp_lake();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"nocred\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = \"abfss://data@coldpathnocred.dfs.core.windows.net/nightly\"\n[storage]\nmax_retries = 0\nconnect_timeout = \"2s\"\n",
            fixtures_raw().to_str().unwrap()
        ),
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{closed}/metadata/identity/oauth2/token");
    let mut cmd = command(
        &[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--date",
            "2024-03-11",
        ],
        &[("IDENTITY_ENDPOINT", endpoint.clone())],
    );
    for (key, _) in std::env::vars() {
        if key.starts_with("AZURE_") || key == "MSI_ENDPOINT" || key == "IDENTITY_HEADER" {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    for text in [error, &*stderr] {
        assert!(text.contains("no Azure credential gave a token"), "{text}");
        assert!(text.contains("the storage account was not asked"), "{text}");
        // What was tried, and what could be set instead.
        assert!(text.contains("tried managed identity"), "{text}");
        assert!(text.contains(&format!("endpoint {endpoint}")), "{text}");
        for source in [
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_CLIENT_SECRET",
            "workload identity",
            "AZURE_FEDERATED_TOKEN_FILE",
            "Azure CLI",
            "AZURE_USE_AZURE_CLI",
            "AZURE_CLIENT_ID",
        ] {
            assert!(text.contains(source), "{source}: {text}");
        }
        assert!(!text.contains("refused by the storage account"), "{text}");
        // The lock's path, relative to the lake named beside it: `nightly/` once.
        assert!(text.contains("`_coldpath/locks/"), "{text}");
        assert!(!text.contains("nightly/_coldpath"), "{text}");
    }
}
