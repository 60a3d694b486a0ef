//! Azure Batch: a backfill as one task per date — silver tasks first, each date's features task depending on its own and the previous date's silver — for `backfill --emit-batch-tasks`.
//!
//! The output is a series of task collections, each a JSON array of tasks as
//! `az batch task create --json-file` takes it (the "Add Task Collection" REST
//! body is `{"value": <the array>}`), each within Batch's limits of 100 tasks and 1 MB,
//! in submission order: a task's dependencies are in its own collection or an
//! earlier one. They are for a job created from `jobs/batch/job.json` (which
//! turns task dependencies on) on the pool of `jobs/batch/container-pool.json`
//! (a container task needs a pool with a container runtime). Tasks run the container image; its identity is
//! the pool's managed identity (set `AZURE_CLIENT_ID` for a user-assigned one),
//! so no secret is in a task. Each task uploads its stdout (the run report) and
//! stderr (the logs) to a blob container when it ends, with the same identity,
//! so they outlive the node.

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::report::Status;

/// What every task's command line repeats.
#[derive(Debug, Clone)]
pub struct TaskTemplate {
    /// The job file, as seen inside the image (e.g. `jobs/nightly.toml`).
    pub job: String,
    pub source: Option<String>,
    pub lake: Option<String>,
    pub labels_as_of: Option<String>,
    /// `--lock-wait` as the command was given it (e.g. `600s`): every task repeats it.
    pub lock_wait: Option<String>,
    /// `--allow-empty` as the command was given it: every task that reads blobs repeats it.
    pub allow_empty: bool,
    /// The container image, e.g. `contoso.azurecr.io/coldpath:1.4.0`.
    pub image: String,
    /// The pool identity's client id, for a user-assigned managed identity.
    pub client_id: Option<String>,
    /// Where tasks upload their report and logs: a blob container URL, and the
    /// ARM resource id of the pool's user-assigned identity that may write there.
    pub outputs: Option<OutputContainer>,
}

/// The container that receives each task's `report.json` and `stderr.txt`.
#[derive(Debug, Clone)]
pub struct OutputContainer {
    /// e.g. `https://contosoiotlake.blob.core.windows.net/batch-logs`.
    pub url: String,
    /// e.g. `/subscriptions/…/resourceGroups/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/coldpath`.
    pub identity: String,
    /// Blob folder of this backfill inside the container; each task writes under `<prefix>/<task id>/`.
    pub prefix: String,
}

/// Batch's limits on one Add Task Collection request.
pub const MAX_TASKS_PER_COLLECTION: usize = 100;
/// 1 MB, with room left for the request's own framing.
pub const MAX_COLLECTION_BYTES: usize = 1_000_000;

fn silver_id(date: NaiveDate) -> String {
    format!("silver-{date}")
}

fn features_id(date: NaiveDate) -> String {
    format!("features-{date}")
}

/// The `outputFiles` of task `id`: its stdout (the report) and stderr (the
/// logs), uploaded when it completes, whatever the outcome. Batch resolves the
/// patterns against the task's working directory; both files sit one level up.
fn output_files(out: &OutputContainer, id: &str) -> Value {
    let upload = |pattern: &str, name: &str| {
        json!({
            "filePattern": pattern,
            "destination": {"container": {
                "containerUrl": out.url,
                "path": format!("{}/{id}/{name}", out.prefix.trim_matches('/')),
                "identityReference": {"resourceId": out.identity},
            }},
            "uploadOptions": {"uploadCondition": "taskCompletion"},
        })
    };
    json!([
        upload("../stdout.txt", "report.json"),
        upload("../stderr.txt", "stderr.txt")
    ])
}

/// The tasks of a backfill over `dates` (in order) as Add Task Collection
/// bodies within Batch's limits (see [`collections`]).
pub fn tasks(t: &TaskTemplate, dates: &[NaiveDate]) -> Vec<Value> {
    collections(task_list(t, dates))
}

/// The flags every task repeats: the job, and the source and lake overrides.
fn common_args(t: &TaskTemplate) -> Vec<String> {
    let mut common = vec!["--job".to_string(), t.job.clone()];
    for (flag, value) in [("--source", &t.source), ("--lake", &t.lake)] {
        if let Some(v) = value {
            common.push(flag.into());
            common.push(v.clone());
        }
    }
    common
}

/// The flags of a task that reads blobs: `--lock-wait` and `--allow-empty`, when given.
fn read_args(t: &TaskTemplate) -> Vec<String> {
    let mut args = lock_args(t);
    if t.allow_empty {
        args.push("--allow-empty".into());
    }
    args
}

/// `--lock-wait`, when given.
fn lock_args(t: &TaskTemplate) -> Vec<String> {
    t.lock_wait
        .iter()
        .flat_map(|w| ["--lock-wait".to_string(), w.clone()])
        .collect()
}

/// `--labels-as-of`, when the template pins it.
fn label_args(t: &TaskTemplate) -> Vec<String> {
    t.labels_as_of
        .iter()
        .flat_map(|l| ["--labels-as-of".to_string(), l.clone()])
        .collect()
}

/// One Batch task: its command line, container, identity, environment, dependencies and outputs.
fn make_task(t: &TaskTemplate, id: String, args: Vec<String>, depends: Vec<String>) -> Value {
    let env: Vec<Value> = t
        .client_id
        .iter()
        .map(|id| json!({"name": "AZURE_CLIENT_ID", "value": id}))
        .chain([json!({"name": "COLDPATH_LOG_FORMAT", "value": "json"})])
        .collect();
    let mut task = json!({
        "id": id,
        "commandLine": shell_words(&args),
        "containerSettings": {
            "imageName": t.image,
            "workingDirectory": "containerImageDefault",
        },
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        "constraints": {"maxTaskRetryCount": 2, "maxWallClockTime": "PT4H"},
        "environmentSettings": env,
    });
    if !depends.is_empty() {
        task["dependsOn"] = json!({"taskIds": depends});
    }
    if let Some(out) = &t.outputs {
        task["outputFiles"] = output_files(out, &id);
    }
    task
}

/// The tasks of a backfill over `dates`: every silver task, then every features task.
fn task_list(t: &TaskTemplate, dates: &[NaiveDate]) -> Vec<Value> {
    let common = common_args(t);
    let silver_flags = read_args(t);
    // A features task reads silver, not blobs: `--allow-empty` has nothing to allow there.
    let features_flags: Vec<String> = label_args(t).into_iter().chain(lock_args(t)).collect();
    // A date that fails blocks no other: Batch holds a task's dependents on any
    // exit but 0 unless told, and a held chain of features tasks would keep the
    // job open to its wall clock. As in a backfill in one process, a later
    // features task then reads the silver there is.
    let task = |id: String, args: Vec<String>, depends: Vec<String>| {
        let mut task = make_task(t, id, args, depends);
        task["exitConditions"] = json!({"default": {"dependencyAction": "satisfy"}});
        task
    };
    let mut all = Vec::new();
    for &date in dates {
        let mut args = vec!["coldpath".to_string(), "run".into()];
        args.extend(common.iter().cloned());
        args.extend([
            "--date".to_string(),
            date.to_string(),
            "--silver-only".into(),
        ]);
        args.extend(silver_flags.iter().cloned());
        all.push(task(silver_id(date), args, Vec::new()));
    }
    for &date in dates {
        let mut args = vec!["coldpath".to_string(), "features".into()];
        args.extend(common.iter().cloned());
        args.extend(["--date".to_string(), date.to_string()]);
        args.extend(features_flags.iter().cloned());
        // The look-back needs the previous date's silver; the baselines its features,
        // and through them (a chain) the features and silver of every date before.
        let mut depends = vec![silver_id(date)];
        if let Some(previous) = date.pred_opt().filter(|p| dates.contains(p)) {
            depends.insert(0, silver_id(previous));
            depends.insert(1, features_id(previous));
        }
        all.push(task(features_id(date), args, depends));
    }
    all
}

/// Splits tasks, in order, into Add Task Collection bodies of at most
/// [`MAX_TASKS_PER_COLLECTION`] tasks and [`MAX_COLLECTION_BYTES`] of JSON as
/// [`collection_text`] writes it. Order is kept, so a task listed after its
/// dependencies lands in the same collection or a later one.
pub fn collections(tasks: Vec<Value>) -> Vec<Value> {
    // `[` … `]` around the tasks, and a separator between two.
    let frame = collection_text(&json!({"value": []})).len();
    let mut out = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = frame;
    for task in tasks {
        let size = collection_text(&json!({"value": [task.clone()]})).len() - frame;
        let full = current.len() == MAX_TASKS_PER_COLLECTION
            || (!current.is_empty() && bytes + size + SEPARATOR > MAX_COLLECTION_BYTES);
        if full {
            out.push(json!({ "value": std::mem::take(&mut current) }));
            bytes = frame;
        }
        if !current.is_empty() {
            bytes += SEPARATOR;
        }
        bytes += size;
        current.push(task);
    }
    if !current.is_empty() {
        out.push(json!({ "value": current }));
    }
    out
}

/// What separates two tasks in [`collection_text`]'s output, at most.
const SEPARATOR: usize = 2;

/// A collection as written to its file: its tasks as a bare JSON array, compact,
/// and a newline. `az batch task create --json-file` takes an array of tasks (it
/// tries the file as one task first, and `{"value": [...]}`, the REST body, reads
/// as an empty task, which the service refuses); the REST call wants the array
/// as `value`.
pub fn collection_text(collection: &Value) -> String {
    collection["value"].to_string() + "\n"
}

/// The file names of `n` collections, in submission order: `tasks-001.json`, …
pub fn collection_file_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("tasks-{i:03}.json")).collect()
}

/// Checks that `url` is what a Batch output file's `containerUrl` takes: an
/// `https://` URL of one blob container (`https://<account>.blob.core.windows.net/<container>`),
/// not an `abfss://` or `az://` lake URL, nor a folder inside a container.
fn output_container(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if parsed.scheme() != "https" || parsed.host_str().is_none() || segments.len() != 1 {
        return Err(format!(
            "`{url}` is not a blob container's URL: Batch uploads to https://<account>.blob.core.windows.net/<container>"
        ));
    }
    Ok(())
}

/// A command line as Batch runs it (no shell): arguments with spaces are quoted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("\"{}\"", a.replace('"', "\\\""))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--emit-batch-tasks DIR`: the collections `make` builds from the flags'
/// task template, written as tasks-001.json, … into DIR (which must hold none).
pub fn emit(
    job: &super::cli::JobArgs,
    write: &super::cli::WriteArgs,
    read: &super::cli::ReadArgs,
    batch: &super::cli::BatchEmitArgs,
    dir: &std::path::Path,
    what: &str,
    make: impl FnOnce(&TaskTemplate) -> Vec<Value>,
) -> i32 {
    if let Some(Err(e)) = batch
        .batch_output_container
        .as_deref()
        .map(crate::config::job::check_location)
    {
        return super::output::usage_error(format_args!("--batch-output-container: {e}"));
    }
    let (Some(url), Some(identity)) = (&batch.batch_output_container, &batch.batch_identity) else {
        return super::output::usage_error(
            "--emit-batch-tasks needs --batch-output-container and --batch-identity: where each task uploads its report and logs (they are lost with the node otherwise), and the pool identity that writes them",
        );
    };
    if let Err(e) = output_container(url) {
        return super::output::usage_error(format_args!("--batch-output-container: {e}"));
    }
    let Some(image) = &batch.batch_image else {
        return super::output::usage_error(
            "--emit-batch-tasks needs --batch-image (or COLDPATH_BATCH_IMAGE): the image every task runs, e.g. contoso.azurecr.io/coldpath:1.0.0",
        );
    };
    if job.job.is_absolute() {
        return super::output::usage_error(format_args!(
            "--job {}: a task reads the job file inside its image, relative to its working directory (/opt/coldpath): give the path there, e.g. jobs/nightly.toml",
            job.job.display()
        ));
    }
    let template = TaskTemplate {
        job: job.job.to_string_lossy().into_owned(),
        source: job.source.clone(),
        lake: job.lake.clone(),
        labels_as_of: write.labels_as_of.map(|t| t.to_rfc3339()),
        lock_wait: write.lock_wait.map(|w| format!("{}s", w.as_secs())),
        allow_empty: read.allow_empty,
        image: image.clone(),
        client_id: std::env::var("COLDPATH_BATCH_CLIENT_ID").ok(),
        outputs: Some(OutputContainer {
            url: url.clone(),
            identity: identity.clone(),
            prefix: format!("coldpath-{what}"),
        }),
    };
    let collections = make(&template);
    let tasks: usize = collections
        .iter()
        .map(|c| c["value"].as_array().map_or(0, Vec::len))
        .sum();
    let names = collection_file_names(collections.len());
    match write_collections(dir, &collections, &names) {
        Ok(()) => {
            eprintln!(
                "coldpath: wrote {tasks} Batch tasks ({what}) to {} as {} collection(s): {}",
                dir.display(),
                names.len(),
                names.join(", ")
            );
            Status::Succeeded.exit_code()
        }
        Err(e) => {
            eprintln!("coldpath: error: --emit-batch-tasks {}: {e}", dir.display());
            Status::Failed.exit_code()
        }
    }
}

/// Writes the collections into `dir`, refusing a folder that already holds some.
fn write_collections(
    dir: &std::path::Path,
    collections: &[Value],
    names: &[String],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // Left-over files of an earlier, longer emit would be submitted too.
    let stale = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("tasks-") && n.ends_with(".json"));
    if let Some(stale) = stale {
        return Err(format!(
            "{stale} is already there: emit into an empty folder"
        ));
    }
    for (collection, name) in collections.iter().zip(names) {
        std::fs::write(dir.join(name), collection_text(collection))
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// One catch-up task over `from..=to` (a catch-up runs its dates in order, so it is one task),
/// with the catch-up's own flags as given (`--dry-run`, `--include-missing`, `--refresh-labels`).
pub fn catchup_tasks(
    t: &TaskTemplate,
    from: NaiveDate,
    to: NaiveDate,
    options: &[&str],
) -> Vec<Value> {
    let mut args = vec!["coldpath".to_string(), "catchup".into()];
    args.extend(common_args(t));
    args.extend([
        "--from".to_string(),
        from.to_string(),
        "--to".into(),
        to.to_string(),
    ]);
    args.extend(options.iter().map(|o| o.to_string()));
    args.extend(label_args(t));
    args.extend(read_args(t));
    collections(vec![make_task(
        t,
        format!("catchup-{from}-{to}"),
        args,
        Vec::new(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::BatchIds;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn template() -> TaskTemplate {
        TaskTemplate {
            job: "jobs/nightly.toml".into(),
            source: None,
            lake: Some("az://lake/iot".into()),
            labels_as_of: None,
            lock_wait: None,
            allow_empty: false,
            image: "contoso.azurecr.io/coldpath:1".into(),
            client_id: Some("0000-id".into()),
            outputs: Some(OutputContainer {
                url: "https://contosoiotlake.blob.core.windows.net/batch-logs".into(),
                identity: "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/coldpath".into(),
                prefix: "backfill-2024".into(),
            }),
        }
    }

    /// `n` consecutive dates from 2024-01-01.
    fn dates(n: usize) -> Vec<NaiveDate> {
        day("2024-01-01").iter_days().take(n).collect()
    }

    /// Checks Batch's limits and that every dependency was submitted no later than its task.
    fn check_collections(collections: &[Value], expected_tasks: usize) {
        let mut submitted: Vec<String> = Vec::new();
        let mut total = 0;
        for c in collections {
            let tasks = c["value"].as_array().unwrap();
            assert!(!tasks.is_empty());
            assert!(
                tasks.len() <= 100,
                "{} tasks in one collection",
                tasks.len()
            );
            let bytes = collection_text(c).len();
            assert!(bytes <= 1_000_000, "{bytes} bytes in one collection");
            let ids: Vec<String> = tasks
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect();
            for t in tasks {
                for dep in t["dependsOn"]["taskIds"].as_array().into_iter().flatten() {
                    let dep = dep.as_str().unwrap().to_string();
                    assert!(
                        submitted.contains(&dep) || ids.contains(&dep),
                        "{} depends on {dep}, submitted later",
                        t["id"]
                    );
                }
            }
            submitted.extend(ids);
            total += tasks.len();
        }
        assert_eq!(total, expected_tasks);
        submitted.sort();
        submitted.dedup();
        assert_eq!(submitted.len(), expected_tasks, "every task exactly once");
    }

    #[test]
    fn a_catch_up_is_one_task_over_its_range_with_its_outputs() {
        let collections = catchup_tasks(
            &template(),
            day("2024-03-01"),
            day("2024-03-14"),
            &["--refresh-labels"],
        );
        assert_eq!(collections.len(), 1);
        let tasks = collections[0]["value"].as_array().unwrap();
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        assert_eq!(task["id"], "catchup-2024-03-01-2024-03-14");
        let line = task["commandLine"].as_str().unwrap();
        for part in [
            "coldpath catchup",
            "--from 2024-03-01",
            "--to 2024-03-14",
            "--refresh-labels",
            "--job ",
        ] {
            assert!(line.contains(part), "{line} lacks {part}");
        }
        assert!(task.get("dependsOn").is_none());
        assert!(
            task["outputFiles"]
                .as_array()
                .is_some_and(|o| !o.is_empty()),
            "{task}"
        );
    }

    #[test]
    fn a_long_range_is_split_at_100_tasks() {
        // 250 dates: 250 silver and 250 features tasks, 100 to a collection.
        let collections = tasks(&template(), &dates(250));
        assert_eq!(collections.len(), 5);
        check_collections(&collections, 500);
        let sizes: Vec<usize> = collections
            .iter()
            .map(|c| c["value"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 100, 100, 100]);
    }

    #[test]
    fn big_tasks_are_split_at_1_mb() {
        // A long labels cut-off string makes each features task about 30 KB:
        // 1 MB holds about 33 of them, well under 100.
        let mut t = template();
        t.labels_as_of = Some(format!("2024-01-01T00:00:00Z{}", " ".repeat(30_000)));
        let collections = tasks(&t, &dates(250));
        check_collections(&collections, 500);
        let features_tasks = |c: &Value| {
            c["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["id"].as_str().unwrap().starts_with("features-"))
                .count()
        };
        let biggest = collections.iter().map(features_tasks).max().unwrap();
        assert!(
            biggest < 100 && biggest > 20,
            "{biggest} features tasks in one collection"
        );
        // Full collections leave less room than one more task.
        let task_bytes = 30_000;
        for c in &collections[..collections.len() - 1] {
            assert!(
                collection_text(c).len() + task_bytes > 1_000_000
                    || c["value"].as_array().unwrap().len() == 100
            );
        }
    }

    #[test]
    fn each_task_uploads_its_report_and_logs_with_the_pool_identity() {
        let collections = tasks(&template(), &dates(2));
        for task in collections[0]["value"].as_array().unwrap() {
            let id = task["id"].as_str().unwrap();
            let files = task["outputFiles"].as_array().unwrap();
            let patterns: Vec<&str> = files
                .iter()
                .map(|f| f["filePattern"].as_str().unwrap())
                .collect();
            assert_eq!(patterns, ["../stdout.txt", "../stderr.txt"]);
            for (f, name) in files.iter().zip(["report.json", "stderr.txt"]) {
                let container = &f["destination"]["container"];
                assert_eq!(
                    container["containerUrl"],
                    "https://contosoiotlake.blob.core.windows.net/batch-logs"
                );
                assert_eq!(container["path"], format!("backfill-2024/{id}/{name}"));
                assert!(container["identityReference"]["resourceId"]
                    .as_str()
                    .unwrap()
                    .ends_with("/userAssignedIdentities/coldpath"));
                assert_eq!(f["uploadOptions"]["uploadCondition"], "taskCompletion");
            }
        }
        let mut t = template();
        t.outputs = None;
        assert!(tasks(&t, &dates(1))[0]["value"][0]
            .get("outputFiles")
            .is_none());
        assert_eq!(
            collection_file_names(2),
            ["tasks-001.json", "tasks-002.json"]
        );
    }

    #[test]
    fn batch_ids_come_from_the_environment_batch_sets() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(BatchIds::from_lookup(env(&[("HOSTNAME", "abc")])), None);
        let ids = BatchIds::from_lookup(env(&[
            ("AZ_BATCH_JOB_ID", "backfill-1"),
            ("AZ_BATCH_TASK_ID", "silver-2024-03-11"),
            ("AZ_BATCH_NODE_ID", "tvmps_0001"),
        ]))
        .unwrap();
        assert_eq!(ids.task_id.as_deref(), Some("silver-2024-03-11"));
        assert_eq!(
            ids.to_string(),
            "Batch job backfill-1 task silver-2024-03-11 on node tvmps_0001"
        );
    }

    #[test]
    fn features_wait_for_their_own_and_the_previous_dates_silver() {
        let t = TaskTemplate {
            job: "jobs/nightly.toml".into(),
            source: None,
            lake: Some("az://lake/iot".into()),
            labels_as_of: None,
            lock_wait: None,
            allow_empty: false,
            image: "contoso.azurecr.io/coldpath:1".into(),
            client_id: Some("0000-id".into()),
            outputs: None,
        };
        let dates = [day("2024-03-10"), day("2024-03-11"), day("2024-03-12")];
        let v = tasks(&t, &dates);
        assert_eq!(v.len(), 1);
        let tasks = v[0]["value"].as_array().unwrap();
        assert_eq!(tasks.len(), 6);
        let by_id = |id: &str| tasks.iter().find(|t| t["id"] == id).unwrap();
        assert!(by_id("silver-2024-03-10").get("dependsOn").is_none());
        // A failed or gated date satisfies its dependents (Batch's default blocks them).
        for id in [
            "silver-2024-03-10",
            "features-2024-03-10",
            "features-2024-03-12",
        ] {
            let exit = &by_id(id)["exitConditions"]["default"];
            assert_eq!(exit, &json!({"dependencyAction": "satisfy"}), "{id}");
        }
        assert_eq!(
            by_id("features-2024-03-10")["dependsOn"]["taskIds"],
            json!(["silver-2024-03-10"])
        );
        assert_eq!(
            by_id("features-2024-03-12")["dependsOn"]["taskIds"],
            json!([
                "silver-2024-03-11",
                "features-2024-03-11",
                "silver-2024-03-12"
            ])
        );
        assert_eq!(
            by_id("silver-2024-03-11")["commandLine"],
            "coldpath run --job jobs/nightly.toml --lake az://lake/iot --date 2024-03-11 --silver-only"
        );
        for t in tasks {
            let id = t["id"].as_str().unwrap();
            // Batch task ids: letters, digits, hyphens, underscores; at most 64.
            assert!(
                id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert_eq!(t["environmentSettings"][0]["value"], "0000-id");
        }
    }

    #[test]
    fn the_shipped_pool_runs_this_version_of_the_package() {
        let template = shipped("pool.json");
        assert_eq!(
            template["parameters"]["coldpathVersion"]["defaultValue"],
            env!("CARGO_PKG_VERSION")
        );
        let pool = &template["resources"][0];
        assert_eq!(pool["identity"]["type"], "UserAssigned");
        let props = &pool["properties"];
        assert_eq!(
            props["applicationPackages"][0]["version"],
            "[parameters('coldpathVersion')]"
        );
        // Batch's variable for the package on Linux: lower case, `.`, `-` and `+`
        // as `_`, as scripts/package.sh and `coldpath adf` name it (the template
        // derives it from the version parameter, as ARM evaluates it).
        let start = props["startTask"]["commandLine"].as_str().unwrap();
        assert!(start.starts_with("[format('/bin/sh -c "), "{start}");
        assert!(
            start.contains("$AZ_BATCH_APP_PACKAGE_coldpath_{0}/coldpath"),
            "{start}"
        );
        assert!(
            start.contains(
                "toLower(replace(replace(replace(parameters('coldpathVersion'), '.', '_'), '-', '_'), '+', '_'))"
            ),
            "{start}"
        );
        // The image has the glibc the binary needs (2.35: Ubuntu 22.04 or newer).
        let image = &props["deploymentConfiguration"]["virtualMachineConfiguration"];
        assert_eq!(image["nodeAgentSkuId"], "batch.node.ubuntu 22.04");
    }

    fn shipped(name: &str) -> Value {
        let path = format!("{}/jobs/batch/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The emitted tasks are container tasks: the shipped job runs them on the
    /// container pool, whose nodes have a container runtime (the plain Ubuntu
    /// image of `pool.json` has none) and pull the image with the pool's identity.
    #[test]
    fn the_shipped_job_runs_on_a_pool_that_runs_containers() {
        let template = shipped("container-pool.json");
        let job = shipped("job.json");
        assert_eq!(
            job["poolInfo"]["poolId"],
            template["parameters"]["poolId"]["defaultValue"]
        );
        let pool = &template["resources"][0];
        let vm = &pool["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"];
        let containers = &vm["containerConfiguration"];
        assert_eq!(containers["type"], "DockerCompatible");
        assert_eq!(
            containers["containerImageNames"],
            json!(["[parameters('image')]"])
        );
        let identity = "[parameters('identityResourceId')]";
        let registry = &containers["containerRegistries"][0];
        assert_eq!(registry["identityReference"]["resourceId"], identity);
        assert!(pool["identity"]["userAssignedIdentities"]
            .get(identity)
            .is_some());
        assert_eq!(
            (
                &vm["imageReference"]["publisher"],
                &vm["imageReference"]["offer"]
            ),
            (&json!("microsoft-dsvm"), &json!("ubuntu-hpc"))
        );
        assert_eq!(vm["nodeAgentSkuId"], "batch.node.ubuntu 22.04");
        // The app-package pool runs no container task.
        let plain = shipped("pool.json");
        let plain_vm = &plain["resources"][0]["properties"]["deploymentConfiguration"]
            ["virtualMachineConfiguration"];
        assert!(plain_vm.get("containerConfiguration").is_none());
        assert_ne!(
            job["poolInfo"]["poolId"],
            plain["parameters"]["poolId"]["defaultValue"]
        );
    }

    /// The shipped job: task dependencies on (the tasks' `dependsOn` and their
    /// `dependencyAction` need them), and no end on all tasks complete at its
    /// creation, when it has no task yet (operations.md sets it after the tasks).
    #[test]
    fn the_shipped_job_takes_the_emitted_tasks() {
        let job = shipped("job.json");
        assert_eq!(job["usesTaskDependencies"], true);
        assert_eq!(job["onAllTasksComplete"], "noaction");
        assert_eq!(job["onTaskFailure"], "noaction");
    }

    #[test]
    fn arguments_with_spaces_are_quoted() {
        assert_eq!(
            shell_words(&["a".into(), "b c".into(), "".into()]),
            "a \"b c\" \"\""
        );
    }
}
