#!/usr/bin/env python3
"""Prints the side-by-side table of a benchmark invocation: for each tool, every run's wall
time and peak RSS (GNU time's `%e %M` files), their medians, and the ratios of each
baseline's median wall time to coldpath's (above 1: coldpath is faster).

    python3 bench/compare.py coldpath=RUN1.time,RUN2.time,... duckdb=D1.time,... [python=P.time]

The first tool is the one the others are compared with.
"""
import statistics
import sys


def read(path):
    # GNU time's last line: a run that exits non-zero (3, the gate) gets a line before it.
    wall, rss_kib = open(path).read().splitlines()[-1].split()[:2]
    return float(wall), int(rss_kib) / 1024  # s, MiB


tools = []
for arg in sys.argv[1:]:
    name, _, files = arg.partition("=")
    runs = [read(f) for f in files.split(",") if f]
    if runs:
        tools.append((name, runs))
if not tools:
    sys.exit("usage: compare.py NAME=FILE[,FILE...] ...")

print(f"{'tool':<10}{'runs':>5}{'median wall s':>15}{'median peak RSS':>17}   each run (wall s / peak MiB)")
medians = {}
for name, runs in tools:
    wall = statistics.median(w for w, _ in runs)
    rss = statistics.median(r for _, r in runs)
    medians[name] = (wall, rss)
    each = ", ".join(f"{w:.2f}/{r:,.0f}" for w, r in runs)
    print(f"{name:<10}{len(runs):>5}{wall:>15.2f}{rss / 1024:>13.2f} GiB   {each}")
base, (bw, br) = tools[0][0], medians[tools[0][0]]
for name, (w, r) in list(medians.items())[1:]:
    print(f"ratio {name} / {base}: wall {w / bw:.2f} (>1: {base} faster), peak RSS {r / br:.2f}")
