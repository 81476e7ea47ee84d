"""API keys and scopes: unknown, malformed, missing and revoked keys; missing scopes."""

from __future__ import annotations

import time

import grpc
import pytest

from helpers import unique
from tailor_partner import partner_pb2, partner_pb2_grpc
from tailor_partner.client import NO_RETRY


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code()


@pytest.mark.parametrize(
    "key",
    [
        "tk_0123456789abcdef_" + "ab" * 32,  # well-formed, unknown
        "not-a-key",
        "tk_",
    ],
    ids=["unknown", "malformed", "truncated"],
)
def test_a_bad_key_is_unauthenticated(stack, catalog, key):
    with stack.client(key, retry_policy=NO_RETRY) as client:
        assert code_of(lambda: client.availability([catalog[0].id])) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: list(client.sync_catalog())) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(client.list_orders) == grpc.StatusCode.UNAUTHENTICATED


def test_the_right_id_with_a_wrong_secret_is_unauthenticated(stack, catalog):
    key_id = stack.dev_key.split("_")[1]
    with stack.client(f"tk_{key_id}_" + "0" * 64, retry_policy=NO_RETRY) as client:
        assert code_of(lambda: client.availability([catalog[0].id])) == grpc.StatusCode.UNAUTHENTICATED


def test_a_call_without_a_key_is_unauthenticated(stack):
    with grpc.insecure_channel(stack.address) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ListOrders(partner_pb2.ListOrdersRequest(), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED, error.value


def test_a_revoked_key_is_unauthenticated(stack, catalog):
    key = stack.create_key(unique("revoked"))
    with stack.client(key, retry_policy=NO_RETRY) as client:
        assert len(client.availability([catalog[0].id])) == 1, "the new key does not work before revoking"
        stack.revoke(key)
        # Revocation is stored by another process; allow the BFF a moment to see it.
        deadline = time.monotonic() + 5
        while True:
            try:
                client.availability([catalog[0].id])
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
                break
            assert time.monotonic() < deadline, "a revoked key still works 5 s after revoking it"
            time.sleep(0.25)
        assert code_of(client.list_orders) == grpc.StatusCode.UNAUTHENTICATED
    listed = stack.keys("list")
    assert key.split("_")[1] in listed and "revoked" in listed, f"keys list does not show the revocation:\n{listed}"


def test_a_missing_scope_is_permission_denied(stack, client, catalog):
    reader = stack.create_key(unique("reader"), scopes="catalog.read,availability.read")
    with stack.client(reader, retry_policy=NO_RETRY) as limited:
        assert len(list(limited.sync_catalog())) == len(catalog), "catalog.read should allow the feed"
        assert len(limited.availability([catalog[0].id])) == 1, "availability.read should allow availability"
        denied = {
            "PlaceOrder": code_of(lambda: limited.place_order(unique("denied"), [(catalog[0].id, 1)])),
            "ListOrders": code_of(limited.list_orders),
            "GetOrder": code_of(lambda: limited.get_order("ord-any")),
        }
    assert denied == dict.fromkeys(denied, grpc.StatusCode.PERMISSION_DENIED), denied

    orders_only = stack.create_key(unique("orders"), scopes="orders.read,orders.write")
    with stack.client(orders_only, retry_policy=NO_RETRY) as limited:
        assert code_of(lambda: list(limited.sync_catalog())) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: limited.availability([catalog[0].id])) == grpc.StatusCode.PERMISSION_DENIED
        order = limited.place_order(unique("scoped"), [(catalog[0].id, 1)])
        assert limited.get_order(order.id).id == order.id


def test_errors_that_are_not_temporary_are_not_retried(stack, catalog):
    waits: list[float] = []
    with stack.client("tk_0123456789abcdef_" + "cd" * 32, sleep=waits.append) as client:
        assert code_of(lambda: client.availability([catalog[0].id])) == grpc.StatusCode.UNAUTHENTICATED
    assert waits == [], f"an UNAUTHENTICATED call was retried (waits {waits})"
