#!/usr/bin/env bash
# The performance report, in one command. Builds release, starts one
# `tailor up --any-ports --products 10000` stack in a temporary data
# directory, and runs every `tailor-bench load` scenario against it at
# concurrency 1, 8, 32 and 128 (each process's CPU measured, only this
# stack's servers). Then the same web product page load against the Node.js
# peer of the web BFF (crates/tools/bench/node-peer, started beside the
# stack on its downstream services), and one level cross-checked with
# h2load (Debian's nghttp2-client, installed when missing). Writes
# docs/performance.md and docs/performance-throughput.svg
# (`tailor-bench report`). After the closed-loop scenarios, the page and
# its costliest downstream calls run in open loop at half the page's best
# throughput, and native gRPC and grpc-web run in turns at concurrency
# 128, three rounds, for their ratio. Last, long-lived streams
# (`tailor-bench streams`): 10,000 order watches held open on the web BFF, and 100
# partner feed readers that stop reading; the stack's orders stay placed
# for an hour (`--fulfilment-step-ms`), so no watch ends while it is held.
#
# Usage: scripts/perf-report.sh [seconds per level]   (default 10)
#        scripts/perf-report.sh --smoke
#
# --smoke proves the pipeline works in about a minute: about a second per
# level, concurrency 1 and 8 only, no Node peer and no h2load, 50 order
# watches and 8 stalled feeds held for a second; the report
# goes to target/perf-smoke/ and docs/ is left alone. It fails when a
# scenario made no successful call at some level.
#
# Run it on an otherwise quiet machine: the load generator shares the cores
# with the stack, and anything else running skews every figure. It refuses
# to start while another tailor-bench load or chaos run is going.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
seconds=10
case "${1:-}" in
  --smoke) smoke=true; seconds=1 ;;
  "") ;;
  *[!0-9.]*) echo "usage: $0 [seconds per level] | --smoke" >&2; exit 2 ;;
  *) seconds=$1 ;;
esac
products=10000
# Orders are spread over this many users, so the per-user order rate (10 at
# once, then one every 10 s) never decides the throughput.
users=20000
# Order status changes an hour apart: the order watches of the streams
# step stay open however long the run before them took.
fulfilment_step_ms=3600000
if $smoke; then
  watch_streams=50; watch_connections=2; feed_streams=8; stream_hold=1
  levels=1,8
  warmup=0.5
  out_dir=target/perf-smoke
  command="scripts/perf-report.sh --smoke"
else
  levels=1,8,32,128
  warmup=2
  out_dir=docs
  command="scripts/perf-report.sh${1:+ $1}"
  # 200 watches on each client connection (a BFF allows 256 on one).
  watch_streams=10000; watch_connections=50; feed_streams=100; stream_hold=10
fi
h2load_concurrency=32

if pgrep -f 'tailor-bench (load|chaos)' >/dev/null; then
  echo "another tailor-bench load or chaos run is going; run this on a quiet machine" >&2
  exit 1
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before the run: $load_before"

cargo build --release --quiet
bin=target/release
work=$(mktemp -d)
launcher=""
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
  if [ -n "$launcher" ]; then
    kill -INT "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
records=$work/records.tsv
: >"$records"

# The development partner key's plan allows 50 calls/s; raised for this
# stack so the partner scenarios measure the BFF, not its token bucket.
TAILOR_PARTNER_PLAN_LIMITS=standard=1000000:1000000:1000000000 \
  "$bin/tailor" up --any-ports --data-dir "$work/data" --products "$products" \
  --fulfilment-step-ms "$fulfilment_step_ms" >"$work/up.out" 2>&1 &
launcher=$!
for _ in $(seq 600); do
  grep -q "Tailor is up" "$work/up.out" && break
  kill -0 "$launcher" 2>/dev/null || break
  sleep 0.5
done
grep -q "Tailor is up" "$work/up.out" || { cat "$work/up.out"; exit 1; }
at() { awk -v n="$1" '$1 == n {print $2; exit}' "$work/up.out"; }
web=$(at web-bff); mobile=$(at mobile-bff); partner=$(at partner-bff)
catalog=$(at catalog); inventory=$(at inventory); reviews=$(at reviews)
trust=$work/data/trust
partner_key=$(cat "$work/data/partner-dev-key.txt")

# load [--seconds S --warmup W --keys K --levels L --web-at A] <tailor-bench load flags>
load() {
  local s=$seconds w=$warmup k=$partner_key l=$levels a=$web
  while :; do
    case "$1" in
      --web-at) a=$2; shift 2 ;;
      --levels) l=$2; shift 2 ;;
      --seconds) s=$2; shift 2 ;;
      --warmup) w=$2; shift 2 ;;
      --keys) k=$2; shift 2 ;;
      *) break ;;
    esac
  done
  "$bin/tailor-bench" load --launcher-pid "$launcher" \
    --web "$a" --mobile "$mobile" --partner "$partner" --catalog "$catalog" \
    --trust-dir "$trust" --partner-key "$k" --users "$users" \
    --products "$products" --concurrency "$l" \
    --duration-secs "$s" --warmup-secs "$w" \
    --record "$records" "$@"
}

# A feed is the whole catalogue (10,000 products, about a fifth of a second
# of the catalog's CPU and as much of the partner BFF's), so a round of
# feeds at 128 would take over a minute a level. Feeds run at concurrency
# 1, 8 and 32, at least 15 s a level, after a warm-up of 3 s (none in smoke
# mode, where a level is too short for a second feed).
if $smoke; then
  feed_levels=1,8; feed_seconds=5; feed_warmup=0
else
  feed_levels=1,8,32
  feed_seconds=$(awk -v s="$seconds" 'BEGIN { print (s < 15 ? 15 : s) }')
  feed_warmup=3
fi
# One key may hold 4 feeds open at once: a key for every 4 callers.
feed_keys=$partner_key
for n in $(seq 2 8); do
  feed_keys="$feed_keys,$("$bin/tailor-partner-bff" --data-dir "$work/data" keys create \
    --tenant "bench-feed-$n" --name "perf report")"
done

for scenario in catalog-get catalog-related web-page web-page-grpc-web web-page-grpc-web-text \
  mobile-page web-list partner-availability partner-feed order-placement; do
  echo "== $scenario"
  if [ "$scenario" = partner-feed ]; then
    load --seconds "$feed_seconds" --warmup "$feed_warmup" --levels "$feed_levels" \
      --keys "$feed_keys" --scenario "$scenario"
  else
    load --scenario "$scenario"
  fi
done

# Half of saturation: the page offered half its best closed-loop
# throughput in open loop, then its two costliest downstream calls offered
# the same rate straight at the catalog, for the page's p99 above theirs.
half=$(awk -F'\t' '$1 == "level" && $2 == "web-page" && $8 > best { best = $8 }
  END { printf "%d", best / 2 }' "$records")
if [ "${half:-0}" -gt 0 ]; then
  for scenario in web-page catalog-get catalog-related; do
    echo "== $scenario at $half calls/s, half of the page's saturation"
    load --levels 128 --scenario "$scenario" --rate "$half" --label "$scenario-half-saturation"
  done
fi

# Native gRPC and grpc-web in turns at the top level, a few rounds: the
# scenarios above run minutes apart, and the machine's drift in between
# would decide their ratio.
if $smoke; then alternating_rounds=1; else alternating_rounds=3; fi
top_level=${levels##*,}
for round in $(seq "$alternating_rounds"); do
  for scenario in web-page web-page-grpc-web web-page-grpc-web-text; do
    echo "== $scenario at concurrency $top_level, round $round of $alternating_rounds in turns"
    load --levels "$top_level" --scenario "$scenario" --label "alternating-$scenario"
  done
done

if ! $smoke; then
  echo "== web-page against the Node.js peer"
  peer=crates/tools/bench/node-peer
  [ -d "$peer/node_modules" ] || npm ci --prefix "$peer"
  node "$peer/src/main.js" --listen 127.0.0.1:0 --trust-dir "$trust" \
    --catalog-addr "$catalog" --inventory-addr "$inventory" --reviews-addr "$reviews" \
    >"$work/node.out" 2>&1 &
  node_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/node.out" && break; sleep 0.1; done
  node_at=$(sed -n 's/.*listening on //p' "$work/node.out")
  [ -n "$node_at" ] || { cat "$work/node.out"; exit 1; }
  load --web-at "$node_at" --scenario web-page --label web-page-node-peer \
    --process "node-peer=$node_pid"
  kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""

  echo "== h2load cross-check: web-page, one product, concurrency $h2load_concurrency"
  if ! command -v h2load >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nghttp2-client >/dev/null
  fi
  # tailor-bench first, on the same single product h2load will ask for.
  "$bin/tailor-bench" load --launcher-pid "$launcher" --web "$web" --scenario web-page \
    --products 1 --concurrency "$h2load_concurrency" --duration-secs "$seconds" \
    --warmup-secs "$warmup" --record "$records" --label web-page-one-product
  # A gRPC message frame: no compression, 4-byte length, then
  # GetProductPageRequest { product_id: "prod-000001" } (field 1, 11 bytes).
  printf '\x00\x00\x00\x00\x0d\x0a\x0bprod-000001' >"$work/page.bin"
  h2load -t 1 -c 1 -m "$h2load_concurrency" -D "$seconds" --warm-up-time "$warmup" \
    -d "$work/page.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://$web/tailor.web.v1.ShopService/GetProductPage" | tee "$work/h2load.out"
  # h2load prints times as 850us, 1.23ms or 1.02s.
  awk -v label=web-page-one-product -v c="$h2load_concurrency" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /^finished in/ { rate = $4 }
    /^requests:/ { total = $2; failed = $10 }
    /^status codes:/ { ok = $3 }
    /^time for request:/ { min = ms($4); max = ms($5); mean = ms($6) }
    END {
      printf "h2load\t%s\t%d\t%s\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\n", label, c, rate, mean, min, max, total, ok, failed
    }' "$work/h2load.out" >>"$records"
fi

# Long-lived streams. A run where not every stream opened still leaves its
# record, so the report shows how far it got; smoke mode fails on it.
echo "== streams: $watch_streams order watches on the web BFF"
streams_ok=true
"$bin/tailor-bench" streams --scenario watch-orders --launcher-pid "$launcher" \
  --web "$web" --mobile "$mobile" --streams "$watch_streams" \
  --connections "$watch_connections" --products "$products" --hold-secs "$stream_hold" \
  --record "$records" || streams_ok=false
echo "== streams: $feed_streams stalled partner feed readers"
# A key holds 4 feeds at once: one key for every 4 readers, the feed keys
# above first.
stall_keys=$feed_keys
for n in $(seq 9 $(( (feed_streams + 3) / 4 ))); do
  stall_keys="$stall_keys,$("$bin/tailor-partner-bff" --data-dir "$work/data" keys create \
    --tenant "bench-feed-$n" --name "perf report")"
done
"$bin/tailor-bench" streams --scenario stalled-feeds --launcher-pid "$launcher" \
  --partner "$partner" --partner-key "$stall_keys" --streams "$feed_streams" \
  --hold-secs "$stream_hold" --record "$records" || streams_ok=false
if $smoke && ! $streams_ok; then
  echo "smoke: not every stream opened" >&2
  exit 1
fi

mkdir -p "$out_dir"
"$bin/tailor-bench" report --records "$records" --out "$out_dir/performance.md" \
  --svg "$out_dir/performance-throughput.svg" --command "$command" \
  --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --timing "$seconds s measured per level after $warmup s of warm-up (partner-feed: concurrency $feed_levels only, $feed_seconds s after $feed_warmup s, as its calls are whole feeds)" \
  --users "$users" --products "$products" \
  --conditions "load average (1, 5, 15 min) before the run $load_before, after it $(cut -d' ' -f1-3 /proc/loadavg)"
cp "$records" "$out_dir/performance-records.tsv"

if $smoke; then
  # Every scenario made successful calls at every level.
  awk -F'\t' '$1 == "level" && $6 == 0 { print "no successful call: " $2 " at concurrency " $4; bad = 1 }
    END { exit bad }' "$records"
  grep -q "## Issue 13's targets" "$out_dir/performance.md"
  grep -q "## Streams" "$out_dir/performance.md"
  echo "smoke: the report pipeline works ($out_dir/performance.md)"
fi
