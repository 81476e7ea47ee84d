#!/usr/bin/env bash
# Renders and checks the Kubernetes manifests (deploy/k8s) and the
# Dockerfile: creates a venv in target/deploy-venv (ignored by git) with
# the pinned tools of requirements.txt, renders the kustomize base with
# render.py into target/deploy-rendered.yaml (what `kubectl kustomize
# deploy/k8s/base` prints), validates every object against the pinned
# Kubernetes version's schemas, then runs the pytest checks. Extra
# arguments go to pytest.
#
# Ends with pytest's summary line ("N passed, M failed in ...") and exits
# non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

python="${PYTHON:-python3}"
mkdir -p "$root/target"
venv="$root/target/deploy-venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt

rendered="$root/target/deploy-rendered.yaml"
"$venv/bin/python" render.py "$root/deploy/k8s/base" > "$rendered"
"$venv/bin/python" -m kubernetes_validate --quiet --strict --kubernetes-version 1.32.0 "$rendered"
echo "rendered $(grep -c '^kind:' "$rendered") objects into $rendered; valid for Kubernetes 1.32"

exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
