"""The run directory's storage: verdict lines, generation records and what they read back."""

from __future__ import annotations

import json
import signal

from pydantic import BaseModel
from pydantic_core import to_json

from ouro import store
from ouro.store import ArmStore, RunDir, json_lines, sync_records


class Method(BaseModel):
    family: str
    c: float | None = None


def one_by_one(objects: list[dict]) -> bytes:
    return b"".join(to_json(o) + b"\n" for o in objects)


def test_json_lines_matches_encoding_each_object_on_its_own():
    objects = [
        {"arm": "none", "seed": s, "method": Method(family="huber", c=1.5 + s), "accept": s % 2 == 0, "score": None}
        for s in range(50)
    ]
    text = json_lines(objects)
    assert text == one_by_one(objects)
    assert [json.loads(line)["seed"] for line in text.splitlines()] == list(range(50))


def test_json_lines_is_not_fooled_by_the_separator_inside_a_string():
    tricky = ['},{"arm":', '"},{"arm":"x', "line\nbreak", "back\\slash"]
    objects = [{"arm": "a", "rationale": r} for r in tricky]
    text = json_lines(objects)
    assert text == one_by_one(objects)
    assert [json.loads(line)["rationale"] for line in text.splitlines()] == tricky


def test_json_lines_falls_back_when_a_nested_object_starts_with_the_same_key():
    objects = [{"arm": "a", "provenance": [{"x": 1}, {"arm": "nested"}]}, {"arm": "b"}]
    text = json_lines(objects)
    assert text == one_by_one(objects)
    assert [json.loads(line) for line in text.splitlines()] == [json.loads(to_json(o)) for o in objects]


def test_json_lines_of_nothing_is_empty():
    assert json_lines([]) == b""
    assert json_lines([{}, {}]) == b"{}\n{}\n"


def test_a_record_carries_its_verdict_lines_and_assembly_concatenates_them(tmp_path):
    store = ArmStore(tmp_path, "none")
    assert not store.has_record(0)
    for g in range(3):
        lines = json_lines([{"arm": "none", "generation": g, "index": i} for i in range(4)])
        store.write_record(g, {"generation": g, "metrics": [[0, "quality_mean", 1.0 + g]]}, lines)
    sync_records()
    assert store.read_record(1) == {"generation": 1, "metrics": [[0, "quality_mean", 2.0]]}
    record, lines = store.read_record_and_verdicts(2)
    assert record["generation"] == 2 and len(lines.splitlines()) == 4
    assert [store.has_record(g) for g in range(4)] == [True, True, True, False]

    RunDir(tmp_path).assemble(["none"])
    verdicts = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert [(v["generation"], v["index"]) for v in verdicts] == [(g, i) for g in range(3) for i in range(4)]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == [f"none,0,{g},quality_mean,{1.0 + g}" for g in range(3)]


def test_a_new_store_finds_the_records_already_on_disk(tmp_path):
    ArmStore(tmp_path, "oracle").write_record(0, {"generation": 0})
    later = ArmStore(tmp_path, "oracle")
    assert later.has_record(0) and not later.has_record(1)
    assert later.finished_generations() == [0]



def test_the_fsync_thread_leaves_ctrl_c_to_the_main_thread(tmp_path):
    """A signal delivered to the fsync thread would not interrupt a person's answer being
    read in the main thread: the thread blocks it, the main thread does not."""
    ArmStore(tmp_path, "none").write_record(0, {"generation": 0})
    sync_records()
    blocked_there = store._syncer.submit(signal.pthread_sigmask, signal.SIG_BLOCK, set()).result()
    assert {signal.SIGINT, signal.SIGTERM} <= blocked_there
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
