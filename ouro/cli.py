"""The ``ouro`` command line: run, resume and show experiments."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ouro.config import ConfigError, load_config

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=__doc__)
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _ci(pair) -> str:
    lo, hi = pair
    return "–" if lo is None or hi is None else f"[{lo:+.3g}, {hi:+.3g}]"


def summary_table(summary: dict) -> Table:
    q, d = summary["quality_metric"], summary["diversity_metric"]
    table = Table(title=f"{summary['name']}: {q} and {d}, start → end (mean over {_seeds(summary)} seeds, 95% CI)")
    for col, just in [
        ("arm", "left"), ("verdict", "left"), (f"{q}", "right"), ("Δ [95% CI]", "right"),
        (f"{d}", "right"), ("precision", "right"), ("recall", "right"), ("spent", "right"),
    ]:  # fmt: skip
        table.add_column(col, justify=just)
    colors = {"improved": "green", "collapsed": "red", "degraded": "red", "stable": "yellow"}
    for name, a in summary["arms"].items():
        qa, da = a["quality"], a["diversity"][d]
        spent = ", ".join(
            f"{_fmt(v, 3)} {label}"
            for key, label in (("replications", "reps"), ("tokens_in", "tok in"), ("tokens_out", "tok out"),
                               ("usd", "USD"), ("human_seconds", "human s"))
            if (v := a["cost"].get(key))
        ) or "0"  # fmt: skip
        table.add_row(
            name,
            f"[{colors.get(a['verdict'], 'white')}]{a['verdict']}[/]",
            f"{_fmt(qa['start'])} → {_fmt(qa['end'])}",
            f"{_fmt(qa['delta'])} {_ci(qa['delta_ci'])}",
            f"{_fmt(da['start'])} → {_fmt(da['end'])}",
            _fmt(a["precision"], 2),
            _fmt(a["recall"], 2),
            spent,
        )
    return table


def _share(value, ci) -> str:
    return "–" if value is None else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def audit_table(summary: dict) -> Table | None:
    """Verifiers measured by a person's audit alone, beside the oracle's figures; None without audits."""
    audited = {name: a for name, a in summary["arms"].items() if a.get("audit")}
    if not audited:
        return None
    table = Table(title="audits: each audited verifier measured by a person's answers alone, and by the oracle (95% CI)")
    for col in ("arm", "audited", "precision (audit)", "precision (oracle)", "recall (audit)", "recall (oracle)", "agreement"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for name, a in audited.items():
        au = a["audit"]
        table.add_row(
            name,
            str(au["audited"]),
            _share(au["precision"], au["precision_ci"]),
            _share(a["precision"], a["precision_ci"]),
            _share(au["recall"], au["recall_ci"]),
            _share(a["recall"], a["recall_ci"]),
            _share(au["agreement"], au["agreement_ci"]),
        )
    return table


def _print_summary(summary: dict) -> None:
    console.print(summary_table(summary))
    audits = audit_table(summary)
    if audits is not None:
        console.print(audits)


EXIT_PAUSED = 3  # a person quit, or their answers ran out; everything answered is saved


def _require_answers(arms: list[str]) -> None:
    """Fail at once, before any work, when arms will ask a person and nobody can answer."""
    from ouro.console import stdin_problem

    problem = stdin_problem() if arms else None
    if problem:
        _fail(
            f"arm {arms[0]} asks a person to judge proposals, but {problem}; run it in a terminal, "
            "or pipe the answers in, one per line (e.g. `ouro run CONFIG < answers.txt`)"
        )


def _seeds(summary: dict) -> str:
    counts = {a.get("seeds") for a in summary["arms"].values()}
    return str(counts.pop()) if len(counts) == 1 else "the"


def _execute(run_dir: Path, workers: int, quiet: bool) -> None:
    from ouro.console import HumanConsole, HumanPause
    from ouro.runner import execute, load_run_config, unfinished_human_arms
    from ouro.summary import summarize

    config = load_run_config(run_dir)
    asking = unfinished_human_arms(run_dir, config)
    _require_answers(asking)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("generations"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task(config.name, total=len(config.arms) * config.loop.generations)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        answer = HumanConsole(run_dir, config.loop.generations, console, before_first=progress.stop) if asking else None
        saved = "every finished generation and every answer given is saved" if asking else "every finished generation is saved"
        try:
            outcomes = execute(run_dir, workers, on_progress=update, answer=answer)
        except KeyboardInterrupt:
            progress.stop()
            # soft wrap: the command stays on one line, to be copied
            err_console.print(f"\ninterrupted: {saved}. Continue with:\n  ouro resume {run_dir}", soft_wrap=True)
            raise typer.Exit(130)
        except HumanPause as e:
            progress.stop()
            err_console.print(
                f"\npaused ({e.reason}): {saved} ({len(answer.book)} answers in {answer.book.path}); "
                f"nothing answered will be asked again. Continue with:\n  ouro resume {run_dir}",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_PAUSED)
    stopped = [o for o in outcomes if o.stopped]
    for o in stopped:
        err_console.print(f"arm {o.arm} stopped after generation {o.generations - 1}: {o.stopped}")
    summary = summarize(run_dir, config)
    _print_summary(summary)
    console.print(f"run directory: {run_dir}")


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="experiment YAML (default: configs/default.yaml)"),
    set_: List[str] = typer.Option([], "--set", help="override a config field, e.g. --set loop.generations=5"),
    out: Optional[Path] = typer.Option(None, "--out", help="the run directory (default runs/NAME-STAMP)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="parallel worker processes (arms)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Run an experiment: every arm, every seed, every generation."""
    from ouro.runner import default_run_dir, human_arms, prepare_run_dir

    try:
        cfg = load_config(config, set_)
        _require_answers(human_arms(cfg))
        run_dir = out if out is not None else default_run_dir(cfg)
        prepare_run_dir(cfg, run_dir)
        _execute(run_dir, workers or cfg.workers, quiet)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="a run directory made by `ouro run`"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Continue a run after a crash, a kill or Ctrl-C; finished generations are not redone."""
    from ouro.runner import load_run_config

    try:
        cfg = load_run_config(run_dir)
        _execute(run_dir, workers or cfg.workers, quiet)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print a finished run's summary table again."""
    path = run_dir / "summary.json"
    if not path.is_file():
        _fail(f"{run_dir}: no summary.json (is the run finished? `ouro resume {run_dir}` completes it)")
    _print_summary(json.loads(path.read_text()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
