#!/usr/bin/env bash
# Runs every Tailor test on a fresh machine: installs the tools the tests
# use, checks formatting and lints, builds the server binaries the
# end-to-end tests start as processes, runs all tests (Rust, then the
# browser app's Node tests, then the Python partner client's), prints a
# summary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
started=$(date +%s)

step "test tools: buf (npm @bufbuild/buf), Chromium, openssl, PostgreSQL and Prometheus (Debian packages)"
npm ci --prefix tests --no-audit --no-fund --loglevel=error
# The benchmark's Node.js peer of the web BFF, which a test compares with it
# (its prepare script generates the stubs).
npm ci --prefix crates/tools/bench/node-peer --no-audit --no-fund --loglevel=error
missing=()
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
# The RS256 tests make their key pairs and tokens with openssl.
command -v openssl >/dev/null || missing+=(openssl)
# The stores' PostgreSQL tests start throwaway servers with the newest
# major version's initdb and postgres (run as the `postgres` user the
# package creates, when the tests run as root).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The metrics tests run a real Prometheus with deploy/prometheus's
# configuration against the stack: the server binary alone, without what
# the package recommends (node exporter and friends).
if [ ! -x "${PROMETHEUS_PATH:-/usr/bin/prometheus}" ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

step "the browser app (clients/web: npm ci, generate stubs, typecheck, bundle)"
npm ci --prefix clients/web --no-audit --no-fund --loglevel=error
npm run build --prefix clients/web --silent

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "dependency policy (cargo deny: licences, duplicate versions, sources; deny.toml)"
# Installed from crates.io when missing (about 3 minutes on two cores).
cargo deny --version >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny
cargo deny --workspace check licenses bans sources

step "build the server binaries"
cargo build --quiet

step "tests"
log=$(mktemp)
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final 2>&1 | tee "$log" || status=$?
    # nextest's own summary line; a failing test's output, printed after
    # it, has "test result" lines of its own.
    summary=$(grep -E '^ *Summary \[' "$log" | tail -1 || true)
    passed=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
    failed=$(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
    if [ -z "$summary" ]; then failed=$(( failed + 1 )); fi
else
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
    passed=$(grep -oE 'test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
    failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
fi
rm -f "$log"

step "the README's run command on a fresh clone (cold release build, Ctrl-C, SIGTERM)"
log=$(mktemp)
# Alone, so the cold build does not compete with other tests for the cores.
readme_test=the_readme_run_command_works_on_a_fresh_clone_and_stops_on_ctrl_c_and_sigterm
cargo test --quiet -p tailor-e2e --test e2e -- --ignored --exact --nocapture \
    "readme::$readme_test" 2>&1 | tee "$log" || status=$?
result=$(grep -E '^test result:' "$log" | tail -1 || true)
passed=$(( passed + $(echo "$result" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0) ))
failed=$(( failed + $(echo "$result" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0) ))
if ! echo "$result" | grep -q '1 passed'; then failed=$(( failed + 1 )); status=1; fi
rm -f "$log"

step "browser and grpc-web client tests (Node, Chromium)"
log=$(mktemp)
npm test --prefix clients/web 2>&1 | tee "$log" || status=$?
passed=$(( passed + $(grep -oE '^# pass [0-9]+' "$log" | grep -oE '[0-9]+' || echo 0) ))
failed=$(( failed + $(grep -oE '^# fail [0-9]+' "$log" | grep -oE '[0-9]+' || echo 0) ))
rm -f "$log"

step "partner client tests (Python: venv, grpcio-tools stubs, pytest)"
log=$(mktemp)
bash clients/partner/run-tests.sh 2>&1 | tee "$log" || status=$?
# pytest's last line: "3 failed, 20 passed, 1 error in 9.1s".
last=$(grep -E '[0-9]+ (passed|failed|errors?)' "$log" | tail -1 || true)
count() { echo "$last" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
passed=$(( passed + $(count passed) ))
failed=$(( failed + $(count failed) + $(count 'errors?') ))
if [ -z "$last" ]; then failed=$(( failed + 1 )); status=1; fi
rm -f "$log"

step "Kubernetes manifests and Dockerfile (Python: venv, render, kubernetes-validate for 1.32, pytest)"
log=$(mktemp)
bash tests/deploy/run.sh 2>&1 | tee "$log" || status=$?
last=$(grep -E '[0-9]+ (passed|failed|errors?)' "$log" | tail -1 || true)
passed=$(( passed + $(count passed) ))
failed=$(( failed + $(count failed) + $(count 'errors?') ))
if [ -z "$last" ]; then failed=$(( failed + 1 )); status=1; fi
rm -f "$log"

step "chaos, short mode: web pages under steady load while six faults hit the rest (tailor-bench chaos --short)"
# Alone, after the other tests, so their load does not count as a fault;
# on a release build, as the servers would run (a debug catalog flooded by
# the mobile BFF saturates its CPU by itself); the targets are loose in
# short mode, the docs' table comes from long mode.
cargo build --release --quiet
if target/release/tailor-bench chaos --short --bin-dir target/release; then
    passed=$(( passed + 1 ))
else
    failed=$(( failed + 1 )); status=1
fi

step "performance report, smoke mode (scripts/perf-report.sh --smoke: every scenario for a second)"
# That the report pipeline works, not how fast: the figures come from the
# full run (docs/performance.md).
if bash scripts/perf-report.sh --smoke; then
    passed=$(( passed + 1 ))
else
    failed=$(( failed + 1 )); status=1
fi

printf '\n== summary (%ss)\n' "$(( $(date +%s) - started ))"
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
