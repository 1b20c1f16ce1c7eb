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

Requests. :class:`Endpoint` sends a provider's POSTs through the SDK client with the
per-call work the SDK would repeat done once (see its docstring).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import ssl
from types import ModuleType
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

import pydantic_core

from .base import ProviderConfigError

Transport = Literal["auto", "aiohttp", "httpx"]


def check_base_url(url: str | None) -> str | None:
    """``base_url`` as given, when it is an absolute http(s) URL with a host; else a
    ValueError saying what one looks like.

    Checked with the config: the SDKs accept any string, and resolve one without a scheme
    against itself (``not-a-url`` becomes ``/not-a-url/not-a-url/chat/completions``), so
    the mistake would otherwise surface only at the first request.
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host, such as http://127.0.0.1:8000/v1")
    return url


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


class Endpoint:
    """One API endpoint of an SDK client: POST a JSON body, get the raw HTTP response.

    ``client.post(path, body=..., cast_to=Response)`` is the SDKs' documented way to call
    an endpoint and read the raw reply. On every call it builds the SDK's request options
    (a pydantic model whose defaults are deep-copied, about 35 us), resolves the path
    against the base URL (two URL parses) and encodes the body with ``json.dumps``
    through a custom encoder; measured here, that is about 0.15 ms of the 1 ms a call
    costs through the SDK. An endpoint builds the options once, with the absolute URL
    the SDK would have made, and hands a copy carrying the body, encoded by
    pydantic-core (the same bytes for JSON-native values), to ``client.request``: the
    method ``post`` itself ends in. Authentication, headers, timeouts, the transport and
    the mapping of HTTP errors to the SDK's exceptions all stay the SDK's.

    ``FinalRequestOptions`` lives in the SDKs' private ``_models`` module (both SDKs are
    generated from the same template). A release without it, or whose options cannot
    carry a body of bytes, is sent through ``client.post`` itself: slower, never wrong.
    The wire tests pin what goes out against ``client.post``, on both paths.
    """

    def __init__(self, sdk: ModuleType, sdk_client: Any, path: str) -> None:
        self.sdk_client = sdk_client
        """The SDK client itself, for anything else (``models.list()``, ``close()``)."""
        self.path = path
        self._response_type = http_library(sdk.DefaultAsyncHttpxClient).Response
        options = _request_options(sdk)
        url = str(sdk_client.base_url).rstrip("/") + "/" + path.lstrip("/")
        self._options = options.construct(method="post", url=url) if options is not None else None

    @property
    def prepared(self) -> bool:
        """Whether requests go out with options built once (else through ``client.post``)."""
        return self._options is not None

    async def post(self, body: Mapping[str, Any]) -> Any:
        """The HTTP response of a 2xx reply; the SDK's exception for any other outcome."""
        if self._options is None:
            return await self.sdk_client.post(self.path, body=body, cast_to=self._response_type)
        options = self._options.model_copy(update={"content": pydantic_core.to_json(body)})
        return await self.sdk_client.request(self._response_type, options)

    async def close(self) -> None:
        await self.sdk_client.close()


def _request_options(sdk: ModuleType) -> Any | None:
    """The SDK's ``FinalRequestOptions`` class, when it can carry a body of bytes."""
    try:
        options = importlib.import_module(f"{sdk.__name__}._models").FinalRequestOptions
    except (ImportError, AttributeError):
        return None
    return options if "content" in getattr(options, "model_fields", {}) else None
