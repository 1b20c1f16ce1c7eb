"""The run directory: everything a run produces, written so that nothing finished is lost.

Layout (see the README):

    config.yaml          the resolved config
    arms/ARM/gen-NNNNNN.json
                         one finished generation of one arm: the researchers' states, the
                         curated pools, metric rows and verdict lines. Written atomically;
                         its presence is what "this generation is finished" means.
    work/ARM/gen-NNNNNN.STAGE.pkl
                         outputs of the stages of the generation in flight (proposals,
                         verdicts, ...), so that a resumed run redoes no paid-for work
    checkpoints.sqlite   LangGraph's checkpoints (where each arm's graph stands)
    metrics.csv, verdicts.jsonl, timings.csv, summary.json
                         assembled from the generation records when arms finish;
                         timings.csv (wall seconds per stage) is the one output that
                         differs between two runs of the same config
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Iterable

from pydantic_core import from_json, to_json

METRICS_HEADER = ("arm", "seed", "generation", "metric", "value")


def dump_json(obj: Any) -> str:
    """Compact JSON through pydantic's serializer: five times faster than ``json.dumps``
    (which matters for the tens of thousands of verdict lines of a run) and the same
    text, but for the spelling of some exponents (``1.5e-7``). Pydantic models inside
    ``obj`` are written as their fields."""
    return to_json(obj).decode()


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
    """Atomic against a killed process (rename), without fsync: for caches of work in flight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
        self._written: set[int] = set()  # records this object wrote: known without a stat

    def record_path(self, generation: int) -> Path:
        return self.records / f"gen-{generation:06d}.json"

    def has_record(self, generation: int) -> bool:
        return generation in self._written or self.record_path(generation).is_file()

    def write_record(self, generation: int, record: dict) -> None:
        atomic_write_text(self.record_path(generation), dump_json(record))
        self._written.add(generation)
        self.clear_work(generation)

    def read_record(self, generation: int) -> dict:
        return from_json(self.record_path(generation).read_bytes())

    def finished_generations(self) -> list[int]:
        if not self.records.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.records.glob("gen-*.json"))

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

    def clear_work(self, generation: int) -> None:
        for p in self.work.glob(f"gen-{generation:06d}.*") if self.work.is_dir() else []:
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
        verdict_lines: list[str] = []
        timings = io.StringIO()
        timings.write("arm,generation,stage,seconds\n")
        for arm in arms:
            store = self.arm(arm)
            for g in store.finished_generations():
                rec = store.read_record(g)
                for seed, metric, value in rec.get("metrics", []):
                    writer.writerow((arm, seed, g, metric, format_value(value)))
                # verdict lines are stored already encoded; cohorts may also give plain dicts
                verdict_lines += rec.get("verdict_lines", [])
                verdict_lines += [dump_json(v) for v in rec.get("verdicts", [])]
                timings.writelines(f"{arm},{g},{stage},{secs:.6f}\n" for stage, secs in rec.get("timings", []))
        atomic_write_text(self.path / "metrics.csv", metrics.getvalue())
        atomic_write_text(self.path / "verdicts.jsonl", "".join(line + "\n" for line in verdict_lines))
        atomic_write_text(self.path / "timings.csv", timings.getvalue())
        if (self.path / "work").is_dir() and not any((self.path / "work").rglob("*.pkl")):
            shutil.rmtree(self.path / "work", ignore_errors=True)
