"""The answer book: every answer a person gives, saved the moment it is given.

``RUN_DIR/human_answers.jsonl`` gets one line per answer, appended and flushed to disk
before the next question is shown, so quitting, Ctrl-C, a closed terminal or a killed
process loses nothing answered, and ``ouro resume`` asks only what is still open. A
question is identified by its batch (arm, seed, generation, purpose), its position and
its method key; a later line for the same question (an answer changed after ``back``)
replaces an earlier one. A line cut short by a crash is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ouro.verifiers.human import Answer, Batch

ANSWERS_FILE = "human_answers.jsonl"


class AnswerBook:
    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ANSWERS_FILE
        self._answers: dict[tuple[str, int, str], Answer] = {}
        self._arms: dict[tuple[str, int, str], str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the tail of a line a crash cut short
                self._remember(row)

    def _remember(self, row: dict) -> None:
        q = (row["batch"], int(row["index"]), row["key"])
        self._answers[q] = Answer(**{k: row[k] for k in Answer.model_fields if k in row})
        self._arms[q] = row["arm"]

    def get(self, batch: Batch, index: int) -> Answer | None:
        item = batch.items[index]
        return self._answers.get((batch.id, item.index, item.key))

    def put(self, batch: Batch, index: int, answer: Answer) -> None:
        """Append one answer and flush it to disk before returning."""
        item = batch.items[index]
        row = {
            "batch": batch.id,
            "arm": batch.arm,
            "seed": batch.seed,
            "generation": batch.generation,
            "purpose": batch.purpose,
            "index": item.index,
            **answer.model_dump(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # end a line a crash cut short, so that it cannot swallow this one
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(row, separators=(",", ":")) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        self._remember(row)

    def __len__(self) -> int:
        return len(self._answers)

    def seconds(self, arm: str) -> float:
        """A person's time on one arm so far, over every session."""
        return sum(a.seconds for q, a in self._answers.items() if self._arms[q] == arm)
