#!/usr/bin/env bash
# What observability costs per product page. Two `tailor up` stacks run
# side by side on this machine, idle unless loaded:
#   off: no OTLP endpoint (no spans recorded or exported); nobody scrapes
#        the metrics;
#   on:  every span sampled and exported to a real OTLP/gRPC receiver
#        (tailor-bench otlp-sink), and every server's /metrics scraped once
#        a second, as Prometheus would.
# The same closed-loop load (tailor-bench load, web product page) runs
# against them in turn, off and on (alternating which goes first), for
# several rounds, so both see the
# same machine; it prints each run, the receiver's CPU, and the median
# throughput ratio.
#
# Usage: scripts/observability-cost.sh [seconds per run] [concurrency] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
concurrency=${2:-32}
rounds=${3:-3}
cargo build --release --quiet
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

"$bin/tailor-bench" otlp-sink --listen 127.0.0.1:0 >"$work/sink.out" 2>&1 &
sink_pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/sink.out" && break; sleep 0.1; done
sink=$(sed -n 's/.*listening on //p' "$work/sink.out")

start_stack() {
  local mode=$1
  mkdir -p "$work/$mode"
  if [ "$mode" = on ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT="http://$sink" OTEL_TRACES_SAMPLER=always_on \
      "$bin/tailor" up --any-ports --data-dir "$work/$mode/data" >"$work/$mode/up.out" 2>&1 &
  else
    env -u OTEL_EXPORTER_OTLP_ENDPOINT \
      "$bin/tailor" up --any-ports --data-dir "$work/$mode/data" >"$work/$mode/up.out" 2>&1 &
  fi
  echo $! >"$work/$mode/pid"
}
start_stack off
start_stack on
for mode in off on; do
  for _ in $(seq 600); do grep -q "Tailor is up" "$work/$mode/up.out" && break; sleep 0.5; done
  grep -q "Tailor is up" "$work/$mode/up.out" || { cat "$work/$mode/up.out"; exit 1; }
done
admins=$(awk '$2 ~ /^127\.0\.0\.1:/ && $3 ~ /^127\.0\.0\.1:/ {print $3}' "$work/on/up.out")

load() {
  local mode=$1 round=$2
  local web
  web=$(awk '$1 == "web-bff" {print $2}' "$work/$mode/up.out")
  local scraper=""
  if [ "$mode" = on ]; then
    (while true; do
       for a in $admins; do curl -s -o /dev/null "http://$a/metrics" || true; done
       sleep 1
     done) &
    scraper=$!
  fi
  local sink_before
  sink_before=$(cpu_seconds "$sink_pid")
  echo "== $mode, round $round"
  "$bin/tailor-bench" load --scenario web-page --web "$web" \
    --concurrency "$concurrency" --duration-secs "$seconds" --warmup-secs 3 \
    --launcher-pid "$(cat "$work/$mode/pid")" | tee "$work/$mode/load-$round.out"
  if [ -n "$scraper" ]; then kill "$scraper"; wait "$scraper" 2>/dev/null || true; fi
  echo "receiver CPU during the run (warm-up included): $(awk -v a="$(cpu_seconds "$sink_pid")" -v b="$sink_before" 'BEGIN {printf "%.2f", a - b}') s"
}

rate() { awk '$1 ~ /^[0-9]+$/ && NF >= 6 && $2 ~ /^[0-9]+$/ {print $2; exit}' "$1"; }
ratios=()
for round in $(seq "$rounds"); do
  # Alternate which goes first, so a drift of the machine during a round
  # does not always favour the same side.
  if [ $((round % 2)) -eq 1 ]; then
    load off "$round"; load on "$round"
  else
    load on "$round"; load off "$round"
  fi
  off=$(rate "$work/off/load-$round.out"); on=$(rate "$work/on/load-$round.out")
  ratios+=("$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a / b}')")
  echo "round $round: off $off pages/s, on $on pages/s"
done
for mode in off on; do kill -INT "$(cat "$work/$mode/pid")"; done
wait "$(cat "$work/off/pid")" "$(cat "$work/on/pid")" 2>/dev/null || true
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
echo
echo "throughput on/off per round: ${ratios[*]}; median $median"
