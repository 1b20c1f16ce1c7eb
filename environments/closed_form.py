"""Closed-form environments: the loop on sufficient statistics, every seed of an arm at once.

The gaussian, categorical and regression environments are the model-collapse
literature's test beds. Their researcher is a parametric model fitted by maximum
likelihood (or least squares) to its pool, so a pool is fully described by sufficient
statistics (a count, a mean and a sum of squares; category counts; X'X and X'y) and a
generation is a handful of numpy operations on arrays with a leading seed axis. That
is what makes 1,000 seeds x 1,000 generations a matter of half a minute, where judging
pydantic methods one by one would take hours.

Randomness: every draw of seed s comes from ``ouro.rng.stream(s, generation, purpose)``
(through ``ouro.rng.per_seed``, which gives the same draws faster) and is made per
seed, then stacked; the maths after that is row-wise. So seed s's trajectory does not
depend on which seeds run beside it, or how many.

Durability: a finished generation is one atomic record. Records of generations whose
metrics are recorded (``loop.record_every``, and the last) also hold the state the next
generation starts from: the fitted parameters per seed, and for ``accumulate`` the
pool's sufficient statistics. The other records are small markers. Stage outputs in
flight are kept in memory only: a process that resumes a run (after a crash or kill -9,
in any stage) loads the last record with a state and replays the generations after it
from the streams. Replaying is deterministic and costs microseconds per generation, so
nothing is lost and nothing is written twice; it is why these cohorts write no stage
files. Verdicts are not logged one by one (10^8 of them in a large run): the records
hold per-seed metrics, including the verifier's accept rate and confusion counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ouro.config import ConfigError
from ouro.rng import per_seed
from ouro.store import ArmStore

from .base import EnvironmentConfig

Arrays = dict[str, np.ndarray]  # every array has the seed axis first


@dataclass
class BatchVerdicts:
    """A verifier's judgement of one generation of every seed of an arm.

    ``accept[i, j]``: proposal j of seed i is accepted. ``replications[i]``: fresh real
    draws the verifier spent on seed i (None: it spent none). ``judged`` is False when
    nobody looked at the proposals (verifier ``none``): no accept rate is reported then.
    """

    accept: np.ndarray
    replications: np.ndarray | None = None
    judged: bool = True


@dataclass
class Batch:
    """One generation's proposals of every seed, and what a verifier may ask about them.

    A verifier sees the environment only through these questions; each environment
    answers those it can (``ClosedFormEnvironment.judgements``).
    """

    env: "ClosedFormEnvironment"
    seeds: np.ndarray
    generation: int
    params: Arrays  # the model that proposed
    data: Arrays  # proposals, shape (seeds, n, ...)

    @property
    def shape(self) -> tuple[int, int]:
        first = next(iter(self.data.values()))
        return first.shape[0], first.shape[1]

    def draw(self, draw: Callable[[np.random.Generator], np.ndarray], purpose: str = "verify") -> np.ndarray:
        """``draw`` on each seed's stream of this generation, stacked. The ``verify`` stream
        is the same in every arm of a seed, so arms compare on common random numbers."""
        return np.stack(per_seed(self.seeds, self.generation, purpose, draw))

    def good(self) -> np.ndarray:
        """Which proposals are truly good (the oracle's label), shape (seeds, n)."""
        return self.env.good(self)

    def log_likelihood(self) -> np.ndarray:
        """Each proposal's log-likelihood under the model that proposed it."""
        return self.env.log_likelihood(self)

    def fresh_check(self, replications: int, alpha: float) -> np.ndarray:
        """Per seed: does the batch pass a two-sample test at level alpha against
        ``replications`` fresh real draws? Shape (seeds,)."""
        return self.env.fresh_check(self, replications, alpha)


class ClosedFormEnvironment(ABC):
    """What a closed-form environment supplies to ``ClosedFormCohort``.

    ``judgements`` names the questions of ``Batch`` it can answer, and an environment
    defines the method of each one it names: ``good`` -> ``good(batch)`` (it knows which
    proposals are good: oracle, noisy), ``likelihood`` -> ``log_likelihood(batch)`` (the
    model's own judgement), ``fresh`` -> ``fresh_check(batch, replications, alpha)`` (a
    two-sample check against fresh real data: montecarlo). The cohort refuses, when it
    is built, a verifier that needs a question the environment does not name.
    """

    name: ClassVar[str]
    quality_metric: ClassVar[str]
    diversity_metric: ClassVar[str]
    quality_direction: ClassVar[int] = 1
    judgements: frozenset[str] = frozenset()  # per instance: may depend on the config
    min_proposals: ClassVar[int] = 1

    @abstractmethod
    def describe(self) -> str:
        """The problem in words."""

    proposals: int = 0  # n, set by ``bind_loop``

    def bind_loop(self, proposals: int) -> None:
        """Remember the loop's batch size n; ConfigError when it makes no sense here."""
        if proposals < self.min_proposals:
            raise ConfigError(f"environment {self.name}: loop.proposals must be >= {self.min_proposals}")
        self.proposals = proposals

    # data and models
    @abstractmethod
    def initial_data(self, seeds: np.ndarray) -> tuple[Arrays, np.ndarray]:
        """Generation 0's real data: arrays (seeds, n, ...) and a mask (seeds, n)."""

    @abstractmethod
    def fresh_data(self, seeds: np.ndarray, generation: int, sizes: np.ndarray) -> tuple[Arrays, np.ndarray]:
        """``sizes[i]`` fresh real items for seed i (regime ``mix``), padded, with a mask."""

    @abstractmethod
    def stats(self, data: Arrays, mask: np.ndarray) -> Arrays:
        """Sufficient statistics of the masked items of each seed."""

    @abstractmethod
    def merge(self, a: Arrays, b: Arrays) -> Arrays:
        """Statistics of the union of two pools."""

    @abstractmethod
    def fit(self, stats: Arrays) -> tuple[Arrays, np.ndarray]:
        """Fitted parameters per seed, and which seeds had enough data to fit."""

    @abstractmethod
    def propose(self, params: Arrays, seeds: np.ndarray, generation: int) -> Arrays:
        """n proposals per seed from each seed's model: arrays (seeds, n, ...)."""

    @abstractmethod
    def metrics(self, params: Arrays) -> dict[str, np.ndarray]:
        """Metrics of the model that proposes at a generation, per seed (ordered)."""


class ClosedFormConfig(EnvironmentConfig):
    """Base of closed-form environment configs: they drive the loop with their own cohort."""

    @abstractmethod
    def build(self) -> ClosedFormEnvironment:
        """The closed-form environment this config describes."""

    def cohort(self, config: Any, arm_name: str, run_dir: Path) -> "ClosedFormCohort":
        return ClosedFormCohort(config, arm_name, run_dir)


@dataclass
class _State:
    """Where every seed stands at the start of a generation."""

    params: Arrays
    pool: Arrays | None  # the pool's statistics; kept only under ``accumulate``


def _to_json(arrays: Arrays) -> dict[str, list]:
    return {k: v.tolist() for k, v in arrays.items()}


def _from_json(obj: dict[str, list]) -> Arrays:
    return {k: np.asarray(v) for k, v in obj.items()}


def _select(arrays: Arrays, rows: np.ndarray) -> Arrays:
    return {k: v[rows] for k, v in arrays.items()}


def _where(rows: np.ndarray, new: Arrays, old: Arrays) -> Arrays:
    """``new`` on the rows where ``rows`` is True, ``old`` elsewhere."""
    out = {}
    for k, v in new.items():
        r = rows.reshape((-1,) + (1,) * (v.ndim - 1))
        out[k] = np.where(r, v, old[k])
    return out


class ClosedFormCohort:
    """One arm's seeds moving through propose, verify, curate, learn and measure together."""

    def __init__(self, config: Any, arm_name: str, run_dir: Path) -> None:
        self.arm = arm_name
        self.loop = config.loop
        self.env: ClosedFormEnvironment = config.environment.build()
        self.env.bind_loop(self.loop.proposals)
        self.seeds = np.asarray(config.seed_list, dtype=np.int64)
        self.store = ArmStore(run_dir, arm_name)
        self._check_researcher(config.researcher)
        arm = next(a for a in config.arms if a.name == arm_name)
        self.verifier = self._build_verifier(arm.verifier)
        self._state: tuple[int, _State] | None = None  # (generation, state at its start)
        self._memo: dict[tuple[int, str], Any] = {}

    # ------------------------------------------------------------ set-up checks
    def _check_researcher(self, researcher: Any) -> None:
        """The environment supplies the model family; only ``statistical`` (plain ML) fits it."""
        if researcher.kind != "statistical":
            raise ConfigError(
                f"environment {self.env.name} fits its own model family: use researcher: {{kind: statistical}}"
            )
        unused = [k for k in ("smoothing", "min_sd") if getattr(researcher, k, 0.0)]
        if unused:
            raise ConfigError(
                f"environment {self.env.name} fits by plain maximum likelihood; researcher "
                f"{', '.join(unused)} is not used by it (leave at 0)"
            )

    def _build_verifier(self, vconfig: Any) -> Any:
        where = f"arm {self.arm}: verifier {vconfig.kind}"
        try:
            verifier = vconfig.build(self.env)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: {e}") from None
        if not callable(getattr(verifier, "judge_batch", None)):
            raise ConfigError(f"{where} cannot judge the vectorized environment {self.env.name}")
        needs = getattr(verifier, "needs", None)
        if needs is not None and needs not in self.env.judgements:
            can = ", ".join(sorted(self.env.judgements)) or "nothing"
            raise ConfigError(f"{where} needs '{needs}', and environment {self.env.name} answers: {can}")
        return verifier

    # ------------------------------------------------------------ state and replay
    def _initial_state(self) -> _State:
        data, mask = self.env.initial_data(self.seeds)
        pool = self.env.stats(data, mask)
        params, ok = self.env.fit(pool)
        if not ok.all():
            raise RuntimeError(f"environment {self.env.name}: the real data cannot be fitted")
        return _State(params, pool if self.loop.regime == "accumulate" else None)

    def _state_at(self, generation: int) -> _State:
        """The state at the start of ``generation``: from memory, or a record and a replay."""
        if self._state is not None and self._state[0] == generation:
            return self._state[1]
        start, state = 0, None
        for g in range(generation - 1, -1, -1):
            if self.store.has_record(g):
                rec = self.store.read_record(g)
                if "state" in rec:
                    s = rec["state"]
                    state = _State(_from_json(s["params"]), _from_json(s["pool"]) if s.get("pool") else None)
                    start = g + 1
                    break
        if state is None:
            state = self._initial_state()
        for g in range(start, generation):
            state = self._advance(g, state)
        self._state = (generation, state)
        return state

    def _advance(self, generation: int, state: _State) -> _State:
        """One whole generation, nothing written (replay): the state the next one starts from."""
        batch = self._propose(generation, state)
        verdicts = self.verifier.judge_batch(batch)
        return self._learn(state, self._curate(generation, state, batch, verdicts))

    # ------------------------------------------------------------ the stages' maths
    def _propose(self, generation: int, state: _State) -> Batch:
        data = self.env.propose(state.params, self.seeds, generation)
        return Batch(self.env, self.seeds, generation, state.params, data)

    def _curate(self, generation: int, state: _State, batch: Batch, verdicts: BatchVerdicts) -> Arrays:
        accept = np.asarray(verdicts.accept, dtype=bool)
        accepted = self.env.stats(batch.data, accept)
        loop = self.loop
        if loop.regime == "replace":
            return accepted
        if loop.regime == "accumulate":
            assert state.pool is not None
            return self.env.merge(state.pool, accepted)
        # mix: real_fraction of the pool drawn fresh from the real data (as MethodCohort)
        k = mix_sizes(accept.sum(axis=1), loop.real_fraction, loop.proposals)
        data, mask = self.env.fresh_data(self.seeds, generation, k)
        return self.env.merge(accepted, self.env.stats(data, mask))

    def _learn(self, state: _State, pool: Arrays) -> _State:
        """Refit; a seed whose pool is too small to fit keeps its model (it learned nothing)."""
        params, ok = self.env.fit(pool)
        if not ok.all():
            params = _where(ok, params, state.params)
        return _State(params, pool if self.loop.regime == "accumulate" else None)

    # ------------------------------------------------------------ the five stages
    def _get(self, generation: int, what: str) -> Any:
        key = (generation, what)
        if key not in self._memo:
            self._memo = {k: v for k, v in self._memo.items() if k[0] == generation}
            state = self._state_at(generation)
            if what == "batch":
                value = self._propose(generation, state)
            elif what == "verdicts":
                value = self.verifier.judge_batch(self._get(generation, "batch"))
            elif what == "pool":
                value = self._curate(
                    generation, state, self._get(generation, "batch"), self._get(generation, "verdicts")
                )
            else:  # "next": the state the next generation starts from
                value = self._learn(state, self._get(generation, "pool"))
            self._memo[key] = value
        return self._memo[key]

    def propose(self, generation: int) -> None:
        self._get(generation, "batch")

    def verify(self, generation: int) -> None:
        self._get(generation, "verdicts")

    def curate(self, generation: int) -> None:
        self._get(generation, "pool")

    def learn(self, generation: int) -> None:
        self._get(generation, "next")

    def measure(self, generation: int) -> str | None:
        from ouro.cohort import is_recorded  # here: ouro.cohort imports the verifiers, which import this module

        nxt: _State = self._get(generation, "next")
        record: dict[str, Any] = {"generation": generation, "metrics": []}
        if is_recorded(generation, self.loop):
            record["metrics"] = self._metric_rows(generation)
            record["state"] = {
                "params": _to_json(nxt.params),
                "pool": _to_json(nxt.pool) if nxt.pool is not None else None,
            }
            self.store.write_record(generation, record)
        else:
            self._write_marker(generation, record)
        self._state = (generation + 1, nxt)
        self._memo = {}
        return None

    def _write_marker(self, generation: int, record: dict) -> None:
        """A record without metrics or state, not fsynced: an fsync costs milliseconds, a
        thousand of them seconds, and losing a marker (only on power loss) loses nothing:
        it holds nothing a replay does not recompute."""
        self.store.write_record(generation, record, durable=False)

    def _metric_rows(self, generation: int) -> list[list]:
        state = self._state_at(generation)
        batch: Batch = self._get(generation, "batch")
        verdicts: BatchVerdicts = self._get(generation, "verdicts")
        columns = dict(self.env.metrics(state.params))
        accept = np.asarray(verdicts.accept, dtype=bool)
        n = accept.shape[1]
        if verdicts.judged:
            columns["accept_rate"] = accept.sum(axis=1) / n
        if "good" in self.env.judgements:
            good = batch.good()
            columns["tp"] = (accept & good).sum(axis=1)
            columns["fp"] = (accept & ~good).sum(axis=1)
            columns["fn"] = (~accept & good).sum(axis=1)
            columns["tn"] = (~accept & ~good).sum(axis=1)
        if verdicts.replications is not None:
            columns["cost_replications"] = np.asarray(verdicts.replications)
        names = list(columns)
        table = np.column_stack([np.asarray(columns[k], dtype=float) for k in names]).tolist()
        return [[int(s), name, value] for s, row in zip(self.seeds.tolist(), table) for name, value in zip(names, row)]


def mix_sizes(n_accepted: np.ndarray, real_fraction: float, proposals: int) -> np.ndarray:
    """How many fresh real items ``mix`` adds to each seed's pool (as MethodCohort)."""
    k = np.where(n_accepted > 0, np.round(n_accepted * real_fraction / (1 - real_fraction)), round(real_fraction * proposals))
    return np.maximum(1, k).astype(np.int64)


def padded(rows: list[np.ndarray], sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-seed arrays of different lengths into (seeds, max, ...) with a mask."""
    width = int(max(1, sizes.max())) if len(sizes) else 1
    first = rows[0]
    out = np.zeros((len(rows), width) + first.shape[1:], dtype=first.dtype)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


__all__ = [
    "Batch",
    "BatchVerdicts",
    "ClosedFormCohort",
    "ClosedFormConfig",
    "ClosedFormEnvironment",
    "mix_sizes",
    "padded",
]
