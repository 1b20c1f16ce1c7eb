"""The ``ouro`` command line: run, resume, sweep, report and show experiments."""

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
            f"[{colors.get(a['verdict'], 'white')}]{a['verdict']}[/]" if a["verdict"] else "–",
            f"{_fmt(qa['start'])} → {_fmt(qa['end'])}",
            f"{_fmt(qa['delta'])} {_ci(qa['delta_ci'])}",
            f"{_fmt(da['start'])} → {_fmt(da['end'])}",
            _fmt(a["precision"], 2),
            _fmt(a["recall"], 2),
            spent,
            *extra,
        )
    table.caption = no_verdict_note(summary)
    return table


def no_verdict_note(summary: dict) -> str | None:
    """Which arms have no verdict (–), and what data they lack: one line, or None."""
    missing: dict[str, list[str]] = {}
    for name, a in summary["arms"].items():
        if not a["verdict"]:
            missing.setdefault(a.get("verdict_missing") or "missing data", []).append(name)
    return "; ".join(f"no verdict for {', '.join(arms)}: {why}" for why, arms in missing.items()) or None


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
EXIT_STOPPED = 4  # an arm stopped before its last generation (cost limit, failed calls): resume continues


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


def _execute(run_dir: Path, workers: int, quiet: bool, report: bool = True) -> None:
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
    reasons: dict[str, list[str]] = {}
    for o in outcomes:
        if o.stopped:
            where = f"after generation {o.generations - 1}" if o.generations else "before generation 0"
            reasons.setdefault(o.stopped, []).append(f"{o.arm} ({where})")
    for reason, arms in reasons.items():
        label = "arm" if len(arms) == 1 else "arms"
        err_console.print(f"{label} {', '.join(arms)} stopped: {reason}", highlight=False, soft_wrap=True)
    summary = summarize(run_dir, config)
    _print_summary(summary)
    console.print(f"run directory: {run_dir}")
    if report:
        _report(run_dir)
    if reasons:  # what was run is summarized above; a script must still see that the run is not complete
        raise typer.Exit(EXIT_STOPPED)


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
    no_report: bool = typer.Option(False, "--no-report", help="skip plots, report.md and report.html"),
) -> None:
    """Run an experiment: every arm, every seed, every generation."""
    from ouro.runner import default_run_dir, human_arms, prepare_run_dir

    try:
        cfg = load_config(config, set_)
        _preflight(cfg)
        _require_answers(human_arms(cfg))
        run_dir = out if out is not None else default_run_dir(cfg)
        prepare_run_dir(cfg, run_dir)
        _execute(run_dir, workers or cfg.workers, quiet, report=not no_report)
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
    no_report: bool = typer.Option(False, "--no-report", help="skip plots, report.md and report.html"),
) -> None:
    """Continue a run after a crash, a kill, Ctrl-C, the cost limit or failed calls; finished generations are not redone."""
    from ouro.config import amend_saved_config
    from ouro.runner import load_run_config

    try:
        cfg = load_run_config(run_dir)
        if set_:
            cfg = amend_saved_config(run_dir / "config.yaml", set_)
        _preflight(cfg)
        _execute(run_dir, workers or cfg.workers, quiet, report=not no_report)
    except ConfigError as e:
        _fail(str(e))


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print a finished run's summary table again."""
    path = run_dir / "summary.json"
    if not path.is_file():
        _fail(f"{run_dir}: no summary.json (is the run finished? `ouro resume {run_dir}` completes it)")
    _print_summary(json.loads(path.read_text()))


@app.command()
def evaluate(
    method_file: Path = typer.Option(..., "--method-file", help="a .py file (code method) or a .json/.yaml DSL spec"),
    env: str = typer.Option("estimators", "--env", help="environment kind"),
    set_: List[str] = typer.Option([], "--set", help="override an environment field, e.g. --set n=30"),
    replications: int = typer.Option(1000, "--replications", min=2, help="Monte Carlo data sets per process"),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-9, max=0.999, help="level of the one-sided paired test"),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Judge one method: Monte Carlo test against the baseline, and its oracle quality, as JSON."""
    from ouro.evaluate import build_environment, dumps, evaluate_method, read_method

    try:
        environment = build_environment(env, set_)
        method = read_method(method_file, environment)
    except ConfigError as e:
        _fail(str(e))
    print(dumps(evaluate_method(environment, method, replications, alpha, seed)))


def _report(path: Path) -> None:
    from ouro.report import write_report

    files = write_report(path)
    console.print(f"report: {files.markdown} and {files.html} ({len(files.plots)} plots in {files.markdown.parent / 'plots'})")


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="a study: an experiment YAML, with or without a sweep.grid section"),
    grid: List[str] = typer.Option([], "--grid", help="KEY=V1,V2,...: a grid axis; adds to or replaces the file's"),
    set_: List[str] = typer.Option([], "--set", help="override a field of every cell, e.g. --set loop.generations=5"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds per cell (default: the config's)"),
    backend: str = typer.Option("local", "--backend", help="local (worker processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="cells run in parallel (default: the config's)"),
    retries: int = typer.Option(2, "--retries", help="times a failing cell is retried before it is reported"),
    out: Optional[Path] = typer.Option(None, "--out", help="the sweep directory (default runs/sweep-NAME-HASH)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    no_report: bool = typer.Option(False, "--no-report", help="skip plots, report.md and report.html"),
) -> None:
    """Run an experiment over a grid of settings; the same command again resumes it."""
    from ouro.sweep import plan_sweep, run_sweep
    from ouro.sweep_progress import RichObserver

    try:
        plan = plan_sweep(config, grid, set_, seeds)
        sweep_dir = out if out is not None else plan.default_dir()
        n_workers = workers if workers is not None else int(plan.base.get("workers", 1))
        err_console.print(f"sweep directory: {sweep_dir} ({len(plan.cells)} cells, backend {backend})", highlight=False)
        try:
            with RichObserver(err_console, quiet) as observer:
                result = run_sweep(plan, sweep_dir, backend, n_workers, address, retries, observer)
        except KeyboardInterrupt:
            err_console.print("\ninterrupted: finished cells and generations are kept. Continue with the same command.")
            raise typer.Exit(130)
        console.print(
            f"{result.finished}/{result.cells} cells finished ({result.skipped} were already), "
            f"{len(result.failures)} failed, in {result.seconds:.1f} s; tables: {sweep_dir / 'sweep.csv'}",
            highlight=False,
        )
        if result.finished and not no_report:
            _report(sweep_dir)
    except ConfigError as e:
        _fail(str(e))
    if result.failures:
        for slug, reason in result.failures.items():
            err_console.print(f"failed: {slug}: {reason}", highlight=False, soft_wrap=True)
        err_console.print("run the same command again to retry the failed cells")
        raise typer.Exit(1)


@app.command()
def report(path: Path = typer.Argument(..., help="a run or sweep directory")) -> None:
    """Write plots, report.md and a self-contained report.html for a run or a sweep."""
    try:
        _report(path)
    except ConfigError as e:
        _fail(str(e))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
