//! `coldpath plan`: what a run of a date would read and replace, and how the listing differs from its manifest; reads no blob.

use super::cli::PlanArgs;
use super::load_job;
use crate::run::pipeline;
use crate::storage::fault::redact;
use crate::Error;
use serde_json::json;

/// How the listing differs from the date's manifest (what its last run read).
async fn plan_manifest(
    prepared: &pipeline::Prepared,
    date: chrono::NaiveDate,
    listing: &crate::stages::source::Listing,
) -> Result<serde_json::Value, Error> {
    use crate::lake::manifest::{diff, Place, Read};
    Ok(match Place::for_lake(&prepared.lake)?.read(date).await? {
        Read::Missing => json!({"state": "never_run"}),
        Read::Unknown(why) => json!({"state": "manifest_unreadable", "why": why}),
        Read::Found(m) => {
            let d = diff(&m, listing);
            json!({
                "state": if d.is_empty() { "unchanged" } else { "changed" },
                "run_id": m.run_id,
                "written_at": m.written_at.to_rfc3339(),
                "added": d.added,
                "changed": d.changed,
                "removed": d.removed,
                "bytes_added": d.bytes_added,
                "bytes_removed": d.bytes_removed,
            })
        }
    })
}

pub async fn command(args: PlanArgs) -> i32 {
    let result = async {
        let job = load_job(&args.job, None)?;
        let prepared = pipeline::prepare(&job)?;
        let listing = pipeline::list(&job, &prepared, args.date).await?;
        let tiers = pipeline::tiers(&prepared, &listing).await;
        let mut requested = Vec::new();
        if args.rehydrate {
            let archived = tiers.iter().flatten().filter(|t| t.is_archived());
            let pending: Vec<_> = archived.filter(|t| t.archive_status.is_none()).collect();
            let client = if pending.is_empty() {
                None
            } else {
                crate::stages::source::tier::Tiers::for_source(&prepared.storage)
                    .map_err(|e| Error::Internal(e.to_string()))?
            };
            // Archived blobs are only found where tiers were read: an Azure source, with a client.
            if let Some(client) = client {
                for blob in pending {
                    client
                        .rehydrate(&blob.path, args.rehydrate_priority)
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    requested.push(blob.path.clone());
                }
            }
        }
        let manifest = plan_manifest(&prepared, args.date, &listing).await?;
        Ok::<_, Error>((job, listing, tiers, requested, manifest))
    }
    .await;
    let (job, listing, tiers, requested, manifest) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("coldpath: error: {}", redact(&e.to_string()));
            return e.status().exit_code();
        }
    };
    let bytes: u64 = listing.blobs.iter().map(|b| b.size).sum();
    let tier_of = |i: usize| tiers.as_ref().and_then(|t| t.get(i));
    let archived: Vec<_> = tiers.iter().flatten().filter(|t| t.is_archived()).collect();
    // The features' look-back: the previous date's silver from D 00:00 - 5 h.
    let lookback_start = chrono::DateTime::from_timestamp_micros(
        crate::stages::features::lookback_start_us(args.date),
    )
    .map(|t| t.to_rfc3339())
    .unwrap_or_default();
    let previous = args.date.pred_opt().unwrap_or(args.date);
    let reads_back = format!("telemetry: event_date={previous} from {lookback_start}");
    let plan = json!({
        "job": job.name,
        "date": args.date.to_string(),
        "source": job.source,
        "lake": job.lake,
        "prefixes": listing.prefixes,
        "blobs": listing.blobs.iter().enumerate().map(|(i, b)| json!({
            "path": b.path,
            "bytes": b.size,
            "partition_start": b.partition.start.to_rfc3339(),
            "window": match b.window { crate::stages::source::Window::Own => "own", crate::stages::source::Window::LookAhead => "look_ahead" },
            "tier": tier_of(i).and_then(|t| t.tier.clone()),
            "archive_status": tier_of(i).and_then(|t| t.archive_status.clone()),
        })).collect::<Vec<_>>(),
        "archived": {
            "blobs": archived.len(),
            "bytes": archived.iter().map(|t| t.bytes).sum::<u64>(),
            "rehydration_requested": requested,
        },
        "blob_count": listing.blobs.len(),
        "bytes": bytes,
        "ignored": listing.ignored,
        "replaces": [
            format!("telemetry: event_date={}", args.date),
            format!("features_hourly: feature_date={}", args.date),
            format!("telemetry_minute: event_date={}", args.date),
            format!("rejects: run_date={}", args.date),
        ],
        "reads_back": reads_back,
        "manifest": manifest,
    });
    match serde_json::to_string_pretty(&plan) {
        Ok(text) => {
            println!("{}", redact(&text));
            if archived.is_empty() {
                return 0;
            }
            eprintln!(
                "coldpath: {}",
                crate::stages::source::tier::archived_message(&args.date.to_string(), &archived)
            );
            if args.rehydrate {
                eprintln!(
                    "coldpath: rehydration requested for {} blob(s) now; the others were already rehydrating. Run `plan --rehydrate` again later: it exits 0 once none is archived",
                    requested.len()
                );
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("coldpath: error: {e}");
            1
        }
    }
}
