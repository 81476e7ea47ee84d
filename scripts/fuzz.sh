#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh [seconds per target] [target...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Defaults: 60 seconds, every target. Corpora grow in fuzz/corpus/<target>
# (kept between runs, not committed); a crash stops its target, leaves the
# input in fuzz/artifacts/<target>/ and makes the script fail. Reproduce
# one with `cargo +nightly fuzz run <target> <file>`, fix the code, and
# keep the input as a unit test of the crate concerned.
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/../fuzz"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build

failed=()
summary=()
for target in "${targets[@]}"; do
    log="$(mktemp)"
    echo "== $target: ${seconds}s"
    if cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
        >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo '?')"
        summary+=("$target: ${runs} executions in ${seconds}s, no crash")
    else
        tail -n 40 "$log"
        failed+=("$target")
        summary+=("$target: CRASHED (see fuzz/artifacts/$target)")
    fi
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
