"""Answers a fake server gives as a model would: read from the request what was asked.

``answer_as_model`` is a ``responder`` for ``tests.providers.fake_servers``: it finds the
JSON schema in the request in any of the wire formats ouro sends (OpenAI
``response_format``, vLLM ``structured_outputs`` or ``guided_json``, Anthropic's forced
tool), and answers a proposals schema with that many methods taken in turn from a fixed
list, or a judge schema by a fixed rule (reject the sample mean, accept the rest).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any

METHODS = (
    {"family": "median"},
    {"family": "trimmed_mean", "alpha": 0.2},
    {"family": "mean"},
    {"family": "huber", "c": 1.5},
    {"family": "biweight", "c": 5.0},
    {"family": "hodges_lehmann"},
)


def request_schema(request: dict[str, Any]) -> dict[str, Any]:
    if "response_format" in request:
        return request["response_format"]["json_schema"]["schema"]
    if "structured_outputs" in request:
        return request["structured_outputs"]["json"]
    if "guided_json" in request:
        return request["guided_json"]
    if request.get("tools"):
        return request["tools"][0]["input_schema"]
    return {}


def last_user_text(request: dict[str, Any]) -> str:
    user = [m for m in request.get("messages", []) if m.get("role") == "user"]
    content = user[-1]["content"] if user else ""
    return content if isinstance(content, str) else json.dumps(content)


class ModelAnswers:
    """A thread-safe responder (the fake servers answer from several threads)."""

    def __init__(self) -> None:
        self._next = itertools.cycle(METHODS)
        self._lock = threading.Lock()
        self.asked: list[str] = []  # which schema each answered request wanted

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        props = request_schema(request).get("properties", {})
        if "proposals" in props:
            count = int(props["proposals"].get("minItems", 1))
            with self._lock:
                self.asked.append("proposals")
                return {"proposals": [dict(next(self._next)) for _ in range(count)]}
        if "accept" in props:
            match = re.search(r"<proposal>\s*(\{.*?\})\s*</proposal>", last_user_text(request), flags=re.DOTALL)
            family = json.loads(match.group(1)).get("family") if match else "?"
            with self._lock:
                self.asked.append("judge")
            good = family != "mean"
            return {
                "accept": good,
                "predicted_quality": 3.0 if good else 1.0,
                "rationale": f"{family} {'is' if good else 'is not'} robust to gross errors",
            }
        return {"unexpected": True}
