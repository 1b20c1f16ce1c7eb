"""A categorical distribution refitted to its own draws: Wright-Fisher drift, and a dial.

The researcher is the empirical distribution of its pool over K categories; real data
are M draws from the real distribution p0. With nobody verifying (``replace``) this is
the Wright-Fisher model of population genetics: the expected Gini-Simpson index decays
by (1 - 1/M) per fit and one category eventually holds all the mass, each with
probability equal to its real share. Categories may carry ``correct`` labels or
``quality`` values; a verifier that can tell them apart moves the mass towards the
good ones, and the ``noisy`` verifier shows by how much (odds times tpr/fpr per
generation).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import stats as st

from ouro.rng import per_seed

from .base import ENVIRONMENTS
from .closed_form import Arrays, Batch, ClosedFormConfig, ClosedFormEnvironment, padded


@ENVIRONMENTS.register
class CategoricalConfig(ClosedFormConfig):
    kind: Literal["categorical"] = "categorical"
    categories: int | list[float] = Field(
        10, description="K (uniform real distribution) or the real probabilities of the K categories"
    )
    correct: list[bool] | None = Field(None, description="which categories are correct answers (good proposals)")
    quality: list[float] | None = Field(None, description="a quality value per category")

    @model_validator(mode="after")
    def _check(self) -> "CategoricalConfig":
        if isinstance(self.categories, int):
            if not 2 <= self.categories <= 100_000:
                raise ValueError("categories: K must be between 2 and 100000")
        else:
            p = np.asarray(self.categories, dtype=float)
            if p.size < 2 or (p < 0).any() or not np.isfinite(p).all():
                raise ValueError("categories: give at least 2 non-negative probabilities")
            if abs(p.sum() - 1.0) > 1e-6:
                raise ValueError(f"categories: probabilities must sum to 1 (they sum to {p.sum():.6g})")
        k = self.k
        for name in ("correct", "quality"):
            v = getattr(self, name)
            if v is not None and len(v) != k:
                raise ValueError(f"{name}: {len(v)} values given for {k} categories")
        return self

    @property
    def k(self) -> int:
        return self.categories if isinstance(self.categories, int) else len(self.categories)

    def build(self) -> "CategoricalEnvironment":
        return CategoricalEnvironment(self)


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Category indices by inversion (as ``Generator.choice`` with ``p``)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def gini_simpson(p: np.ndarray) -> np.ndarray:
    """Probability that two independent draws differ: 1 - sum p_k^2."""
    return 1.0 - (p**2).sum(axis=-1)


class CategoricalEnvironment(ClosedFormEnvironment):
    name = "categorical"
    quality_metric: ClassVar[str] = "quality_mean"
    diversity_metric: ClassVar[str] = "entropy"
    judgements = frozenset({"likelihood", "fresh"})

    def __init__(self, config: CategoricalConfig) -> None:
        self.config = config
        self.k = config.k
        p0 = np.full(self.k, 1.0 / self.k) if isinstance(config.categories, int) else np.asarray(config.categories)
        self.p0 = p0 / p0.sum()
        self.cdf0 = np.cumsum(self.p0)
        self.cdf0 /= self.cdf0[-1]
        if config.correct is not None:
            self.good_category: np.ndarray | None = np.asarray(config.correct, dtype=bool)
            self.quality = self.good_category.astype(float) if config.quality is None else np.asarray(config.quality)
        elif config.quality is not None:
            self.quality = np.asarray(config.quality, dtype=float)
            # without labels, good means better than a real draw on average
            self.good_category = self.quality > float(self.p0 @ self.quality)
        else:
            self.quality, self.good_category = None, None
        if self.good_category is not None:
            self.judgements = frozenset({"good", "likelihood", "fresh"})

    def describe(self) -> str:
        return (
            f"The empirical distribution of the pool over {self.k} categories; real data are draws from "
            "the real distribution. Quality is the expected quality (or correctness) of a draw."
        )

    # ------------------------------------------------------------ data and model
    def _real(self, seeds: np.ndarray, generation: int, purpose: str, sizes: np.ndarray) -> tuple[Arrays, np.ndarray]:
        sizes_left = iter(sizes.tolist())
        rows = per_seed(seeds, generation, purpose, lambda rng: _draw(rng, self.cdf0, next(sizes_left)))
        cat, mask = padded(rows, sizes)
        return {"cat": cat}, mask

    def initial_data(self, seeds: np.ndarray) -> tuple[Arrays, np.ndarray]:
        return self._real(seeds, 0, "real", np.full(len(seeds), self.proposals))

    def fresh_data(self, seeds: np.ndarray, generation: int, sizes: np.ndarray) -> tuple[Arrays, np.ndarray]:
        return self._real(seeds, generation, "mix", sizes)

    def stats(self, data: Arrays, mask: np.ndarray) -> Arrays:
        cat = data["cat"]
        rows = np.broadcast_to(np.arange(cat.shape[0])[:, None], cat.shape)
        flat = (rows * self.k + cat)[mask]
        counts = np.bincount(flat, minlength=cat.shape[0] * self.k).reshape(cat.shape[0], self.k)
        return {"counts": counts}

    def merge(self, a: Arrays, b: Arrays) -> Arrays:
        return {"counts": a["counts"] + b["counts"]}

    def fit(self, stats: Arrays) -> tuple[Arrays, np.ndarray]:
        counts = stats["counts"].astype(float)
        total = counts.sum(axis=1)
        ok = total > 0
        return {"p": counts / np.where(ok, total, 1.0)[:, None]}, ok

    def propose(self, params: Arrays, seeds: np.ndarray, generation: int) -> Arrays:
        cdf = np.cumsum(params["p"], axis=1)
        cdf /= cdf[:, -1:]
        cdfs = iter(cdf)
        cat = np.stack(per_seed(seeds, generation, "propose", lambda rng: _draw(rng, next(cdfs), self.proposals)))
        return {"cat": cat}

    def metrics(self, params: Arrays) -> dict[str, np.ndarray]:
        p = params["p"]
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        out = {
            "gini_simpson": gini_simpson(p),
            "entropy": -plogp.sum(axis=1) + 0.0,
            "fixed": (p.max(axis=1) >= 1.0).astype(float),
            "mode": p.argmax(axis=1).astype(float),
        }
        if self.quality is not None:
            out["quality_mean"] = p @ self.quality
        if self.good_category is not None:
            out["p_correct"] = p @ self.good_category.astype(float)
        return out

    # ------------------------------------------------------------ judging
    def good(self, batch: Batch) -> np.ndarray:
        # named in ``judgements`` only when correct labels or quality values were given
        return self.good_category[batch.data["cat"]]

    def log_likelihood(self, batch: Batch) -> np.ndarray:
        p = np.take_along_axis(batch.params["p"], batch.data["cat"], axis=1)
        with np.errstate(divide="ignore"):
            return np.log(p)

    def fresh_check(self, batch: Batch, replications: int, alpha: float) -> np.ndarray:
        """Chi-square test of homogeneity of the batch's and fresh real draws' counts."""
        cat = batch.data["cat"]
        real = batch.draw(lambda rng: _draw(rng, self.cdf0, replications))
        a = self.stats({"cat": cat}, np.ones(cat.shape, dtype=bool))["counts"].astype(float)
        b = self.stats({"cat": real}, np.ones(real.shape, dtype=bool))["counts"].astype(float)
        col = a + b
        used = col > 0
        na, nb = a.sum(axis=1, keepdims=True), b.sum(axis=1, keepdims=True)
        total = na + nb
        with np.errstate(divide="ignore", invalid="ignore"):
            ea, eb = col * na / total, col * nb / total
            chi2 = np.where(used, (a - ea) ** 2 / ea + (b - eb) ** 2 / eb, 0.0).sum(axis=1)
        df = used.sum(axis=1) - 1
        p = np.where(df > 0, st.chi2.sf(chi2, np.maximum(df, 1)), 1.0)
        return p >= alpha


# ---------------------------------------------------------------- closed forms
def expected_gini_simpson(generation: int | np.ndarray, draws: int, p0: np.ndarray) -> np.ndarray:
    """``replace``, verifier ``none``: E[GS_g] = (1 - 1/M)^(g + 1) GS(p0).

    Resampling M draws keeps E[p] and multiplies E[1 - sum p^2] by (1 - 1/M)."""
    return (1 - 1 / draws) ** (np.asarray(generation, dtype=float) + 1) * gini_simpson(np.asarray(p0, dtype=float))


def expected_log_odds_step(tpr: float, fpr: float) -> float:
    """``noisy`` verifier, large M: the odds of a correct proposal multiply by tpr/fpr per
    generation (accepted correct ~ M p tpr, accepted incorrect ~ M (1 - p) fpr)."""
    return float(np.log(tpr) - np.log(fpr))
