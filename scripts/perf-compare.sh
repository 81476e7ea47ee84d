#!/usr/bin/env bash
# Two builds of Tailor against each other on this machine: the web product
# page (tailor-bench load --scenario web-page) at concurrency 32 and 1, on
# a fresh `tailor up --any-ports --products 10000` stack of each build in
# turn, for several rounds, so that both builds see the same machine. A
# machine like this one drifts by tens of per cent within minutes; one run
# of each build says little, alternating rounds and their medians say it.
#
# Usage: scripts/perf-compare.sh <A> <B> [rounds] [seconds]
#   A and B: git revisions, or directories holding a build's binaries
#   (tailor and the servers, as target/release does)
#   (default 3 rounds of 10 s a level, after 5 s of load that is not counted)
#
# Each revision is built in release mode in its own work tree under
# target/perf-compare/, sharing nothing with this checkout's target/ (about
# four minutes each from cold on two cores; a rebuilt revision is reused).
# The load generator is this checkout's tailor-bench, the same for both.
# Prints a line per stack and run, and the medians of each build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 <rev or bin dir A> <rev or bin dir B> [rounds] [seconds]" >&2; exit 2; }
rounds=${3:-3}
seconds=${4:-10}
if pgrep -f 'tailor-bench (load|chaos)' >/dev/null; then
  echo "another tailor-bench load or chaos run is going; run this on a quiet machine" >&2
  exit 1
fi
cargo build --release --quiet -p tailor-bench
bench=$PWD/target/release/tailor-bench
root=$PWD/target/perf-compare
mkdir -p "$root"

# build <rev or dir>: prints the directory of that build's binaries.
build() {
  local rev commit tree
  rev=$1
  if [ -x "$rev/tailor" ]; then
    (cd "$rev" && pwd)
    return
  fi
  commit=$(git rev-parse --verify "$rev^{commit}")
  tree=$root/$commit
  if [ ! -x "$tree/target/release/tailor" ]; then
    [ -d "$tree" ] || git worktree add --detach --quiet "$tree" "$commit"
    (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --quiet) >&2
  fi
  echo "$tree/target/release"
}
bin_a=$(build "$1")
bin_b=$(build "$2")

work=$(mktemp -d)
launcher=""
cleanup() {
  if [ -n "$launcher" ]; then
    kill -INT "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# run <label> <bin dir>: one stack, one warm-up, one measured run.
run() {
  local label=$1 bin=$2
  rm -rf "$work/data"
  "$bin/tailor" up --any-ports --data-dir "$work/data" --products 10000 >"$work/up.out" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do
    grep -q "Tailor is up" "$work/up.out" && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.5
  done
  grep -q "Tailor is up" "$work/up.out" || { cat "$work/up.out"; exit 1; }
  at() { awk -v n="$1" '$1 == n {print $2; exit}' "$work/up.out"; }
  load() {
    "$bench" load --launcher-pid "$launcher" --web "$(at web-bff)" --catalog "$(at catalog)" \
      --trust-dir "$work/data/trust" --products 10000 --scenario web-page "$@"
  }
  load --concurrency 32 --duration-secs 5 --warmup-secs 2 >/dev/null
  load --concurrency 32,1 --duration-secs "$seconds" --warmup-secs 2 >"$work/load.out"
  awk -v label="$label" '
    /^ +32 +[0-9]+ +[0-9.]+ / { c32 = $2; p50 = $3 }
    /^ +1 +[0-9]+ +[0-9.]+ / { c1 = $2; c1p50 = $3 }
    /^ +32 tailor-(web-bff|catalog|reviews|inventory) / { cpu = cpu sprintf(" %s=%s", substr($2, 8), $4) }
    END { printf "%s\t%s\t%s\t%s\t%s\t%s\n", label, c32, p50, c1, c1p50, cpu }
  ' "$work/load.out" | tee -a "$work/results.tsv"
  kill -INT "$launcher"
  wait "$launcher" 2>/dev/null || true
  launcher=""
}

echo "build	c32 pages/s	c32 p50 ms	c1 pages/s	c1 p50 ms	CPU ms a page at c32"
for round in $(seq "$rounds"); do
  # Alternate which goes first, so a drift of the machine favours neither.
  if [ $((round % 2)) -eq 1 ]; then
    run A "$bin_a"; run B "$bin_b"
  else
    run B "$bin_b"; run A "$bin_a"
  fi
done

echo
echo "medians over $rounds rounds (A = $1, B = $2):"
for label in A B; do
  awk -F'\t' -v label="$label" '$1 == label { n++; c32[n] = $2; c1[n] = $4; p1[n] = $5 }
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "%s: c32 %s pages/s, c1 %s pages/s (p50 %s ms)\n", label, median(c32, n), median(c1, n), median(p1, n) }
  ' "$work/results.tsv"
done
