//! The labels' watermark: the cut-off through which a label refresh last
//! settled every date, so the next one takes every date settled since.
//!
//! Why: a date's labels all settle (become `true` or `false`) once its last
//! hour's horizon is over and the failure log has been written after that
//! ([`crate::stages::features::reference`]: the labels' cut-off is the earlier of
//! `--labels-as-of` and the log's last write). A log written only when
//! something fails can stand still for weeks, then jump: the dates that settled
//! over the jump were never the newest few at any catch-up, and a refresh of
//! only those would leave their labels null for good. `catchup
//! --refresh-labels` records here the cut-off it settled through
//! (`_coldpath/labels/settled.json`), and the next one refreshes every date
//! settled between that and its own ([`crate::run::catchup::settling`]).

use chrono::{DateTime, Utc};

use super::manifest::Place;
use super::Lake;

const DIR: &str = "_coldpath/labels";
const NAME: &str = "settled.json";

fn place(lake: &Lake) -> Result<Place, String> {
    Place::in_lake(lake, DIR).map_err(|e| e.to_string())
}

fn about(e: String) -> String {
    format!("{DIR}/{NAME}: {e}")
}

/// The cut-off the last label refresh settled through; `None` before the first.
pub async fn read(lake: &Lake) -> Result<Option<DateTime<Utc>>, String> {
    let Some(bytes) = place(lake)?.get(NAME).await.map_err(about)? else {
        return Ok(None);
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| about(e.to_string()))?;
    doc["settled_through"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|at| Some(at.with_timezone(&Utc)))
        .ok_or_else(|| about("no settled_through time".to_string()))
}

/// Records that every date settled by `through` was refreshed (by run `run_id`).
pub async fn write(lake: &Lake, through: DateTime<Utc>, run_id: &str) -> Result<(), String> {
    let body = serde_json::json!({
        "settled_through": through.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "run_id": run_id,
    });
    place(lake)?
        .put(NAME, body.to_string().into_bytes(), run_id)
        .await
        .map_err(about)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn none_before_the_first_then_what_was_written() {
        let (_dir, lake) = crate::lake::leftovers::tests::local_lake();
        assert_eq!(read(&lake).await.unwrap(), None);
        let at: DateTime<Utc> = "2024-03-27T00:00:00.000001Z".parse().unwrap();
        write(&lake, at, "run-1").await.unwrap();
        assert_eq!(read(&lake).await.unwrap(), Some(at));
    }
}
