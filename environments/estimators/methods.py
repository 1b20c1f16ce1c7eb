"""The method DSL of the location problem, and its vectorized evaluation.

A method is a pydantic model: ``{"family": "trimmed_mean", "alpha": 0.2}``. Every
family is evaluated on a whole (R, n) matrix of samples at once, and for a batch of
methods the sort, the cumulative sums and the scale estimate are shared.
"""

from __future__ import annotations

import ast
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Iterator, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mean(_Method):
    family: Literal["mean"] = "mean"


class Median(_Method):
    family: Literal["median"] = "median"


class HodgesLehmann(_Method):
    family: Literal["hodges_lehmann"] = "hodges_lehmann"


class TrimmedMean(_Method):
    """Drop ``int(alpha * n)`` observations at each end (as ``scipy.stats.trim_mean``)."""

    family: Literal["trimmed_mean"] = "trimmed_mean"
    alpha: float = Field(ge=0.0, lt=0.5)


class WinsorizedMean(_Method):
    """Replace the ``int(alpha * n)`` extremes at each end by the nearest kept value."""

    family: Literal["winsorized_mean"] = "winsorized_mean"
    alpha: float = Field(ge=0.0, lt=0.5)


class Huber(_Method):
    """Huber M-estimator of location with tuning constant c, scale fixed at the normalized MAD."""

    family: Literal["huber"] = "huber"
    c: float = Field(ge=0.2, le=5.0)


class Biweight(_Method):
    """Tukey's biweight M-estimator of location, started at the median, scale the normalized MAD."""

    family: Literal["biweight"] = "biweight"
    c: float = Field(ge=1.5, le=12.0)


class CodeMethod(_Method):
    """Python source defining ``estimate(x)`` or the vectorized ``estimate_batch(X)``.

    It is only ever run inside the sandbox (``ouro.sandbox``), one process per method.
    """

    family: Literal["code"] = "code"
    source: str = Field(min_length=1, max_length=20_000)
    name: str = Field("", max_length=80, description="a short label, for people")


DSLMethod = Annotated[
    Union[Mean, Median, HodgesLehmann, TrimmedMean, WinsorizedMean, Huber, Biweight],
    Field(discriminator="family"),
]
LocationMethod = Annotated[
    Union[Mean, Median, HodgesLehmann, TrimmedMean, WinsorizedMean, Huber, Biweight, CodeMethod],
    Field(discriminator="family"),
]
METHOD_ADAPTER: TypeAdapter = TypeAdapter(LocationMethod)


@dataclass(frozen=True)
class Family:
    name: str
    cls: type[_Method]
    param: str | None = None
    low: float = 0.0
    high: float = 0.0
    log_scale: bool = False  # spread hyper-parameters evenly in log space (tuning constants)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mean", Mean),
        Family("median", Median),
        Family("trimmed_mean", TrimmedMean, "alpha", 0.0, 0.5),
        Family("winsorized_mean", WinsorizedMean, "alpha", 0.0, 0.5),
        Family("huber", Huber, "c", 0.2, 5.0, log_scale=True),
        Family("biweight", Biweight, "c", 1.5, 12.0, log_scale=True),
        Family("hodges_lehmann", HodgesLehmann),
    )
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def parse_method(obj) -> _Method:
    """Validate a dict (or a method) into a DSL method; raises pydantic.ValidationError."""
    if isinstance(obj, _Method):
        return obj
    return METHOD_ADAPTER.validate_python(obj)


def param_of(method: _Method) -> float | None:
    fam = FAMILIES.get(method.family)
    if fam is None:  # code
        return None
    return None if fam.param is None else float(getattr(method, fam.param))


def code_key(source: str) -> str:
    """Programs that differ only in comments, blank lines or layout share a key (normalized AST)."""
    try:
        normal = ast.dump(ast.parse(source), annotate_fields=False)
    except SyntaxError:
        normal = source
    return "code:" + hashlib.sha256(normal.encode()).hexdigest()[:10]


def method_key(method: _Method, digits: int = 3) -> str:
    """A canonical short name: two methods with the same key are the same to 3 significant digits."""
    if isinstance(method, CodeMethod):
        return code_key(method.source)
    p = param_of(method)
    return method.family if p is None else f"{method.family}({p:.{digits}g})"


# ---------------------------------------------------------------- evaluation


def _median_sorted(s: np.ndarray) -> np.ndarray:
    n = s.shape[-1]
    h = n // 2
    return s[..., h] if n % 2 else 0.5 * (s[..., h - 1] + s[..., h])


def _trim_count(alpha: np.ndarray, n: int) -> np.ndarray:
    # int(alpha * n) in floating point, exactly as scipy.stats.trim_mean counts
    return np.array([int(a * n) for a in np.atleast_1d(alpha)], dtype=int)


def trimmed_means(s: np.ndarray, cums: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Trimmed means for several alphas from sorted rows ``s`` and their prefix sums."""
    n = s.shape[-1]
    k = _trim_count(alphas, n)
    total = cums[:, n - k] - cums[:, k]  # (R, A)
    return (total / (n - 2 * k)).T  # (A, R)


def winsorized_means(s: np.ndarray, cums: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    n = s.shape[-1]
    k = _trim_count(alphas, n)
    inner = cums[:, n - k] - cums[:, k]
    low = s[:, k] * k
    high = s[:, n - k - 1] * k
    return ((inner + low + high) / n).T


def hodges_lehmann(x: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Median of the Walsh averages (x_i + x_j) / 2, i <= j, row by row (in chunks to bound memory)."""
    n = x.shape[-1]
    iu, ju = np.triu_indices(n)
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        walsh = 0.5 * (block[:, iu] + block[:, ju])
        out[start : start + chunk] = np.median(walsh, axis=1)
    return out


def mad_scale(x: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Normalized median absolute deviation (consistent for the normal's sigma)."""
    return 1.482602218505602 * np.median(np.abs(x - med[:, None]), axis=1)


def _m_estimates_block(x, med, scale, cs, kind, max_iter, tol):
    """One block of tuning constants: x (R, n), cs (C,) -> (C, R).

    Iterates only the (c, row) pairs that have not converged yet: most rows need three
    or four Newton steps, a few need many, and the few should not cost the many.
    """
    n_rows = x.shape[0]
    mu = np.tile(med, cs.shape[0])  # flat index k = c_index * R + row
    c_all = np.repeat(cs, n_rows)
    s_all = np.tile(scale, cs.shape[0])
    active = np.arange(mu.size)
    for _ in range(max_iter):
        if active.size == 0:
            break
        rows = active % n_rows
        c = c_all[active][:, None]
        sc = s_all[active]
        r = (x[rows] - mu[active][:, None]) / sc[:, None]
        if kind == "huber":
            psi = np.clip(r, -c, c)
            dpsi = np.abs(r) < c
            w = psi / np.maximum(np.abs(r), 1e-300)
        else:
            u2 = (r / c) ** 2
            one_minus = np.maximum(1.0 - u2, 0.0)
            w = one_minus * one_minus
            psi = r * w
            dpsi = one_minus * (1.0 - 5.0 * u2)
        s_psi, s_dpsi, s_w = psi.sum(-1), dpsi.sum(-1, dtype=float), w.sum(-1)
        # Newton on sum psi = 0 where the slope is positive (quadratic convergence);
        # otherwise the reweighting step, which has the same fixed points.
        newton = s_psi / np.where(s_dpsi > 0, s_dpsi, 1.0)
        irls = np.where(s_w > 0, s_psi / np.where(s_w > 0, s_w, 1.0), 0.0)
        step = np.where((s_dpsi > 0) & (np.abs(newton) < 1.0), newton, irls)
        mu[active] += step * sc
        active = active[np.abs(step) >= tol]
    return mu.reshape(cs.shape[0], n_rows)


def m_estimates(
    x: np.ndarray,
    med: np.ndarray,
    scale: np.ndarray,
    cs: np.ndarray,
    kind: str,
    max_iter: int = 60,
    tol: float = 1e-9,
    block_elements: int = 1 << 20,
) -> np.ndarray:
    """Huber or biweight location with the MAD scale held fixed, vectorized over (c, row).

    Solves sum psi((x - mu) / s) = 0 from the median: Newton steps where the slope is
    positive and the step stays within one scale, reweighting steps otherwise. Tuning
    constants are processed in blocks so that temporaries stay about 8 MB.
    """
    cs = np.asarray(cs, dtype=float)
    safe_scale = np.where(scale > 0, scale, 1.0)
    per_c = max(1, x.size)
    block = max(1, block_elements // per_c)
    out = np.empty((cs.shape[0], x.shape[0]))
    for start in range(0, cs.shape[0], block):
        out[start : start + block] = _m_estimates_block(x, med, safe_scale, cs[start : start + block], kind, max_iter, tol)
    return np.where(scale[None] > 0, out, med[None])


@contextmanager
def data_space(methods: list[_Method], rows: int, cols: int) -> Iterator[np.ndarray | None]:
    """Where to draw the data that ``methods`` will run on: when one is model-written code,
    memory that the sandbox's processes read directly, so that the data reaches them with
    no copy (see ``Sandbox.input_buffer``); otherwise None, for a fresh array."""
    if not any(m.family == "code" for m in methods):
        yield None
        return
    from ouro.sandbox import default_sandbox

    with default_sandbox().input_buffer(rows, cols) as space:
        yield space


def evaluate(methods: list[_Method], x: np.ndarray) -> np.ndarray:
    """Estimates of every method on every row of ``x``: an array of shape (P, R).

    A code method that fails gives a row of NaN; ``evaluate_with_errors`` says why.
    """
    return evaluate_with_errors(methods, x)[0]


def evaluate_with_errors(methods: list[_Method], x: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    x = np.asarray(x, dtype=float)
    out = np.empty((len(methods), x.shape[0]))
    errors: list[str | None] = [None] * len(methods)
    by_family: dict[str, list[int]] = {}
    for i, m in enumerate(methods):
        by_family.setdefault(m.family, []).append(i)
    code = by_family.pop("code", [])
    if code:
        from ouro.sandbox import run_methods  # the only way model-written code runs

        for i, result in zip(code, run_methods([methods[i].source for i in code], x)):
            out[i] = result.values if result.ok else np.nan
            errors[i] = None if result.ok else result.error
    if not by_family:
        return out, errors
    s = np.sort(x, axis=1)
    cums = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(s, axis=1)], axis=1)
    med = _median_sorted(s)
    scale = None
    for fam, idx in by_family.items():
        params = np.array([param_of(methods[i]) or 0.0 for i in idx])
        if fam == "mean":
            vals = np.broadcast_to(x.mean(axis=1), (len(idx), x.shape[0]))
        elif fam == "median":
            vals = np.broadcast_to(med, (len(idx), x.shape[0]))
        elif fam == "hodges_lehmann":
            vals = np.broadcast_to(hodges_lehmann(x), (len(idx), x.shape[0]))
        elif fam == "trimmed_mean":
            vals = trimmed_means(s, cums, params)
        elif fam == "winsorized_mean":
            vals = winsorized_means(s, cums, params)
        else:
            if scale is None:
                scale = mad_scale(x, med)
            uniq, inv = np.unique(params, return_inverse=True)
            vals = m_estimates(x, med, scale, uniq, fam)[inv]
        out[idx] = vals
    return out, errors
