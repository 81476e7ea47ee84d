"""The catalogue feed: completeness, resuming from a cursor, updated_since."""

from __future__ import annotations

import datetime

import grpc
import pytest

from conftest import PRODUCTS
from helpers import DroppingProxy
from tailor_partner import PartnerClient


def ids(products) -> list[str]:
    return [product.id for product in products]


def test_feed_returns_every_product_once_in_id_order(client, catalog):
    got = ids(catalog)
    assert len(got) == PRODUCTS, f"the feed gave {len(got)} products, expected {PRODUCTS}"
    assert len(set(got)) == len(got), "the feed repeated products"
    assert got == sorted(got), "the feed is not ordered by product id"
    for product in catalog:
        assert product.sku and product.title and product.currency_code, f"incomplete product {product.id}"
        assert product.price_minor > 0, f"{product.id} has price {product.price_minor}"
        assert product.update_time.seconds > 0, f"{product.id} has no update_time"


@pytest.mark.parametrize("stop_after", [1, 137, PRODUCTS - 1, PRODUCTS])
def test_feed_resumes_after_the_cursor_without_duplicates_or_gaps(client, catalog, stop_after):
    feed = client.sync_catalog()
    first = [next(feed) for _ in range(stop_after)]
    cursor = feed.cursor
    feed.close()
    assert cursor, "no cursor after reading products"

    resumed = client.sync_catalog(cursor=cursor)
    rest = list(resumed)
    assert ids(first + rest) == ids(catalog), (
        f"stopping after {stop_after} and resuming gave {len(first)} + {len(rest)} products "
        f"that differ from the full feed (first resumed: {rest[0].id if rest else None})"
    )
    if not rest:
        assert resumed.cursor == cursor, "a feed with nothing left should keep the cursor it started from"
    assert resumed.reconnects == 0


def test_a_cursor_kept_across_clients_resumes_the_same_feed(stack, catalog):
    with stack.client() as one:
        feed = one.sync_catalog()
        head = [next(feed) for _ in range(50)]
        cursor = feed.cursor
        feed.close()
    with stack.client() as other:
        rest = list(other.sync_catalog(cursor=cursor))
    assert ids(head + rest) == ids(catalog)


def test_a_malformed_cursor_is_invalid_argument(client):
    with pytest.raises(grpc.RpcError) as error:
        list(client.sync_catalog(cursor="not a cursor"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value


def test_a_dropped_stream_is_resumed_from_the_last_cursor(stack, catalog):
    # ~600 KB of feed: the first connection is cut after 100 KB, mid-stream.
    with DroppingProxy(stack.address, cut_after=100_000) as proxy:
        with PartnerClient(proxy.address, stack.dev_key) as client:
            feed = client.sync_catalog()
            got = ids(feed)
        assert proxy.dropped == 1, "the proxy never cut the connection; the test proves nothing"
    assert feed.reconnects >= 1, "the stream was cut but the client never reconnected"
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} products came twice after the reconnect"
    assert got == ids(catalog), f"after a dropped stream the feed gave {len(got)} products, not the full catalogue"


def test_updated_since_keeps_products_updated_at_or_after_it(client, catalog):
    times = sorted(product.update_time.ToDatetime() for product in catalog)
    assert times[0] != times[-1], "all products have the same update_time; the filter cannot be checked"
    since = times[len(times) // 2]
    expected = [p.id for p in catalog if p.update_time.ToDatetime() >= since]

    got = ids(client.sync_catalog(updated_since=since))
    assert got == expected, (
        f"updated_since={since.isoformat()} gave {len(got)} products, expected {len(expected)}"
    )
    assert 0 < len(got) < len(catalog)


def test_updated_since_and_cursor_combine(client, catalog):
    since = sorted(p.update_time.ToDatetime() for p in catalog)[len(catalog) // 3]
    expected = [p.id for p in catalog if p.update_time.ToDatetime() >= since]
    feed = client.sync_catalog(updated_since=since.replace(tzinfo=datetime.timezone.utc))
    head = [next(feed).id for _ in range(10)]
    cursor = feed.cursor
    feed.close()
    rest = ids(client.sync_catalog(cursor=cursor, updated_since=since))
    assert head + rest == expected


def test_updated_since_in_the_future_gives_nothing(client):
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3650)
    assert ids(client.sync_catalog(updated_since=future)) == []
