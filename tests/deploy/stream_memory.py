"""Measures what open server streams cost a BFF in memory: the resident
set (RSS) of the BFF and of the orders service behind it, per 1,000 order
watches held open, as docs/deployment.md's capacity table reports it.

It starts its own `tailor up --any-ports` stack (release binaries, a
temporary data directory, the order simulator stopped so that no watch
ends), then for each BFF asked for:

1. places one order for each of N users (a development token each, from
   `tailor token`), as phones would before watching them;
2. reads the RSS of the BFF and of the orders service (/proc/<pid>/status);
3. opens one `WatchOrder` stream per user, each on its own connection as
   each phone has, in steps (the levels), waits for every stream's first
   message, lets the processes settle and reads the RSS again at each
   level;
4. prints the growth per 1,000 streams at each level and closes them.

Everything runs on this machine's loopback; the load is bounded by the
levels. Needs grpcio and grpcio-tools (requirements-measure.txt).

Usage (from the repository root, after `cargo build --release`):

    python tests/deploy/stream_memory.py [--levels 250,500,1000] [--bffs mobile,web]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def generate_stubs(out: Path) -> None:
    from grpc_tools import protoc  # noqa: PLC0415 (only this script needs it)

    import grpc_tools

    protos = sorted(
        str(p.relative_to(ROOT / "proto"))
        for package in ("tailor/web/v1", "tailor/mobile/v1", "tailor/type/v1")
        for p in (ROOT / "proto" / package).glob("*.proto")
    )
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("generating the stubs failed")
    sys.path.insert(0, str(out))


def start_stack(bin_dir: Path, data: Path, products: int) -> tuple[subprocess.Popen, dict]:
    web_dir = data.parent / "web-app"
    web_dir.mkdir()
    (web_dir / "index.html").write_text("<!doctype html><title>not used</title>\n")
    launcher = subprocess.Popen(
        [
            str(bin_dir / "tailor"),
            "up",
            "--any-ports",
            "--products",
            str(products),
            "--fulfilment-step-ms",
            "0",
            "--data-dir",
            str(data),
            "--bin-dir",
            str(bin_dir),
            "--web-dir",
            str(web_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    addresses = {}
    deadline = time.monotonic() + 120
    for line in launcher.stdout:
        words = line.split()
        if len(words) >= 3 and re.fullmatch(r"[\d.]+:\d+", words[1]):
            addresses[words[0]] = words[1]
        if line.startswith("Logs:") or time.monotonic() > deadline:
            break
    if "web-bff" not in addresses:
        launcher.kill()
        raise SystemExit("tailor up did not print its table")
    return launcher, addresses


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def server_pids(launcher: int) -> dict[str, int]:
    pids = {}
    for pid in children(launcher):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = Path(argv[0].decode()).name.removeprefix("tailor-")
        pids[name] = pid
    return pids


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def token(bin_dir: Path, audience: str, subject: str) -> str:
    return subprocess.run(
        [str(bin_dir / "tailor"), "token", "--audience", audience, "--subject", subject],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def measure(
    bff: str, address: str, pids: dict, levels: list[int], bin_dir: Path, products: int
) -> list:
    import grpc

    if bff == "web":
        from tailor.web.v1 import shop_pb2 as pb, shop_pb2_grpc as rpc
    else:
        from tailor.mobile.v1 import shop_pb2 as pb, shop_pb2_grpc as rpc

    users = max(levels)
    tokens = [token(bin_dir, f"tailor-{bff}", f"stream-{bff}-{i}") for i in range(users)]
    orders = []
    async with grpc.aio.insecure_channel(address) as channel:
        shop = rpc.ShopServiceStub(channel)
        product = 0
        for i, bearer in enumerate(tokens):
            # Some generated products are out of stock: try the next one.
            for attempt in range(50):
                product = product % products + 1
                try:
                    answer = await shop.PlaceOrder(
                        pb.PlaceOrderRequest(
                            idempotency_key=f"stream-{bff}-{i}-{attempt}",
                            lines=[pb.OrderLineInput(product_id=f"prod-{product:06d}", quantity=1)],
                        ),
                        metadata=[("authorization", f"Bearer {bearer}")],
                        timeout=10,
                    )
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
            else:
                raise SystemExit("no product in stock for an order")
            orders.append(answer.order.id)
    await asyncio.sleep(1)
    bff_pid, orders_pid = pids[f"{bff}-bff"], pids["orders"]
    base = (rss_mib(bff_pid), rss_mib(orders_pid))
    rows = [(0, 0, *base)]

    channels, calls = [], []
    failed = 0

    async def open_watch(i: int) -> bool:
        channel = grpc.aio.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        channels.append(channel)
        call = rpc.ShopServiceStub(channel).WatchOrder(
            pb.WatchOrderRequest(order_id=orders[i]),
            metadata=[("authorization", f"Bearer {tokens[i]}")],
        )
        calls.append(call)
        try:
            await asyncio.wait_for(call.read(), timeout=20)
            return True
        except (asyncio.TimeoutError, grpc.aio.AioRpcError):
            return False

    opened = 0
    try:
        for level in levels:
            results = []
            for start in range(opened, level, 50):
                batch = range(start, min(start + 50, level))
                results += await asyncio.gather(*(open_watch(i) for i in batch))
            failed += results.count(False)
            opened = level
            await asyncio.sleep(3)
            rows.append((level, failed, rss_mib(bff_pid), rss_mib(orders_pid)))
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    parser.add_argument("--levels", default="250,500,1000")
    parser.add_argument("--bffs", default="mobile,web")
    parser.add_argument("--products", type=int, default=1000)
    args = parser.parse_args()
    levels = sorted(int(level) for level in args.levels.split(","))

    with tempfile.TemporaryDirectory(prefix="stream-memory-") as tmp:
        stubs = Path(tmp) / "stubs"
        stubs.mkdir()
        generate_stubs(stubs)
        launcher, addresses = start_stack(args.bin_dir, Path(tmp) / "data", args.products)
        try:
            pids = server_pids(launcher.pid)
            print("| BFF | streams open | first message missing | BFF RSS MiB | BFF growth per 1,000 streams MiB | orders RSS MiB | orders growth per 1,000 streams MiB |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            async def every_bff() -> list:
                return [
                    (bff, await measure(
                            bff, addresses[f"{bff}-bff"], pids, levels, args.bin_dir, args.products
                        ))
                    for bff in args.bffs.split(",")
                ]

            for bff, rows in asyncio.run(every_bff()):
                _, _, bff_base, orders_base = rows[0]
                for streams, failed, bff_rss, orders_rss in rows:
                    per = (lambda now, was: f"{(now - was) * 1000 / streams:.1f}" if streams else "–")
                    print(
                        f"| {bff} | {streams} | {failed} | {bff_rss:.1f} | {per(bff_rss, bff_base)} "
                        f"| {orders_rss:.1f} | {per(orders_rss, orders_base)} |"
                    )
        finally:
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                launcher.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
