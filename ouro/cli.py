"""The ``ouro`` command line: run, resume, sweep, report and show experiments."""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer vendors click from 0.25 on
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as _click_errors

from ouro.config import ConfigError, load_config

# Neither console reads markup: what is printed is text (a message may hold `[ray]`, a
# path `[x]`); styles are given as Text styles, never as tags inside a string.
console = Console(width=None if sys.stdout.isatty() else 120, markup=False)
err_console = Console(stderr=True, markup=False, highlight=False)


def _say(label: str, style: str, message: str) -> None:
    """One message line on stderr: a styled label, then the text as it is (soft wrap: a
    command in it stays on one line, to be copied)."""
    err_console.print(Text.assemble((label, style), " ", message) if label else message, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _say("error:", "bold red", message)
    raise typer.Exit(code)


_NO_ARGS_IS_HELP = getattr(_click_errors, "NoArgsIsHelpError", ())  # click >= 8.2


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, an unknown option, a missing argument) as one
    line naming the option, exit status 2, like every other invalid input."""

    def make_context(self, *args, **kwargs):
        with _usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _usage_errors():
            return super().invoke(ctx)


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except _NO_ARGS_IS_HELP:
        raise  # `ouro` alone prints the help
    except _click_errors.UsageError as e:
        param = getattr(e, "param", None)
        if isinstance(e, _click_errors.BadParameter) and e.message and getattr(param, "param_type_name", "") == "option":
            message = f"{max(param.opts, key=len)}: {e.message}"
        else:
            message = " ".join(e.format_message().split())
        _fail(f"{message} (see {e.ctx.command_path if e.ctx else 'ouro'} --help)")


app = typer.Typer(
    cls=_OneLineErrors, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=__doc__
)


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
            Text(a["verdict"], style=colors.get(a["verdict"], "white")) if a["verdict"] else "–",
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


def _make_dirs(path: Path, label: str) -> list[Path]:
    """Create the directory ``path`` and its missing parents; returns those it made,
    outermost first. A path that cannot be a directory (a file, a path under a file, a
    place that cannot be written) is a one-line ConfigError starting with ``label``."""
    missing, p = [], path
    try:
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{label}: {'it' if p == path else p} is a file, not a directory")
    except OSError as e:
        raise ConfigError(f"{label}: cannot reach {p}: {e.strerror}") from None
    made: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as e:
            _remove_made(made)
            raise ConfigError(f"{label}: cannot create {'it' if d == path else d}: {e.strerror}") from None
        made.append(d)
    return made


def _remove_made(made: list[Path]) -> None:
    if made:
        shutil.rmtree(made[0], ignore_errors=True)


@contextmanager
def _new_directory(path: Path, label: str) -> Iterator[None]:
    """Make ``path`` a directory for the block; if the block fails, remove what was made
    here (an error never leaves a partial run directory behind). An OSError in the block
    (a directory that cannot be written) is a one-line ConfigError starting with ``label``."""
    made = _make_dirs(path, label)
    try:
        yield
    except OSError as e:
        _remove_made(made)
        raise ConfigError(f"{label}: cannot write in it: {e.strerror or e}") from None
    except BaseException:
        _remove_made(made)
        raise


def _require_run_dir(path: Path, command: str) -> None:
    """A one-line ConfigError saying what ``path`` is when it is no run directory, with
    the command that works on it."""
    from ouro.sweep import is_sweep_dir

    if not path.exists():
        raise ConfigError(f"{path}: not a run directory: it does not exist")
    if not path.is_dir():
        raise ConfigError(f"{path}: not a run directory: it is a file")
    if is_sweep_dir(path):
        if command == "resume":
            raise ConfigError(f"{path}: a sweep directory, not a run: run the `ouro sweep` command that made it again")
        raise ConfigError(f"{path}: a sweep directory, not a run: its tables and report come from `ouro report {path}`")
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: not a run directory (no config.yaml)")


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
        _say("", "", f"{label} {', '.join(arms)} stopped: {reason}")
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
        _say("warning:", "bold yellow", warning)


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
        label = f"--out {run_dir}" if out is not None else f"run directory {run_dir}"
        with _new_directory(run_dir, label):
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
        _require_run_dir(run_dir, "resume")
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
    try:
        _require_run_dir(run_dir, "show")
    except ConfigError as e:
        _fail(str(e))
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
    from ouro.sweep import check_options, plan_sweep, run_sweep
    from ouro.sweep_progress import RichObserver

    try:  # everything is checked before anything is printed or made
        plan = plan_sweep(config, grid, set_, seeds)
        n_workers = workers if workers is not None else int(plan.base.get("workers", 1))
        check_options(backend, n_workers, address, retries)
        sweep_dir = out if out is not None else plan.default_dir()
        label = f"--out {sweep_dir}" if out is not None else f"sweep directory {sweep_dir}"
        _make_dirs(sweep_dir, label)
        err_console.print(f"sweep directory: {sweep_dir} ({len(plan.cells)} cells, backend {backend})")
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
            _say("failed:", "", f"{slug}: {reason}")
        err_console.print("run the same command again to retry the failed cells")
        raise typer.Exit(1)


@app.command()
def report(path: Path = typer.Argument(..., help="a run or sweep directory")) -> None:
    """Write plots, report.md and a self-contained report.html for a run or a sweep."""
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path}: is a file, not a run or sweep directory")
        _report(path)
    except ConfigError as e:
        _fail(str(e))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
