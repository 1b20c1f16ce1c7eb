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


def _count(x: float) -> str:
    return f"{x / 1e6:.3g}M" if x >= 1e6 else f"{x / 1e3:.3g}k" if x >= 1e3 else f"{x:.0f}"


def _spent(cost: dict) -> str:
    """What an arm spent, compactly: replications, tokens in/out, dollars, human seconds."""
    parts = []
    if cost.get("replications"):
        parts.append(f"{_fmt(cost['replications'], 3)} reps")
    if cost.get("tokens_in") or cost.get("tokens_out"):
        parts.append(f"{_count(cost.get('tokens_in', 0))}/{_count(cost.get('tokens_out', 0))} tok")
    if cost.get("usd"):
        parts.append(f"${cost['usd']:.3g}")
    if cost.get("human_seconds"):
        parts.append(f"{_fmt(cost['human_seconds'], 3)} human s")
    return ", ".join(parts) or "0"


def summary_table(summary: dict) -> Table:
    q, d = summary["quality_metric"], summary["diversity_metric"]
    proposing = any(a.get("ledger", {}).get("researcher", {}).get("calls") for a in summary["arms"].values())
    table = Table(title=f"{summary['name']}: {q} and {d}, start → end (mean over {_seeds(summary)} seeds, 95% CI)")
    for col, just in [
        ("arm", "left"), ("verdict", "left"), (f"{q}", "right"), ("Δ [95% CI]", "right"),
        (f"{d}", "right"), ("precision", "right"), ("recall", "right"), ("spent", "right"),
    ]:  # fmt: skip
        table.add_column(col, justify=just)
    if proposing:  # a model-backed researcher: what proposing cost, beside what verifying cost
        table.add_column("proposing", justify="right")
    colors = {"improved": "green", "collapsed": "red", "degraded": "red", "stable": "yellow"}
    for name, a in summary["arms"].items():
        qa, da = a["quality"], a["diversity"][d]
        spent = _spent(a["cost"])
        extra = [_spent(a.get("ledger", {}).get("researcher", {}))] if proposing else []
        table.add_row(
            name,
            f"[{colors.get(a['verdict'], 'white')}]{a['verdict']}[/]",
            f"{_fmt(qa['start'])} → {_fmt(qa['end'])}",
            f"{_fmt(qa['delta'])} {_ci(qa['delta_ci'])}",
            f"{_fmt(da['start'])} → {_fmt(da['end'])}",
            _fmt(a["precision"], 2),
            _fmt(a["recall"], 2),
            spent,
            *extra,
        )
    return table


def _seeds(summary: dict) -> str:
    counts = {a.get("seeds") for a in summary["arms"].values()}
    return str(counts.pop()) if len(counts) == 1 else "the"


def _execute(run_dir: Path, workers: int, quiet: bool) -> None:
    from ouro.runner import execute, load_run_config
    from ouro.summary import summarize

    config = load_run_config(run_dir)
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

        try:
            outcomes = execute(run_dir, workers, on_progress=update)
        except KeyboardInterrupt:
            progress.stop()
            err_console.print(
                f"\ninterrupted: every finished generation is saved. Continue with:\n  ouro resume {run_dir}"
            )
            raise typer.Exit(130)
    reasons: dict[str, list[str]] = {}
    for o in outcomes:
        if o.stopped:
            where = f"after generation {o.generations - 1}" if o.generations else "before generation 0"
            reasons.setdefault(o.stopped, []).append(f"{o.arm} ({where})")
    for reason, arms in reasons.items():
        label = "arm" if len(arms) == 1 else "arms"
        err_console.print(f"{label} {', '.join(arms)} stopped: {reason}", highlight=False, soft_wrap=True)
    summary = summarize(run_dir, config)
    console.print(summary_table(summary))
    console.print(f"run directory: {run_dir}")


def _preflight(config) -> None:
    """Missing keys and impossible arms fail here, in one line; suspicious arms are warned about."""
    from ouro.preflight import preflight

    for warning in preflight(config):
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="experiment YAML (default: configs/default.yaml)"),
    set_: List[str] = typer.Option([], "--set", help="override a config field, e.g. --set loop.generations=5"),
    out: Optional[Path] = typer.Option(None, "--out", help="the run directory (default runs/NAME-STAMP)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="parallel worker processes (arms)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Run an experiment: every arm, every seed, every generation."""
    from ouro.runner import default_run_dir, prepare_run_dir

    try:
        cfg = load_config(config, set_)
        _preflight(cfg)
        run_dir = out if out is not None else default_run_dir(cfg)
        prepare_run_dir(cfg, run_dir)
        _execute(run_dir, workers or cfg.workers, quiet)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="a run directory made by `ouro run`"),
    set_: List[str] = typer.Option(
        [], "--set", help="change a field that is safe mid-run, e.g. --set cost_limit_usd=20 (saved to config.yaml)"
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Continue a run after a crash, a kill, Ctrl-C, the cost limit or failed calls; finished generations are not redone."""
    from ouro.config import amend_saved_config
    from ouro.runner import load_run_config

    try:
        cfg = load_run_config(run_dir)
        if set_:
            cfg = amend_saved_config(run_dir / "config.yaml", set_)
        _preflight(cfg)
        _execute(run_dir, workers or cfg.workers, quiet)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print a finished run's summary table again."""
    path = run_dir / "summary.json"
    if not path.is_file():
        _fail(f"{run_dir}: no summary.json (is the run finished? `ouro resume {run_dir}` completes it)")
    console.print(summary_table(json.loads(path.read_text())))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
