"""Python client for the Tailor partner API (``tailor.partner.v1.PartnerService``).

Quick start::

    from tailor_partner import PartnerClient

    with PartnerClient("127.0.0.1:8083", api_key="tk_...") as client:
        feed = client.sync_catalog()
        for product in feed:
            print(product.id, product.title)
        print("resume later from", feed.cursor)

The message classes (``FeedProduct``, ``Order``, ``OrderLine``...) live in
:mod:`tailor_partner.partner_pb2`, generated from
``proto/tailor/partner/v1/partner.proto`` by ``generate.py``.
"""

from __future__ import annotations

try:
    from tailor_partner._gen.tailor.partner.v1 import partner_pb2, partner_pb2_grpc
except ModuleNotFoundError as error:  # pragma: no cover - depends on the checkout
    if error.name and error.name.startswith("tailor_partner._gen"):
        raise ImportError(
            "the partner API stubs are not generated yet: run `python generate.py` "
            "in clients/partner (needs grpcio-tools, see requirements-dev.txt)"
        ) from error
    raise

from tailor_partner.client import (
    API_KEY_HEADER,
    RETRYABLE_CODES,
    CatalogSync,
    PartnerClient,
    RetryPolicy,
    call_with_retry,
    retry_delay,
)

__all__ = [
    "API_KEY_HEADER",
    "RETRYABLE_CODES",
    "CatalogSync",
    "PartnerClient",
    "RetryPolicy",
    "call_with_retry",
    "partner_pb2",
    "partner_pb2_grpc",
    "retry_delay",
]

__version__ = "0.1.0"
