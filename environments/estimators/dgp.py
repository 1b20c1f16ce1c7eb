"""Data-generating processes of the location problem: symmetric noise around a true centre.

Each process knows its variance, so the baseline's (the sample mean's) MSE is exact,
sigma^2 / n, and the oracle's error comes from the method's side alone.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class _DGP(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def label(self) -> str:
        fields = {k: v for k, v in self.model_dump().items() if k != "kind"}
        inner = ", ".join(f"{k}={v:g}" for k, v in fields.items())
        return f"{self.kind}({inner})" if inner else self.kind


class Normal(_DGP):
    kind: Literal["normal"] = "normal"

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        return rng.standard_normal(shape)

    def variance(self) -> float:
        return 1.0


class Contaminated(_DGP):
    """(1 - eps) N(0, 1) + eps N(0, scale^2): Tukey's gross-error model."""

    kind: Literal["contaminated"] = "contaminated"
    eps: float = Field(0.1, ge=0.0, le=1.0)
    scale: float = Field(10.0, gt=0.0)

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        z = rng.standard_normal(shape)
        outlier = rng.random(shape) < self.eps
        return np.where(outlier, z * self.scale, z)

    def variance(self) -> float:
        return (1 - self.eps) + self.eps * self.scale**2


class StudentT(_DGP):
    kind: Literal["student_t"] = "student_t"
    df: float = Field(3.0, gt=2.0, description="degrees of freedom; > 2 so that the mean has a finite MSE")

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        return rng.standard_t(self.df, shape)

    def variance(self) -> float:
        return self.df / (self.df - 2)


class Laplace(_DGP):
    kind: Literal["laplace"] = "laplace"
    b: float = Field(1.0, gt=0.0)

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        return rng.laplace(0.0, self.b, shape)

    def variance(self) -> float:
        return 2 * self.b**2


DGP = Annotated[Union[Normal, Contaminated, StudentT, Laplace], Field(discriminator="kind")]


def simulate_samples(dgp: _DGP, rng: np.random.Generator, replications: int, n: int, spread: float,
                     out: np.ndarray | None = None):
    """R samples of size n around random true centres; returns (centres, samples).

    The centre is drawn per replication from U(-spread, spread), so a method cannot score
    well by guessing a constant: only a real location estimator does. ``out``, an
    (R, n) float array, receives the samples (the same values as without it).
    """
    centres = rng.uniform(-spread, spread, replications)
    return centres, np.add(centres[:, None], dgp.sample(rng, (replications, n)), out=out)
