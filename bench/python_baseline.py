#!/usr/bin/env python3
"""The obvious alternative to coldpath, for the benchmark: one nightly run for a date
in plain Python with polars and the deltalake package (pip install polars deltalake).

It does the same job as `coldpath run` on a Stream Analytics container
(`telemetry/{yyyy}/{MM}/{dd}/{HH}/*.json`): read the date's hours plus the 2-hour
look-ahead, parse and type the fields, reject rows that break a rule (missing id,
bad timestamp, out of range, other dates), deduplicate by message id keeping the
earliest enqueued copy, compute features_hourly with the 6-hour look-back into the
previous date's silver partition, and replace the date's partitions of the three
Delta tables. It is written the way a data engineer would first write it: Polars'
own NDJSON reader (which skips a line it cannot parse without saying which), whole
frames in memory.

    python3 bench/python_baseline.py --source DIR --lake DIR --date 2024-03-11
"""
import argparse
import glob
import json
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone

import polars as pl
from deltalake import DeltaTable, write_deltalake

UTC = timezone.utc
RANGES = {"temperature": (-40, 150), "pressure": (0, 1000), "vibration": (0, 500)}
SCHEMA = {
    "deviceId": pl.String, "deviceType": pl.String, "timestamp": pl.String,
    "temperature": pl.Float64, "pressure": pl.Float64, "vibration": pl.Float64,
    "priority": pl.String, "messageId": pl.String, "EventEnqueuedUtcTime": pl.String,
}
TS = "%Y-%m-%dT%H:%M:%S%.fZ"


def files_for(source, day, late_hours=2):
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out = []
    for h in range(24 + late_hours):
        t = start + timedelta(hours=h)
        for path in sorted(glob.glob(os.path.join(source, f"telemetry/{t:%Y/%m/%d/%H}/*.json"))):
            out.append((path, h >= 24))
    return out


def parse_ts(col):
    return pl.col(col).str.to_datetime(TS, time_unit="us", time_zone="UTC", strict=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--date", required=True)
    a = ap.parse_args()
    day = date.fromisoformat(a.date)
    run_id = f"py-{int(time.time())}"
    stages = {}
    t0 = time.monotonic()

    files = files_for(a.source, day)
    frames = []
    for path, ahead in files:
        # read_ndjson stops at the first cut line even with ignore_errors, so lines are read
        # as text, the ones that cannot be whole JSON objects dropped, and the rest decoded.
        text = pl.read_csv(path, has_header=False, separator="\x01", quote_char=None,
                           new_columns=["text"], schema_overrides={"text": pl.String})
        df = (text.with_row_index("line", offset=1)
              .filter(pl.col("text").str.ends_with("}"))
              .select("line", pl.col("text").str.json_decode(pl.Struct(SCHEMA)).alias("r"))
              .unnest("r"))
        rel = os.path.relpath(path, a.source)
        frames.append(df.with_columns(pl.lit(rel).alias("source_file"), pl.lit(ahead).alias("ahead"),
                                      pl.col("line").cast(pl.Int64)))
    raw = pl.concat(frames)
    stages["read"] = time.monotonic() - t0

    t = time.monotonic()
    typed = raw.select(
        pl.col("deviceId").alias("device_id"), pl.col("deviceType").alias("device_type"),
        parse_ts("timestamp").alias("event_time"), "temperature", "pressure", "vibration",
        "priority", pl.col("messageId").alias("message_id"),
        parse_ts("EventEnqueuedUtcTime").alias("enqueued_time"), "source_file", "line", "ahead",
        pl.col("timestamp").alias("raw_ts"),
    )
    reason = (
        pl.when(pl.col("device_id").is_null()).then(pl.lit("missing_device_id"))
        .when(pl.col("event_time").is_null()).then(pl.lit("invalid_timestamp"))
    )
    for c, (lo, hi) in RANGES.items():
        reason = reason.when(~pl.col(c).is_between(lo, hi) & pl.col(c).is_not_null()).then(pl.lit("out_of_range"))
    typed = typed.with_columns(reason.otherwise(None).alias("reason"))
    own_day = pl.col("event_time").dt.date() == day
    rejects = typed.filter(pl.col("reason").is_not_null() & ~pl.col("ahead"))
    good = typed.filter(pl.col("reason").is_null() & own_day)
    stages["normalize"] = time.monotonic() - t

    t = time.monotonic()
    key = pl.coalesce(pl.col("message_id"),
                      pl.col("device_id") + pl.lit("|") + pl.col("event_time").cast(pl.String))
    silver = (good.with_columns(key.alias("_key"))
              .sort(["enqueued_time", "source_file", "line"], nulls_last=True)
              .unique(subset=["_key"], keep="first", maintain_order=False)
              .drop("_key", "line", "ahead", "reason", "raw_ts")
              .with_columns(pl.lit(datetime.now(UTC)).dt.cast_time_unit("us").alias("ingested_at"),
                            pl.lit(run_id).alias("run_id"),
                            pl.col("event_time").dt.date().alias("event_date")))
    stages["dedup"] = time.monotonic() - t

    t = time.monotonic()
    prev_day = day - timedelta(days=1)
    tel_path = os.path.join(a.lake, "telemetry")
    prev = None
    if os.path.exists(os.path.join(tel_path, "_delta_log")):
        prev = pl.from_arrow(DeltaTable(tel_path).to_pyarrow_table(
            filters=[("event_date", "=", prev_day)],
            columns=["device_id", "device_type", "event_time", "temperature", "vibration"]))
    cols = ["device_id", "device_type", "event_time", "temperature", "pressure", "vibration"]
    both = pl.concat([prev.select(cols[:4] + ["vibration"]).with_columns(pl.lit(None, pl.Float64).alias("pressure")).select(cols),
                      silver.select(cols)]) if prev is not None and prev.height else silver.select(cols)
    both = both.with_columns(pl.col("event_time").dt.truncate("1h").alias("window_start"))
    parts = (both.group_by("device_id", "window_start")
             .agg(pl.len().alias("n"), pl.col("temperature").count().alias("tn"),
                  pl.col("temperature").sum().alias("ts"), (pl.col("temperature") ** 2).sum().alias("tq"),
                  pl.col("vibration").count().alias("vn"), pl.col("vibration").sum().alias("vs"),
                  (pl.col("vibration") ** 2).sum().alias("vq"))
             .sort("device_id", "window_start"))
    roll = parts.rolling(index_column="window_start", period="6h", group_by="device_id").agg(
        pl.col("tn").sum(), pl.col("ts").sum(), pl.col("tq").sum(),
        pl.col("vn").sum(), pl.col("vs").sum(), pl.col("vq").sum())
    roll = roll.with_columns(
        (pl.col("ts") / pl.col("tn")).alias("temp_rolling_mean_6h"),
        ((pl.col("tq") - pl.col("ts") ** 2 / pl.col("tn")) / (pl.col("tn") - 1)).sqrt().alias("temp_rolling_std_6h"),
        ((pl.col("vq") - pl.col("vs") ** 2 / pl.col("vn")) / (pl.col("vn") - 1)).sqrt().alias("vibration_rolling_std_6h"),
    ).select("device_id", "window_start", "temp_rolling_mean_6h", "temp_rolling_std_6h", "vibration_rolling_std_6h")
    today = both.filter(pl.col("window_start").dt.date() == day).join(roll, on=["device_id", "window_start"])
    feats = today.group_by("device_id", "window_start").agg(
        pl.col("device_type").drop_nulls().last(), pl.len().alias("reading_count"),
        pl.col("temperature").mean().alias("temp_mean"), pl.col("temperature").min().alias("temp_min"),
        pl.col("temperature").max().alias("temp_max"), pl.col("temperature").std().alias("temp_std"),
        pl.col("pressure").mean().alias("pressure_mean"), pl.col("vibration").mean().alias("vibration_mean"),
        pl.col("vibration").std().alias("vibration_std"), pl.col("vibration").max().alias("vibration_max"),
        pl.col("temp_rolling_mean_6h").first(), pl.col("temp_rolling_std_6h").first(),
        pl.col("vibration_rolling_std_6h").first(),
        ((pl.col("temperature") - pl.col("temp_rolling_mean_6h")).abs() > 3 * pl.col("temp_rolling_std_6h"))
        .sum().alias("temp_spike_count"),
    ).with_columns(
        pl.col("window_start").dt.hour().cast(pl.Int32).alias("hour"),
        (pl.col("window_start").dt.weekday() - 1).cast(pl.Int32).alias("day_of_week"),
        pl.when((pl.col("vibration_mean") > 50) & (pl.col("vibration_std") > 10)).then(pl.lit("CRITICAL"))
        .when((pl.col("vibration_mean") > 40) & (pl.col("vibration_std") > 5)).then(pl.lit("WARNING"))
        .otherwise(pl.lit("NORMAL")).alias("maintenance_status"),
        pl.lit(prev is not None and prev.height > 0).alias("lookback_complete"),
        pl.col("window_start").dt.date().alias("feature_date"),
    )
    maint = pl.read_csv(os.path.join(a.source, "reference/maintenance.csv"), try_parse_dates=True)
    fails = pl.read_csv(os.path.join(a.source, "reference/failures.csv"))
    fails = fails.with_columns(parse_ts("failure_time").alias("failure_time"))
    last_maint = (maint.filter(pl.col("maintenance_date") <= day).group_by("device_id")
                  .agg(pl.col("maintenance_date").max()))
    feats = feats.join(last_maint, on="device_id", how="left").with_columns(
        (pl.lit(day) - pl.col("maintenance_date")).dt.total_days().alias("days_since_maintenance")
    ).drop("maintenance_date")
    for days in (7, 14):
        hit = (feats.select("device_id", "window_start").join(fails, on="device_id")
               .filter((pl.col("failure_time") > pl.col("window_start"))
                       & (pl.col("failure_time") <= pl.col("window_start") + pl.duration(days=days)))
               .select("device_id", "window_start").unique().with_columns(pl.lit(True).alias(f"failure_within_{days}d")))
        feats = feats.join(hit, on=["device_id", "window_start"], how="left").with_columns(
            pl.col(f"failure_within_{days}d").fill_null(False))
    stages["features"] = time.monotonic() - t

    t = time.monotonic()
    d = day.isoformat()
    write_deltalake(tel_path, silver.to_arrow(), mode="overwrite", partition_by=["event_date"],
                    predicate=f"event_date = '{d}'")
    write_deltalake(os.path.join(a.lake, "features_hourly"), feats.to_arrow(), mode="overwrite",
                    partition_by=["feature_date"], predicate=f"feature_date = '{d}'")
    rej = rejects.select(pl.lit(day).alias("run_date"), "source_file", "line", "reason",
                         pl.lit("").alias("detail"), pl.col("raw_ts").alias("raw"), pl.lit(run_id).alias("run_id"))
    write_deltalake(os.path.join(a.lake, "rejects"), rej.to_arrow(), mode="overwrite",
                    partition_by=["run_date"], predicate=f"run_date = '{d}'")
    stages["write"] = time.monotonic() - t
    stages["total"] = time.monotonic() - t0
    print(json.dumps({"records_read": raw.height, "rows_written": silver.height,
                      "rejected": rejects.height, "features": feats.height,
                      "seconds": {k: round(v, 2) for k, v in stages.items()}}))


if __name__ == "__main__":
    sys.exit(main())
