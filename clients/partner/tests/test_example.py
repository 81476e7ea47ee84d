"""The example integration, run as a partner would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PRODUCTS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "integrate.py"


def run_example(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_PARTNER_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True, text=True, timeout=120, env=environment, check=False,
    )


@pytest.mark.parametrize("how", ["flags", "env"])
def test_the_example_integration_runs(stack, client, how):
    if how == "flags":
        done = run_example(["--address", stack.address, "--api-key", stack.dev_key])
    else:
        done = run_example([], {"TAILOR_PARTNER_ADDR": stack.address, "TAILOR_PARTNER_KEY": stack.dev_key})
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"the example exited {done.returncode}\n{output}"
    assert f"products synced: {PRODUCTS}\n" in done.stdout, output
    placed = re.findall(r"^order placed(?: again with the same key)?: (\S+)", done.stdout, re.M)
    assert len(placed) == 2 and placed[0] == placed[1], f"expected the same order id twice\n{output}"
    assert f"order read back: {placed[0]} " in done.stdout, output
    assert done.stdout.rstrip().endswith("integration OK"), output
    assert client.get_order(placed[0]).id == placed[0], "the example's order cannot be read back by the tests"


def test_the_example_resumes_from_its_saved_cursor(stack, tmp_path):
    state = tmp_path / "state.json"
    args = ["--address", stack.address, "--api-key", stack.dev_key, "--state", str(state)]
    first = run_example(args)
    assert first.returncode == 0, first.stderr
    assert f"products synced: {PRODUCTS}\n" in first.stdout, first.stdout
    second = run_example(args)
    assert second.returncode == 0, second.stderr
    assert "products synced: 0 (after cursor " in second.stdout, (
        f"the second run should fetch nothing new after the saved cursor:\n{second.stdout}"
    )


def test_the_example_reports_a_bad_key(stack):
    done = run_example(["--address", stack.address, "--api-key", "tk_0123456789abcdef_" + "00" * 32])
    assert done.returncode == 2, f"exit code {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "UNAUTHENTICATED" in done.stderr, done.stderr


def test_the_example_needs_an_address_and_a_key():
    done = run_example([])
    assert done.returncode == 2 and "--address and --api-key" in done.stderr, done.stderr
