#!/usr/bin/env bash
# Two commands timed in turn (A B A B ...), whole process, with GNU time: each run's
# wall, user and system seconds and peak RSS, then the medians and the ratio A/B of
# each pair's wall and CPU, since a shared machine's speed drifts between pairs.
#
#   bench/ab.sh [-n PAIRS] 'COMMAND_A' 'COMMAND_B'
#
# Each command is one shell string that starts from a clean state of its own
# making. For coldpath, a copy of the lake as the date before left it (what
# `bench/run.sh plant` leaves in $D/lake.prev), for example
#
#   D=~/.cache/coldpath-bench/plant
#   run="run --job $D/job.toml --date 2024-03-11"
#   bench/ab.sh -n 3 \
#     "rm -rf $D/lake && cp -al $D/lake.prev $D/lake && target/release/coldpath $run" \
#     "rm -rf $D/lake && cp -al $D/lake.prev $D/lake && /tmp/coldpath-before $run"
#
# The copy is of hard links, so it takes milliseconds of each run's time: a run
# writes new files and replaces whole ones (rename), never a file in place, so
# the links in $D/lake.prev keep the date before as it was. A full copy (cp -a,
# then sync) of the plant day's 2.3 GB lake took about 3 s of each run.
set -euo pipefail

pairs=3
if [[ "${1:-}" == "-n" ]]; then
  pairs=$2
  shift 2
fi
if [[ $# -ne 2 ]]; then
  echo "usage: bench/ab.sh [-n PAIRS] 'COMMAND_A' 'COMMAND_B'" >&2
  exit 2
fi
command -v /usr/bin/time >/dev/null || { echo "bench/ab.sh needs GNU time (/usr/bin/time)" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((i = 1; i <= pairs; i++)); do
  for side in A B; do
    cmd=$([[ $side == A ]] && echo "$1" || echo "$2")
    /usr/bin/time -f "$side %e %U %S %M" -o "$out.one" bash -c "$cmd" >/dev/null 2>&1 ||
      echo "$side run $i exited non-zero" >&2
    cat "$out.one" >>"$out"
  done
done
rm -f "$out.one"

python3 - "$out" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[:2] in ("A ", "B ")]
runs = {s: [(float(w), float(u) + float(y), int(m) / 1024) for t, w, u, y, m in rows if t == s] for s in "AB"}
print(f"{'':8}{'wall s':>22}{'cpu s':>22}{'peak MiB':>24}   (median, min-max)")
for s in "AB":
    cols = list(zip(*runs[s]))
    print(s.ljust(8) + "".join(
        f"{statistics.median(c):>10.1f} ({min(c):.1f}-{max(c):.1f})".rjust(22) for c in cols))
for k, name in ((0, "wall"), (1, "cpu")):
    r = [a[k] / b[k] for a, b in zip(runs["A"], runs["B"])]
    print(f"A/B {name}: {statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f}), pair by pair")
EOF
