"""A loopback stand-in for a vLLM server's LoRA and completion endpoints (vLLM cannot be installed here).

Speaks what ouro uses, the way vLLM answers it: ``GET /v1/models`` lists the base model
and loaded adapters; ``POST /v1/load_lora_adapter`` checks that the folder is a PEFT
adapter and refuses a name already loaded (400); ``POST /v1/unload_lora_adapter``
answers 404 for an unknown name; ``POST /v1/completions`` answers 404 for a model it
does not serve. ``fail_next`` makes the next requests answer 503, to exercise retries.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeVLLM:
    def __init__(self, base_model: str = "base", texts: list[str] | None = None) -> None:
        self.base_model = base_model
        self.adapters: dict[str, str] = {}
        self.log: list[tuple[str, str, dict]] = []
        self.fail_next = 0
        self.texts = texts or ['{"family":"median"}', '{"family":"huber","c":1.5}', "not json"]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                return

            def _send(self, code: int, body) -> None:
                data = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else {}
                fake.log.append((method, self.path, body))
                if fake.fail_next > 0:
                    fake.fail_next -= 1
                    return self._send(503, {"error": "overloaded"})
                route = getattr(fake, f"_{method.lower()}_{self.path.strip('/').replace('/', '_')}", None)
                if route is None:
                    return self._send(404, {"error": f"no route {self.path}"})
                code, payload = route(body)
                self._send(code, payload)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeVLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------ endpoints
    def _get_v1_models(self, body: dict):
        ids = [self.base_model, *self.adapters]
        return 200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}

    def _post_v1_load_lora_adapter(self, body: dict):
        name, path = body.get("lora_name"), body.get("lora_path")
        if name in self.adapters:
            return 400, {"error": f"The lora adapter '{name}' has already been loaded."}
        folder = Path(path or "")
        if not (folder / "adapter_config.json").is_file() or not (folder / "adapter_model.safetensors").is_file():
            return 400, {"error": f"no PEFT adapter at {path}"}
        self.adapters[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def _post_v1_unload_lora_adapter(self, body: dict):
        name = body.get("lora_name")
        if name not in self.adapters:
            return 404, {"error": f"The lora adapter '{name}' cannot be found."}
        del self.adapters[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def _post_v1_completions(self, body: dict):
        model = body.get("model")
        if model != self.base_model and model not in self.adapters:
            return 404, {"error": f"The model `{model}` does not exist."}
        n = int(body.get("n", 1))
        texts = [self.texts[i % len(self.texts)] for i in range(n)]
        choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
        usage = {"prompt_tokens": 5 * n, "completion_tokens": sum(len(t) for t in texts)}
        return 200, {"object": "text_completion", "model": model, "choices": choices, "usage": usage}

    def requests(self, path: str) -> list[dict]:
        return [body for _, p, body in self.log if p == path]
