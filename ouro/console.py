"""The human verifier's console: show a batch of questions, read a person's answers.

``HumanConsole`` is what the runner calls with each ``interrupt()`` payload of a human
verifier (``verifiers/human.py``): it shows every open question of the batch with rich
(the problem, the proposal highlighted, the evidence, where the person stands), reads one
line per answer from standard input (a terminal, or answers piped in), saves each
answer in the answer book before showing the next question, and returns the ``Reply``
the graph resumes with. Questions answered in an earlier session are not asked again.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, TextIO

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ouro.answers import AnswerBook
from ouro.verifiers.human import Answer, Batch, Reply

HELP = """answers (one per line):
  a, accept        accept the proposal: the researcher will learn from it
  r, reject        reject it
  0.8              a score from 0 to 1: at or above {threshold:g} accepts
  s, skip          no verdict: the proposal is dropped, never counted as a reject
  note TEXT        attach a note, then answer
  b, back          go back to the previous proposal of this batch and change its answer
  q, quit          save and stop; `ouro resume RUN_DIR` asks only what is left
  ?, help          this help
Text after an answer is a note, e.g. "r trims too much". When you come back to an
answered proposal, Enter keeps its answer."""
HINT = "a accept · r reject · 0-1 score · s skip · note TEXT · b back · q quit · ? help"
DECIDE = {"a": "accept", "accept": "accept", "y": "accept", "yes": "accept",
          "r": "reject", "reject": "reject", "n": "reject", "no": "reject",
          "s": "skip", "skip": "skip"}  # fmt: skip
ACTIONS = {"b": "back", "back": "back", "q": "quit", "quit": "quit", "exit": "quit", "?": "help", "h": "help", "help": "help"}


class HumanPause(Exception):
    """The person quit, or input ended: every answer given is saved, and the run can resume."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AnswerError(ValueError):
    """An answer that means nothing: the message says what would."""


@dataclass(frozen=True)
class Parsed:
    action: Literal["answer", "keep", "note", "back", "quit", "help"]
    decision: str | None = None
    score: float | None = None
    note: str = ""


def parse_answer(text: str, threshold: float, can_keep: bool = False) -> Parsed:
    """One line typed by the person, as an action; raises AnswerError with a hint."""
    words = text.strip().split(None, 1)
    if not words:
        if can_keep:
            return Parsed("keep")
        raise AnswerError("please answer: a (accept), r (reject), a score from 0 to 1, or s (skip); ? for help")
    head, note = words[0], (words[1].strip() if len(words) > 1 else "")
    word = head.lower()
    if word == "note":
        if not note:
            raise AnswerError("a note needs text, e.g.: note trims too much")
        return Parsed("note", note=note)
    if word in DECIDE:
        return Parsed("answer", DECIDE[word], note=note)
    if word in ACTIONS:
        if note:
            raise AnswerError(f"{head!r} takes no text; to add a note, type: note TEXT")
        return Parsed(ACTIONS[word])
    try:
        score = float(word)
    except ValueError:
        raise AnswerError(f"{head!r} is not an answer; type a, r, a score from 0 to 1, s, note TEXT, b, q, or ? for help") from None
    if not (0.0 <= score <= 1.0) or math.isnan(score):
        raise AnswerError(f"a score lies between 0 and 1; {head} does not")
    return Parsed("answer", "accept" if score >= threshold else "reject", score=score, note=note)


def stdin_problem(stream: TextIO | None = None) -> str | None:
    """Why standard input cannot bring a person's answers, or None when it can.

    A terminal can; so can a pipe or a non-empty file of answers. A closed stream, an
    empty file and a character device that is no terminal (``/dev/null``) cannot: a run
    that waits on them would hang or stop at its first question.
    """
    stream = sys.stdin if stream is None else stream
    if stream is None or stream.closed:
        return "standard input is closed"
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError):
        return "standard input is closed"
    if os.isatty(fd) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return None
    if stat.S_ISREG(st.st_mode):
        return None if st.st_size > 0 else "standard input is an empty file"
    return "standard input is not a terminal and no answers are piped in"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _short(problem: str) -> str:
    """The problem's first sentence."""
    head, dot, _ = problem.partition(". ")
    return head + dot.strip()


def _rounded(obj):
    """Floats to 6 significant digits, for display only."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _answer_text(answer: Answer) -> str:
    text = answer.decision + (f" (score {answer.score:g})" if answer.score is not None else "")
    return text + (f": {answer.note}" if answer.note else "")


def render_proposal(method: dict) -> RenderableType:
    """A DSL spec as JSON; a method carrying Python source (``source`` or ``code``) as Python."""
    code = next((method[k] for k in ("source", "code") if isinstance(method.get(k), str)), None)
    rest = {k: v for k, v in method.items() if k not in ("source", "code") or not isinstance(v, str)}
    spec = Syntax(json.dumps(_rounded(rest)), "json", theme="ansi_dark", background_color="default", word_wrap=True)
    if code is None:
        return spec
    return Group(spec, Syntax(code, "python", theme="ansi_dark", background_color="default", line_numbers=True))


def render_evidence(batch: Batch, index: int) -> RenderableType | None:
    evidence = batch.items[index].evidence
    if not evidence:
        return None
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col in ("evidence", "verdict", "score", "why"):
        table.add_column(col, overflow="fold")
    verdict = {True: Text("accept", style="green"), False: Text("reject", style="red"), None: Text("unscored", style="yellow")}
    for e in evidence:
        table.add_row(e.source, verdict[e.accept], "–" if e.score is None else f"{e.score:.3g}", Text(e.rationale))
    return table


def render_question(batch: Batch, index: int, generations: int, spent: float, current: Answer | None, full_problem: bool) -> Group:
    n = len(batch.items)
    item = batch.items[index]
    role = "audit · " if batch.purpose == "audit" else ""
    title = (
        f"{role}arm {batch.arm} · seed {batch.seed} · generation {batch.generation + 1} of {generations} · "
        f"proposal {index + 1} of {n} · {_clock(spent)} spent"
    )
    parts: list[RenderableType] = [
        Rule(Text(title, style="bold")),
        Text.assemble(("problem   ", "bold"), batch.problem if full_problem else _short(batch.problem)),
    ]
    if full_problem:  # the first question of a session says what is asked
        parts.append(Text("question  Accept what you judge good: the researcher learns only from accepted proposals.", style="dim"))
    parts += [Text.assemble(("proposal  ", "bold"), (item.key, "bold cyan")), render_proposal(item.method)]
    evidence = render_evidence(batch, index)
    if evidence is not None:
        parts.append(evidence)
    if current is not None:
        parts.append(Text.assemble(("current answer: ", "bold"), _answer_text(current), ("  (Enter keeps it)", "dim")))
    parts.append(Text(HINT, style="dim"))
    return Group(*parts)


class HumanConsole:
    """Asks a person the questions of human verifiers, batch by batch (the runner's answerer)."""

    def __init__(
        self,
        run_dir: str | Path,
        generations: int,
        console: Console,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        before_first: Callable[[], None] | None = None,
    ) -> None:
        self.book = AnswerBook(run_dir)
        self.generations = generations
        self.console = console
        self.stream = sys.stdin if stream is None else stream
        self.clock = clock
        self.before_first = before_first
        self.asked = 0  # questions shown in this session
        try:
            self._echo = not os.isatty(self.stream.fileno())
        except (OSError, ValueError):
            self._echo = True

    def __call__(self, payload: dict) -> dict:
        batch = Batch.model_validate(payload)
        return self.ask(batch).model_dump()

    def _read(self) -> str:
        self.console.print("answer> ", end="", highlight=False, markup=False)
        self.console.file.flush()
        line = self.stream.readline()
        if not line:
            self.console.print()
            raise HumanPause("end of input")
        if self._echo:  # piped answers: show them, so that the transcript reads like a session
            self.console.print(line.rstrip("\r\n"), highlight=False, markup=False)
        return line.rstrip("\r\n")

    def ask(self, batch: Batch) -> Reply:
        """Every answer of the batch: from the book, or asked now. Raises HumanPause on quit or end of input."""
        n = len(batch.items)
        answers: list[Answer | None] = [self.book.get(batch, i) for i in range(n)]
        unsaved = [0.0] * n  # time on visits that ended in `back`, added to the next answer
        asked_before = self.asked
        i = next((j for j, a in enumerate(answers) if a is None), n)
        while i < n:
            if self.asked == 0 and self.before_first is not None:
                self.before_first()
            spent = self.book.seconds(batch.arm)
            self.console.print(render_question(batch, i, self.generations, spent, answers[i], self.asked == 0))
            self.asked += 1
            start, note = self.clock(), ""
            while True:
                try:
                    parsed = parse_answer(self._read(), batch.threshold, can_keep=answers[i] is not None)
                except AnswerError as e:
                    self.console.print(Text(str(e), style="yellow"))
                    continue
                if parsed.action == "help":
                    self.console.print(HELP.format(threshold=batch.threshold), highlight=False, markup=False)
                elif parsed.action == "note":
                    note = parsed.note
                    self.console.print("note kept; now answer: a, r, a score, or s", style="dim", highlight=False)
                elif parsed.action == "quit":
                    raise HumanPause("quit")
                elif parsed.action == "back":
                    if i == 0:
                        self.console.print(Text("this is the first proposal of the batch: there is nothing to go back to", style="yellow"))
                        continue
                    unsaved[i] += self.clock() - start
                    i -= 1
                    break
                else:
                    before = answers[i]
                    seconds = (before.seconds if before else 0.0) + unsaved[i] + self.clock() - start
                    if parsed.action == "keep":
                        answer = before.model_copy(update={"seconds": seconds})
                    else:
                        answer = Answer(
                            key=batch.items[i].key,
                            decision=parsed.decision,
                            score=parsed.score,
                            note=parsed.note or note,
                            seconds=seconds,
                        )
                    self.book.put(batch, i, answer)
                    answers[i], unsaved[i] = answer, 0.0
                    i += 1
                    break
        done = [a for a in answers if a is not None]
        if self.asked > asked_before:
            counts = {d: sum(a.decision == d for a in done) for d in ("accept", "reject", "skip")}
            self.console.print(
                Text(
                    f"batch {batch.id} done: {counts['accept']} accepted, {counts['reject']} rejected, {counts['skip']} skipped",
                    style="dim",
                )
            )
        return Reply(batch=batch.id, answers=done)
