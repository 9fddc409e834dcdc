#!/usr/bin/env bash
# The long fuzz runs: each target for RUNS inputs (default 10 million) or
# SECONDS_MAX seconds, whichever comes first, two at a time; prints
# libFuzzer's final figures per target. Run from anywhere:
#   bash fuzz/run-all.sh [RUNS] [SECONDS_MAX]
set -uo pipefail
cd "$(dirname "$0")"
runs="${1:-10000000}"
seconds="${2:-3600}"
cargo +nightly fuzz build -s none >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
one() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  local started=$SECONDS
  "$bin/$t" "corpus/$t" "seeds/$t" -runs="$runs" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    > "artifacts/$t.log" 2>&1
  local rc=$?
  local execs speed
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "artifacts/$t.log" | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "artifacts/$t.log" | grep -o '[0-9]*$')
  local found
  found=$(find "artifacts/$t" -type f | wc -l)
  echo "$t: exit $rc, ${execs:-?} inputs in $((SECONDS - started)) s (${speed:-?}/s), ${found} crash/timeout/oom artifacts"
}
# Slowest first in the second lane, so the lanes end together.
(for t in events knowledge contract verify dashboard; do one "$t"; done) &
(for t in cedar traces prices actions; do one "$t"; done) &
wait
