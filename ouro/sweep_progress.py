"""The sweep's progress display: one bar for the whole sweep, one status line for its cells.

The bar counts cells done and shows their rate; its time left is estimated from
generations (finer than cells, so the estimate moves while long cells run). Below it a
single line names the cells running now, cut to the terminal's width: however many
cells a sweep has, the display stays two lines. Retries and failures print one line
each above the bar.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ouro.sweep import Observer


class _CellsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        f = task.fields
        return Text(f"{f.get('cells_done', 0)}/{f.get('cells_total', 0)} cells")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        f = task.fields
        new = f.get("cells_done", 0) - f.get("cells_skipped", 0)
        minutes = (time.monotonic() - f.get("t0", time.monotonic())) / 60
        if new <= 0 or minutes <= 0:
            return Text("– cells/min", style="dim")
        return Text(f"{new / minutes:.2g} cells/min")


class _SweepBar(Progress):
    """A progress bar with a status line under it."""

    status = Text("")

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.status.plain:
            yield self.status


class RichObserver(Observer):
    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.bar = _SweepBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _CellsColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=False,
            refresh_per_second=4,
        )
        self.bar.status = Text("", no_wrap=True, overflow="ellipsis", style="dim")
        self.task = None

    def __enter__(self) -> "RichObserver":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.status = Text("")
        self.bar.stop()

    def start(self, name: str, cells_total: int, cells_done: int, gens_total: int, gens_done: int) -> None:
        self.task = self.bar.add_task(
            f"sweep {name}", total=gens_total, completed=gens_done,
            cells_total=cells_total, cells_done=cells_done, cells_skipped=cells_done, t0=time.monotonic(),
        )  # fmt: skip

    def progress(self, cells_done: int, gens_done: int, running: list[tuple[str, int, int]]) -> None:
        if self.task is None:
            return
        self.bar.update(self.task, completed=gens_done, cells_done=cells_done)
        shown = [f"{slug} {done}/{total}" for slug, done, total in running[:4]]
        more = f" (+{len(running) - 4} more)" if len(running) > 4 else ""
        text = f"  running: {' · '.join(shown)}{more}" if running else ""
        self.bar.status = Text(text, no_wrap=True, overflow="ellipsis", style="dim")

    def retry(self, slug: str, attempt: int, reason: str) -> None:
        self.bar.console.print(Text(f"cell {slug}: attempt {attempt} failed ({reason}); retrying", style="yellow"))

    def failed(self, slug: str, reason: str) -> None:
        self.bar.console.print(Text.assemble((f"cell {slug} failed:", "red"), " ", reason))
