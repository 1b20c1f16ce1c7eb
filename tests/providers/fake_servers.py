"""Real HTTP servers on 127.0.0.1 that speak the OpenAI and Anthropic wire formats.

The providers are tested through the real SDK clients, over real sockets, so that what
is tested is what runs: the SDK's exception types, headers and timeouts included. Each
server follows a *script*, one entry per request, then answers normally:

    "ok"           a valid answer
    "429" "429:1"  rate limited, optionally with ``Retry-After: 1``
    "500" "503"    server errors
    "stall"        no answer for ``stall_s`` seconds (longer than the client timeout),
                   then the connection is closed
    "drop"         the connection is closed without any response
    "not_json"     a reply whose content is not JSON
    "bad_schema"   JSON that breaks the schema
    "garbled"      status 200 with a body that is not a model reply (a proxy's HTML page)
    "401" "404"    bad key, unknown model (a model not in ``models`` also gets 404)

A valid answer is ``answer`` (a fixed dict), or ``responder(request)`` when one is given:
a function of the decoded request body, for tests whose answers must depend on what was
asked (how many proposals the schema wants, which proposal a judge is shown).
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
import socket
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

from pydantic import BaseModel

# What the provider tests ask the servers: a chat and the model its answer must fit.
MESSAGES = [
    {"role": "system", "content": "You propose estimators."},
    {"role": "user", "content": "Propose one."},
]


class Method(BaseModel):
    """An estimator of location."""

    family: str
    alpha: float


ANSWER = {"family": "trimmed_mean", "alpha": 0.2}
TOKENS_IN, TOKENS_OUT = 11, 7


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # many clients connect at once in the concurrency benchmark

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up first (after its timeout) is expected, not an error."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeServer(ABC):
    """Base of the two flavours: threads, script, counters. Use as a context manager."""

    def __init__(
        self,
        script: Iterable[str] = (),
        *,
        delay: float = 0.0,
        stall_s: float = 3.0,
        answer: dict[str, Any] | None = None,
        models: Iterable[str] = ("fake-model",),
        responder: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.script: deque[str] = deque(script)
        self.delay = delay
        self.stall_s = stall_s
        self.answer = dict(ANSWER if answer is None else answer)
        self.models = set(models)
        self.responder = responder
        self.requests = 0  # POSTs received, faulty or not
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []  # the credential header of each POST
        self.raw: list[tuple[str, dict[str, str], bytes]] = []  # each POST's path, headers and body bytes
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    # ----- lifecycle --------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sdk_base_url(self) -> str:
        """What to give the SDK as ``base_url`` (the OpenAI SDK wants the ``/v1``)."""
        return self.base_url + self.sdk_suffix

    sdk_suffix = ""

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()  # wakes stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # ----- what a flavour defines -------------------------------------------------

    post_path = ""

    @abstractmethod
    def ok_body(self, request: dict[str, Any], content: Any) -> dict[str, Any]:
        """A successful reply carrying ``content`` (a dict, or text that is not JSON)."""

    @abstractmethod
    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """An error reply in the flavour's format."""

    def models_body(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in sorted(self.models)]}

    # ----- request handling -------------------------------------------------------

    def _next_fault(self, request: dict[str, Any]) -> str:
        with self._lock:
            fault = self.script.popleft() if self.script else "ok"
        if fault == "ok" and request.get("model") not in self.models:
            return "404"
        return fault

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        data = handler.rfile.read(length)
        request = json.loads(data or b"{}")
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.bodies.append(request)
            self.raw.append((handler.path, dict(handler.headers.items()), data))
            self.auth.append(handler.headers.get("Authorization") or handler.headers.get("x-api-key") or "")
        try:
            if self.delay:
                self._stopped.wait(self.delay)
            self._respond(handler, request, self._next_fault(request))
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, handler: BaseHTTPRequestHandler, request: dict[str, Any], fault: str) -> None:
        status_text, _, retry_after = fault.partition(":")
        if fault == "stall":  # the client gives up first; then hang up like "drop"
            self._stopped.wait(self.stall_s)
        if fault in ("drop", "stall"):
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if status_text.isdigit():
            status = int(status_text)
            headers = {"Retry-After": retry_after} if retry_after else {}
            _send(handler, status, self.error_body(status, f"injected {status}"), headers)
        elif fault == "not_json":
            _send(handler, 200, self.ok_body(request, "Sure! Here is my answer: a trimmed mean."))
        elif fault == "garbled":
            _send_raw(handler, 200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif fault == "bad_schema":
            _send(handler, 200, self.ok_body(request, {"unexpected": True}))
        elif fault == "ok":
            answer = self.responder(request) if self.responder else self.answer
            _send(handler, 200, self.ok_body(request, answer))
        else:
            raise ValueError(f"unknown fault {fault!r} in the script")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != server.post_path:
                    _send(self, 404, server.error_body(404, f"no route {self.path}"))
                    return
                server._handle_post(self)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] == "/v1/models":
                    _send(self, 200, server.models_body())
                elif self.path == "/stats":  # for a server in another process
                    _send(self, 200, {"requests": server.requests, "max_in_flight": server.max_in_flight})
                else:
                    _send(self, 404, server.error_body(404, f"no route {self.path}"))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Silent: tests read counters, not logs."""

        return Handler


class FakeOpenAI(FakeServer):
    """``POST /v1/chat/completions`` and ``GET /v1/models``."""

    post_path = "/v1/chat/completions"
    sdk_suffix = "/v1"

    def ok_body(self, request: dict[str, Any], content: Any) -> dict[str, Any]:
        text = content if isinstance(content, str) else json.dumps(content)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": TOKENS_IN, "completion_tokens": TOKENS_OUT, "total_tokens": TOKENS_IN + TOKENS_OUT},
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": "fake_error", "param": None, "code": code}}


class FakeAnthropic(FakeServer):
    """``POST /v1/messages``; a forced tool is answered with a ``tool_use`` block."""

    post_path = "/v1/messages"

    def ok_body(self, request: dict[str, Any], content: Any) -> dict[str, Any]:
        tools = request.get("tools") or []
        if isinstance(content, dict) and tools:
            block = {"type": "tool_use", "id": "toolu_fake", "name": tools[0]["name"], "input": content}
        else:
            block = {"type": "text", "text": content if isinstance(content, str) else json.dumps(content)}
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", ""),
            "content": [block],
            "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": TOKENS_IN, "output_tokens": TOKENS_OUT},
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


def run_closed(provider: Any, method: str, *args: Any) -> Any:
    """``asyncio.run(provider.method(*args))``, closing the provider's client before the
    loop ends, as a careful caller does (no sockets left for the collector)."""

    async def go() -> Any:
        async with provider:
            return await getattr(provider, method)(*args)

    return asyncio.run(go())


SERVER_FOR = {"openai": FakeOpenAI, "vllm": FakeOpenAI, "anthropic": FakeAnthropic}
"""Which fake server speaks each provider's wire format."""


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    _send_raw(handler, status, json.dumps(body).encode(), "application/json", headers)


def _send_raw(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    """Serve in a process of its own (benchmarks: the server's CPU stays out of the
    client's measurement). Prints the port on the first line, serves until stdin closes."""
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI/Anthropic server on 127.0.0.1")
    parser.add_argument("flavour", choices=sorted(SERVER_FOR))
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    with SERVER_FOR[args.flavour](delay=args.delay) as server:
        print(server.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
