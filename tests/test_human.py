"""The human verifier at the console: answers piped in and typed on a pseudo-terminal.

The command-line tests share one small experiment (one seed, 2 generations x 3
proposals: 6 questions) and one script of answers that exercises every kind of answer;
the uninterrupted piped run is the reference every interrupted session must reproduce.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ouro.answers import AnswerBook
from ouro.config import load_config
from ouro.console import AnswerError, HumanConsole, HumanPause, parse_answer, stdin_problem
from ouro.runner import execute, prepare_run_dir
from ouro.verifiers.human import Answer, Batch, Item, Reply, check_reply

from .conftest import ROOT, ouro

SMALL_HUMAN = [  # (the runs below pass --no-report: plots are not what is tested here)
    "configs/human.yaml",
    "--set", "loop.proposals=3",
    "--set", "arms.montecarlo.verifier.replications=50",
    "--set", "arms.human.verifier.evidence=[{kind: montecarlo, replications: 50}]",
]  # fmt: skip

# one line per answer; comments say what each tests
SESSION_1 = [
    "maybe",  # not an answer: explained, asked again
    "2",  # a score outside [0, 1]: explained, asked again
    "",  # nothing typed and nothing to keep: asked again
    "a",  # gen 1, proposal 1: accept
    "r",  # gen 1, proposal 2: reject
]
SESSION_2 = [
    "b",  # back from proposal 3 to proposal 2 ...
    "",  # ... and Enter keeps its answer (reject)
    "0.8 looks robust",  # gen 1, proposal 3: a score (accepts) and a note
    "b",  # gen 2, proposal 1: nothing to go back to in this batch
    "note trims too much",  # a note first ...
    "r",  # ... then the answer: reject
    "s",  # skip: no verdict
    "a fine",  # accept, with a note
]
ANSWERS = SESSION_1 + SESSION_2
EXPECTED = [  # (generation, accept, score, rationale) of the human arm
    (0, True, None, "person accepted"),
    (0, False, None, "person rejected"),
    (0, True, 0.8, "person accepted (score 0.8): looks robust"),
    (1, False, None, "person rejected: trims too much"),
    (1, None, None, "person skipped"),
    (1, True, None, "person accepted: fine"),
]


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines()]


def _verdicts(run: Path) -> list[tuple]:
    """What must not depend on how the sessions went: every arm's verdicts (not the seconds)."""
    return [(v["arm"], v["seed"], v["generation"], v["index"], v["key"], v["accept"], v["score"], v["rationale"]) for v in _lines(run)]


def _feed(answers: list[str]) -> str:
    return "".join(a + "\n" for a in answers)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("human") / "ref"
    result = ouro("run", *SMALL_HUMAN, "--out", str(out), "--quiet", "--no-report", input=_feed(ANSWERS))
    assert result.returncode == 0, result.stderr
    return out, result


# ------------------------------------------------------------------ through a pipe


def test_piped_session_completes_the_run_and_records_answers(reference):
    run, result = reference
    human = [v for v in _lines(run) if v["arm"] == "human"]
    assert [(v["generation"], v["accept"], v["score"], v["rationale"]) for v in human] == EXPECTED
    answered = [v for v in human if v["accept"] is not None or "skipped" in v["rationale"]]
    assert all(v["cost"].get("human_seconds", 0) > 0 for v in answered)
    assert all(v["cost"]["replications"] == 50 for v in human)  # the Monte Carlo evidence shown
    summary = json.loads((run / "summary.json").read_text())
    arm = summary["arms"]["human"]
    assert arm["precision"] is not None and arm["recall"] is not None and arm["unscored"] == 1
    assert arm["cost"]["human_seconds"] > 0
    assert "human" in result.stdout and "precision" in result.stdout
    book = [json.loads(line) for line in (run / "human_answers.jsonl").read_text().splitlines()]
    assert len(book) == 7  # six answers, and proposal 2 kept again after `back`


def test_invalid_answers_are_explained_and_asked_again(reference):
    out = reference[1].stdout
    assert "'maybe' is not an answer" in out
    assert "a score lies between 0 and 1; 2 does not" in out
    assert "please answer" in out
    assert "there is nothing to go back to" in out
    assert "current answer: reject" in out  # shown when `back` revisits proposal 2
    assert out.count("answer> ") == len(ANSWERS)


def test_without_a_terminal_or_piped_answers_it_fails_at_once(tmp_path):
    run = tmp_path / "devnull"
    start = time.monotonic()
    result = ouro("run", *SMALL_HUMAN, "--out", str(run), "--quiet", stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "arm human asks a person" in result.stderr and "no answers are piped in" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not run.exists()  # before any work
    assert time.monotonic() - start < 60


def test_stdin_problem_tells_terminals_and_pipes_from_nothing(tmp_path):
    read, write = os.pipe()
    with os.fdopen(read) as pipe:
        assert stdin_problem(pipe) is None
    os.close(write)
    with open(os.devnull) as null:
        assert "no answers are piped in" in stdin_problem(null)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with open(empty) as f:
        assert stdin_problem(f) == "standard input is an empty file"
    full = tmp_path / "answers.txt"
    full.write_text("a\n")
    with open(full) as f:
        assert stdin_problem(f) is None
    closed = open(full)
    closed.close()
    assert stdin_problem(closed) == "standard input is closed"


# ------------------------------------------------------------------ through a terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
CTRL_C = "\x03"


def run_in_pty(args: list[str], answers: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``ouro`` on a pseudo-terminal, typing each answer when a prompt appears."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: ouro with the terminal as its standard streams
        os.environ.update(COLUMNS="120", LINES="50", TERM="xterm-256color")
        os.chdir(ROOT)
        # a terminal's Ctrl-C must reach it even where the tests run with SIGINT ignored
        # (a background job of a shell without job control), which exec would pass on
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "ouro.cli", *args])
    output, typed, deadline = b"", 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if output.count(b"answer> ") > typed and typed < len(answers):
            answer = answers[typed]
            os.write(fd, answer.encode() if answer == CTRL_C else (answer + "\n").encode())
            typed += 1
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), ANSI.sub("", output.decode(errors="replace"))


def test_ctrl_c_quit_and_resume_give_the_verdicts_of_one_session(reference, tmp_path):
    """One session in three parts: a terminal (Ctrl-C), a pipe (q), a terminal (to the end)."""
    run = tmp_path / "parts"
    code, screen = run_in_pty(["run", *SMALL_HUMAN, "--out", str(run), "--no-report"], SESSION_1 + [CTRL_C])
    assert code == 130, screen
    assert "'maybe' is not an answer" in screen and "please answer" in screen  # asked again at the terminal
    assert "interrupted: every finished generation and every answer given is saved" in screen
    assert f"ouro resume {run}" in screen

    piped = ouro("resume", str(run), "--quiet", "--no-report", input=_feed(SESSION_2[:4] + ["q"]))
    assert piped.returncode == 3, piped.stderr
    assert "paused (quit)" in piped.stderr and f"ouro resume {run}" in piped.stderr
    assert "generation 1 of 2 · proposal 1 of 3" not in piped.stdout  # answered before: not asked again
    assert "current answer: reject" in piped.stdout  # `back` reaches an answer of the earlier session
    assert piped.stdout.count("answer> ") == 5
    assert not (run / "summary.json").exists()

    code, screen = run_in_pty(["resume", str(run), "--no-report"], SESSION_2[4:])
    assert code == 0, screen
    assert "generation 2 of 2 · proposal 1 of 3" in screen and "generation 1 of 2" not in screen
    assert screen.count("answer> ") == len(SESSION_2[4:])
    assert "precision" in screen  # the run finished at the terminal
    assert _verdicts(run) == _verdicts(reference[0])


# ------------------------------------------------------------------ in process


def _batch(n: int = 3) -> Batch:
    return Batch(
        arm="human",
        seed=0,
        generation=0,
        problem="Location problem: estimate theta. More text.",
        threshold=0.5,
        items=[Item(index=i, key=f"m{i}", method={"family": "median"}) for i in range(n)],
    )


class FakeClock:
    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def _console(run_dir: Path, answers: list[str], clock=None) -> tuple[HumanConsole, io.StringIO]:
    from rich.console import Console

    screen = io.StringIO()
    return HumanConsole(run_dir, 1, Console(file=screen, width=100), io.StringIO(_feed(answers)), clock or FakeClock(1.0)), screen


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a", ("answer", "accept", None, "")),
        ("Accept", ("answer", "accept", None, "")),
        ("r too noisy", ("answer", "reject", None, "too noisy")),
        ("0.5", ("answer", "accept", 0.5, "")),
        ("0.49 close", ("answer", "reject", 0.49, "close")),
        ("s", ("answer", "skip", None, "")),
        ("note hm", ("note", None, None, "hm")),
        ("b", ("back", None, None, "")),
        ("q", ("quit", None, None, "")),
        ("?", ("help", None, None, "")),
    ],
)
def test_parse_answer(text, expected):
    p = parse_answer(text, 0.5)
    assert (p.action, p.decision, p.score, p.note) == expected


@pytest.mark.parametrize("text", ["", "maybe", "1.5", "-0.1", "nan", "q now", "note"])
def test_parse_answer_refuses_what_means_nothing(text):
    with pytest.raises(AnswerError):
        parse_answer(text, 0.5)


def test_back_and_keep_count_every_second_and_a_later_session_asks_only_the_rest(tmp_path):
    batch = _batch()
    console, _ = _console(tmp_path, ["a", "b", "", "r", "q"])
    with pytest.raises(HumanPause) as e:
        console.ask(batch)
    assert e.value.reason == "quit"
    book = AnswerBook(tmp_path)
    assert len(book) == 2 and book.get(batch, 2) is None
    # the fake clock ticks 1 s per reading: proposal 1 took 1 s, then 1 s more when revisited and kept
    assert book.get(batch, 0).seconds == pytest.approx(2.0) and book.get(batch, 1).decision == "reject"
    console, screen = _console(tmp_path, ["0.9 good"])
    reply = console.ask(batch)
    assert [a.decision for a in reply.answers] == ["accept", "reject", "accept"]
    assert reply.answers[2].score == 0.9 and reply.answers[2].note == "good"
    assert screen.getvalue().count("answer> ") == 1


def test_end_of_input_pauses_and_a_crash_cut_line_is_ignored(tmp_path):
    batch = _batch(2)
    console, _ = _console(tmp_path, ["a"])
    with pytest.raises(HumanPause, match="end of input"):
        console.ask(batch)
    with open(tmp_path / "human_answers.jsonl", "a") as f:
        f.write('{"batch": "human/se')  # a write cut short by a crash
    console, _ = _console(tmp_path, ["r"])
    assert [a.decision for a in console.ask(batch).answers] == ["accept", "reject"]
    assert len(AnswerBook(tmp_path)) == 2


def test_a_reply_for_another_question_is_refused():
    batch = _batch(2)
    good = Reply(batch=batch.id, answers=[Answer(key="m0", decision="accept"), Answer(key="m1", decision="skip")])
    assert check_reply(good, batch) is good
    with pytest.raises(RuntimeError, match="do not fit"):
        check_reply(good.model_copy(update={"batch": "human/seed-1/gen-0/judge"}), batch)
    with pytest.raises(RuntimeError, match="do not fit"):
        check_reply(Reply(batch=batch.id, answers=good.answers[::-1]), batch)


def test_automatic_arms_finish_first_and_seeds_are_asked_in_order(tmp_path):
    cfg = load_config("configs/human.yaml", ["seeds=[4, 2]", "loop.proposals=3", "arms.montecarlo.verifier.replications=50"])
    run = tmp_path / "run"
    prepare_run_dir(cfg, run)
    asked = []

    def answer(payload: dict) -> dict:
        batch = Batch.model_validate(payload)
        for arm in ("none", "montecarlo"):
            assert len(list((run / "arms" / arm).glob("gen-*.jsonl"))) == cfg.loop.generations
        assert [e.source for e in batch.items[0].evidence] == ["montecarlo"]
        asked.append((batch.generation, batch.seed))
        return Reply(batch=batch.id, answers=[Answer(key=it.key, decision="accept") for it in batch.items]).model_dump()

    outcomes = execute(run, 1, answer=answer)
    assert [o.arm for o in outcomes] == ["none", "montecarlo", "human"]
    assert asked == [(0, 4), (0, 2), (1, 4), (1, 2)]


def test_a_pause_between_seeds_resumes_at_the_open_batch(tmp_path):
    """Resume values are matched by order: answers to earlier seeds survive a restart."""
    cfg = load_config("configs/human.yaml", ["seeds=2", "loop.proposals=3", "arms=[{name: human, verifier: {kind: human}}]"])

    def answerer(asked: list, pause_at: int | None = None):
        def answer(payload: dict) -> dict:
            batch = Batch.model_validate(payload)
            if len(asked) == pause_at:
                raise HumanPause("quit")
            asked.append(batch.id)
            decisions = ["accept", "reject", "skip", "accept"][batch.seed :]
            return Reply(batch=batch.id, answers=[Answer(key=it.key, decision=d) for it, d in zip(batch.items, decisions)]).model_dump()

        return answer

    straight, paused = tmp_path / "straight", tmp_path / "paused"
    for out in (straight, paused):
        prepare_run_dir(cfg, out)
    asked_straight: list = []
    execute(straight, 1, answer=answerer(asked_straight))
    asked: list = []
    with pytest.raises(HumanPause):
        execute(paused, 1, answer=answerer(asked, pause_at=1))
    assert asked == ["human/seed-0/gen-0/judge"]
    execute(paused, 1, answer=answerer(asked))
    assert asked == asked_straight  # seed 0's batch is not asked again
    assert _verdicts(paused) == _verdicts(straight)
