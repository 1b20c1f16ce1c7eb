"""The report's figures, drawn with matplotlib (Agg): plain data in, one PNG out.

Nothing here reads a run directory; ``ouro.report`` computes the numbers and chooses
the labels. Every figure shares conventions a reader learns once: an arm keeps its
colour everywhere, verdicts keep theirs (green improved, grey stable, red collapsed,
orange degraded), bands and bars are 95% confidence intervals across seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

VERDICT_COLORS = {"improved": "#2ca02c", "stable": "#a0a0a0", "collapsed": "#d62728", "degraded": "#ff7f0e"}
DPI = 150
STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.facecolor": "white",
}
_MARKERS = "osD^vP*Xh<>"


@dataclass
class Band:
    """A curve with its 95% band: x, mean, lower and upper bound (NaN where unknown)."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Point:
    """One arm (of one cell) in a scatter: x and y with their 95% intervals.

    ``size`` is the rank of the cell's value on the sweep's axis (bigger marker, bigger
    value; 0 for a run), so points that land on each other stay readable as rings.
    """

    arm: str
    x: float
    xlo: float
    xhi: float
    y: float
    ylo: float
    yhi: float
    label: str = ""
    size: int = 0


@dataclass
class Line:
    """Points joined across a grid axis (a sweep): x, y, y's interval, a verdict per point."""

    x: list[float]
    y: list[float]
    lo: list[float]
    hi: list[float]
    verdicts: list[str | None] = field(default_factory=list)  # None: no verdict, data missing
    labels: list[str] = field(default_factory=list)


def _same(a: Band, b: Band) -> bool:
    return a.x.shape == b.x.shape and np.allclose(a.x, b.x) and np.allclose(a.mean, b.mean, equal_nan=True)


def _labels_with_twins(series: dict[str, Band]) -> tuple[dict[str, str], set[str]]:
    """Legend labels that say when an arm's curve is identical to an earlier one (drawn dashed on top)."""
    labels, twins, arms = {}, set(), list(series)
    for i, a in enumerate(arms):
        twin = next((b for b in arms[:i] if _same(series[a], series[b])), None)
        labels[a] = f"{a} (same as {twin})" if twin else a
        if twin:
            twins.add(a)
    return labels, twins


def _short_number(x: float, _pos=None) -> str:
    """Tick text of a log axis: 20, 500, 2k, 45k, 1.2M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {a: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, a in enumerate(arms)}


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _finish_panels(fig, axes: np.ndarray, n: int, legend: dict, *, xlabel: str, ylabel: str, title: str, columns: int) -> None:
    """Labels, title and legend of a figure of ``n`` panels: on the panel itself with the
    legend beside it when there is one, else shared, with the legend below in ``columns``."""
    if n == 1:
        ax = axes[0, 0]
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(legend.values(), legend.keys(), loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        _label_bottom(axes, n, xlabel)
        fig.supylabel(ylabel, fontsize=9.5)
        fig.suptitle(title)
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=min(len(legend), columns),
                   frameon=False)  # fmt: skip


def _label_bottom(axes: np.ndarray, n: int, xlabel: str) -> None:
    """Put the x label under the lowest visible panel of each column (a legend may sit below)."""
    rows, cols = axes.shape
    for c in range(cols):
        visible = [r for r in range(rows) if r * cols + c < n]
        if visible:
            axes[visible[-1], c].set_xlabel(xlabel)
            axes[visible[-1], c].xaxis.set_tick_params(labelbottom=True)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _interval(values: Sequence[float]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _yerr(y, lo, hi) -> np.ndarray:
    y, lo, hi = _interval(y), _interval(lo), _interval(hi)
    return np.nan_to_num(np.vstack([y - lo, hi - y]), nan=0.0).clip(min=0)


# ------------------------------------------------------------------ trajectories


def plot_trajectories(
    path: Path,
    panels: list[tuple[str, dict[str, Band]]],
    *,
    ylabel: str,
    title: str,
    colors: dict[str, str],
    reference: float | None = None,
    reference_label: str = "",
    xlabel: str = "generation",
    ncols: int = 4,
) -> Path:
    """Mean across seeds against generation, one line per arm with its 95% band; one panel per cell."""
    rows, cols = _grid(len(panels), ncols)
    single = len(panels) == 1
    size = (8.2, 4.4) if single else (3.2 * cols + 0.6, 2.4 * rows + 0.9)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=True, squeeze=False,
                                 layout=None if single else "constrained")  # fmt: skip
        legend: dict[str, Any] = {}
        for ax, (name, series) in zip(axes.flat, panels):
            labels, twins = _labels_with_twins(series)
            for arm, b in series.items():
                dashed = arm in twins
                marker = "o" if len(b.x) <= 12 else None  # few recorded generations: show where they are
                (line,) = ax.plot(b.x, b.mean, color=colors[arm], lw=1.4 if dashed else 1.8, ls=(0, (4, 3)) if dashed else "-",
                                  marker=marker, ms=3.5)  # fmt: skip
                ax.fill_between(b.x, b.lo, b.hi, color=colors[arm], alpha=0.13, lw=0)
                legend.setdefault(labels[arm] if single else arm, line)
            if reference is not None:
                ref = ax.axhline(reference, color="black", lw=0.9, ls=":")
                if reference_label:
                    legend.setdefault(reference_label, ref)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not single:
                ax.set_title(name, fontsize=8.5)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        _finish_panels(fig, axes, len(panels), legend, xlabel=xlabel, ylabel=ylabel, title=title, columns=6)
        return _save(fig, path)


# ------------------------------------------------------------------ precision against quality change


def plot_precision(
    path: Path,
    panels: list[tuple[str, list[Point]]],
    *,
    ylabel: str,
    title: str,
    colors: dict[str, str],
    size_legend: tuple[str, list[str]] | None = None,
    note: str = "",
) -> Path:
    """Verifier precision (x, Wilson 95% CI) against the quality change it led to (y, 95% CI).

    Points that coincide (two arms with identical results) are drawn once, labelled with
    both names. In a sweep, a ring's size is the cell's place on the grid axis.
    """
    rows, cols = _grid(len(panels), max_cols=3)
    size = (8.2, 4.8) if len(panels) == 1 else (4.6 * cols + 1.6, 3.6 * rows + 0.6)
    all_points = [p for _, pts in panels for p in pts]
    xs = [v for p in all_points for v in (p.x, p.xlo) if v is not None and not math.isnan(v)]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=True, squeeze=False, layout="constrained")
        drawn: dict[str, str] = {}  # legend label -> colour, for what is actually on the plot
        for ax, (name, points) in zip(axes.flat, panels):
            ax.axhline(0, color="black", lw=0.8)
            merged: dict[tuple[float, float], list[Point]] = {}
            for p in points:
                if p.x is None or p.y is None:  # an arm with nothing measurable (e.g. every call failed)
                    continue
                merged.setdefault((round(p.x, 9), round(p.y, 9)), []).append(p)
            for group in merged.values():
                p = group[0]
                arms_here = list(dict.fromkeys(q.arm for q in group))
                if size_legend:
                    for a in arms_here:
                        drawn.setdefault(a, colors[a])
                else:
                    drawn.setdefault(" = ".join(arms_here), colors[p.arm])
                ax.errorbar(
                    p.x, p.y, xerr=_yerr([p.x], [p.xlo], [p.xhi]), yerr=_yerr([p.y], [p.ylo], [p.yhi]),
                    fmt="none", ecolor=colors[p.arm], elinewidth=0.9, capsize=2, alpha=0.55,
                )  # fmt: skip
                if size_legend and len({q.arm for q in group}) == 1 and len(group) > 1:
                    # one arm, the same result in several cells: one dot, not a stack of rings
                    ax.scatter(p.x, p.y, s=40, color=colors[p.arm], edgecolors="white", lw=0.6, zorder=3)
                elif size_legend:
                    for q in group:
                        ax.scatter(q.x, q.y, s=18 + 26 * q.size, facecolors="none", edgecolors=colors[q.arm], lw=1.4, zorder=3)
                else:
                    ax.scatter(p.x, p.y, s=40, color=colors[p.arm], edgecolors="white", lw=0.6, zorder=3)
                text = " = ".join(dict.fromkeys(q.label for q in group if q.label))
                if text:
                    ax.annotate(text, (p.x, p.y), xytext=(5, 4), textcoords="offset points", fontsize=7.5, color="#333")
            ax.set_xlim(max(0.0, min(xs or [0.0]) - 0.05), 1.03)
            if len(panels) > 1:
                ax.set_title(name, fontsize=9.5)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        xlabel = "verifier precision: share of accepted proposals that are truly good (oracle)"
        if len(panels) == 1:
            axes[0, 0].set_xlabel(xlabel)
            axes[0, 0].set_ylabel(ylabel)
            axes[0, 0].set_title(title)
        else:
            fig.supxlabel(xlabel, fontsize=9.5)
            fig.supylabel(ylabel, fontsize=9.5)
            fig.suptitle(title)
        handles = [Line2D([], [], color=c, marker="o", ls="", label=label) for label, c in drawn.items()]
        if size_legend:
            name, values = size_legend
            handles.append(Line2D([], [], ls="", label=f"ring size: {name}"))
            handles += [
                Line2D([], [], marker="o", ls="", mfc="none", mec="#555", ms=math.sqrt(18 + 26 * i), label=v)
                for i, v in enumerate(values)
            ]
            handles.append(Line2D([], [], marker="o", ls="", color="#555", label="dot: the same in every cell"))
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        if note:
            fig.text(0.01, -0.01, note, fontsize=7.5, color="#555", ha="left", va="top")
        return _save(fig, path)


# ------------------------------------------------------------------ the information ledger


def plot_ledger(
    path: Path,
    panels: list[tuple[str, dict[str, Band | Line], dict[str, tuple[float, float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    colors: dict[str, str],
    point_label: str = "",
) -> Path:
    """Quality gained against what the verifier spent (log x).

    Each panel holds curves of arms that spend (a ``Band``: gain as a run goes on; a
    ``Line``: one point per sweep cell, labelled with its grid value) and, as dashed
    horizontal lines, the final gain of arms that spend nothing, which a log axis
    cannot place. Arms with the same final gain share one line.
    """
    rows, cols = _grid(len(panels), max_cols=3)
    size = (8.2, 4.6) if len(panels) == 1 else (4.6 * cols + 0.4, 3.5 * rows + 0.9)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=size, sharey=True, squeeze=False,
                                 layout=None if len(panels) == 1 else "constrained")  # fmt: skip
        legend: dict[str, Any] = {}
        for ax, (name, curves, free) in zip(axes.flat, panels):
            ax.axhline(0, color="black", lw=0.8)
            for arm, c in curves.items():
                if isinstance(c, Band):
                    ok = c.x > 0
                    (h,) = ax.plot(c.x[ok], c.mean[ok], color=colors[arm], lw=1.8)
                    ax.fill_between(c.x[ok], c.lo[ok], c.hi[ok], color=colors[arm], alpha=0.15, lw=0)
                    ax.plot(c.x[ok][-1:], c.mean[ok][-1:], "o", color=colors[arm], ms=5)
                else:
                    joined = len(set(c.x)) == len(c.x)  # a line only where spending moves along the axis
                    y = _interval(c.y)  # a cell without the data for a quality change: no point
                    h = ax.errorbar(c.x, y, yerr=_yerr(y, c.lo, c.hi), color=colors[arm], marker="o", ms=5,
                                    lw=1.6, ls="-" if joined else "none", elinewidth=1.4, capsize=2)  # fmt: skip
                    for x, y, text in zip(c.x, y, c.labels):
                        if np.isnan(y):
                            continue
                        ax.annotate(text, (x, y), xytext=(6, 0), textcoords="offset points", fontsize=7.5,
                                    ha="left", va="center", color="#333")  # fmt: skip
                legend.setdefault(f"{arm} ({point_label})" if point_label and isinstance(c, Line) else arm, h)
            same: dict[float, list[str]] = {}
            for arm, (y, _, _) in free.items():
                if y is not None and not np.isnan(y):  # no quality change known: no line
                    same.setdefault(round(y, 9), []).append(arm)
            for y, arms in same.items():
                h = ax.axhline(y, color=colors[arms[0]], lw=1.4, ls=(0, (5, 3)))
                legend.setdefault(f"{' = '.join(arms)}: spends nothing", h)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.margins(x=0.08, y=0.12)
            if len(panels) > 1:
                ax.set_title(name, fontsize=9.5)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        _finish_panels(fig, axes, len(panels), legend, xlabel=xlabel, ylabel=ylabel, title=title, columns=3)
        return _save(fig, path)


# ------------------------------------------------------------------ sweeps: the phase diagram


def plot_phase(
    path: Path,
    panels: list[tuple[str, dict[str, Line]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    colors: dict[str, str],
    xlog: bool,
    xticks: tuple[list[float], list[str]] | None = None,
) -> Path:
    """Final quality change against one grid axis, one line per arm; each marker filled with its verdict."""
    rows, cols = _grid(len(panels), max_cols=3)
    size = (7.5, 4.6) if len(panels) == 1 else (4.4 * cols, 3.5 * rows + 0.7)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=True, squeeze=False, layout="constrained")
        for ax, (name, lines) in zip(axes.flat, panels):
            ax.axhline(0, color="black", lw=0.8)
            for k, (arm, ln) in enumerate(lines.items()):
                # arms side by side around each grid value, so their intervals do not hide each other
                shift = (k - (len(lines) - 1) / 2) * 0.035
                x = np.asarray(ln.x, dtype=float)
                x = x * 10**shift if xlog else x + shift * 3 * (np.ptp(x) / max(1, len(x) - 1) if len(x) > 1 else 1)
                y = _interval(ln.y)  # a cell without the data for a quality change: a gap in the line
                ax.errorbar(x, y, yerr=_yerr(y, ln.lo, ln.hi), fmt="none", ecolor=colors[arm], elinewidth=1.1,
                            capsize=2.5, alpha=0.8)  # fmt: skip
                ax.plot(x, y, color=colors[arm], lw=1.6)
                faces = [VERDICT_COLORS.get(v, "white") for v in ln.verdicts]
                ax.scatter(x, y, s=46, c=faces, edgecolors=colors[arm], linewidths=1.6, zorder=3)
            if xlog:
                ax.set_xscale("log")
            if xticks:
                ax.set_xticks(xticks[0], xticks[1])
                ax.minorticks_off()
            if len(panels) > 1:
                ax.set_title(name, fontsize=9.5)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        if len(panels) == 1:
            axes[0, 0].set_xlabel(xlabel)
            axes[0, 0].set_ylabel(ylabel)
        else:
            fig.supxlabel(xlabel, fontsize=9.5)
            fig.supylabel(ylabel, fontsize=9.5)
        arms = list(dict.fromkeys(a for _, lines in panels for a in lines))
        verdicts = [v for v in VERDICT_COLORS if any(v in ln.verdicts for _, lines in panels for ln in lines.values())]
        handles = [Line2D([], [], color=colors[a], lw=1.8, label=a) for a in arms]
        handles += [
            Line2D([], [], marker="o", ls="", mfc=VERDICT_COLORS[v], mec="#444", ms=7, label=f"verdict: {v}")
            for v in verdicts
        ]
        if any(v is None and y is not None and not np.isnan(y)  # drawn: a quality change without a verdict
               for _, lines in panels for ln in lines.values() for v, y in zip(ln.verdicts, ln.y)):
            handles.append(Line2D([], [], marker="o", ls="", mfc="white", mec="#444", ms=7, label="no verdict (data missing)"))
        if len(panels) == 1:
            axes[0, 0].set_title(title)
        else:
            fig.suptitle(title)
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        return _save(fig, path)


def plot_verdict_map(
    path: Path,
    rows: list[str],
    cols: list[str],
    verdicts: list[list[str | None]],
    notes: list[list[str]],
    *,
    xlabel: str,
    title: str,
) -> Path:
    """The phase diagram as a map: each cell coloured by its verdict, its quality change written in."""
    order = list(VERDICT_COLORS)
    codes = np.array([[order.index(v) if v in order else np.nan for v in row] for row in verdicts], dtype=float)
    cmap = matplotlib.colors.ListedColormap([VERDICT_COLORS[v] for v in order]).with_extremes(bad="white")
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(max(5.0, 1.25 * len(cols) + 2.6), max(2.2, 0.55 * len(rows) + 1.3)))
        ax.imshow(np.ma.masked_invalid(codes), cmap=cmap, vmin=-0.5, vmax=len(order) - 0.5, aspect="auto", alpha=0.85)
        for i, row in enumerate(notes):
            for j, text in enumerate(row):
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color="black")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=2)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        present = [v for v in order if any(v in row for row in verdicts)]
        patches = [Patch(color=VERDICT_COLORS[v], label=v, alpha=0.85) for v in present]
        if any(v is None and n for vs, ns in zip(verdicts, notes) for v, n in zip(vs, ns)):  # an arm that ran
            patches.append(Patch(facecolor="white", edgecolor="#444", label="no verdict (data missing)"))
        ax.legend(
            handles=patches,
            loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="verdict",
        )  # fmt: skip
        return _save(fig, path)
