"""The HTTP clients under the SDKs: a pool sized to the concurrency limit, and one TLS
context for the whole process.

A pool smaller than the concurrency limit would queue requests the semaphore already
admitted. Building a TLS context loads the CA bundle, about 0.1-0.3 s here, and every
SDK client builds its own; providers make one client per event loop, so they share
one context instead (a context is not bound to a loop, and is safe to share).
"""

from __future__ import annotations

import functools
import importlib
import ssl
from typing import Any, Callable


def pooled_client(factory: Callable[..., Any], library: str, concurrency: int, timeout_s: float) -> Any:
    """``factory(...)``, the SDK's own client constructor (so its defaults still apply),
    with ``library`` (``"httpx"`` or ``"httpx2"``, whichever the SDK is built on)
    supplying the ``Limits`` and the TLS context."""
    http = importlib.import_module(library)
    limits = http.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return factory(limits=limits, timeout=timeout_s, verify=tls_context(library))


@functools.lru_cache(maxsize=None)
def tls_context(library: str) -> ssl.SSLContext:
    """The library's default context (its CA bundle, ``SSL_CERT_FILE`` honoured), once."""
    return importlib.import_module(library).create_ssl_context()
