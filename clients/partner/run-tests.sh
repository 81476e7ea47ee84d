#!/usr/bin/env bash
# Sets up and tests the Python partner client against the real stack.
#
# Creates .venv (if missing) with python3, installs the pinned tools
# (requirements-dev.txt) and this package, generates the stubs from
# ../../proto, then runs pytest. The tests start target/debug/tailor of
# this checkout (override the folder with TAILOR_BIN_DIR), so build the
# server binaries first. Extra arguments go to pytest.
#
# Ends with pytest's summary line ("N passed, M failed in ...") and exits
# non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python generate.py
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
.venv/bin/python -c 'import tailor_partner, sys; print("tailor_partner", tailor_partner.__version__, "imports on Python", sys.version.split()[0])'

mkdir -p test-results
exec .venv/bin/python -m pytest -q --junitxml=test-results/junit.xml "$@"
