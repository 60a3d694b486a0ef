//! `coldpath plan`: what a run of a date would read and replace, how the listing differs from its manifest, and which later dates read its silver; reads no blob.

use chrono::NaiveDate;

use super::cli::PlanArgs;
use super::load_job;
use super::output::{emit, failed_report};
use crate::lake::manifest::{diff, Place, Read};
use crate::report::plan::{Archived, PlanBlob, PlanManifest, PlanReport};
use crate::report::Status;
use crate::run::site::Site;
use crate::stages::source::tier::{self, BlobTier, Tiers};
use crate::stages::source::{Listing, Window};
use crate::Error;

/// What a plan found: the listing, its tiers, the rehydrations it asked for, the manifest.
struct Found {
    job: crate::config::job::Job,
    listing: Listing,
    tiers: Option<Vec<BlobTier>>,
    requested: Vec<String>,
    manifest: PlanManifest,
    /// Columns the run would add to `telemetry` (schema drift).
    adds_columns: Vec<String>,
    /// The later dates that read the date's silver.
    dependents: Vec<NaiveDate>,
}

pub async fn command(args: PlanArgs) -> i32 {
    let found = match find(&args).await {
        Ok(found) => found,
        Err(e) => return failed_report(&e, None),
    };
    let report = report_of(&found, args.date);
    let archived: Vec<&BlobTier> = found
        .tiers
        .iter()
        .flatten()
        .filter(|t| t.is_archived())
        .collect();
    let code = match (archived.is_empty(), args.rehydrate) {
        (true, _) => Status::Succeeded.exit_code(),
        (false, rehydrate) => {
            let date = args.date.to_string();
            eprintln!("coldpath: {}", tier::archived_message(&date, &archived));
            if rehydrate {
                eprintln!(
                    "coldpath: rehydration requested for {} blob(s) now; the others were already rehydrating. Run `plan --rehydrate` again later: it exits 0 once none is archived",
                    found.requested.len()
                );
            }
            // Rehydrating: a failure a retry cures, once the blobs are back online.
            if rehydrate {
                Status::Failed.exit_code()
            } else {
                Status::Succeeded.exit_code()
            }
        }
    };
    emit(&report, code, None)
}

async fn find(args: &PlanArgs) -> Result<Found, Error> {
    let job = load_job(&args.job, None, None)?;
    let site = Site::open(&job)?;
    let listing = site.list(&job, args.date).await?;
    let tiers = site.tiers(&listing).await;
    let requested = if args.rehydrate {
        rehydrate(&site, tiers.as_deref().unwrap_or_default(), args).await?
    } else {
        Vec::new()
    };
    let manifest = manifest_of(&site, args.date, &listing).await?;
    let adds_columns =
        crate::run::drift::columns_to_add(&site.lake, &job.schema, &job.drift).await?;
    let dependents = crate::run::dependents::in_lake(
        &site.lake,
        args.date,
        crate::run::dependents::declared_hours(&job),
    )
    .await?;
    Ok(Found {
        adds_columns,
        dependents,
        job,
        listing,
        tiers,
        requested,
        manifest,
    })
}

/// Asks Azure for the archived blobs not yet rehydrating; returns their paths.
async fn rehydrate(site: &Site, tiers: &[BlobTier], args: &PlanArgs) -> Result<Vec<String>, Error> {
    let pending: Vec<_> = tiers
        .iter()
        .filter(|t| t.is_archived() && t.archive_status.is_none())
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    // Archived blobs are only found where tiers were read: an Azure source, with a client.
    let Some(client) = Tiers::for_source(&site.storage)? else {
        return Ok(Vec::new());
    };
    let mut requested = Vec::new();
    for blob in pending {
        client
            .rehydrate(&blob.path, args.rehydrate_priority)
            .await?;
        requested.push(blob.path.clone());
    }
    Ok(requested)
}

/// How the listing differs from the date's manifest (what its last run read).
async fn manifest_of(
    site: &Site,
    date: NaiveDate,
    listing: &Listing,
) -> Result<PlanManifest, Error> {
    let state = |state| PlanManifest {
        state,
        why: None,
        run_id: None,
        written_at: None,
        diff: None,
    };
    Ok(match Place::for_lake(&site.lake)?.read(date).await? {
        Read::Missing if crate::run::dependents::was_run_in_lake(&site.lake, date).await? => {
            PlanManifest {
                why: Some(crate::run::catchup::NO_MANIFEST.into()),
                ..state("manifest_missing")
            }
        }
        Read::Missing => state("never_run"),
        Read::Unknown(why) => PlanManifest {
            why: Some(why),
            ..state("manifest_unreadable")
        },
        Read::Found(m) => {
            let d = diff(&m, listing);
            let changed = if d.is_empty() { "unchanged" } else { "changed" };
            PlanManifest {
                run_id: Some(m.run_id),
                written_at: Some(m.written_at.to_rfc3339()),
                diff: Some(d),
                ..state(changed)
            }
        }
    })
}

fn report_of(found: &Found, date: NaiveDate) -> PlanReport {
    let Found {
        job,
        listing,
        tiers,
        requested,
        manifest,
        adds_columns,
        dependents,
    } = found;
    let tier_of = |i: usize| tiers.as_ref().and_then(|t| t.get(i));
    let archived: Vec<&BlobTier> = tiers.iter().flatten().filter(|t| t.is_archived()).collect();
    // The features' look-back: the previous date's silver from D 00:00 - 5 h.
    let lookback_start =
        chrono::DateTime::from_timestamp_micros(crate::stages::features::lookback_start_us(date))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
    let previous = date.pred_opt().unwrap_or(date);
    PlanReport {
        job: job.name.clone(),
        date: date.to_string(),
        source: job.source.clone(),
        lake: job.lake.clone(),
        prefixes: listing.prefixes.clone(),
        blobs: listing
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| PlanBlob {
                path: b.path.clone(),
                bytes: b.size,
                partition_start: b.partition.start.to_rfc3339(),
                window: match b.window {
                    Window::Own => "own",
                    Window::LookAhead => "look_ahead",
                },
                tier: tier_of(i).and_then(|t| t.tier.clone()),
                archive_status: tier_of(i).and_then(|t| t.archive_status.clone()),
            })
            .collect(),
        archived: Archived {
            blobs: archived.len(),
            bytes: archived.iter().map(|t| t.bytes).sum(),
            rehydration_requested: requested.clone(),
        },
        blob_count: listing.blobs.len(),
        bytes: listing.blobs.iter().map(|b| b.size).sum(),
        ignored: listing.ignored.clone(),
        replaces: crate::lake::all_tables()
            .iter()
            .filter(|t| t.name != "expectations" || !job.expectations.is_empty())
            .map(|t| format!("{}: {}={date}", t.name, t.partition))
            .collect(),
        reads_back: format!("telemetry: event_date={previous} from {lookback_start}"),
        dependents: dependents.iter().map(NaiveDate::to_string).collect(),
        manifest: manifest.clone(),
        adds_columns: adds_columns.clone(),
    }
}
