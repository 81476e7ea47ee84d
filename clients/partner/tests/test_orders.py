"""Availability and orders: idempotency, reading back, listing, tenant isolation."""

from __future__ import annotations

import threading

import grpc
import pytest

from helpers import unique
from tailor_partner import partner_pb2


def test_availability_answers_each_id_in_request_order(client, catalog):
    wanted = [catalog[0].id, "prod-does-not-exist", catalog[41].id, catalog[-1].id]
    got = client.availability(wanted)
    assert [a.product_id for a in got] == wanted, "availability is not one entry per id in request order"
    known = {a.product_id: a.known for a in got}
    assert known == {wanted[0]: True, wanted[1]: False, wanted[2]: True, wanted[3]: True}
    for entry in got:
        assert entry.available_units >= 0
        if entry.known and entry.available_units > 0:
            assert entry.ship_days > 0, f"{entry.product_id} in stock but ship_days {entry.ship_days}"
    unknown = got[1]
    assert (unknown.available_units, unknown.ship_days) == (0, 0)


def test_availability_of_more_than_one_batch(client, catalog):
    wanted = [p.id for p in catalog] * 2  # 600 ids: two calls of at most 500
    got = client.availability(wanted)
    assert [a.product_id for a in got] == wanted
    assert all(a.known for a in got)


def in_stock(client, catalog, count: int = 2) -> list[str]:
    availability = client.availability([p.id for p in catalog[:40]])
    ids = [a.product_id for a in availability if a.available_units >= 5]
    assert len(ids) >= count, "too few products in stock to order"
    return ids[:count]


def test_place_order_is_idempotent_on_its_key(client, catalog):
    first, second = in_stock(client, catalog)
    key = unique("idem")
    lines = [(first, 2), {"product_id": second, "quantity": 1}]
    order = client.place_order(key, lines)
    again = client.place_order(key, lines)

    assert order.id, "PlaceOrder returned no order id"
    assert again.id == order.id, f"the same idempotency key gave two orders: {order.id} and {again.id}"
    assert [(l.product_id, l.quantity) for l in order.lines] == [(first, 2), (second, 1)]
    assert order.total_minor == sum(l.unit_price_minor * l.quantity for l in order.lines)
    prices = {p.id: p.price_minor for p in catalog}
    assert [l.unit_price_minor for l in order.lines] == [prices[first], prices[second]]
    assert order.status != partner_pb2.ORDER_STATUS_UNSPECIFIED

    read = client.get_order(order.id)
    assert read.id == order.id
    assert list(read.lines) == list(order.lines)
    assert read.total_minor == order.total_minor
    assert read.create_time == order.create_time

    matching = [o.id for o in client.list_orders() if o.id == order.id]
    assert matching == [order.id], f"ListOrders shows the order {len(matching)} times"


def test_a_key_reused_for_a_different_order_is_refused(client, catalog):
    first, second = in_stock(client, catalog)
    key = unique("reuse")
    order = client.place_order(key, [(first, 1)])
    with pytest.raises(grpc.RpcError) as error:
        client.place_order(key, [(second, 3)])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, error.value
    assert client.place_order(key, [(first, 1)]).id == order.id


def test_concurrent_calls_with_one_key_place_one_order(stack, catalog):
    with stack.client() as probe:
        product = in_stock(probe, catalog, 1)[0]
        before = {o.id for o in probe.list_orders()}
    key = unique("race")
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def place() -> None:
        # One client (one connection) per thread, all calling at once.
        with stack.client() as client:
            barrier.wait(timeout=30)
            try:
                order = client.place_order(key, [(product, 1)])
            except BaseException as error:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(error)
            else:
                with lock:
                    results.append(order.id)

    workers = [threading.Thread(target=place) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, f"concurrent PlaceOrder calls failed: {errors}"
    assert len(results) == threads
    assert len(set(results)) == 1, f"one idempotency key gave several orders: {sorted(set(results))}"

    with stack.client() as probe:
        new = [o.id for o in probe.list_orders() if o.id not in before]
    assert new.count(results[0]) == 1, f"ListOrders shows {new.count(results[0])} copies of the order"


def test_list_orders_is_newest_first_and_pages(client, catalog):
    product = in_stock(client, catalog, 1)[0]
    placed = [client.place_order(unique("list"), [(product, 1)]).id for _ in range(3)]
    listed = [o.id for o in client.list_orders()]
    positions = [listed.index(order_id) for order_id in placed]
    assert positions == sorted(positions, reverse=True), (
        f"orders placed in the order {placed} are listed at positions {positions}, not newest first"
    )
    paged = [o.id for o in client.list_orders(page_size=2)]
    assert paged == listed, "listing 2 per page gives other orders than 100 per page"
    assert [o.id for o in client.list_orders(limit=2)] == listed[:2]


def test_unknown_order_is_not_found(client):
    with pytest.raises(grpc.RpcError) as error:
        client.get_order("ord-does-not-exist")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value


def test_a_tenant_sees_only_its_own_orders(stack, client, catalog):
    product = in_stock(client, catalog, 1)[0]
    demo_order = client.place_order(unique("demo"), [(product, 1)])

    other_key = stack.create_key(unique("acme"))
    with stack.client(other_key) as other:
        with pytest.raises(grpc.RpcError) as error:
            other.get_order(demo_order.id)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND, (
            f"another tenant reading demo's order got {error.value.code()}, not NOT_FOUND"
        )
        assert demo_order.id not in [o.id for o in other.list_orders()], (
            "another tenant's ListOrders shows demo's order"
        )
        shared_key = unique("shared")
        own = other.place_order(shared_key, [(product, 1)])
        assert [o.id for o in other.list_orders()] == [own.id], "the new tenant should see exactly its one order"

    assert own.id != demo_order.id
    with pytest.raises(grpc.RpcError) as error:
        client.get_order(own.id)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, "demo can read another tenant's order"
    assert own.id not in [o.id for o in client.list_orders()], "demo's ListOrders shows another tenant's order"
    # Idempotency keys are per tenant: demo using the same key places its own order.
    assert client.place_order(shared_key, [(product, 1)]).id != own.id, (
        "an idempotency key of one tenant returned another tenant's order"
    )
