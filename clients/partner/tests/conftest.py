"""Starts the real Tailor stack once per test session.

The fixture runs ``target/debug/tailor up --any-ports`` with a fresh data
directory, reads the partner BFF's address and the development key of
tenant ``demo`` from what it prints, and stops it (SIGTERM, then SIGKILL
of its process group if it does not exit) when the session ends, whether
the tests passed or not.

Environment:
    TAILOR_BIN_DIR: folder with the built binaries (default: the
        checkout's target/debug).
    TAILOR_KEEP_DATA: when set, the data directory is kept (its path is
        printed) for looking at the servers' logs.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tailor_partner import PartnerClient

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("TAILOR_BIN_DIR", REPO / "target" / "debug"))
PRODUCTS = 300
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0

_ADDRESS_RE = re.compile(r"^\s*partner-bff\s+(\S+:\d+)\s")
_KEY_RE = re.compile(r"x-api-key:\s*(tk_[0-9A-Za-z]+_[0-9A-Za-z]+)")


@dataclass
class Stack:
    """The running stack, as the tests see it."""

    address: str
    dev_key: str
    data_dir: Path

    def keys(self, *args: str) -> str:
        """Runs ``tailor-partner-bff --data-dir <dir> keys <args>``; returns its stdout."""
        command = [str(BIN_DIR / "tailor-partner-bff"), "--data-dir", str(self.data_dir), "keys", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (
            f"{' '.join(command)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done.stdout.strip()

    def create_key(self, tenant: str, scopes: Optional[str] = None, plan: str = "standard") -> str:
        """Creates a key and returns it (``tk_<id>_<secret>``)."""
        args = ["create", "--tenant", tenant, "--plan", plan]
        if scopes is not None:
            args += ["--scopes", scopes]
        key = self.keys(*args)
        assert re.fullmatch(r"tk_[0-9A-Za-z]+_[0-9A-Za-z]+", key), f"keys create printed {key!r}"
        return key

    def revoke(self, key: str) -> None:
        """Revokes a key by its id (the part between ``tk_`` and the next ``_``)."""
        self.keys("revoke", key.split("_")[1])

    def client(self, api_key: Optional[str] = None, **options: object) -> PartnerClient:
        """A client of the partner BFF, with the development key by default."""
        return PartnerClient(self.address, api_key or self.dev_key, **options)  # type: ignore[arg-type]


def _read_lines(stream, lines: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # The launcher was started in its own process group: whatever of it
    # (servers it spawned) is still around gets killed there.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    launcher = BIN_DIR / "tailor"
    if not os.access(launcher, os.X_OK):
        pytest.fail(f"{launcher} not found: build the server binaries first (cargo build --workspace --bins)")
    data_dir = Path(tempfile.mkdtemp(prefix="tailor-partner-py-"))
    stderr = open(data_dir / "launcher.stderr", "w+b")
    process = subprocess.Popen(
        [
            str(launcher), "up", "--any-ports",
            "--data-dir", str(data_dir),
            "--products", str(PRODUCTS),
            "--fulfilment-step-ms", "300",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    try:
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        address = key = None
        ready = False
        seen: list[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None or left <= 0:
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace")[-3000:]
                why = "exited" if line is None else f"was not ready after {STARTUP_TIMEOUT:.0f} s"
                pytest.fail(
                    f"tailor up {why} (exit code {process.poll()})\n"
                    f"stdout:\n{''.join(seen)}\nstderr:\n{tail}"
                )
            seen.append(line)
            if match := _ADDRESS_RE.match(line):
                address = match.group(1)
            if match := _KEY_RE.search(line):
                key = match.group(1)
            ready = line.startswith("Logs:")
        assert address, f"no partner-bff address in the launcher's output:\n{''.join(seen)}"
        assert key, f"no x-api-key in the launcher's output:\n{''.join(seen)}"
        key_file = data_dir / "partner-dev-key.txt"
        assert key_file.read_text().strip() == key, f"{key_file} does not hold the printed key"
        # The reader thread keeps draining stdout so the launcher never blocks on it.
        yield Stack(address=address, dev_key=key, data_dir=data_dir)
    finally:
        _stop(process)
        stderr.close()
        if os.environ.get("TAILOR_KEEP_DATA"):
            print(f"\nkept the stack's data and logs in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[PartnerClient]:
    """A client with the development key (tenant demo, all scopes, plan standard)."""
    with stack.client() as partner:
        yield partner


@pytest.fixture(scope="session")
def catalog(client: PartnerClient) -> list:
    """The whole feed, read once."""
    return list(client.sync_catalog())
