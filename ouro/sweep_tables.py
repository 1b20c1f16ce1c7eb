"""The sweep's tables: every cell in one tidy file, with the grid values as columns.

* ``sweep.csv``: ``cell, <grid keys...>, arm, seed, generation, metric, value``: every
  cell's metrics.csv, stacked; what a user filters and plots per generation.
* ``sweep_summary.csv``: one row per cell and arm (verdict, quality start/end/change with
  its 95% CI, diversity, verifier precision and recall, total cost), read from each
  cell's summary.json; what a phase diagram is drawn from.

Rows follow the grid's order and then each run's own fixed order, so the same results
always give the same bytes, whatever the backend or the worker count. When pyarrow is
installed, the same tables are also written as ``.parquet``, with typed columns.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ouro.cohort import COST_METRICS
from ouro.sweep import Cell, SweepPlan, cell_dir, value_text

SUMMARY_FIELDS = (
    "verdict", "verdict_missing", "seeds", "quality_start", "quality_end", "quality_delta", "quality_delta_lo", "quality_delta_hi",
    "diversity_start", "diversity_end", "precision", "precision_lo", "precision_hi", "recall", "recall_lo",
    "recall_hi", "unscored",
) + tuple(f"cost_{k}" for k in COST_METRICS)  # fmt: skip


def summary_rows(summary: dict) -> list[dict[str, Any]]:
    """Flatten one run's summary.json into one row per arm."""
    rows = []
    div = summary["diversity_metric"]
    for arm, a in summary["arms"].items():
        q, d = a["quality"], a["diversity"][div]
        rows.append(
            {
                "arm": arm,
                "verdict": a["verdict"],
                "verdict_missing": a.get("verdict_missing"),
                "seeds": a["seeds"],
                "quality_start": q["start"],
                "quality_end": q["end"],
                "quality_delta": q["delta"],
                "quality_delta_lo": q["delta_ci"][0],
                "quality_delta_hi": q["delta_ci"][1],
                "diversity_start": d["start"],
                "diversity_end": d["end"],
                "precision": a["precision"],
                "precision_lo": a["precision_ci"][0],
                "precision_hi": a["precision_ci"][1],
                "recall": a["recall"],
                "recall_lo": a["recall_ci"][0],
                "recall_hi": a["recall_ci"][1],
                "unscored": a["unscored"],
                **{f"cost_{k}": a["cost"].get(k, 0.0) for k in COST_METRICS},
            }
        )
    return rows


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _write_csv(path: Path, header: list[str], rows) -> None:
    """Stream rows into a temporary file and rename it: a reader never sees half a table."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _metric_rows(sweep_dir: Path, keys: list[str], cells: list[Cell]):
    for cell in cells:
        prefix = [cell.slug] + [value_text(cell.values[k]) for k in keys]
        with open(cell_dir(sweep_dir, cell.slug) / "metrics.csv", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for row in reader:
                yield prefix + row


def _summary_table(sweep_dir: Path, keys: list[str], cells: list[Cell]) -> list[list[Any]]:
    table = []
    for cell in cells:
        summary = json.loads((cell_dir(sweep_dir, cell.slug) / "summary.json").read_text())
        for row in summary_rows(summary):
            table.append([cell.slug] + [cell.values[k] for k in keys] + [row["arm"]] + [row[f] for f in SUMMARY_FIELDS])
    return table


def write_tables(sweep_dir: Path, plan: SweepPlan, cells: list[Cell]) -> list[Path]:
    """Write sweep.csv and sweep_summary.csv (and .parquet with pyarrow) for the finished cells."""
    keys = list(plan.grid)
    sweep_dir = Path(sweep_dir)
    metrics_header = ["cell", *keys, "arm", "seed", "generation", "metric", "value"]
    _write_csv(sweep_dir / "sweep.csv", metrics_header, _metric_rows(sweep_dir, keys, cells))
    summary_header = ["cell", *keys, "arm", *SUMMARY_FIELDS]
    summary = _summary_table(sweep_dir, keys, cells)
    n = len(keys)
    _write_csv(
        sweep_dir / "sweep_summary.csv",
        summary_header,
        ([r[0], *map(value_text, r[1 : n + 1]), *map(_text, r[n + 1 :])] for r in summary),
    )
    written = [sweep_dir / "sweep.csv", sweep_dir / "sweep_summary.csv"]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    written += _write_parquet(sweep_dir, keys, cells, metrics_header, summary_header, summary)
    return written


def _grid_column(values: list[Any]) -> list[Any]:
    """Numbers stay numbers (ints as ints), anything else is its text."""
    if all(isinstance(v, bool) for v in values) or all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        return values
    return [value_text(v) for v in values]


def _write_parquet(sweep_dir, keys, cells, metrics_header, summary_header, summary) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {h: [] for h in metrics_header}
    for cell in cells:
        with open(cell_dir(sweep_dir, cell.slug) / "metrics.csv", newline="") as f:
            for row in csv.DictReader(f):
                columns["cell"].append(cell.slug)
                for k in keys:
                    columns[k].append(cell.values[k])
                columns["arm"].append(row["arm"])
                columns["seed"].append(int(row["seed"]))
                columns["generation"].append(int(row["generation"]))
                columns["metric"].append(row["metric"])
                columns["value"].append(float(row["value"]))
    for k in keys:
        columns[k] = _grid_column(columns[k])
    paths = [sweep_dir / "sweep.parquet", sweep_dir / "sweep_summary.parquet"]
    pq.write_table(pa.table(columns), paths[0])
    srows = list(zip(*summary)) if summary else [[] for _ in summary_header]
    scols = {h: list(col) for h, col in zip(summary_header, srows)}
    for k in keys:
        scols[k] = _grid_column(scols[k])
    pq.write_table(pa.table(scols), paths[1])
    return paths
