"""The oracle of the location problem: precise, cached efficiency of any DSL method.

Quality is the efficiency relative to the sample mean, MSE(mean) / MSE(method), under
each process, combined over the process set by a geometric mean (the mean of the
log-efficiencies). Both MSEs are estimated once on a large fixed simulation (40,000
samples, relative standard error below 1%), the same data sets for every method, so the
mean's quality is exactly 1 and the ratios share their noise:

* methods without a hyper-parameter, and the trimmed and winsorized means (whose value
  depends on alpha only through int(alpha * n), a step function), are computed exactly
  for every distinct case and cached;
* the M-estimators' MSE is smooth in the tuning constant c: it is computed on a grid in
  log c and interpolated by a cubic spline.

The tables are cached in memory and on disk (``$OURO_CACHE_DIR`` or ``~/.cache/ouro``),
keyed by the process, n, the replications and a version, so measuring never dominates
a run's time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline

from .dgp import _DGP, simulate_samples
from .methods import FAMILIES, _Method, evaluate_with_errors, param_of

ORACLE_VERSION = 2
ORACLE_REPLICATIONS = 40_000
ORACLE_SEED = 20_251_120
GRID_POINTS = 13  # spline error below 0.05% of the MSE (measured against 49 points)
_CHUNK = 10_000


def cache_dir() -> Path:
    return Path(os.environ.get("OURO_CACHE_DIR", Path.home() / ".cache" / "ouro"))


class ProcessOracle:
    """MSE of methods under one process at sample size n."""

    def __init__(self, dgp: _DGP, n: int, replications: int = ORACLE_REPLICATIONS) -> None:
        self.dgp, self.n, self.replications = dgp, n, replications
        key = json.dumps([ORACLE_VERSION, dgp.model_dump(), n, replications], sort_keys=True)
        self._path = cache_dir() / "oracle" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")
        self._table: dict[str, float] = {}
        self._errors: dict[str, str] = {}  # why a code method has no MSE (NaN in the table)
        self._splines: dict[str, CubicSpline] = {}
        self._data: tuple[np.ndarray, np.ndarray] | None = None
        self._load()

    # the fixed simulation, drawn only when a table entry is missing
    def _samples(self) -> tuple[np.ndarray, np.ndarray]:
        if self._data is None:
            rng = np.random.default_rng(ORACLE_SEED)
            self._data = simulate_samples(self.dgp, rng, self.replications, self.n, spread=100.0)
        return self._data

    def _mse(self, methods: list[_Method]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """MSE, its standard error, and why a method could not be evaluated (code that
        failed in the sandbox), computed in chunks to bound memory."""
        centres, x = self._samples()
        sq = np.empty((len(methods), self.replications))
        errors: list[str | None] = [None] * len(methods)
        for start in range(0, self.replications, _CHUNK):
            sl = slice(start, start + _CHUNK)
            values, chunk_errors = evaluate_with_errors(methods, x[sl])
            sq[:, sl] = (values - centres[None, sl]) ** 2
            errors = [e or new for e, new in zip(errors, chunk_errors)]
        return sq.mean(1), sq.std(1, ddof=1) / np.sqrt(self.replications), errors

    def _load(self) -> None:
        try:
            raw = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        self._table = {k: float(v) for k, v in raw.get("table", {}).items()}
        self._errors = dict(raw.get("errors", {}))

    def _save(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"dgp": self.dgp.model_dump(), "n": self.n, "table": self._table, "errors": self._errors}))
            os.replace(tmp, self._path)
        except OSError:
            pass  # a read-only cache only costs time: the table is rebuilt next run

    def _entry_key(self, m: _Method) -> str:
        if m.family == "code":
            return "code:" + hashlib.sha256(m.source.encode()).hexdigest()
        fam = FAMILIES[m.family]
        if fam.param is None:
            return m.family
        if m.family in ("trimmed_mean", "winsorized_mean"):
            return f"{m.family}:k={int(param_of(m) * self.n)}"
        raise KeyError(m.family)

    def _fill(self, keys_methods: dict[str, _Method]) -> None:
        missing = {k: m for k, m in keys_methods.items() if k not in self._table}
        if not missing:
            return
        mse, _, errors = self._mse(list(missing.values()))
        self._table.update({k: float(v) for k, v in zip(missing, mse)})
        self._errors.update({k: e for k, e in zip(missing, errors) if e})
        self._save()

    def _spline(self, family: str) -> CubicSpline:
        if family not in self._splines:
            fam = FAMILIES[family]
            grid = np.exp(np.linspace(np.log(fam.low), np.log(fam.high), GRID_POINTS))
            keys = {f"{family}:grid={i}": fam.cls(**{fam.param: float(c)}) for i, c in enumerate(grid)}
            self._fill(keys)
            log_mse = np.log([self._table[k] for k in keys])
            self._splines[family] = CubicSpline(np.log(grid), log_mse)
        return self._splines[family]

    def mse(self, methods: list[_Method]) -> np.ndarray:
        out = np.empty(len(methods))
        exact: dict[str, _Method] = {}
        for m in methods:
            if m.family not in ("huber", "biweight"):
                exact.setdefault(self._entry_key(m), m)
        self._fill(exact)
        for i, m in enumerate(methods):
            if m.family in ("huber", "biweight"):
                out[i] = float(np.exp(self._spline(m.family)(np.log(param_of(m)))))
            else:
                out[i] = self._table[self._entry_key(m)]
        return out

    def failure(self, method: _Method) -> str | None:
        """Why ``method`` has no MSE (a code method that failed in the sandbox), or None."""
        if method.family != "code":
            return None
        key = self._entry_key(method)
        if np.isnan(self._table.get(key, 0.0)) and key not in self._errors:
            del self._table[key]  # a failure cached without its reason: run it once more to learn why
        self._fill({key: method})
        return self._errors.get(key) or ("could not be evaluated" if np.isnan(self._table[key]) else None)

    @property
    def mean_mse(self) -> float:
        return float(self.mse([FAMILIES["mean"].cls()])[0])

    def relative_se(self, methods: list[_Method]) -> np.ndarray:
        """Relative standard error of the MSE estimate (a check of the oracle's precision)."""
        mse, se, _ = self._mse(methods)
        return se / mse


class Oracle:
    """Quality of methods over a set of processes: exp(mean log efficiency)."""

    def __init__(self, dgps: list[_DGP], n: int) -> None:
        self.parts = [ProcessOracle(d, n) for d in dgps]

    def warm_up(self) -> None:
        """Build every table a run can need (fixed families, every trim count, the splines)."""
        for part in self.parts:
            cases = [FAMILIES[f].cls() for f in ("mean", "median", "hodges_lehmann")]
            for f in ("trimmed_mean", "winsorized_mean"):
                cases += [FAMILIES[f].cls(alpha=k / part.n) for k in range((part.n - 1) // 2 + 1) if k / part.n < 0.5]
            part.mse(cases)
            part._spline("huber")
            part._spline("biweight")

    def log_efficiency(self, methods: list[_Method]) -> np.ndarray:
        if not methods:
            return np.empty(0)
        logs = [np.log(p.mean_mse) - np.log(p.mse(methods)) for p in self.parts]
        return np.mean(logs, axis=0)

    def quality(self, methods: list[_Method]) -> np.ndarray:
        return np.exp(self.log_efficiency(methods))

    def failures(self, methods: list[_Method]) -> list[str | None]:
        """Per method, why the oracle could not evaluate it (its quality is NaN), or None."""
        return [next((r for r in (p.failure(m) for p in self.parts) if r), None) for m in methods]
