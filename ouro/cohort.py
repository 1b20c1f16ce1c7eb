"""A cohort is one arm's seeds moving through the loop together.

The graph's nodes call a cohort's five stages for one generation at a time. A stage
reads the previous stage's output from memory, or, in a process that resumed the run,
from the run directory; it never depends on anything held only by a process that died.
Environments whose proposals are methods judged one by one use ``MethodCohort``; an
environment with a vectorized loop of its own supplies its own cohort class through
``EnvironmentConfig.cohort``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ouro.rng import stream
from ouro.store import ArmStore
from ouro.types import Cost, Verdict
from ouro.verifiers.base import JudgeContext

STAGES = ("propose", "verify", "curate", "learn", "measure")
COST_METRICS = ("replications", "tokens_in", "tokens_out", "usd", "human_seconds", "wall_seconds", "calls", "retries")


class Cohort(Protocol):
    """The stages the graph drives. ``measure`` returns a reason to stop early, or None."""

    arm: str

    def propose(self, generation: int) -> None: ...

    def verify(self, generation: int) -> None: ...

    def curate(self, generation: int) -> None: ...

    def learn(self, generation: int) -> None: ...

    def measure(self, generation: int) -> str | None: ...


def build_cohort(config, arm_name: str, run_dir: Path) -> Cohort:
    builder = getattr(config.environment, "cohort", None)
    if callable(builder):
        return builder(config, arm_name, run_dir)
    return MethodCohort(config, arm_name, run_dir)


def is_recorded(generation: int, loop) -> bool:
    return generation % loop.record_every == 0 or generation == loop.generations - 1


class MethodCohort:
    def __init__(self, config, arm_name: str, run_dir: Path) -> None:
        self.config = config
        self.arm = arm_name
        arm = next(a for a in config.arms if a.name == arm_name)
        self.env = config.environment.build()
        self.verifier = arm.verifier.build(self.env)
        self.seeds = config.seed_list
        self.loop = config.loop
        self.store = ArmStore(run_dir, arm_name)
        self.researchers = {s: config.researcher.build(self.env) for s in self.seeds}
        for s, r in self.researchers.items():  # researchers with artifacts (adapters) learn where they go
            getattr(r, "bind", lambda *_: None)(run_dir, arm_name, s)
        self._state_generation: int | None = None  # generation whose starting state the researchers hold
        self._memory: dict[tuple[int, str], Any] = {}

    # ------------------------------------------------------------ stage plumbing
    def _put(self, generation: int, stage: str, value: Any) -> None:
        self._memory = {k: v for k, v in self._memory.items() if k[0] == generation}
        self._memory[(generation, stage)] = value
        self.store.put_stage(generation, stage, value)

    def _get(self, generation: int, stage: str) -> Any:
        if (generation, stage) in self._memory:
            return self._memory[(generation, stage)]
        value = self.store.get_stage(generation, stage)
        if value is None:
            raise RuntimeError(f"arm {self.arm}: generation {generation} has no '{stage}' output to continue from")
        self._memory[(generation, stage)] = value
        return value

    def _previous_pools(self, generation: int) -> dict[int, list]:
        """The pool each seed learned from last: the real data before generation 0."""
        if generation == 0:
            return {s: self.env.real_data(stream(s, 0, "real")) for s in self.seeds}
        rec = self.store.read_record(generation - 1)
        return {s: [self.env.parse_method(m) for m in rec["pools"][str(s)]] for s in self.seeds}

    def _ensure_state(self, generation: int) -> None:
        """Put every researcher in the state it has at the start of ``generation``."""
        if self._state_generation == generation:
            return
        if generation == 0:
            for s, pool in self._previous_pools(0).items():
                self.researchers[s].learn(pool)
        else:
            rec = self.store.read_record(generation - 1)
            for s in self.seeds:
                self.researchers[s].load_state(rec["researchers"][str(s)])
        self._state_generation = generation

    # ------------------------------------------------------------ the five stages
    def propose(self, generation: int) -> None:
        self._ensure_state(generation)
        n = self.loop.proposals
        proposals = {s: self.researchers[s].propose(n, stream(s, generation, "propose")) for s in self.seeds}
        self._put(generation, "proposals", proposals)

    def verify(self, generation: int) -> None:
        self._ensure_state(generation)
        proposals = self._get(generation, "proposals")
        pools = self._previous_pools(generation)

        async def judge_all() -> list[list[Verdict]]:
            async def one(s: int) -> list[Verdict]:
                ctx = JudgeContext(
                    env=self.env,
                    seed=s,
                    generation=generation,
                    rng=stream(s, generation, "verify"),
                    researcher=self.researchers[s],
                    pool=pools[s],
                    arm=self.arm,
                )
                start = time.perf_counter()
                verdicts = await self.verifier.judge(proposals[s], ctx)
                if len(verdicts) != len(proposals[s]):
                    raise RuntimeError(f"verifier returned {len(verdicts)} verdicts for {len(proposals[s])} proposals")
                share = (time.perf_counter() - start) / max(1, len(verdicts))
                return [
                    v if v.cost.wall_seconds else v.model_copy(update={"cost": v.cost + Cost(wall_seconds=share)})
                    for v in verdicts
                ]

            return await asyncio.gather(*(one(s) for s in self.seeds))

        results = asyncio.run(judge_all())
        self._put(generation, "verdicts", dict(zip(self.seeds, results)))

    def curate(self, generation: int) -> None:
        proposals = self._get(generation, "proposals")
        verdicts = self._get(generation, "verdicts")
        previous = self._previous_pools(generation)
        loop = self.loop
        pools = {}
        for s in self.seeds:
            accepted = [m for m, v in zip(proposals[s], verdicts[s]) if v.accept is True]
            if loop.regime == "replace":
                pools[s] = accepted
            elif loop.regime == "accumulate":
                pools[s] = previous[s] + accepted
            else:  # mix: real_fraction of the pool drawn fresh from the real data
                real = self.env.real_data(stream(s, generation, "real"))
                k = round(len(accepted) * loop.real_fraction / (1 - loop.real_fraction)) if accepted else round(
                    loop.real_fraction * loop.proposals
                )
                rng = stream(s, generation, "mix")
                pools[s] = accepted + [real[i] for i in rng.integers(0, len(real), size=max(1, k))]
        self._put(generation, "pools", pools)

    def learn(self, generation: int) -> None:
        self._ensure_state(generation)
        pools = self._get(generation, "pools")
        for s in self.seeds:
            self.researchers[s].learn(pools[s])
        self._state_generation = generation + 1
        self._put(generation, "states", {s: self.researchers[s].state() for s in self.seeds})

    def measure(self, generation: int) -> str | None:
        proposals = self._get(generation, "proposals")
        verdicts = self._get(generation, "verdicts")
        pools = self._get(generation, "pools")
        states = self._get(generation, "states")
        recorded = is_recorded(generation, self.loop)
        rows, lines = [], []
        for s in self.seeds:
            methods, vs = proposals[s], verdicts[s]
            quality = self.env.oracle(methods)
            good = self.env.is_good(quality)
            if recorded:
                rows += [(s, k, v) for k, v in self._metrics(methods, vs, quality, good).items()]
            for i, (m, v, q, gd) in enumerate(zip(methods, vs, quality, good)):
                lines.append(
                    {
                        "arm": self.arm,
                        "seed": s,
                        "generation": generation,
                        "index": i,
                        "method": m.model_dump(mode="json"),
                        "key": self.env.method_key(m),
                        "accept": v.accept,
                        "score": v.score,
                        "oracle_quality": float(q),
                        "good": bool(gd),
                        "cost": v.cost.model_dump(exclude_defaults=True),
                        "rationale": v.rationale,
                    }
                )
        record = {
            "generation": generation,
            "researchers": {str(s): states[s] for s in self.seeds},
            "pools": {str(s): [m.model_dump(mode="json") for m in pools[s]] for s in self.seeds},
            "metrics": rows,
            "verdicts": lines,
        }
        self.store.write_record(generation, record)
        return None

    def _metrics(self, methods: list, verdicts: list[Verdict], quality: np.ndarray, good: np.ndarray) -> dict[str, float]:
        accept = np.array([v.accept is True for v in verdicts], dtype=bool)  # bool even when a batch is empty
        scored = np.array([v.accept is not None for v in verdicts], dtype=bool)
        cost = Cost.total(v.cost for v in verdicts)
        out: dict[str, float] = {
            "quality_mean": float(quality.mean()) if quality.size else float("nan"),
            "quality_best": float(quality.max()) if quality.size else float("nan"),
            "accept_rate": float(accept.sum() / scored.sum()) if scored.any() else float("nan"),
            "unscored": float((~scored).sum()),
        }
        out.update(self.env.diversity(methods))
        out.update(
            {
                "tp": float((accept & good).sum()),
                "fp": float((accept & ~good & scored).sum()),
                "fn": float((~accept & good & scored).sum()),
                "tn": float((~accept & ~good & scored).sum()),
            }
        )
        out.update({f"cost_{k}": float(getattr(cost, k)) for k in COST_METRICS})
        return out
