#!/usr/bin/env bash
# make bench: every benchmark program under bench/<name>/ (a main package)
# runs once and writes bench/results/<name>.json. Results are ratios and
# rates measured within one run, never compared with fixed wall-clock
# thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
status=0
found=0
for dir in bench/*/; do
  name=$(basename "$dir")
  [ "$name" = results ] && continue
  ls "$dir"*.go >/dev/null 2>&1 || continue
  found=1
  echo "== bench $name"
  if ! go run "./$dir" -out "bench/results/$name.json"; then
    echo "bench $name failed" >&2
    status=1
  fi
done
[ "$found" = 1 ] || echo "no benchmarks yet"
exit $status
