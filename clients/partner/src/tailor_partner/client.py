"""A small, typed client for ``tailor.partner.v1.PartnerService``.

Every call sends the partner's API key in the ``x-api-key`` metadata and
has a deadline (``timeout`` seconds; the catalogue feed has its own, longer
one). Failures surface as :class:`grpc.RpcError`; ``error.code()`` tells
what went wrong:

* ``UNAUTHENTICATED``: the key is unknown, malformed or revoked.
* ``PERMISSION_DENIED``: the key lacks the scope the call needs
  (``catalog.read``, ``availability.read``, ``orders.write``,
  ``orders.read``).
* ``NOT_FOUND``: e.g. an order id that is not one of this partner's orders.
* ``RESOURCE_EXHAUSTED``: the key's plan (rate or daily quota) is used up;
  the status carries a ``google.rpc.RetryInfo`` saying when to come back
  (read it with :func:`retry_delay`).
* ``UNAVAILABLE``: the server could not be reached or is shutting down.

Every method of :class:`PartnerClient` is safe to repeat (they are reads,
and ``PlaceOrder`` is idempotent on its idempotency key), so each retries
``RESOURCE_EXHAUSTED`` and ``UNAVAILABLE`` a few times as its
:class:`RetryPolicy` allows, waiting what the server's RetryInfo asks.
Nothing else is retried.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, TypeVar, Union

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tailor_partner._gen.tailor.partner.v1 import partner_pb2 as pb
from tailor_partner._gen.tailor.partner.v1 import partner_pb2_grpc

T = TypeVar("T")

#: The metadata key the API key travels in.
API_KEY_HEADER = "x-api-key"

#: Status codes that may be retried (and only for idempotent calls).
RETRYABLE_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})

#: BatchGetAvailability takes at most this many ids per call.
MAX_AVAILABILITY_IDS = 500

OrderLineLike = Union[pb.OrderLine, Tuple[str, int], Mapping[str, Any]]
TimeLike = Union[datetime.datetime, timestamp_pb2.Timestamp]


def retry_delay(error: grpc.RpcError) -> Optional[float]:
    """The ``retry_delay`` of the ``google.rpc.RetryInfo`` in ``error``, in seconds.

    The server puts RetryInfo into the rich status details (the
    ``grpc-status-details-bin`` trailer) of RESOURCE_EXHAUSTED answers.
    Returns ``None`` when the error carries no rich status or no RetryInfo.
    """
    try:
        status = rpc_status.from_call(error)
    except (AttributeError, ValueError):
        # Not a call (no trailers), or details that contradict the status.
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating an idempotent call.

    Only ``RESOURCE_EXHAUSTED`` and ``UNAVAILABLE`` are retried:

    * with a ``RetryInfo`` in the status, after exactly its ``retry_delay``;
    * ``UNAVAILABLE`` without one, after an exponential backoff with jitter;
    * ``RESOURCE_EXHAUSTED`` without one is not retried: the server did not
      say the condition is temporary (gRPC also uses this code for e.g.
      oversized messages).

    A RetryInfo asking for more than ``max_wait`` seconds (a used-up daily
    quota asks to wait until midnight UTC) is not waited for: the error is
    raised at once so the caller can decide.
    """

    #: Attempts in total, the first included (1 disables retries).
    max_attempts: int = 4
    #: The longest single wait the client accepts before a retry.
    max_wait: float = 30.0
    #: First backoff for UNAVAILABLE without RetryInfo; doubles each retry.
    backoff: float = 0.25
    #: Cap of the exponential backoff.
    max_backoff: float = 5.0

    def wait_before_retry(self, error: grpc.RpcError, attempt: int) -> Optional[float]:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        code = error.code() if hasattr(error, "code") else None
        if code not in RETRYABLE_CODES or attempt >= self.max_attempts:
            return None
        delay = retry_delay(error)
        if delay is None:
            if code != grpc.StatusCode.UNAVAILABLE:
                return None
            ceiling = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            delay = random.uniform(ceiling / 2, ceiling)
        if delay > self.max_wait:
            return None
        return max(delay, 0.0)


#: Used when a client is given no policy.
DEFAULT_RETRY_POLICY = RetryPolicy()
#: Never retries.
NO_RETRY = RetryPolicy(max_attempts=1)


def call_with_retry(
    call: Callable[[], T],
    policy: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Runs ``call`` and repeats it as ``policy`` allows; returns its result.

    Use it only for idempotent calls. Raises the last :class:`grpc.RpcError`
    when the policy gives up.
    """
    attempt = 1
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            wait = policy.wait_before_retry(error, attempt) if policy else None
            if wait is None:
                raise
            sleep(wait)
            attempt += 1


def _timestamp(value: TimeLike) -> timestamp_pb2.Timestamp:
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    stamp = timestamp_pb2.Timestamp()
    if value.tzinfo is None:  # naive datetimes are taken as UTC
        value = value.replace(tzinfo=datetime.timezone.utc)
    stamp.FromDatetime(value)
    return stamp


def _order_line(line: OrderLineLike) -> pb.OrderLine:
    if isinstance(line, pb.OrderLine):
        return line
    if isinstance(line, Mapping):
        return pb.OrderLine(product_id=str(line["product_id"]), quantity=int(line["quantity"]))
    product_id, quantity = line
    return pb.OrderLine(product_id=product_id, quantity=int(quantity))


class CatalogSync(Iterator[pb.FeedProduct]):
    """The catalogue feed as an iterator of products that survives dropped streams.

    Products come ordered by id. After each product handed out,
    :attr:`cursor` is that product's cursor: pass it to
    :meth:`PartnerClient.sync_catalog` to continue later after it. When the
    stream breaks with a retryable status (UNAVAILABLE, RESOURCE_EXHAUSTED
    with RetryInfo), the feed is opened again from :attr:`cursor`, so no
    product is repeated or skipped; :attr:`reconnects` counts those
    reopenings. Other errors, or too many failures in a row without
    progress, raise :class:`grpc.RpcError`.
    """

    def __init__(
        self,
        client: "PartnerClient",
        cursor: Optional[str],
        updated_since: Optional[TimeLike],
        timeout: Optional[float],
    ) -> None:
        #: Cursor of the last product handed out (the starting cursor before that).
        self.cursor: Optional[str] = cursor or None
        #: How many times a dropped stream was opened again.
        self.reconnects = 0
        self._client = client
        self._updated_since = _timestamp(updated_since) if updated_since is not None else None
        self._timeout = timeout
        self._stream: Optional[Any] = None
        self._products = self._run()

    def __iter__(self) -> "CatalogSync":
        return self

    def __next__(self) -> pb.FeedProduct:
        return next(self._products)

    def close(self) -> None:
        """Stops reading and cancels the open stream, if any."""
        self._products.close()

    def _request(self) -> pb.StreamCatalogFeedRequest:
        request = pb.StreamCatalogFeedRequest(cursor=self.cursor or "")
        if self._updated_since is not None:
            request.updated_since.CopyFrom(self._updated_since)
        return request

    def _run(self) -> Generator[pb.FeedProduct, None, None]:
        failures = 0
        policy = self._client.retry_policy
        while True:
            stream = self._client._stub.StreamCatalogFeed(
                self._request(), metadata=self._client._metadata, timeout=self._timeout
            )
            self._stream = stream
            try:
                for message in stream:
                    self.cursor = message.cursor
                    failures = 0
                    yield message.product
                return
            except grpc.RpcError as error:
                failures += 1
                wait = policy.wait_before_retry(error, failures) if policy else None
                if wait is None:
                    raise
                self.reconnects += 1
                self._client._sleep(wait)
            finally:
                stream.cancel()  # no-op when the stream already ended
                self._stream = None


class PartnerClient:
    """A client of the partner API for one API key.

    Args:
        address: ``host:port`` of the partner BFF (an ``http://`` prefix is
            tolerated and dropped).
        api_key: the partner's key, ``tk_<id>_<secret>``.
        timeout: deadline in seconds of each unary call.
        feed_timeout: deadline in seconds of one catalogue feed stream.
        retry_policy: how idempotent calls are retried; ``None`` never retries.
        credentials: TLS channel credentials; plaintext when ``None``.
        channel: an existing channel to use instead of opening one (it is
            not closed by :meth:`close`).
        sleep: how to wait between retries (tests can replace it).
    """

    def __init__(
        self,
        address: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        feed_timeout: float = 300.0,
        retry_policy: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        credentials: Optional[grpc.ChannelCredentials] = None,
        channel: Optional[grpc.Channel] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        for prefix in ("http://", "https://"):
            if address.startswith(prefix):
                address = address[len(prefix):]
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.feed_timeout = feed_timeout
        self.retry_policy = retry_policy
        self._sleep = sleep
        self._metadata = ((API_KEY_HEADER, api_key),)
        self._owns_channel = channel is None
        if channel is None:
            options = [("grpc.primary_user_agent", "tailor-partner-python/0.1.0")]
            if credentials is None:
                channel = grpc.insecure_channel(self.address, options=options)
            else:
                channel = grpc.secure_channel(self.address, credentials, options=options)
        self._channel = channel
        self._stub = partner_pb2_grpc.PartnerServiceStub(channel)  # type: ignore[no-untyped-call]

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "PartnerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: Any, timeout: Optional[float]) -> T:
        deadline = self.timeout if timeout is None else timeout
        return call_with_retry(
            lambda: method(request, metadata=self._metadata, timeout=deadline),
            self.retry_policy,
            sleep=self._sleep,
        )

    def sync_catalog(
        self,
        cursor: Optional[str] = None,
        updated_since: Optional[TimeLike] = None,
        *,
        timeout: Optional[float] = None,
    ) -> CatalogSync:
        """Streams the catalogue (scope ``catalog.read``).

        Args:
            cursor: resume after the product this cursor was handed out
                with; ``None`` starts at the beginning.
            updated_since: only products updated at or after this time
                (a naive datetime is taken as UTC).
            timeout: deadline of each stream; defaults to ``feed_timeout``.

        Returns:
            A :class:`CatalogSync`: iterate it for products and read its
            ``cursor`` to continue later.
        """
        return CatalogSync(
            self, cursor, updated_since, self.feed_timeout if timeout is None else timeout
        )

    def availability(
        self, product_ids: Sequence[str], *, timeout: Optional[float] = None
    ) -> list[pb.ProductAvailability]:
        """Availability of products, one entry per id in order (scope ``availability.read``).

        Unknown ids come back with ``known == False``. More than 500 ids are
        asked in several calls.
        """
        ids = list(product_ids)
        result: list[pb.ProductAvailability] = []
        for start in range(0, len(ids), MAX_AVAILABILITY_IDS):
            request = pb.BatchGetAvailabilityRequest(
                product_ids=ids[start:start + MAX_AVAILABILITY_IDS]
            )
            response: pb.BatchGetAvailabilityResponse = self._unary(
                self._stub.BatchGetAvailability, request, timeout
            )
            result.extend(response.availabilities)
        return result

    def place_order(
        self,
        idempotency_key: str,
        lines: Iterable[OrderLineLike],
        *,
        timeout: Optional[float] = None,
    ) -> pb.Order:
        """Places an order (scope ``orders.write``).

        The same ``idempotency_key`` always gives back the same order, so a
        call whose answer was lost can be repeated safely; this method does
        so itself on RESOURCE_EXHAUSTED/UNAVAILABLE. Use a new key for each
        new order.

        Args:
            idempotency_key: a key unique to this order, e.g. your own
                order reference or a UUID.
            lines: ``OrderLine`` messages, ``(product_id, quantity)`` pairs
                or mappings with ``product_id`` and ``quantity``.
        """
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        request = pb.PlaceOrderRequest(
            idempotency_key=idempotency_key, lines=[_order_line(line) for line in lines]
        )
        response: pb.PlaceOrderResponse = self._unary(self._stub.PlaceOrder, request, timeout)
        return response.order

    def get_order(self, order_id: str, *, timeout: Optional[float] = None) -> pb.Order:
        """One of this partner's orders (scope ``orders.read``); NOT_FOUND for others'."""
        request = pb.GetOrderRequest(order_id=order_id)
        response: pb.GetOrderResponse = self._unary(self._stub.GetOrder, request, timeout)
        return response.order

    def list_orders(
        self,
        *,
        page_size: int = 100,
        limit: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> list[pb.Order]:
        """This partner's orders, newest first (scope ``orders.read``).

        Follows ``next_page_token`` until the last page, or until ``limit``
        orders were read.
        """
        orders: list[pb.Order] = []
        token = ""
        while limit is None or len(orders) < limit:
            request = pb.ListOrdersRequest(page_size=page_size, page_token=token)
            response: pb.ListOrdersResponse = self._unary(self._stub.ListOrders, request, timeout)
            orders.extend(response.orders)
            token = response.next_page_token
            if not token:
                break
        return orders if limit is None else orders[:limit]
