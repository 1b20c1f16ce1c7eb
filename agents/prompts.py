"""The prompts model-backed researchers and judges send, in one place.

Sections are wrapped in tags (``<problem>``, ``<exemplars>``, ``<proposal>``, ...):
models follow tagged prompts well, and the offline scripted model reads the same tags
to answer as a model would, so what it is tested on is what a real model receives.
Everything here is a pure function of its inputs: the same archive, draw and feedback
give the same prompt, and so the same prompt hash in the provenance of a proposal.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable

Message = dict[str, str]

RESEARCHER_SYSTEM = (
    "You are a research statistician. You propose methods for the problem you are given. "
    "Reply with a single JSON object that matches the required schema exactly, and nothing else."
)
JUDGE_SYSTEM = (
    "You are a careful referee of statistical methods. You judge one proposed method for the "
    "problem you are given. Reply with a single JSON object that matches the required schema "
    "exactly, and nothing else."
)


def tag(name: str, body: str) -> str:
    return f"<{name}>\n{body.strip()}\n</{name}>"


def sections(text: str) -> dict[str, str]:
    """The tagged sections of a prompt, by name (the last one wins when repeated)."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<([a-z_]+)>\n?(.*?)\n?</\1>", text, flags=re.DOTALL)}


def json_lines(body: str) -> list[Any]:
    """The JSON values of a section holding one per line; lines that do not parse are skipped."""
    out = []
    for line in body.splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _evidence_text(evidence: dict | None) -> str:
    return json.dumps(evidence, sort_keys=True, default=float) if evidence else ""


def researcher_messages(
    problem: str,
    exemplars: Iterable[str],
    count: int,
    batch: int,
    batches: int,
    instructions: str,
) -> list[Message]:
    """Ask for ``count`` new methods, given exemplars from the archive.

    ``batch``/``batches`` tell the model which of the generation's concurrent requests
    this is, so that it (and the scripted model) can vary its answers between them.
    """
    lines = "\n".join(exemplars) or "(none yet)"
    task = (
        f"Propose {count} new method{'s' if count != 1 else ''} for this problem "
        f"(request {batch + 1} of {batches} in this round). {instructions} "
        f'Reply as {{"proposals": [...]}} with exactly {count} item{"s" if count != 1 else ""}.'
    )
    user = "\n\n".join(
        [
            tag("problem", problem),
            tag("exemplars", lines),
            "The exemplars are methods that were accepted before, one JSON object per line.",
            tag("task", task),
        ]
    )
    return [{"role": "system", "content": RESEARCHER_SYSTEM}, {"role": "user", "content": user}]


def revision_messages(
    problem: str,
    exemplars: Iterable[str],
    rejected: str,
    rationale: str,
    evidence: dict | None,
    instructions: str,
) -> list[Message]:
    """Ask for one revised method after a verifier rejected ``rejected``."""
    parts = [
        tag("problem", problem),
        tag("exemplars", "\n".join(exemplars) or "(none yet)"),
        "The exemplars are methods that were accepted before, one JSON object per line.",
        tag("rejected", rejected),
        tag("verdict", rationale or "rejected"),
    ]
    if evidence:
        parts.append(tag("evidence", _evidence_text(evidence)))
    task = (
        "Your proposal above was rejected by the verifier, for the reason given. Propose 1 revised "
        f"method that addresses it. {instructions} "
        'Reply as {"proposals": [...]} with exactly 1 item.'
    )
    parts.append(tag("task", task))
    user = "\n\n".join(parts)
    return [{"role": "system", "content": RESEARCHER_SYSTEM}, {"role": "user", "content": user}]


def judge_messages(problem: str, proposal: str, evidence: dict | None, bar: float) -> list[Message]:
    """Ask a judge to accept or reject one proposal, optionally with Monte Carlo evidence."""
    parts = [tag("problem", problem), tag("proposal", proposal)]
    if evidence:
        parts.append(tag("evidence", _evidence_text(evidence)))
        parts.append(
            "The evidence is a Monte Carlo simulation of the proposal against the baseline on the same "
            "data sets: efficiency is the estimated quality, se the standard error of its log, p the "
            "one-sided p-value of beating the baseline."
        )
    parts.append(tag("bar", f"{bar:g}"))
    parts.append(
        tag(
            "task",
            "Predict the quality of the proposed method, and accept it only if you expect its quality to "
            "exceed the bar. Give a short rationale. Reply as "
            '{"accept": true|false, "predicted_quality": number, "rationale": "..."}.',
        )
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def prompt_hash(messages: list[Message]) -> str:
    """A short stable digest of a prompt, for provenance: the same prompt, the same hash."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
