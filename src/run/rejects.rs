//! The date's rejects as a pass gathers them: counted as they come (the
//! report's figures, each device's share for `device_health`), held in memory
//! up to a bound, and past it spilled to an unnamed local file
//! ([`crate::run::spill`]), so that a night on which most records are rejected
//! (an expectation that drops every row, a day of garbage) holds the bound, not
//! what it read. The `rejects` commit, the run's last, streams the spilled
//! batches back. They are held as records, not batches (a record is cheaper
//! than its row, and they are sorted before they become rows): spilled rejects
//! are sorted by blob and line within each spilled part; held ones are sorted
//! whole, so a date under the bound keeps them in blob and line order.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use polars::prelude::*;
use tracing::{debug, warn};

use crate::error::Error;
use crate::lake;
use crate::run::spill::{Rows, SpillFile};
use crate::stages::normalize::Reject;

/// What the date's rejects hold in memory at most: this share of `[limits]
/// memory` (64 MiB of the default 2 GiB), counted as their text plus the
/// record's own size. Rejects are added a blob's at a time (at most 10,000,
/// their raw text cut at 4 KiB) or a checked slice of an hour's rows at a time
/// (`run/expect.rs`, 256 Ki rows), so the bound can be passed by that much
/// before they are spilled.
pub const HELD_SHARE_OF_MEMORY: u64 = 32;

/// Rejects in each batch of the spill file: what a spill copies at once, and
/// what its commit reads back at once.
const SPILL_ROWS: usize = 8 * 1024;

/// The rejects a pass has gathered so far.
pub struct Rejects {
    held: Vec<Reject>,
    held_bytes: u64,
    limit: u64,
    spill: Option<SpillFile>,
    by_reason: BTreeMap<&'static str, u64>,
    by_device: HashMap<String, u64>,
    /// Devices [`Rejects::by_device`] names at most (`[limits] devices`): a
    /// reject's device id is input, and a night of rejects naming a new id each
    /// must not grow the map with the night.
    max_devices: usize,
    /// Rejects naming a device past `max_devices`: counted, not attributed.
    unattributed: u64,
    /// `source_file` by blob index, and the columns every row shares.
    paths: Vec<String>,
    date: NaiveDate,
    run_id: String,
}

impl Rejects {
    /// Nothing gathered; held up to `memory` / [`HELD_SHARE_OF_MEMORY`].
    pub fn new(memory: u64, paths: Vec<String>, date: NaiveDate, run_id: &str) -> Rejects {
        Rejects {
            held: Vec::new(),
            held_bytes: 0,
            limit: memory / HELD_SHARE_OF_MEMORY,
            spill: None,
            by_reason: BTreeMap::new(),
            by_device: HashMap::new(),
            max_devices: crate::config::formats::DEFAULT_MAX_DEVICES as usize,
            unattributed: 0,
            paths,
            date,
            run_id: run_id.to_string(),
        }
    }

    /// Attributes rejects to at most `devices` distinct devices.
    pub fn with_max_devices(mut self, devices: u64) -> Rejects {
        self.max_devices = usize::try_from(devices).unwrap_or(usize::MAX);
        self
    }

    /// Counts and keeps `rejects`; spills what is held once it passes the bound.
    pub fn add(&mut self, rejects: Vec<Reject>) -> Result<(), Error> {
        for r in &rejects {
            *self.by_reason.entry(r.reason.as_str()).or_default() += 1;
            if let Some(device) = &r.device {
                self.attribute(device);
            }
            self.held_bytes += held_size(r);
        }
        self.held.extend(rejects);
        if self.held_bytes > self.limit {
            self.spill_held()?;
        }
        Ok(())
    }

    fn attribute(&mut self, device: &str) {
        if let Some(n) = self.by_device.get_mut(device) {
            *n += 1;
        } else if self.by_device.len() < self.max_devices {
            self.by_device.insert(device.to_string(), 1);
        } else {
            if self.unattributed == 0 {
                warn!(
                    devices = self.max_devices,
                    "rejects name more devices than limits.devices: the rejects of further devices are counted, not attributed to them in device_health"
                );
            }
            self.unattributed += 1;
        }
    }

    /// Rejects that named a device past [`Rejects::with_max_devices`].
    #[cfg(test)]
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// Every reject gathered.
    pub fn count(&self) -> u64 {
        self.by_reason.values().sum()
    }

    /// Rejects per reason.
    pub fn by_reason(&self) -> &BTreeMap<&'static str, u64> {
        &self.by_reason
    }

    /// Rejects per device, for those that named one.
    pub fn by_device(&self) -> &HashMap<String, u64> {
        &self.by_device
    }

    /// Ends the gathering: the held rejects as one batch (in blob and line
    /// order), or, once anything was spilled, the rest spilled too and the
    /// file ready to read back.
    pub fn finish(mut self) -> Result<Rows, Error> {
        if self.spill.is_some() && !self.held.is_empty() {
            self.spill_held()?;
        }
        match self.spill.take() {
            Some(file) => Ok(Rows::Spilled(file.finish()?)),
            None => {
                let held = self.take_held();
                Ok(Rows::Batches(vec![self.batch_of(&held)?]))
            }
        }
    }

    /// The held rejects, in blob and line order; none held after.
    fn take_held(&mut self) -> Vec<Reject> {
        let mut held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        held.sort_by_key(|r| (r.blob, r.line));
        held
    }

    /// `rejects` as a batch of the `rejects` table.
    fn batch_of(&self, rejects: &[Reject]) -> Result<RecordBatch, Error> {
        let mut frame = rejects_frame(rejects, &self.paths, self.date, &self.run_id)
            .map_err(Error::polars("rejects"))?;
        Ok(lake::to_record_batch(&lake::rejects_table(), &mut frame)?)
    }

    /// Writes what is held to the spill file, [`SPILL_ROWS`] at a time.
    fn spill_held(&mut self) -> Result<(), Error> {
        let held = self.take_held();
        for part in held.chunks(SPILL_ROWS) {
            let batch = self.batch_of(part)?;
            SpillFile::write_to(&mut self.spill, "rejects", &batch, self.limit)?;
        }
        debug!(
            rows = held.len(),
            spilled = self.spill.as_ref().map_or(0, SpillFile::rows),
            "a part of the rejects spilled"
        );
        Ok(())
    }
}

/// A reject's size in memory: the record and the text it owns.
fn held_size(r: &Reject) -> u64 {
    let text = r.raw.len() + r.detail.len() + r.device.as_ref().map_or(0, String::len);
    (std::mem::size_of::<Reject>() + text) as u64
}

/// The rejects of the date's own partitions as a frame of the `rejects` table.
fn rejects_frame(
    rejects: &[Reject],
    paths: &[String],
    date: NaiveDate,
    run_id: &str,
) -> PolarsResult<DataFrame> {
    let n = rejects.len();
    let run_date = crate::calendar::date_column("run_date", date, n);
    DataFrame::new_infer_height(vec![
        run_date,
        Column::new(
            "source_file".into(),
            rejects
                .iter()
                .map(|r| paths.get(r.blob as usize).map(String::as_str))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "line".into(),
            rejects
                .iter()
                .map(|r| r.line.map(|l| l as i64))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "reason".into(),
            rejects
                .iter()
                .map(|r| r.reason.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "detail".into(),
            rejects
                .iter()
                .map(|r| r.detail.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "raw".into(),
            rejects.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>(),
        ),
        Column::new("run_id".into(), vec![run_id; n]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::normalize::Reason;
    use deltalake::arrow::array::{Array, Int64Array, StringArray};

    fn reject(blob: u32, line: u64, raw_len: usize) -> Reject {
        Reject {
            blob,
            line: Some(line),
            reason: if line.is_multiple_of(3) {
                Reason::MalformedRecord
            } else {
                Reason::FailedExpectation
            },
            detail: format!("d{line}"),
            raw: format!("{blob}:{line}:{}", "x".repeat(raw_len)),
            device: line.is_multiple_of(2).then(|| format!("dev{}", line % 4)),
        }
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()
    }

    /// (source_file, line, reason, detail, raw) of every row of `batches`, in their order.
    fn rows(batches: &[RecordBatch]) -> Vec<(String, i64, String, String, String)> {
        let mut out = Vec::new();
        for b in batches {
            let s = |name: &str| {
                b.column_by_name(name)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (file, reason, detail, raw) =
                (s("source_file"), s("reason"), s("detail"), s("raw"));
            let line = b.column_by_name("line").unwrap();
            let line = line.as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                assert!(!line.is_null(i));
                out.push((
                    file.value(i).to_string(),
                    line.value(i),
                    reason.value(i).to_string(),
                    detail.value(i).to_string(),
                    raw.value(i).to_string(),
                ));
            }
        }
        out
    }

    fn expected(input: &[Reject]) -> Vec<(String, i64, String, String, String)> {
        input
            .iter()
            .map(|r| {
                (
                    format!("b{}.json", r.blob),
                    r.line.unwrap() as i64,
                    r.reason.as_str().to_string(),
                    r.detail.clone(),
                    r.raw.clone(),
                )
            })
            .collect()
    }

    fn paths() -> Vec<String> {
        (0..4).map(|b| format!("b{b}.json")).collect()
    }

    /// Four blobs' rejects, added a blob at a time, blobs out of order.
    fn input() -> Vec<Vec<Reject>> {
        [2u32, 0, 3, 1]
            .iter()
            .map(|&b| (1..=50).rev().map(|l| reject(b, l, 1_500)).collect())
            .collect()
    }

    #[test]
    fn under_the_bound_the_rejects_are_one_batch_in_blob_and_line_order() {
        let mut rejects = Rejects::new(64 << 20, paths(), date(), "r1");
        let all: Vec<Reject> = input().into_iter().flatten().collect();
        for blob in input() {
            rejects.add(blob).unwrap();
        }
        assert_eq!(rejects.count(), 200);
        // Lines 3, 6, .., 48 of four blobs are malformed; the rest failed an expectation.
        assert_eq!(rejects.by_reason()["malformed_record"], 4 * 16);
        assert_eq!(rejects.by_reason()["failed_expectation"], 200 - 4 * 16);
        // Even lines name dev0 (lines 4, 8, ..) or dev2 (2, 6, ..): 12 and 13 a blob.
        assert_eq!(rejects.by_device()["dev0"], 4 * 12);
        assert_eq!(rejects.by_device()["dev2"], 4 * 13);
        assert_eq!(rejects.by_device().len(), 2);
        let Rows::Batches(batches) = rejects.finish().unwrap() else {
            panic!("2 MiB holds 200 rejects of 1.6 KB");
        };
        assert_eq!(batches.len(), 1);
        let mut want = expected(&all);
        want.sort_by_key(|r| (r.0.clone(), r.1));
        assert_eq!(rows(&batches), want);
    }

    #[test]
    fn rejects_are_attributed_to_at_most_the_limit_of_devices() {
        let mut rejects = Rejects::new(64 << 20, paths(), date(), "r1").with_max_devices(2);
        // Devices a, b, c, a, c, b, d: a and b come first and are attributed
        // every time; c and d come when two are already named.
        let ids = ["a", "b", "c", "a", "c", "b", "d"];
        let input = || -> Vec<Reject> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| Reject {
                    device: Some(id.to_string()),
                    ..reject(0, i as u64 + 1, 10)
                })
                .collect()
        };
        rejects.add(input()).unwrap();
        assert_eq!(rejects.count(), 7);
        let by_device: BTreeMap<&str, u64> = rejects
            .by_device()
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(by_device, BTreeMap::from([("a", 2), ("b", 2)]));
        assert_eq!(rejects.unattributed(), 3);
        // At the limit exactly, every device is attributed.
        let mut all = Rejects::new(64 << 20, paths(), date(), "r1").with_max_devices(4);
        all.add(input()).unwrap();
        assert_eq!(all.by_device().len(), 4);
        assert_eq!(all.unattributed(), 0);
    }

    #[test]
    fn over_the_bound_every_reject_is_spilled_once_and_read_back_whole() {
        // 64 KiB held at most: each blob's 50 rejects of about 1.6 KB pass it.
        let memory = 64 * 1024 * HELD_SHARE_OF_MEMORY;
        let mut rejects = Rejects::new(memory, paths(), date(), "r1");
        let mut all = Vec::new();
        for (i, blob) in input().into_iter().enumerate() {
            all.extend(blob.clone());
            rejects.add(blob).unwrap();
            // What is held after an add is never over the bound.
            assert!(rejects.held_bytes <= rejects.limit, "after blob {i}");
            assert!(rejects.held.is_empty(), "after blob {i}");
        }
        // A last few under the bound, held until the end.
        let tail: Vec<Reject> = (51..=53).map(|l| reject(1, l, 10)).collect();
        all.extend(tail.clone());
        rejects.add(tail).unwrap();
        assert_eq!(rejects.held.len(), 3);
        let Rows::Spilled(spilled) = rejects.finish().unwrap() else {
            panic!("64 KiB does not hold 200 rejects of 1.6 KB");
        };
        assert_eq!(spilled.rows(), 203);
        let read = |s: &crate::run::spill::Spilled| {
            s.batches().unwrap().collect::<Result<Vec<_>, _>>().unwrap()
        };
        let batches = read(&spilled);
        // A part per blob, then the held tail: each sorted by line within it.
        assert_eq!(batches.len(), 5);
        let got = rows(&batches);
        let mut want = expected(&all);
        let key = |r: &(String, i64, String, String, String)| (r.0.clone(), r.1);
        for part in [0..50, 50..100, 100..150, 150..200] {
            want[part].sort_by_key(key);
        }
        assert_eq!(got, want);
        // Read again (a commit that streams twice after a conflict): the same rows.
        assert_eq!(rows(&read(&spilled)), want);
        // The table's schema, so the partition writer takes the batches as they are.
        assert_eq!(batches[0].schema(), lake::rejects_table().schema);
    }
}
