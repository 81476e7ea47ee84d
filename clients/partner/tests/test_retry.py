"""The retry policy on its own: which errors are retried, and how long it waits.

These feed the policy errors that carry a real ``grpc-status-details-bin``
trailer, built as a server builds it.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tailor_partner import RetryPolicy, call_with_retry, retry_delay


class FakeError(grpc.RpcError, grpc.Call):
    """What a failed call raises: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, delay: float | None = None) -> None:
        self._code = code
        self._trailers: tuple = ()
        if delay is not None:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
                seconds=int(delay), nanos=int(round((delay - int(delay)) * 1e9)))))
            status = status_pb2.Status(code=code.value[0], message="refused", details=[detail])
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return "refused"

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def failing(*errors: grpc.RpcError):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return call, calls


def test_retry_delay_reads_retry_info():
    assert retry_delay(FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.25)) == pytest.approx(0.25)
    assert retry_delay(FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED)) is None
    assert code_pb2.RESOURCE_EXHAUSTED == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def test_resource_exhausted_is_retried_after_the_retry_delay():
    waits: list[float] = []
    call, calls = failing(
        FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.2),
        FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.6),
    )
    assert call_with_retry(call, RetryPolicy(), sleep=waits.append) == "ok"
    assert waits == [pytest.approx(0.2), pytest.approx(0.6)]
    assert len(calls) == 3


def test_unavailable_without_retry_info_backs_off():
    waits: list[float] = []
    call, _ = failing(FakeError(grpc.StatusCode.UNAVAILABLE), FakeError(grpc.StatusCode.UNAVAILABLE))
    assert call_with_retry(call, RetryPolicy(backoff=0.2), sleep=waits.append) == "ok"
    assert len(waits) == 2 and 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4, waits


@pytest.mark.parametrize(
    "error",
    [
        FakeError(grpc.StatusCode.PERMISSION_DENIED),
        FakeError(grpc.StatusCode.INVALID_ARGUMENT, 0.1),
        FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED),  # no RetryInfo: not known to be temporary
        FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 3600.0),  # e.g. daily quota: longer than max_wait
    ],
    ids=["permission-denied", "invalid-argument", "exhausted-without-retry-info", "exhausted-for-an-hour"],
)
def test_other_errors_are_raised_at_once(error):
    waits: list[float] = []
    call, calls = failing(error)
    with pytest.raises(grpc.RpcError) as raised:
        call_with_retry(call, RetryPolicy(max_wait=30), sleep=waits.append)
    assert raised.value is error
    assert (waits, len(calls)) == ([], 1)


def test_attempts_are_bounded():
    waits: list[float] = []
    call, calls = failing(*[FakeError(grpc.StatusCode.UNAVAILABLE, 0.01)] * 10)
    with pytest.raises(grpc.RpcError):
        call_with_retry(call, RetryPolicy(max_attempts=3), sleep=waits.append)
    assert len(calls) == 3 and len(waits) == 2


def test_no_policy_never_retries():
    call, calls = failing(FakeError(grpc.StatusCode.UNAVAILABLE, 0.01))
    with pytest.raises(grpc.RpcError):
        call_with_retry(call, None)
    assert len(calls) == 1
