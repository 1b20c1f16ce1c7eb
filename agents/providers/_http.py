"""The HTTP clients under the SDKs: aiohttp when installed, a pool sized to the
concurrency limit, and one TLS context for the whole process.

Transport. Both SDKs ship an aiohttp transport (``DefaultAioHttpClient``, installed with
their ``aiohttp`` extra, which ouro depends on). Measured here at 64 requests in flight,
the SDK's default httpx2 pool costs about 4-5 ms of client CPU a call: for every
request it asks each pooled connection whether it has expired, and each answer builds
a dict of socket attributes and polls the socket. Through aiohttp the same call costs
about 3 ms. ``transport="httpx"`` keeps the SDK's default (and is the fallback when
aiohttp is missing, or the SDK is too old to have the transport).

Pool. A pool smaller than the concurrency limit would queue requests the semaphore
already admitted. TLS. Building a context loads the CA bundle, about 0.1-0.3 s here,
and every SDK client builds its own; providers make one client per event loop, so they
share one context instead (a context is not bound to a loop, and is safe to share).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import ssl
from types import ModuleType
from typing import Any, Literal

from .base import ProviderConfigError

Transport = Literal["auto", "aiohttp", "httpx"]


def sdk_http_client(sdk: ModuleType, transport: Transport, concurrency: int, timeout_s: float) -> Any:
    """An HTTP client for ``sdk`` (the ``openai`` or ``anthropic`` module), built with the
    SDK's own constructor so its defaults still apply."""
    factory = _factory(sdk, transport)
    http = http_library(factory)
    limits = http.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return factory(limits=limits, timeout=timeout_s, verify=tls_context(http.__name__))


def http_library(factory: type) -> ModuleType:
    """``httpx`` or ``httpx2``: whichever the SDK's client class derives from, by release."""
    base = next(c for c in factory.__mro__ if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


def aiohttp_available(sdk: ModuleType) -> bool:
    return hasattr(sdk, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") is not None


def check_transport(sdk: ModuleType, transport: Transport) -> None:
    """Raise at construction, not at the first request, when aiohttp was asked for and
    cannot be had."""
    if transport == "aiohttp" and not aiohttp_available(sdk):
        raise ProviderConfigError(
            f"transport 'aiohttp' needs aiohttp and a release of {sdk.__name__} with "
            f"DefaultAioHttpClient: pip install '{sdk.__name__}[aiohttp]'"
        )


def _factory(sdk: ModuleType, transport: Transport) -> type:
    check_transport(sdk, transport)
    if transport == "httpx" or not aiohttp_available(sdk):
        return sdk.DefaultAsyncHttpxClient
    return sdk.DefaultAioHttpClient


@functools.lru_cache(maxsize=None)
def tls_context(library: str) -> ssl.SSLContext:
    """The library's default context (its CA bundle, ``SSL_CERT_FILE`` honoured), once."""
    return importlib.import_module(library).create_ssl_context()
