"""DSL methods written out as Python source, the way a model asked for code would.

A researcher asked for code (``method_kind: code``) sees its archive as source, and
the archive starts as the DSL seed corpus: ``method_source`` writes each DSL method as
equivalent, vectorized numpy (``estimate_batch``), so that what the model reads is
runnable code it can imitate and vary. The first line names the DSL method it is
(``# dsl: {...}``): a person or a model reading it learns what it computes, and the
offline scripted model reads it back (``source_dsl``) to fit its statistical model, as
it reads JSON exemplars in the DSL kind.

Each source computes what ``methods.evaluate`` computes for the same method, up to
rounding (tests/test_code_kind.py checks it in the sandbox).
"""

from __future__ import annotations

import json
from typing import Any

from .methods import FAMILIES, _Method

DSL_MARKER = "# dsl: "

_HEADER = "import numpy as np\n\n\n"

_BODIES: dict[str, str] = {
    "mean": """\
def estimate_batch(X):
    return X.mean(axis=1)
""",
    "median": """\
def estimate_batch(X):
    return np.median(X, axis=1)
""",
    "trimmed_mean": """\
ALPHA = {alpha!r}


def estimate_batch(X):
    n = X.shape[1]
    k = int(ALPHA * n)
    return np.sort(X, axis=1)[:, k:n - k].mean(axis=1)
""",
    "winsorized_mean": """\
ALPHA = {alpha!r}


def estimate_batch(X):
    n = X.shape[1]
    k = int(ALPHA * n)
    s = np.sort(X, axis=1)
    if k:
        s[:, :k] = s[:, k:k + 1]
        s[:, n - k:] = s[:, n - k - 1:n - k]
    return s.mean(axis=1)
""",
    "hodges_lehmann": """\
def estimate_batch(X):
    # median of the Walsh averages (x_i + x_j) / 2, i <= j, in blocks of rows to bound memory
    i, j = np.triu_indices(X.shape[1])
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], 2048):
        block = X[start:start + 2048]
        out[start:start + 2048] = np.median(0.5 * (block[:, i] + block[:, j]), axis=1)
    return out
""",
}

# Huber and biweight share the solver: Newton steps on sum psi((x - mu) / s) = 0 from the
# median, with the MAD scale held fixed, reweighting steps where Newton is unsafe; only
# rows not yet converged are iterated.
_M_ESTIMATOR = """\
C = {c!r}


def weights(r):
{weights}


def estimate_batch(X):
    med = np.median(X, axis=1)
    scale = 1.482602218505602 * np.median(np.abs(X - med[:, None]), axis=1)
    safe = np.where(scale > 0, scale, 1.0)
    mu = med.copy()
    active = np.arange(X.shape[0])
    for _ in range(60):
        if active.size == 0:
            break
        r = (X[active] - mu[active][:, None]) / safe[active][:, None]
        psi, dpsi, w = weights(r)
        s_psi, s_dpsi, s_w = psi.sum(axis=1), dpsi.sum(axis=1, dtype=float), w.sum(axis=1)
        newton = s_psi / np.where(s_dpsi > 0, s_dpsi, 1.0)
        irls = np.where(s_w > 0, s_psi / np.where(s_w > 0, s_w, 1.0), 0.0)
        step = np.where((s_dpsi > 0) & (np.abs(newton) < 1.0), newton, irls)
        mu[active] += step * safe[active]
        active = active[np.abs(step) >= 1e-9]
    return np.where(scale > 0, mu, med)
"""

_WEIGHTS: dict[str, str] = {
    "huber": """\
    psi = np.clip(r, -C, C)
    return psi, np.abs(r) < C, psi / np.maximum(np.abs(r), 1e-300)""",
    "biweight": """\
    u2 = (r / C) ** 2
    one_minus = np.maximum(1.0 - u2, 0.0)
    w = one_minus * one_minus
    return r * w, one_minus * (1.0 - 5.0 * u2), w""",
}


def method_source(method: _Method) -> str:
    """Python source computing ``method`` (a DSL method) with ``estimate_batch``."""
    family = method.family
    if family not in FAMILIES:
        raise ValueError(f"no source for family {family!r}")
    spec = method.model_dump(mode="json")
    params: dict[str, Any] = {k: v for k, v in spec.items() if k != "family"}
    if family in _WEIGHTS:
        body = _M_ESTIMATOR.format(weights=_WEIGHTS[family], **params)
    else:
        body = _BODIES[family].format(**params)
    return DSL_MARKER + json.dumps(spec, sort_keys=True) + "\n" + _HEADER + body


def source_dsl(source: str) -> dict[str, Any] | None:
    """The DSL method a source says it is on its first line, or None."""
    first = source.lstrip().split("\n", 1)[0]
    if not first.startswith(DSL_MARKER):
        return None
    try:
        spec = json.loads(first[len(DSL_MARKER):])
    except json.JSONDecodeError:
        return None
    return spec if isinstance(spec, dict) else None
