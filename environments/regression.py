"""Recursive linear regression: each generation relabels the design with its own predictions.

The truth is y = x.w* + noise, with w* = (1, ..., 1)/sqrt(d) and x ~ N(0, I_d). The
researcher is ordinary least squares on its pool; it proposes T = ``loop.proposals``
points, labelled by its own predictions plus fresh noise. Under ``replace`` the errors
of successive fits add up, so the test error grows linearly; under ``accumulate`` on a
fixed design the pool's average fit damps them by 1/i^2, and the error stays below
pi^2/6 times the error of the fit to real data (Gerstgrasser et al. 2024, Dey & Donoho
2024). The test error is E over fresh x of (x.(w - w*))^2 = |w - w*|^2.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ouro.config import ConfigError
from ouro.rng import per_seed

from .base import ENVIRONMENTS
from .closed_form import Arrays, Batch, ClosedFormConfig, ClosedFormEnvironment, padded


@ENVIRONMENTS.register
class RegressionConfig(ClosedFormConfig):
    kind: Literal["regression"] = "regression"
    dim: int = Field(10, ge=1, le=1000, description="dimension d of x")
    noise: float = Field(1.0, gt=0.0, description="standard deviation of the label noise")
    design: Literal["fixed", "fresh"] = Field(
        "fixed", description="fixed: one design matrix, relabelled every generation; fresh: a new one each generation"
    )
    tolerance: float = Field(
        1.0, gt=0.0, description="a proposal is good when its label is within tolerance x noise of the truth"
    )

    def build(self) -> "RegressionEnvironment":
        return RegressionEnvironment(self)


def _solve(gram: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve each seed's normal equations; a singular system is reported, not raised."""
    try:
        return np.linalg.solve(gram, rhs[..., None])[..., 0], np.ones(len(gram), dtype=bool)
    except np.linalg.LinAlgError:
        out, ok = np.zeros_like(rhs), np.ones(len(gram), dtype=bool)
        for i in range(len(gram)):
            try:
                out[i] = np.linalg.solve(gram[i], rhs[i])
            except np.linalg.LinAlgError:
                ok[i] = False
        return out, ok


class RegressionEnvironment(ClosedFormEnvironment):
    name = "regression"
    quality_metric: ClassVar[str] = "test_error"
    diversity_metric: ClassVar[str] = "pred_var"
    quality_direction: ClassVar[int] = -1
    judgements = frozenset({"good", "likelihood"})

    def __init__(self, config: RegressionConfig) -> None:
        self.config = config
        self.d = config.dim
        self.sigma = config.noise
        self.w_star = np.full(self.d, 1.0 / np.sqrt(self.d))
        self._design: tuple[bytes, np.ndarray] | None = None

    def describe(self) -> str:
        return (
            f"Least squares in {self.d} dimensions, x ~ N(0, I), noise sd {self.sigma:g}, "
            f"{self.config.design} design. Quality is the test error |w - w*|^2 (lower is better)."
        )

    def bind_loop(self, proposals: int) -> None:
        if proposals < self.d + 2:
            raise ConfigError(
                f"environment regression: loop.proposals must be >= dim + 2 = {self.d + 2} "
                "(below that the expected test error of least squares is infinite)"
            )
        self.proposals = proposals

    # ------------------------------------------------------------ data and model
    def design(self, seeds: np.ndarray) -> np.ndarray:
        """The fixed design (n rows) of every seed, drawn once from its own stream (kept in memory)."""
        key = seeds.tobytes()
        if self._design is None or self._design[0] != key:
            x = np.stack(per_seed(seeds, 0, "design", lambda rng: rng.standard_normal((self.proposals, self.d))))
            self._design = (key, x)
        return self._design[1]

    def _label(self, x: np.ndarray, w: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return np.matmul(x, w[..., None])[..., 0] + self.sigma * noise

    def initial_data(self, seeds: np.ndarray) -> tuple[Arrays, np.ndarray]:
        n = self.proposals
        fixed = self.config.design == "fixed"

        def real(rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray]:
            x = None if fixed else rng.standard_normal((n, self.d))
            return x, rng.standard_normal(n)

        drawn = per_seed(seeds, 0, "real", real)
        x = self.design(seeds) if fixed else np.stack([d[0] for d in drawn])
        noise = np.stack([d[1] for d in drawn])
        y = self._label(x, np.broadcast_to(self.w_star, (len(seeds), self.d)), noise)
        return {"x": x, "y": y}, np.ones(y.shape, dtype=bool)

    def fresh_data(self, seeds: np.ndarray, generation: int, sizes: np.ndarray) -> tuple[Arrays, np.ndarray]:
        """Real points: rows of the fixed design (drawn with replacement) or fresh x, true labels."""
        fixed = self.design(seeds) if self.config.design == "fixed" else None
        rows = iter(range(len(seeds)))

        def real(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            i = next(rows)
            k = int(sizes[i])
            x = fixed[i][rng.integers(0, fixed.shape[1], size=k)] if fixed is not None else rng.standard_normal((k, self.d))
            return x, x @ self.w_star + self.sigma * rng.standard_normal(k)

        drawn = per_seed(seeds, generation, "mix", real)
        x, mask = padded([d[0] for d in drawn], sizes)
        y, _ = padded([d[1] for d in drawn], sizes)
        return {"x": x, "y": y}, mask

    def stats(self, data: Arrays, mask: np.ndarray) -> Arrays:
        xt = (data["x"] * mask[..., None]).transpose(0, 2, 1)
        return {
            "count": mask.sum(axis=1).astype(float),
            "xx": np.matmul(xt, data["x"]),
            "xy": np.matmul(xt, data["y"][..., None])[..., 0],
        }

    def merge(self, a: Arrays, b: Arrays) -> Arrays:
        return {k: a[k] + b[k] for k in a}

    def fit(self, stats: Arrays) -> tuple[Arrays, np.ndarray]:
        enough = stats["count"] >= self.d
        w = np.zeros_like(stats["xy"])
        ok = enough.copy()
        if enough.any():
            w[enough], solved = _solve(stats["xx"][enough], stats["xy"][enough])
            ok[enough] = solved
        return {"w": w}, ok

    def propose(self, params: Arrays, seeds: np.ndarray, generation: int) -> Arrays:
        n = self.proposals
        if self.config.design == "fixed":
            x = self.design(seeds)
        else:
            x = np.stack(per_seed(seeds, generation, "design", lambda rng: rng.standard_normal((n, self.d))))
        noise = np.stack(per_seed(seeds, generation, "propose", lambda rng: rng.standard_normal(n)))
        return {"x": x, "y": self._label(x, params["w"], noise)}

    def metrics(self, params: Arrays) -> dict[str, np.ndarray]:
        w = params["w"]
        return {"test_error": ((w - self.w_star) ** 2).sum(axis=1), "pred_var": (w**2).sum(axis=1)}

    # ------------------------------------------------------------ judging
    def good(self, batch: Batch) -> np.ndarray:
        """A label within ``tolerance`` noise standard deviations of the true mean."""
        truth = batch.data["x"] @ self.w_star
        return np.abs(batch.data["y"] - truth) <= self.config.tolerance * self.sigma

    def log_likelihood(self, batch: Batch) -> np.ndarray:
        """The label's log-density under the proposing model (known noise)."""
        pred = np.matmul(batch.data["x"], batch.params["w"][..., None])[..., 0]
        r = (batch.data["y"] - pred) / self.sigma
        return -0.5 * r**2 - np.log(self.sigma) - 0.5 * np.log(2 * np.pi)


# ---------------------------------------------------------------- closed forms
def real_data_error(dim: int, proposals: int, noise: float) -> float:
    """E|w_0 - w*|^2 of least squares on T Gaussian rows: sigma^2 d/(T - d - 1)."""
    return noise**2 * dim / (proposals - dim - 1)


def expected_test_error_replace(generation: int | np.ndarray, dim: int, proposals: int, noise: float) -> np.ndarray:
    """``replace``, either design: (g + 1) sigma^2 d/(T - d - 1): independent errors add."""
    return (np.asarray(generation, dtype=float) + 1) * real_data_error(dim, proposals, noise)


def expected_test_error_accumulate(generation: int | np.ndarray, dim: int, proposals: int, noise: float) -> np.ndarray:
    """``accumulate``, fixed design: sigma^2 d/(T - d - 1) sum_{i=1}^{g+1} 1/i^2.

    On a fixed design the pool's fit is the average of the blocks' fits, so the error
    of generation g is e_{g-1} + A eps_g/(g + 1): the i-th noise enters damped by 1/i."""
    g = np.atleast_1d(np.asarray(generation, dtype=int))
    h = np.array([np.sum(1.0 / np.arange(1, k + 2) ** 2) for k in g])
    out = h * real_data_error(dim, proposals, noise)
    return out if np.ndim(generation) else out[0]
