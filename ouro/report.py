"""Reports a person reads: figures, ``report.md`` and a self-contained ``report.html``.

``write_report(DIR)`` takes a run directory or a sweep directory and writes, beside the
data, ``plots/*.png``, ``report.md`` (tables and the figures, linked) and ``report.html``
(the same, with the figures embedded, one file to mail or attach). The figures for a run:
quality and diversity against generation per arm with 95% bands across seeds; verifier
precision against the final quality change; the information ledger (quality gained
against what the verifier spent). A sweep adds the phase diagram: the final quality
change, and the verdict, across a grid axis, for each setting of the other axes.

The report is built as a short list of blocks (headings, paragraphs, tables, figures)
rendered twice, so the markdown and the HTML never disagree.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from ouro.config import ConfigError
from ouro.stats import mean_ci
from ouro.store import atomic_write_text

# what a verifier can spend, the unit it is counted in, and the cost fields that make it up
SPEND_UNITS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("replications", "simulated data sets", ("replications",)),
    ("tokens", "tokens (in + out)", ("tokens_in", "tokens_out")),
    ("usd", "US dollars", ("usd",)),
    ("human_seconds", "human seconds", ("human_seconds",)),
)
VERDICT_RULES = (
    "Verdicts (rules in ouro/verdict.py): *improved* when the 95% CI across seeds of the change in quality "
    "(end − start) lies above 0; *degraded* when it lies below 0; *collapsed* when neither and diversity fell "
    "by at least half; *stable* otherwise; no verdict (–) when the data to decide are missing (e.g. no valid "
    "proposals at generation 0)."
)
MAX_SMALL_MULTIPLES = 30
MAX_PANELS = 12


# ------------------------------------------------------------------ blocks


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: tuple[int, ...] = ()  # columns aligned right (numbers)


@dataclass
class Figure:
    path: Path  # relative to the report's directory
    caption: str


Block = Union[Heading, Para, Table, Figure]


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(b.text + "\n")
        elif isinstance(b, Table):
            cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
            out.append("| " + " | ".join(map(cell, b.header)) + " |")
            out.append("|" + "|".join("---:" if i in b.right else "---" for i in range(len(b.header))) + "|")
            out += ["| " + " | ".join(map(cell, row)) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out.append(f"![{b.path.stem}]({b.path.as_posix()})\n\n*{b.caption}*\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.86em;margin:.8em 0}th,td{padding:.28em .6em;border-bottom:1px solid #e3e3e3}
th{background:#f4f4f4;text-align:left}td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}img{max-width:100%;height:auto}figcaption{font-size:.88em;color:#555}
.improved{color:#2ca02c;font-weight:600}.collapsed,.degraded{color:#d62728;font-weight:600}.stable{color:#777}
"""


def _inline(text: str) -> str:
    """HTML of a markdown-ish line: escapes it, then renders *emphasis* and `code`."""
    import re

    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", s)


def render_html(blocks: Sequence[Block], title: str, base: Path) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th class='{'r' if i in b.right else ''}'>{_inline(h)}</th>" for i, h in enumerate(b.header))
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td class='{'r' if i in b.right else ''}'>"
                    + (f"<span class='{c}'>{c}</span>" if c in ("improved", "collapsed", "degraded", "stable")
                       else _inline(str(c)))
                    + "</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in b.rows
            )  # fmt: skip
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((base / b.path).read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{html.escape(b.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ numbers


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _signed(x: Any, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}g}"


def _ci(pair: Sequence[Any]) -> str:
    lo, hi = pair
    return "–" if lo is None or hi is None else f"[{_signed(lo)}, {_signed(hi)}]"


def _share(value: Any, pair: Sequence[Any]) -> str:
    """A proportion with its interval, or a dash when it is undefined (nothing accepted)."""
    if value is None:
        return "–"
    lo, hi = pair
    return f"{value:.2f}" if lo is None or hi is None else f"{value:.2f} [{lo:.2f}, {hi:.2f}]"


def verdict_text(arm: dict) -> str:
    """An arm's verdict, or a dash and what the data lacked to give one."""
    return arm["verdict"] or f"– ({arm.get('verdict_missing') or 'missing data'})"


def _map_note(arm: dict | None) -> str:
    """What a cell of the verdict map says: the quality change, and when there is none, why."""
    if arm is None:
        return ""
    q = arm["quality"]
    change = "" if q["delta"] is None else f"{_signed(q['delta'], 2)}\n{_ci2(q['delta_ci'])}"
    return change if arm["verdict"] else "\n".join(filter(None, [change, "no verdict"]))


def _ci2(pair: Sequence[Any]) -> str:
    lo, hi = pair
    return "–" if lo is None or hi is None else f"[{_signed(lo, 2)}, {_signed(hi, 2)}]"


def _mean_known(values: Sequence[Any]) -> float:
    """The mean of the values that are there (not None, not NaN); NaN when none is."""
    known = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(known)) if known else math.nan


def band_of(series: dict[int, dict[int, float]]):
    """Mean and 95% t interval across seeds, per generation."""
    from ouro.plots import Band

    gens = sorted({g for per_seed in series.values() for g in per_seed})
    stats = [mean_ci([series[s][g] for s in series if g in series[s]]) for g in gens]
    m, lo, hi = (np.array(col, dtype=float) for col in zip(*stats)) if stats else (np.empty(0),) * 3
    return Band(np.array(gens, dtype=float), m, lo, hi)


def gain_band(quality: dict[int, dict[int, float]]):
    """Quality gained since the first recorded generation, per seed, then mean and 95% CI."""
    rebased = {s: {g: v - per[min(per)] for g, v in per.items()} for s, per in quality.items() if per}
    return band_of(rebased)


def spend_series(metrics: dict, fields: tuple[str, ...]) -> dict[int, dict[int, float]]:
    """Cumulative spend per seed up to and including each generation."""
    seeds = set().union(*(metrics.get(f"cost_{f}", {}).keys() for f in fields))
    out: dict[int, dict[int, float]] = {}
    for s in seeds:
        gens = sorted(set().union(*(metrics.get(f"cost_{f}", {}).get(s, {}).keys() for f in fields)))
        total, acc = 0.0, {}
        for g in gens:
            total += sum(metrics.get(f"cost_{f}", {}).get(s, {}).get(g, 0.0) for f in fields)
            acc[g] = total
        out[s] = acc
    return out


def spend_per_seed(arm_summary: dict, fields: tuple[str, ...]) -> float:
    return sum(arm_summary["cost"].get(f, 0.0) for f in fields) / max(1, arm_summary.get("seeds") or 1)


def spend_text(arm_summary: dict) -> str:
    parts = [
        f"{_f(spend_per_seed(arm_summary, fields))} {unit}"
        for _, unit, fields in SPEND_UNITS
        if spend_per_seed(arm_summary, fields) > 0
    ]
    return ", ".join(parts) or "nothing"


def _units_spent(summaries: Sequence[dict]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [u for u in SPEND_UNITS if any(spend_per_seed(a, u[2]) > 0 for s in summaries for a in s["arms"].values())]


# ------------------------------------------------------------------ reading


@dataclass
class RunView:
    """A finished run as the report reads it."""

    path: Path
    config: Any
    summary: dict
    metrics: dict
    env: Any

    @property
    def arms(self) -> list[str]:
        return [a.name for a in self.config.arms if a.name in self.summary["arms"]]

    @property
    def quality_label(self) -> str:
        """An environment may name its quality for axes (``quality_label``); else the metric, and its direction."""
        label = getattr(self.env, "quality_label", None)
        if label:
            return label
        lower = getattr(self.env, "quality_direction", 1) < 0
        return f"{self.summary['quality_metric']} ({'lower' if lower else 'higher'} is better)"

    @property
    def diversity_label(self) -> str:
        return getattr(self.env, "diversity_label", None) or self.summary["diversity_metric"]


def load_run(path: Path) -> RunView:
    from ouro.runner import load_run_config
    from ouro.summary import read_metrics

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory")
    config = load_run_config(path)
    if not (path / "summary.json").is_file() or not (path / "metrics.csv").is_file():
        raise ConfigError(f"{path}: the run is not finished (no summary.json); complete it with: ouro resume {path}")
    summary = json.loads((path / "summary.json").read_text())
    return RunView(path, config, summary, read_metrics(path / "metrics.csv"), config.environment.build())


def _verifier_text(arm_config) -> str:
    """The verifier's kind and the settings it changes from their defaults."""
    fields = arm_config.verifier.model_dump(mode="json", exclude={"kind"}, exclude_defaults=True)
    inner = ", ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, (dict, list)))
    return f"{arm_config.verifier.kind} ({inner})" if inner else arm_config.verifier.kind


def _change_label(view: RunView) -> str:
    return f"quality change, end − start\n{view.quality_label}"


# ------------------------------------------------------------------ a run


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    plots: list[Path]


def run_blocks(view: RunView, plots_dir: Path) -> list[Block]:
    from ouro import plots

    s, cfg = view.summary, view.config
    arms = view.arms
    colors = plots.arm_colors(arms)
    seeds = ", ".join(sorted({str(s["arms"][a]["seeds"]) for a in arms}))
    blocks: list[Block] = [
        Heading(1, f"Run report: {s['name']}"),
        Para(
            f"Run directory `{view.path}`. Researcher `{cfg.researcher.kind}`, regime *{cfg.loop.regime}*, "
            f"{cfg.loop.generations} generations of {cfg.loop.proposals} proposals, {seeds} seeds per arm "
            f"(the same seeds in every arm, so arms compare pairwise)."
        ),
    ]
    describe = getattr(view.env, "describe", None)
    if callable(describe):
        blocks.append(Para(f"Problem: {describe()}"))
    rows = []
    for arm_cfg in cfg.arms:
        if arm_cfg.name not in s["arms"]:
            continue
        a = s["arms"][arm_cfg.name]
        q, d = a["quality"], a["diversity"][s["diversity_metric"]]
        rows.append([
            arm_cfg.name, _verifier_text(arm_cfg), verdict_text(a), f"{_f(q['start'])} → {_f(q['end'])}",
            f"{_signed(q['delta'])} {_ci(q['delta_ci'])}", f"{_f(d['start'])} → {_f(d['end'])}",
            _share(a["precision"], a["precision_ci"]), _f(a["recall"], 2), spend_text(a),
        ])  # fmt: skip
    blocks += [
        Heading(2, "Summary"),
        Table(
            ["arm", "verifier", "verdict", f"{s['quality_metric']} start → end", "change [95% CI]",
             f"{s['diversity_metric']} start → end", "precision [95% CI]", "recall", "spent per seed"],
            rows,
            right=(3, 4, 5, 6, 7, 8),
        ),  # fmt: skip
        Para(VERDICT_RULES),
    ]

    ref = getattr(view.env, "baseline_quality", None)
    q_panels = [("", {a: band_of(view.metrics[a][s["quality_metric"]]) for a in arms})]
    d_panels = [("", {a: band_of(view.metrics[a][s["diversity_metric"]]) for a in arms})]
    figs = [
        Figure(
            plots.plot_trajectories(
                plots_dir / "quality.png", q_panels, ylabel=view.quality_label, colors=colors,
                title=f"Quality of proposals per generation (mean of {seeds} seeds, 95% band)",
                reference=ref, reference_label=f"baseline ({_f(ref)})" if ref is not None else "",
            ),
            "Oracle quality of what the researcher proposes, per generation: mean across seeds and its 95% "
            "confidence band.",
        ),
        Figure(
            plots.plot_trajectories(
                plots_dir / "diversity.png", d_panels, ylabel=view.diversity_label, colors=colors,
                title=f"Diversity of proposals per generation (mean of {seeds} seeds, 95% band)",
            ),
            "Diversity of the proposals per generation; a fall towards 0 is the loop collapsing onto a mode.",
        ),
    ]  # fmt: skip
    blocks += [Heading(2, "Quality and diversity across generations"), *figs]

    points, missing = [], []
    for a in arms:
        sa = s["arms"][a]
        if sa["precision"] is None:
            missing.append(a)
            continue
        q = sa["quality"]
        points.append(plots.Point(a, sa["precision"], *sa["precision_ci"], q["delta"], *q["delta_ci"], label=a))
    if points:
        note = f"Not shown (accepted nothing, so precision is undefined): {', '.join(missing)}." if missing else ""
        blocks += [
            Heading(2, "Verifier precision and quality change"),
            Figure(
                plots.plot_precision(
                    plots_dir / "precision.png", [("", points)], ylabel=_change_label(view), colors=colors,
                    title="Does a more precise verifier lead to more improvement?", note=note,
                ),
                "Each arm: the precision of its verifier over the whole run (Wilson 95% CI) against the change in "
                "quality from the first to the last generation (95% CI across seeds). " + note,
            ),
        ]  # fmt: skip

    blocks += [Heading(2, "Information ledger"), *_run_ledger(view, plots_dir, colors, seeds)]
    return blocks


def _run_ledger(view: RunView, plots_dir: Path, colors: dict, seeds: str) -> list[Block]:
    from ouro import plots

    s, arms = view.summary, view.arms
    units = _units_spent([s])
    if not units:
        return [Para("No verifier in this run spent a counted resource (replications, tokens, dollars or human time).")]
    panels, free = [], {}
    for a in arms:
        if not any(spend_per_seed(s["arms"][a], u[2]) > 0 for u in units):
            q = s["arms"][a]["quality"]
            free[a] = (q["delta"], *q["delta_ci"])
    for name, unit, fields in units:
        curves = {}
        for a in arms:
            if spend_per_seed(s["arms"][a], fields) > 0:
                spent = band_of(spend_series(view.metrics[a], fields))
                gain = gain_band(view.metrics[a][s["quality_metric"]])
                curves[a] = plots.Band(spent.mean, gain.mean, gain.lo, gain.hi)
        panels.append((unit, curves, free))
    path = plots.plot_ledger(
        plots_dir / "ledger.png", panels, xlabel=f"spent per seed, cumulative ({units[0][1]}, log scale)"
        if len(units) == 1 else "spent per seed, cumulative (log scale)",
        ylabel=f"quality gained since generation 0\n{view.quality_label}", colors=colors,
        title=f"Information ledger: quality gained against what the verifier spent ({seeds} seeds, 95% band)",
    )  # fmt: skip
    return [
        Figure(
            path,
            "Quality gained since the first generation against the verifier's cumulative spending per seed, as the "
            "run goes on (the dot is the end). Dashed lines: the final gain of arms that spend nothing measurable.",
        )
    ]


# ------------------------------------------------------------------ a sweep


@dataclass
class CellView:
    slug: str
    values: dict[str, Any]
    run: RunView


def _is_numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def choose_axis(grid: dict[str, list]) -> str | None:
    """The grid key drawn along x: the numeric one with most values, else the first that varies."""
    varying = [k for k, v in grid.items() if len(v) > 1]
    numeric = [k for k in varying if _is_numeric(grid[k])]
    if numeric:
        return max(numeric, key=lambda k: len(grid[k]))
    return varying[0] if varying else None


def sweep_blocks(sweep_dir: Path, plots_dir: Path) -> list[Block]:
    import itertools

    from ouro import plots
    from ouro.sweep import FAILED, _short_names, cell_dir, read_manifest, value_text

    manifest = read_manifest(sweep_dir)
    grid: dict[str, list] = manifest["grid"]
    keys = list(grid)
    names = _short_names(keys)
    cells = []
    for c in manifest["cells"]:
        path = cell_dir(sweep_dir, c["slug"])
        if (path / "summary.json").is_file():
            cells.append(CellView(c["slug"], c["values"], load_run(path)))
    if not cells:
        raise ConfigError(f"{sweep_dir}: no finished cell yet; run the sweep command again to complete it")
    first = cells[0].run
    arms = list(dict.fromkeys(a for c in cells for a in c.run.arms))
    colors = plots.arm_colors(arms)
    seeds = ", ".join(sorted({str(a["seeds"]) for c in cells for a in c.run.summary["arms"].values()}))
    gens = ", ".join(sorted({str(c.run.config.loop.generations) for c in cells}))
    axis = choose_axis(grid)
    others = [k for k in keys if k != axis]

    def label(values: dict, ks: list[str]) -> str:
        return ", ".join(f"{names[k]}={value_text(values[k])}" for k in ks) or "all cells"

    grid_text = " × ".join(f"`{k}` ∈ {{{', '.join(value_text(v) for v in grid[k])}}}" for k in keys) or "no grid"
    blocks: list[Block] = [
        Heading(1, f"Sweep report: {manifest['name']}"),
        Para(
            f"Sweep directory `{sweep_dir}`, base config `{manifest['source']}`. Grid: {grid_text}: "
            f"{len(manifest['cells'])} cells, each a run of {len(arms)} arms ({', '.join(arms)}) with {seeds} seeds "
            f"and {gens} generations. Tables: `sweep.csv` (every metric of every cell, grid values as columns) and "
            f"`sweep_summary.csv` (one row per cell and arm)."
        ),
    ]
    unfinished = len(manifest["cells"]) - len(cells)
    failed = json.loads((sweep_dir / FAILED).read_text()) if (sweep_dir / FAILED).is_file() else {}
    if unfinished:
        blocks.append(Para(f"*{unfinished} of {len(manifest['cells'])} cells are not finished* and are left out; "
                           f"running the same sweep command again completes them."))  # fmt: skip
    for slug, reason in failed.items():
        blocks.append(Para(f"Cell `{slug}` failed in the last sweep: {reason}"))
    describe = getattr(first.env, "describe", None)
    if callable(describe) and len({json.dumps(c.run.config.environment.model_dump(mode="json")) for c in cells}) == 1:
        blocks.append(Para(f"Problem: {describe()}"))

    by_values = {json.dumps([c.values[k] for k in keys]): c for c in cells}
    combos = list(itertools.product(*(grid[k] for k in others)))
    change = _change_label(first)

    def cell_at(combo: tuple, x: Any) -> CellView | None:
        values = dict(zip(others, combo))
        if axis:
            values[axis] = x
        return by_values.get(json.dumps([values[k] for k in keys]))

    if axis and len(combos) <= MAX_PANELS:
        xs = grid[axis]
        numeric = _is_numeric(xs)
        xpos = [float(v) for v in xs] if numeric else list(range(len(xs)))
        xlog = numeric and min(xpos) > 0 and max(xpos) / min(xpos) >= 20
        ticks = (xpos, [value_text(v) for v in xs])
        phase_panels, rows, verdicts, notes = [], [], [], []
        for combo in combos:
            lines = {}
            for a in arms:
                pts = [(xp, c.run.summary["arms"][a]) for xp, x in zip(xpos, xs)
                       if (c := cell_at(combo, x)) and a in c.run.summary["arms"]]  # fmt: skip
                if not pts:
                    continue
                lines[a] = plots.Line(
                    [p for p, _ in pts], [s["quality"]["delta"] for _, s in pts],
                    [s["quality"]["delta_ci"][0] for _, s in pts], [s["quality"]["delta_ci"][1] for _, s in pts],
                    [s["verdict"] for _, s in pts],
                )  # fmt: skip
                rows.append(f"{label(dict(zip(others, combo)), others)} · {a}" if others else a)
                row_v, row_n = [], []
                for x in xs:
                    c = cell_at(combo, x)
                    sa = c.run.summary["arms"].get(a) if c else None
                    row_v.append(sa["verdict"] if sa else None)
                    row_n.append(_map_note(sa))
                verdicts.append(row_v)
                notes.append(row_n)
            phase_panels.append((label(dict(zip(others, combo)), others), lines))
        blocks += [
            Heading(2, "Phase diagram"),
            Figure(
                plots.plot_phase(
                    plots_dir / "phase.png", phase_panels, xlabel=f"{names[axis]} ({axis})", ylabel=change,
                    title=f"Where the loop turns: quality change across {names[axis]} ({seeds} seeds, 95% CI)",
                    colors=colors, xlog=xlog, xticks=ticks,
                ),
                f"Final quality change (end − start) of each arm against `{axis}`, with its 95% CI across seeds; "
                f"each marker is filled with the arm's verdict in that cell.",
            ),
            Figure(
                plots.plot_verdict_map(
                    plots_dir / "verdicts.png", rows, [value_text(v) for v in xs], verdicts, notes,
                    xlabel=f"{names[axis]} ({axis})", title="Verdict of every cell and arm (quality change [95% CI])",
                ),
                "The same sweep as a map: each cell and arm coloured by its verdict, with its quality change "
                "and 95% CI written in.",
            ),
        ]  # fmt: skip
        blocks += _sweep_ledger(cells, arms, combos, others, axis, xs, cell_at, label, names, colors, change,
                                plots_dir, seeds)  # fmt: skip

    rank = {json.dumps(v): i for i, v in enumerate(grid[axis])} if axis else {}
    precision_panels: dict[str, list] = {}
    for c in cells:
        for a in c.run.arms:
            sa = c.run.summary["arms"][a]
            if sa["precision"] is None:
                continue
            q = sa["quality"]
            precision_panels.setdefault(label(c.values, others), []).append(plots.Point(
                a, sa["precision"], *sa["precision_ci"], q["delta"], *q["delta_ci"],
                size=rank.get(json.dumps(c.values[axis]), 0) if axis else 0,
            ))  # fmt: skip
    if precision_panels and len(precision_panels) <= MAX_PANELS:
        blocks += [
            Heading(2, "Verifier precision and quality change"),
            Figure(
                plots.plot_precision(
                    plots_dir / "precision.png", list(precision_panels.items()), ylabel=change, colors=colors,
                    title="Verifier precision against quality change, every cell",
                    size_legend=(names[axis], [value_text(v) for v in grid[axis]]) if axis else None,
                ),
                "Each arm in each cell: its verifier's precision over the run (Wilson 95% CI) against its quality "
                "change (95% CI across seeds)"
                + (f"; the ring's size is the cell's `{axis}`." if axis else "."),
            ),
        ]  # fmt: skip

    if len(cells) <= MAX_SMALL_MULTIPLES:
        if axis:  # one row per setting of the other keys, one column per axis value
            order = [c for combo in combos for x in grid[axis] if (c := cell_at(combo, x))]
            cells_grid, ncols = order, len(grid[axis]) if len(grid[axis]) <= 6 else 4
        else:
            cells_grid, ncols = cells, 4
        s0 = first.summary
        q_panels = [(label(c.values, keys), {a: band_of(c.run.metrics[a][s0["quality_metric"]]) for a in c.run.arms})
                    for c in cells_grid]  # fmt: skip
        d_panels = [(label(c.values, keys), {a: band_of(c.run.metrics[a][s0["diversity_metric"]]) for a in c.run.arms})
                    for c in cells_grid]  # fmt: skip
        ref = getattr(first.env, "baseline_quality", None)
        blocks += [
            Heading(2, "Trajectories of every cell"),
            Figure(
                plots.plot_trajectories(
                    plots_dir / "quality.png", q_panels, ylabel=first.quality_label, colors=colors,
                    title=f"Quality of proposals per generation, one panel per cell (mean of {seeds} seeds, 95% band)",
                    reference=ref, reference_label=f"baseline ({_f(ref)})" if ref is not None else "", ncols=ncols,
                ),
                "Oracle quality of the proposals per generation in every cell: mean across seeds and 95% band.",
            ),
            Figure(
                plots.plot_trajectories(
                    plots_dir / "diversity.png", d_panels, ylabel=first.diversity_label, colors=colors,
                    title=f"Diversity of proposals per generation, one panel per cell (mean of {seeds} seeds, 95% band)",
                    ncols=ncols,
                ),
                "Diversity of the proposals per generation in every cell.",
            ),
        ]  # fmt: skip
    else:
        blocks.append(Para(f"Per-cell trajectories are left out above {MAX_SMALL_MULTIPLES} cells; "
                           f"`ouro report {sweep_dir}/cells/CELL` draws them for one cell."))  # fmt: skip

    rows = []
    for c in cells:
        for a in c.run.arms:
            sa = c.run.summary["arms"][a]
            q, d = sa["quality"], sa["diversity"][c.run.summary["diversity_metric"]]
            rows.append([*(value_text(c.values[k]) for k in keys), a, verdict_text(sa),
                         f"{_signed(q['delta'])} {_ci(q['delta_ci'])}", f"{_f(d['start'])} → {_f(d['end'])}",
                         _f(sa["precision"], 2), spend_text(sa)])  # fmt: skip
    n = len(keys)
    blocks += [
        Heading(2, "Summary by cell"),
        Table([*(names[k] for k in keys), "arm", "verdict", "quality change [95% CI]",
               f"{first.summary['diversity_metric']} start → end", "precision", "spent per seed"],
              rows, right=tuple(range(n + 2, n + 6))),  # fmt: skip
        Para(VERDICT_RULES),
    ]
    return blocks


def _sweep_ledger(cells, arms, combos, others, axis, xs, cell_at, label, names, colors, change, plots_dir, seeds):
    from ouro import plots
    from ouro.sweep import value_text

    units = _units_spent([c.run.summary for c in cells])
    if not units:
        return []
    name, unit, fields = units[0]
    panels = []
    for combo in combos:
        curves, free = {}, {}
        for a in arms:
            pts = [(x, c.run.summary["arms"][a]) for x in xs if (c := cell_at(combo, x)) and a in c.run.summary["arms"]]
            if not pts:
                continue
            spent = [spend_per_seed(s, fields) for _, s in pts]
            if all(v > 0 for v in spent):
                curves[a] = plots.Line(
                    spent, [s["quality"]["delta"] for _, s in pts], [s["quality"]["delta_ci"][0] for _, s in pts],
                    [s["quality"]["delta_ci"][1] for _, s in pts], labels=[value_text(x) for x, _ in pts],
                )  # fmt: skip
            elif not any(spent):
                deltas = [s["quality"] for _, s in pts]  # cells without a quality change are left out
                free[a] = (
                    _mean_known([d["delta"] for d in deltas]),
                    _mean_known([d["delta_ci"][0] for d in deltas]),
                    _mean_known([d["delta_ci"][1] for d in deltas]),
                )
        panels.append((label(dict(zip(others, combo)), others), curves, free))
    if not any(curves for _, curves, _ in panels):
        return []
    path = plots.plot_ledger(
        plots_dir / "ledger.png", panels, xlabel=f"spent per seed, whole run ({unit}, log scale)", ylabel=change,
        colors=colors, point_label=f"points labelled by {names[axis]}", title=f"Information ledger: quality gained against what the verifier spent ({seeds} seeds)",
    )  # fmt: skip
    more = f" Only {unit} are drawn; the sweep also spent {', '.join(u[1] for u in units[1:])}." if units[1:] else ""
    return [
        Heading(2, "Information ledger"),
        Figure(
            path,
            f"Final quality change against the verifier's spending per seed over the whole run, one point per cell "
            f"(95% CI across seeds). Dashed lines: arms that spend nothing measurable (averaged over the cells of "
            f"the panel).{more}",
        ),
    ]


# ------------------------------------------------------------------ entry point


def write_report(path: Path) -> ReportFiles:
    """Write plots/, report.md and report.html for a run or sweep directory."""
    from ouro.sweep import is_sweep_dir

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory")
    plots_dir = path / "plots"
    if is_sweep_dir(path):
        blocks = sweep_blocks(path, plots_dir)
    elif (path / "config.yaml").is_file():
        blocks = run_blocks(load_run(path), plots_dir)
    else:
        raise ConfigError(f"{path}: neither a run directory (config.yaml) nor a sweep directory (sweep.json)")
    title = next((b.text for b in blocks if isinstance(b, Heading)), "ouro report")
    rel = [
        Figure(b.path.relative_to(path), b.caption) if isinstance(b, Figure) else b for b in blocks
    ]  # links relative to the report
    md, page = path / "report.md", path / "report.html"
    atomic_write_text(md, render_markdown(rel))
    atomic_write_text(page, render_html(rel, title, path))
    return ReportFiles(md, page, [b.path for b in blocks if isinstance(b, Figure)])
