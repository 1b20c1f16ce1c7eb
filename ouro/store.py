"""The run directory: everything a run produces, written so that nothing finished is lost.

Layout (see the README):

    config.yaml          the resolved config
    arms/ARM/gen-NNNNNN.jsonl
                         one finished generation of one arm. Its first line is the record
                         (the researchers' states, the curated pools, metric rows, spend);
                         the lines after it are the generation's lines of verdicts.jsonl,
                         as they will appear there. Written atomically; its presence is
                         what "this generation is finished" means.
    work/ARM/gen-NNNNNN.STAGE.pkl
                         outputs of the stages of the generation in flight (proposals,
                         verdicts, ...), so that a resumed run redoes no paid-for work
    work/ARM/gen-NNNNNN.calls.jsonl
                         the call journal of that generation (ouro/journal.py): every
                         model call's outcome, appended as it ends. Kept past the record
                         of a generation that stopped for failed or invalid calls, which
                         resume redoes
    arms/ARM/superseded/gen-NNNNNN.K.jsonl
                         the record of a generation that stopped for failed or invalid
                         calls, set aside when resume redid it (K counts the attempts)
    checkpoints.sqlite   LangGraph's checkpoints (where each arm's graph stands)
    metrics.csv, verdicts.jsonl, timings.csv, summary.json
                         assembled from the generation records when arms finish;
                         two runs of the same config differ only in wall seconds:
                         timings.csv, summary.json's costs, and the verdicts of
                         model calls
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import pickle
import shutil
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from pydantic_core import from_json, to_json

METRICS_HEADER = ("arm", "seed", "generation", "metric", "value")


def json_lines(objects: list[dict]) -> bytes:
    """``objects`` as JSON Lines (each line ends in a newline), in one serializer call.

    One call for a whole list costs a fraction of one call per object, which matters for
    the tens of thousands of verdict lines of a run. The list's compact text is
    ``[{"K":...},{"K":...}]``, where every object starts with the same key K (the caller
    builds its dicts with one key order), so the objects are separated by ``},{"K":``.
    Inside a string that text cannot occur (its quotes would be escaped), and a compact
    text has no raw newline. A nested object could begin with the same key: then the
    separators outnumber the objects, and each object is serialized on its own instead.
    """
    if not objects:
        return b""
    first = next(iter(objects[0]), None)
    if first is None:
        return b"".join(to_json(o) + b"\n" for o in objects)
    key = to_json(first)
    text = to_json(objects)[1:-1].replace(b"},{" + key + b":", b"}\n{" + key + b":")
    if text.count(b"\n") != len(objects) - 1:
        return b"".join(to_json(o) + b"\n" for o in objects)
    return text + b"\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomic against a killed process (rename), without an fsync of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Generation records are made durable (fsync) by a background thread: an fsync costs
# about a millisecond of waiting here, which on the default run's 150 records was a
# tenth of the loop's own time. A record is complete on disk the moment it is renamed
# into place, so a killed process or Ctrl-C loses nothing either way; what the
# background fsync leaves open is a window of milliseconds in which a power cut could
# lose the newest records, which resume then recomputes. ``sync_records`` waits for the
# pending fsyncs: at the end of an arm and before a person is asked anything.
_syncer: ThreadPoolExecutor | None = None
_pending: list[Future] = []


def _fsync_path(path: Path) -> None:
    for target in (path, path.parent):
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            return  # moved or removed since (a sweep shipping a cell back): nothing left to sync
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _leave_signals_to_the_main_thread() -> None:
    """Block Ctrl-C and SIGTERM in the fsync thread. A signal the kernel hands to this
    thread would not interrupt the main thread's blocking read (a person's answer at the
    console), and Ctrl-C would then wait for the next line of input."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _sync_later(path: Path) -> None:
    global _syncer
    if _syncer is None:
        _syncer = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ouro-fsync", initializer=_leave_signals_to_the_main_thread
        )
        atexit.register(sync_records)
    _pending[:] = [f for f in _pending if not f.done()]
    _pending.append(_syncer.submit(_fsync_path, path))


def sync_records() -> None:
    """Wait until every record written so far by this process is on disk."""
    while _pending:
        _pending.pop().result()


def format_value(v: Any) -> str:
    """Shortest exact text of a number: the same float always prints the same bytes."""
    if isinstance(v, (bool,)):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class ArmStore:
    """Generation records and in-flight stage outputs of one arm."""

    def __init__(self, run_dir: Path, arm: str) -> None:
        self.run_dir = Path(run_dir)
        self.arm = arm
        self.records = self.run_dir / "arms" / arm
        self.work = self.run_dir / "work" / arm
        # Finished generations: those on disk when this store first looked (one listing),
        # and those it wrote since. An arm runs in one process at a time, so no record
        # appears behind a store's back; the loop asks at every stage of every generation.
        self._finished: set[int] | None = None

    def record_path(self, generation: int) -> Path:
        return self.records / f"gen-{generation:06d}.jsonl"

    def has_record(self, generation: int) -> bool:
        if self._finished is None:
            self._finished = set(self.finished_generations())
        return generation in self._finished

    def write_record(
        self, generation: int, record: dict, verdict_lines: bytes = b"", durable: bool = True, keep_calls: bool = False
    ) -> None:
        """The generation's record, and its verdict lines (JSON Lines) after it.

        ``durable=False`` skips the fsync, for records that hold nothing a replay does not
        recompute (a vectorized cohort's markers of generations it did not record).
        ``keep_calls`` keeps the generation's call journal, for a generation that resume
        will redo."""
        path = self.record_path(generation)
        atomic_write_bytes(path, to_json(record) + b"\n" + verdict_lines)
        if durable:
            _sync_later(path)
        if self._finished is not None:
            self._finished.add(generation)
        self.clear_work(generation, keep=(self.calls_path(generation),) if keep_calls else ())

    def supersede(self, generation: int) -> Path:
        """Set a finished generation's record aside (``arms/ARM/superseded/``), so that the
        generation is open again and will be redone; returns where the record went."""
        src = self.record_path(generation)
        folder = self.records / "superseded"
        folder.mkdir(parents=True, exist_ok=True)
        k = 1 + sum(1 for _ in folder.glob(f"gen-{generation:06d}.*.jsonl"))
        dst = folder / f"gen-{generation:06d}.{k}.jsonl"
        os.replace(src, dst)
        if self._finished is not None:
            self._finished.discard(generation)
        return dst

    def read_record(self, generation: int) -> dict:
        with open(self.record_path(generation), "rb") as f:
            return from_json(f.readline())

    def read_record_and_verdicts(self, generation: int) -> tuple[dict, bytes]:
        head, _, lines = self.record_path(generation).read_bytes().partition(b"\n")
        return from_json(head), lines

    def finished_generations(self) -> list[int]:
        if not self.records.is_dir():
            return []
        return sorted(int(p.name[4:-6]) for p in self.records.glob("gen-*.jsonl"))

    # in-flight stage outputs: our own objects, pickled by this process, read back by it
    def stage_path(self, generation: int, stage: str) -> Path:
        return self.work / f"gen-{generation:06d}.{stage}.pkl"

    def put_stage(self, generation: int, stage: str, value: Any) -> None:
        atomic_write_bytes(self.stage_path(generation, stage), pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def has_stage(self, generation: int, stage: str) -> bool:
        return self.stage_path(generation, stage).is_file()

    def get_stage(self, generation: int, stage: str) -> Any | None:
        path = self.stage_path(generation, stage)
        if not path.is_file():
            return None
        return pickle.loads(path.read_bytes())

    def calls_path(self, generation: int) -> Path:
        """The generation's call journal (``ouro.journal.CallJournal``)."""
        return self.work / f"gen-{generation:06d}.calls.jsonl"

    def clear_work(self, generation: int, keep: tuple[Path, ...] = ()) -> None:
        for p in self.work.glob(f"gen-{generation:06d}.*") if self.work.is_dir() else []:
            if p not in keep:
                p.unlink(missing_ok=True)


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints.sqlite"

    def arm(self, name: str) -> ArmStore:
        return ArmStore(self.path, name)

    def progress(self, arms: Iterable[str]) -> int:
        return sum(len(self.arm(a).finished_generations()) for a in arms)

    def assemble(self, arms: list[str]) -> None:
        """Write metrics.csv and verdicts.jsonl from the records, in a fixed order.

        Rows are ordered by arm (config order), generation, then as each record lists
        them: the same records always give the same bytes, whatever the worker count.
        """
        metrics = io.StringIO()
        writer = csv.writer(metrics, lineterminator="\n")
        writer.writerow(METRICS_HEADER)
        verdict_lines: list[bytes] = []
        timings = io.StringIO()
        timings.write("arm,generation,stage,seconds\n")
        for arm in arms:
            store = self.arm(arm)
            for g in store.finished_generations():
                rec, lines = store.read_record_and_verdicts(g)
                writer.writerows((arm, seed, g, metric, format_value(value)) for seed, metric, value in rec.get("metrics", []))
                verdict_lines.append(lines)  # they follow the record, already encoded
                timings.writelines(f"{arm},{g},{stage},{secs:.6f}\n" for stage, secs in rec.get("timings", []))
        atomic_write_text(self.path / "metrics.csv", metrics.getvalue())
        atomic_write_bytes(self.path / "verdicts.jsonl", b"".join(verdict_lines))
        atomic_write_text(self.path / "timings.csv", timings.getvalue())
        if (self.path / "work").is_dir() and not any(p.is_file() for p in (self.path / "work").rglob("*")):
            shutil.rmtree(self.path / "work", ignore_errors=True)
