"""Rate limits of a key's plan, from the client's side.

A ``trial`` key allows 5 calls per second with a burst of 10: about 30
calls in a row must meet RESOURCE_EXHAUSTED carrying a google.rpc.RetryInfo
whose retry_delay (the time until the bucket holds a token again) is
above 0 and at most 1 s; waiting that long lets the next call through.
"""

from __future__ import annotations

import time

import grpc

from helpers import unique
from tailor_partner import retry_delay
from tailor_partner.client import NO_RETRY

TRIAL_PER_SECOND = 5
TRIAL_BURST = 10
CALLS = 30


def test_a_trial_key_hammered_gets_resource_exhausted_with_retry_info(stack, catalog):
    key = stack.create_key(unique("trial"), scopes="catalog.read,availability.read", plan="trial")
    product = catalog[0].id
    with stack.client(key, retry_policy=NO_RETRY) as client:
        client.availability([product])  # connect first so the loop below is quick
        passed = 0
        refusals: list[tuple[str, object]] = []
        other: list[grpc.RpcError] = []
        started = time.monotonic()
        for _ in range(CALLS):
            try:
                client.availability([product])
                passed += 1
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refusals.append((error.details(), retry_delay(error)))
                else:
                    other.append(error)
        elapsed = time.monotonic() - started

        assert not other, f"unexpected errors: {[(e.code(), e.details()) for e in other]}"
        assert refusals, (
            f"{CALLS} calls in {elapsed:.2f} s on a trial key ({TRIAL_PER_SECOND}/s, burst {TRIAL_BURST}) "
            f"all passed: no rate limit is enforced"
        )
        allowed = TRIAL_BURST + TRIAL_PER_SECOND * elapsed + 1
        assert passed <= allowed, f"{passed} calls passed in {elapsed:.2f} s, the plan allows about {allowed:.0f}"
        delays = [delay for _, delay in refusals]
        assert all(delay is not None for delay in delays), (
            f"RESOURCE_EXHAUSTED without a google.rpc.RetryInfo: {[d for d, delay in refusals if delay is None]}"
        )
        assert all(0 < delay <= 1.0 for delay in delays), f"retry_delay out of (0, 1] s: {delays}"

        time.sleep(delays[-1])
        assert len(client.availability([product])) == 1, "the call after waiting retry_delay failed"


def test_the_client_waits_what_retry_info_asks_and_succeeds(stack, catalog):
    key = stack.create_key(unique("trial"), scopes="catalog.read,availability.read", plan="trial")
    product = catalog[0].id
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with stack.client(key, sleep=sleep) as client:
        for call in range(20):
            assert len(client.availability([product])) == 1, f"call {call} failed despite retries"
    assert waits, "20 quick calls on a trial key never had to wait: no rate limit is enforced"
    assert all(0 < wait <= 1.0 for wait in waits), f"waits not taken from RetryInfo: {waits}"
