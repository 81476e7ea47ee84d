#!/usr/bin/env python3
"""An example partner integration with the Tailor partner API.

1. Syncs the catalogue feed: counts the products and remembers the cursor
   (with ``--state FILE`` the cursor is saved, and the next run only
   fetches what comes after it).
2. Checks the availability of a few products.
3. Places an order idempotently: the same call twice, with the same
   idempotency key, gives the same order.
4. Reads the order back, and finds it among the partner's orders.

Usage::

    python examples/integrate.py --address 127.0.0.1:8083 --api-key tk_...
    TAILOR_PARTNER_ADDR=127.0.0.1:8083 TAILOR_PARTNER_KEY=tk_... python examples/integrate.py

Exits 0 when every step worked, 1 when a check failed, 2 on a gRPC error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import grpc

from tailor_partner import PartnerClient, partner_pb2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Example integration with the Tailor partner API.")
    parser.add_argument("--address", default=os.environ.get("TAILOR_PARTNER_ADDR"),
                        help="host:port of the partner BFF (env TAILOR_PARTNER_ADDR)")
    parser.add_argument("--api-key", default=os.environ.get("TAILOR_PARTNER_KEY"),
                        help="API key tk_<id>_<secret> (env TAILOR_PARTNER_KEY)")
    parser.add_argument("--state", type=Path,
                        help="JSON file keeping the feed cursor between runs (optional)")
    parser.add_argument("--idempotency-key",
                        help="key of the order to place (default: a new one each run)")
    parser.add_argument("--check", type=int, default=5, metavar="N",
                        help="how many products to check availability of (default 5)")
    args = parser.parse_args(argv)
    if not args.address or not args.api_key:
        parser.error("--address and --api-key (or TAILOR_PARTNER_ADDR and TAILOR_PARTNER_KEY) are required")
    return args


def money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}"


def run(args: argparse.Namespace) -> int:
    with PartnerClient(args.address, args.api_key) as client:
        # 1. The catalogue feed, resumed from the saved cursor if there is one.
        cursor = None
        if args.state and args.state.exists():
            cursor = json.loads(args.state.read_text()).get("cursor")
        feed = client.sync_catalog(cursor=cursor)
        products = list(feed)
        print(f"products synced: {len(products)}"
              + (f" (after cursor {cursor})" if cursor else ""))
        print(f"feed cursor: {feed.cursor}")
        if feed.reconnects:
            print(f"the stream dropped and was resumed {feed.reconnects} time(s)")
        if args.state:
            args.state.write_text(json.dumps({"cursor": feed.cursor}))
        if not products:
            # Nothing new since the saved cursor: take a few products from the start.
            products = [p for p, _ in zip(client.sync_catalog(), range(args.check))]
        if not products:
            print("the catalogue is empty", file=sys.stderr)
            return 1

        # 2. Availability of the first few products.
        sample = products[: args.check]
        availability = client.availability([p.id for p in sample])
        for product, entry in zip(sample, availability):
            print(f"  {product.id}  {product.title[:40]:<40}  "
                  f"{money(product.price_minor, product.currency_code):>12}  "
                  f"{entry.available_units:>5} available, ships in {entry.ship_days} day(s)")
        in_stock = [entry.product_id for entry in availability if entry.available_units > 0]
        if not in_stock:
            print("none of the products checked is in stock", file=sys.stderr)
            return 1

        # 3. Place an order; repeating the call with the same key must not
        #    place a second one (as a retry after a lost answer would).
        key = args.idempotency_key or f"integrate-{uuid.uuid4()}"
        lines = [(in_stock[0], 1)]
        first = client.place_order(key, lines)
        second = client.place_order(key, lines)
        print(f"order placed: {first.id} (idempotency key {key})")
        print(f"order placed again with the same key: {second.id}")
        if first.id != second.id:
            print("the same idempotency key gave two different orders", file=sys.stderr)
            return 1

        # 4. Read it back.
        order = client.get_order(first.id)
        status = partner_pb2.OrderStatus.Name(order.status)
        print(f"order read back: {order.id} {status} total {money(order.total_minor, order.currency_code)}")
        listed = [o.id for o in client.list_orders(limit=100)]
        if order.id not in listed:
            print("the order is missing from ListOrders", file=sys.stderr)
            return 1
        print(f"orders of this partner: {len(listed)} (newest first; this one at #{listed.index(order.id) + 1})")
    print("integration OK")
    return 0


def main() -> int:
    args = parse_args()
    try:
        return run(args)
    except grpc.RpcError as error:
        print(f"gRPC error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
