"""Methods as text: the one-line JSON a local model reads and writes.

Training and generation must agree on one rendering, or the model learns a format it is
never asked for. The rendering is compact JSON (no spaces), keys in the method's field
order, so ``{"family":"trimmed_mean","alpha":0.2}`` is the only spelling of that method.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

DEFAULT_PROMPT = "{description}\nPropose one method, as one line of JSON.\nMethod: "


def render_method(method: Any) -> str:
    """Canonical one-line JSON of a method (a pydantic model or a plain dict)."""
    data = method.model_dump(mode="json") if isinstance(method, BaseModel) else dict(method)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)


def render_prompt(template: str, description: str) -> str:
    """The prompt every proposal and every training example starts with."""
    return template.replace("{description}", description)


def parse_completion(text: str, parse_method: Callable[[Any], Any]) -> Any | None:
    """The method a completion spells, or None when it spells none.

    Only the first line counts (a model may ramble after its answer). Text that is not a
    JSON object, or an object the environment rejects, is invalid: the caller counts it.
    """
    line = text.strip().split("\n", 1)[0].strip()
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    try:
        return parse_method(obj)
    except (ValidationError, TypeError, ValueError):
        return None
