#!/usr/bin/env python3
"""Prints a benchmark run's report as a table: per stage wall time, rows/s, MB/s, and the
process's peak RSS at the stage's end; then the whole run as GNU time saw it.

    python3 bench/summarize.py RUN_REPORT.json RUN.time
"""
import json
import sys

report = json.load(open(sys.argv[1]))
# GNU time's last line: a run that exits non-zero (3, the gate) gets a line before it.
wall, rss_kib = open(sys.argv[2]).read().splitlines()[-1].split()[:2]
rows = report["records_read"]
mb = report["blobs"]["bytes"] / 1e6
peaks = dict(report.get("peak_rss_mb", []))
d = report["durations"]
print(f"date {report['date']}: {rows:,} records read, {report['rows_written']:,} rows written, "
      f"{report['rejected']:,} rejected, {report['duplicates']:,} duplicates, "
      f"{report['other_dates']:,} other dates; {report['blobs']['read']} blobs, {mb:,.0f} MB")
print(f"{'stage':<10}{'wall s':>9}{'rows/s':>14}{'MB/s':>9}{'peak RSS MiB':>14}")
for stage in ["lock", "list", "read", "dedup", "features", "write"]:
    ms = d.get(f"{stage}_ms", 0)
    s = ms / 1000
    rate = f"{rows / s:,.0f}" if s > 0 else "-"
    mbs = f"{mb / s:,.0f}" if s > 0 else "-"
    print(f"{stage:<10}{s:>9.2f}{rate:>14}{mbs:>9}{peaks.get(stage, ''):>14}")
total = d["total_ms"] / 1000
print(f"{'total':<10}{total:>9.2f}{rows / total:>14,.0f}{mb / total:>9,.0f}")
print(f"process (GNU time): wall {float(wall):.2f} s, peak RSS {int(rss_kib) // 1024} MiB, "
      f"status {report['status']}")
