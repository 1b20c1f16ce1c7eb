"""A small client for a user's vLLM server with LoRA adapters loaded at run time.

The server must run with ``--enable-lora --max-lora-rank R`` (R at least the adapter's
rank) and the environment variable ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=1``. Each
generation's adapter is loaded under a new name (``ouro-RUN-ARM-sSEED-gen-003``): a
reused name can serve a stale prefix cache. Generation then selects the adapter by
sending its name as ``model`` to the OpenAI-compatible ``/v1/completions``.

Synchronous on purpose: a researcher's ``propose`` is a synchronous call in the loop.
Retries (tenacity, exponential backoff with jitter) cover what a busy or restarting
server does: connection errors, timeouts, 5xx and 429. A 4xx is the caller's mistake
and is raised at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential


class VLLMServerConfig(BaseModel):
    """Where the server is, and how the run directory looks from its side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field("http://127.0.0.1:8000", description="the server's root, with or without /v1")
    model: str | None = Field(None, description="the served base model's name (used before any adapter exists)")
    api_key_env: str = Field("VLLM_API_KEY", description="environment variable holding the key (optional)")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    retries: int = Field(4, ge=0, le=20, description="extra attempts on connection errors, timeouts, 429 and 5xx")
    backoff: float = Field(0.5, gt=0, le=60, description="scale of the exponential, fully jittered wait between attempts")
    run_dir_on_server: str | None = Field(
        None, description="the run directory as the server's filesystem sees it (default: the same path)"
    )
    unload_previous: bool = Field(True, description="unload the last generation's adapter after loading the new one")


class VLLMError(RuntimeError):
    """The server answered with an error that retrying will not fix."""


@dataclass
class Completions:
    texts: list[str]
    tokens_in: int
    tokens_out: int


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))


def adapter_name(run: str, arm: str, seed: int, tag: str) -> str:
    """A name unique to the run, arm, seed and generation, in characters vLLM accepts."""
    raw = f"ouro-{run}-{arm}-s{seed}-{tag}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


class VLLMAdapterClient:
    def __init__(self, config: VLLMServerConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        root = config.base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        key = os.environ.get(config.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=root, headers=headers, timeout=config.timeout, transport=transport)
        self.retries_used = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "VLLMAdapterClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ requests
    def _request(self, method: str, path: str, json: dict | None = None) -> httpx.Response:
        def once() -> httpx.Response:
            response = self._http.request(method, path, json=json)
            response.raise_for_status()
            return response

        for attempt in Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.config.retries + 1),
            wait=wait_random_exponential(multiplier=self.config.backoff, max=20.0),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.retries_used += 1
                try:
                    return once()
                except httpx.HTTPStatusError as e:
                    if _retryable(e):
                        raise
                    raise VLLMError(f"{method} {path}: {e.response.status_code} {e.response.text[:300]}") from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # ------------------------------------------------------------ adapters
    def models(self) -> list[str]:
        """Ids the server serves: the base model and every loaded adapter."""
        return [m["id"] for m in self._request("GET", "/v1/models").json().get("data", [])]

    def server_path(self, local_path: Path, run_dir: Path) -> str:
        """An adapter's path as the server sees it (the run directory may be mounted elsewhere)."""
        if self.config.run_dir_on_server is None:
            return str(Path(local_path).resolve())
        rel = Path(local_path).resolve().relative_to(Path(run_dir).resolve())
        return str(Path(self.config.run_dir_on_server) / rel)

    def load(self, name: str, server_path: str) -> None:
        """Load an adapter under ``name``; a name the server already lists is left as it is.

        Names are unique per generation, so a listed name holds this very adapter (loaded
        before a crash and resume).
        """
        if name in self.models():
            return
        self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": server_path})

    def unload(self, name: str) -> bool:
        """Unload an adapter; False when the server no longer had it (e.g. it restarted)."""
        try:
            self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except VLLMError:
            return False
        return True

    # ------------------------------------------------------------ generation
    def complete(
        self,
        model: str,
        prompt: str,
        n: int,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Completions:
        """``n`` completions of ``prompt`` from ``model`` (a base model or an adapter's name)."""
        body = {
            "model": model,
            "prompt": prompt,
            "n": n,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop or ["\n"],
        }
        if seed is not None:
            body["seed"] = int(seed) % (2**32)  # vLLM seeds a torch generator per request
        data = self._request("POST", "/v1/completions", body).json()
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        return Completions(
            texts=[c.get("text", "") for c in choices],
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", 0)),
        )
