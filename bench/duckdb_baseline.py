#!/usr/bin/env python3
"""The DuckDB baseline for the benchmark (issue 18): a silver-only pass for one date,
written the way a DuckDB user would (pip install duckdb; nothing else).

It reads the date's blobs (`telemetry/{yyyy}/{MM}/{dd}/*/*.json`, the bench
generator's layout: newline-delimited JSON objects) with `read_json`, casts the
fields to silver's types, keeps the earliest enqueued copy of each message id with
`row_number()`, and writes one Parquet file. Much less than `coldpath run` does, so
the comparison flatters DuckDB:

  - no look-ahead hours (a late reading in the next date's folders is missed), no
    filter to the date's event times (readings of other dates stay in);
  - no rejects: a line that is not a whole JSON object is skipped silently
    (`ignore_errors`), a missing device id or an out-of-range value stays in, a bad
    timestamp becomes null;
  - no features_hourly, no telemetry_minute, no rejects table, no Delta log, no lock.

DuckDB's own settings are left at their defaults (all cores, 80 % of RAM), except
that its time zone is UTC so that TIMESTAMPTZ values are read and written as UTC.

    python3 bench/duckdb_baseline.py --source DIR --out FILE.parquet --date 2024-03-11

Prints one JSON line: the rows written and the time of the pass (the process's wall
time, including Python's start and `import duckdb`, is what bench/run.sh measures).
"""
import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timezone

try:
    import duckdb
except ImportError:
    sys.exit("duckdb_baseline.py: the Python package `duckdb` is missing: pip install duckdb")

# The generator's fields, read as text where silver wants a timestamp so that the cast
# is ours (Stream Analytics writes 7 fractional digits and a Z).
COLUMNS = {
    "deviceId": "VARCHAR",
    "deviceType": "VARCHAR",
    "timestamp": "VARCHAR",
    "temperature": "DOUBLE",
    "pressure": "DOUBLE",
    "vibration": "DOUBLE",
    "priority": "VARCHAR",
    "messageId": "VARCHAR",
    "EventEnqueuedUtcTime": "VARCHAR",
}


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True, help="the raw container (holds telemetry/)")
    ap.add_argument("--out", required=True, help="the Parquet file to write (replaced)")
    ap.add_argument("--date", required=True)
    a = ap.parse_args()
    day = date.fromisoformat(a.date)
    glob = os.path.join(a.source, f"telemetry/{day:%Y/%m/%d}/*/*.json")
    run_id = f"duckdb-{int(time.time())}"
    ingested_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    if os.path.exists(a.out):
        os.remove(a.out)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)

    t0 = time.monotonic()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in COLUMNS.items()) + "}"
    query = f"""
    COPY (
        SELECT
            deviceId AS device_id,
            deviceType AS device_type,
            TRY_CAST("timestamp" AS TIMESTAMPTZ) AS event_time,
            temperature, pressure, vibration, priority,
            messageId AS message_id,
            TRY_CAST(EventEnqueuedUtcTime AS TIMESTAMPTZ) AS enqueued_time,
            filename AS source_file,
            TIMESTAMPTZ {sql_str(ingested_at)} AS ingested_at,
            {sql_str(run_id)} AS run_id,
            CAST(TRY_CAST("timestamp" AS TIMESTAMPTZ) AS DATE) AS event_date
        FROM read_json({sql_str(glob)}, format = 'newline_delimited', columns = {columns},
                       filename = true, ignore_errors = true)
        QUALIFY row_number() OVER (
            PARTITION BY coalesce(messageId, deviceId || '|' || "timestamp")
            ORDER BY TRY_CAST(EventEnqueuedUtcTime AS TIMESTAMPTZ) NULLS LAST) = 1
    ) TO {sql_str(a.out)} (FORMAT parquet, COMPRESSION snappy)
    """
    written = con.execute(query).fetchone()[0]
    total = time.monotonic() - t0
    print(json.dumps({"date": a.date, "rows_written": written, "total_s": round(total, 3),
                      "duckdb": duckdb.__version__}))


if __name__ == "__main__":
    main()
