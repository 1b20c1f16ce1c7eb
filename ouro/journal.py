"""The call journal: every model answer saved the moment it arrives, read back instead of
being paid for twice.

A generation of a model-backed arm makes its calls in two stages (``propose`` and
``verify``), many at once. A process killed in the middle of a stage loses what the stage
held in memory; without a journal, resuming would re-ask, and re-pay, every call of that
stage. With it, each logical call (``Provider.structured`` or ``Provider.chat``: all its
attempts and re-asks) appends one line to ``work/ARM/gen-NNNNNN.calls.jsonl`` as soon as
it ends, flushed to the operating system (which a ``kill -9`` does not lose), and a
resumed process gets the saved answer, re-validated from its raw text, with the cost
recorded when it was paid, so that the ledger counts it once.

How a call finds its line. The cohort opens a *scope* (``"verify/s3"``: stage and seed)
around the work of one seed in one stage, with a ``ContextVar``, which the asyncio tasks
it gathers inherit. A call's key is that scope, a hash of the request (model, messages,
schema name) and an occurrence index: the n-th identical request within the scope, counted
when the call is entered, before its first ``await``. The stages draw every random number
from streams keyed by seed and generation, so a resumed process makes the same requests in
the same order and finds the same keys.

Three outcomes are written:

* ``ok``: a valid answer. Replayed.
* ``invalid``: the model answered, but its output never validated after its re-asks.
  Replayed too: it was paid for, and it is what the model said; a generation stopped
  because *nothing* validated is the exception (:func:`forget_invalid` turns those lines
  into ``failed`` ones when that generation is redone, so the model is asked again).
* ``failed``: the endpoint never answered (retries spent, a fatal error). Never replayed:
  a resumed process asks again. What the failed attempts cost is added to the cost of the
  call that asks again, so that the ledger still counts every attempt once.

Outside a scope (the embedded researchers and verifiers, which make no model calls, and
any direct use of a provider) nothing is looked up or written.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from pydantic_core import from_json, to_json

from ouro.types import Cost

OK, INVALID, FAILED = "ok", "invalid", "failed"

_SCOPE: ContextVar["tuple[CallJournal, str] | None"] = ContextVar("ouro_call_scope", default=None)


def request_hash(model: str, messages: list[dict[str, str]], schema_name: str) -> str:
    return hashlib.sha256(to_json([model, schema_name, messages])).hexdigest()[:32]


class Slot:
    """One call's place in the journal: its key, and what the journal holds for it."""

    __slots__ = ("journal", "key")

    def __init__(self, journal: "CallJournal", key: str) -> None:
        self.journal = journal
        self.key = key

    def saved(self) -> dict | None:
        """The saved answer (``ok`` or ``invalid``), or None when the call must be made."""
        return self.journal._answered.get(self.key)

    def earlier_failures(self) -> Cost | None:
        """What earlier attempts at this call spent before they failed for good; None if none did."""
        return self.journal._failed.get(self.key)

    def save(self, outcome: str, cost: Cost, raw: str = "", error: str = "", model: str = "") -> None:
        self.journal._append({"key": self.key, "outcome": outcome, "raw": raw, "error": error, "model": model, "cost": _compact(cost)})


class CallJournal:
    """One generation's journal of one arm. Used by one process at a time (an arm runs in one)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._answered: dict[str, dict] = {}
        self._failed: dict[str, Cost] = {}
        self._counts: dict[str, dict[str, int]] = {}  # per scope: occurrences of each request
        self._file: Any = None
        if self.path.is_file():
            for line in self.path.read_bytes().splitlines():
                try:
                    self._remember(from_json(line))
                except ValueError:
                    continue  # the tail of a line a kill cut short

    def _remember(self, entry: dict) -> None:
        key = entry["key"]
        if entry["outcome"] == FAILED:
            self._failed[key] = self._failed.get(key, Cost()) + Cost(**entry.get("cost", {}))
        else:
            self._answered[key] = entry

    def __len__(self) -> int:
        return len(self._answered)

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Calls made inside (and in tasks started inside) are journaled under ``name``.

        Entering a scope starts its occurrence counts afresh: a stage that runs again in
        the same process (LangGraph re-runs a node after a person's answer) finds its
        calls' lines again."""
        self._counts[name] = {}
        token = _SCOPE.set((self, name))
        try:
            yield
        finally:
            _SCOPE.reset(token)

    def _claim(self, scope: str, request: str) -> Slot:
        counts = self._counts.setdefault(scope, {})
        n = counts.get(request, 0)
        counts[request] = n + 1
        return Slot(self, f"{scope}/{request}/{n}")

    def _append(self, entry: dict) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")
            self._file.seek(0, os.SEEK_END)
            if self._file.tell():  # end a line a kill cut short, so that it cannot swallow this one
                self._file.seek(-1, os.SEEK_END)
                if self._file.read(1) != b"\n":
                    self._file.write(b"\n")
        self._file.write(to_json(entry) + b"\n")
        self._file.flush()  # in the kernel's hands: a killed process loses nothing written
        self._remember(entry)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def slot_for(model: str, messages: list[dict[str, str]], schema_name: str) -> Slot | None:
    """The journal slot of a call about to be made, or None outside any scope (no journal).

    Call it when the call is entered, before any ``await``: the occurrence index of
    identical requests is the order in which they are entered."""
    current = _SCOPE.get()
    if current is None:
        return None
    journal, scope = current
    return journal._claim(scope, request_hash(model, messages, schema_name))


def forget_invalid(path: str | Path) -> None:
    """Make the ``invalid`` answers of a journal be asked again: they become ``failed``
    lines, whose cost is carried over to the new call. Used when a generation that
    stopped because nothing validated is redone (the model or server was fixed)."""
    path = Path(path)
    if not path.is_file():
        return
    entries = []
    for line in path.read_bytes().splitlines():
        try:
            entries.append(from_json(line))
        except ValueError:
            continue
    # An answer's line carries the cost of every earlier failed try at its call (see
    # ``Provider._journaled``): it replaces those lines, or a later reading would add the
    # earlier tries up twice.
    asked_again = {e["key"] for e in entries if e.get("outcome") == INVALID}
    out = []
    for entry in entries:
        if entry["key"] in asked_again:
            if entry.get("outcome") != INVALID:
                continue
            entry = {**entry, "outcome": FAILED}
        out.append(to_json(entry) + b"\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(b"".join(out))
    os.replace(tmp, path)


def _compact(cost: Cost) -> dict:
    return {k: v for k, v in cost.__dict__.items() if v}
