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
import functools
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ouro import interrupt
from ouro.dialogue import judge_valid, verify_with_dialogue
from ouro.journal import CallJournal
from ouro.ledger import ArmLedger, redone_on_resume
from ouro.rng import stream
from ouro.store import ArmStore, json_lines
from ouro.types import Cost, ProposalBatch, is_invalid
from ouro.verifiers.base import JudgeContext

STAGES = ("propose", "verify", "curate", "learn", "measure")
# Costs written to metrics.csv: deterministic quantities only, so that the same config and
# seeds give the same bytes. Wall time goes to timings.csv instead.
COST_METRICS = ("replications", "tokens_in", "tokens_out", "usd", "human_seconds", "calls", "retries")


class Cohort(Protocol):
    """The stages the graph drives. ``measure`` returns a reason to stop early, or None."""

    arm: str

    def propose(self, generation: int) -> None: ...

    def verify(self, generation: int) -> None: ...

    def curate(self, generation: int) -> None: ...

    def learn(self, generation: int) -> None: ...

    def measure(self, generation: int) -> str | None: ...


def _mean_and_best(quality: np.ndarray, nans: int) -> tuple[float, float]:
    """Mean and maximum of the qualities that are not NaN (NaN, NaN when there is none
    finite). ``nanmean`` costs several times ``mean``, and most seeds have no NaN."""
    if not np.isfinite(quality).any():
        return float("nan"), float("nan")
    if nans:
        return float(np.nanmean(quality)), float(np.nanmax(quality))
    return float(quality.mean()), float(quality.max())


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
        self._asks_human = arm.verifier.asks_human
        self.seeds = config.seed_list
        self.loop = config.loop
        self.store = ArmStore(run_dir, arm_name)
        self.researchers = {s: config.researcher.build(self.env) for s in self.seeds}
        for s, r in self.researchers.items():  # researchers with artifacts (adapters) learn where they go
            getattr(r, "bind", lambda *_: None)(run_dir, arm_name, s)
        first = self.researchers[self.seeds[0]]
        # model-backed researchers propose concurrently (``apropose``) and may revise rejects
        self._async_propose = hasattr(first, "apropose")
        self._rounds = int(getattr(first, "feedback_rounds", 0) or 0) if self._async_propose else 0
        self.ledger = ArmLedger(config, arm_name, self.store, self.verifier, first)
        self._state_generation: int | None = None  # generation whose starting state the researchers hold
        self._memory: dict[tuple[int, str], Any] = {}
        self._timings: dict[tuple[int, str], float] = {}
        self._journals: dict[int, CallJournal] = {}

    def _run_async(self, coroutine):
        """Run a coroutine on this cohort's own event loop, kept for its whole life, so that
        async clients (model providers) keep their connections from one generation to the next.
        Model calls and a person's questions are cancelled when the run is asked to stop."""
        if getattr(self, "_loop", None) is None:
            self._loop = asyncio.new_event_loop()
        if self._costly or self._asks_human:
            coroutine = interrupt.cancellable(coroutine)
        return self._loop.run_until_complete(coroutine)

    @contextmanager
    def _timed(self, generation: int, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._timings[(generation, stage)] = time.perf_counter() - start

    def _timing_rows(self, generation: int) -> list:
        return [[stage, secs] for (g, stage), secs in sorted(self._timings.items()) if g == generation]

    # ------------------------------------------------------------ stage plumbing
    # Every stage is deterministic given the random streams, so a resumed process can
    # recompute what a dead one held in memory. Work that cost money or a person's time
    # (a component with ``costly = True``: model calls, human answers) is also saved to the
    # run directory as soon as it exists, and read back instead of being paid for twice.
    _PRODUCER = {
        "batches": "propose",
        "proposals": "propose",
        "dialogue": "verify",
        "verdicts": "verify",
        "pools": "curate",
        "states": "learn",
    }
    # "batches" (what proposing cost) is saved before "proposals", and "dialogue" (revised
    # proposals) before "verdicts": the later file's presence means the stage finished.
    # Within a stage, each model call is saved the moment it ends, in the generation's call
    # journal (ouro/journal.py): a process killed mid-stage loses no answer it was given.
    _PERSISTED = ("batches", "proposals", "dialogue", "verdicts")

    @functools.cached_property
    def _costly(self) -> bool:
        return bool(getattr(self.verifier, "costly", False) or getattr(self.researchers[self.seeds[0]], "costly", False))

    def _journal(self, generation: int) -> CallJournal | None:
        """The generation's call journal, for arms whose components make model calls."""
        if not self._costly:
            return None
        journal = self._journals.get(generation)
        if journal is None:
            self._close_journals()
            journal = self._journals[generation] = CallJournal(self.store.calls_path(generation))
        return journal

    def _close_journals(self) -> None:
        for journal in self._journals.values():
            journal.close()
        self._journals.clear()

    async def _scoped(self, generation: int, scope: str, work):
        """Await ``work`` (a coroutine) with its model calls journaled under ``scope``; the
        tasks it starts inherit the scope."""
        journal = self._journal(generation)
        if journal is None:
            return await work
        with journal.scope(scope):
            return await work

    def _put(self, generation: int, stage: str, value: Any) -> None:
        # keep this generation's outputs and the previous pools (the next generation's context)
        if any(g != generation for g, _ in self._memory):
            self._memory = {k: v for k, v in self._memory.items() if k[0] == generation or k == (generation - 1, "pools")}
        self._memory[(generation, stage)] = value
        if stage in self._PERSISTED and self._costly:
            self.store.put_stage(generation, stage, value)

    def _get(self, generation: int, stage: str) -> Any:
        if (generation, stage) not in self._memory:
            saved = self.store.get_stage(generation, stage) if stage in self._PERSISTED else None
            if saved is not None:
                self._memory[(generation, stage)] = saved
            else:
                getattr(self, self._PRODUCER[stage])(generation)
        return self._memory[(generation, stage)]

    def _previous_pools(self, generation: int) -> dict[int, list]:
        """The pool each seed learned from last: the real data before generation 0."""
        cached = self._memory.get((generation - 1, "pools"))
        if cached is not None:
            return cached
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

    def _final(self, generation: int) -> dict[int, list]:
        """The proposals as they stand after verification: revisions replace what they revised."""
        if self._rounds:
            return {s: v.proposals for s, v in self._get(generation, "dialogue").items()}
        return self._get(generation, "proposals")

    def close(self) -> None:
        """Close the call journal, the model clients opened on this cohort's event loop, then the loop."""
        self._close_journals()
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        holders = [self.verifier, *self.researchers.values()]
        providers = {id(p): p for p in (getattr(h, "provider", None) for h in holders) if hasattr(p, "aclose")}

        async def close_all() -> None:
            # calls left behind by an interruption end before their clients close
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            await asyncio.gather(*(p.aclose() for p in providers.values()))

        loop.run_until_complete(close_all())
        loop.close()
        self._loop = None

    # ------------------------------------------------------------ the five stages
    def propose(self, generation: int) -> None:
        if self.store.has_record(generation):
            return  # finished before a crash: its record is the truth
        if self.store.has_stage(generation, "proposals"):
            return  # paid for before a crash: read back when needed
        with self._timed(generation, "propose"):
            self._ensure_state(generation)
            n = self.loop.proposals
            if self._async_propose:

                async def propose_all() -> list[ProposalBatch]:
                    asks = (
                        self._scoped(generation, f"propose/s{s}", self.researchers[s].apropose(n, stream(s, generation, "propose")))
                        for s in self.seeds
                    )
                    return await asyncio.gather(*asks)

                batches = dict(zip(self.seeds, self._run_async(propose_all())))
                self._put(generation, "batches", batches)
                proposals = {s: b.methods for s, b in batches.items()}
            else:
                proposals = {s: self.researchers[s].propose(n, stream(s, generation, "propose")) for s in self.seeds}
            self._put(generation, "proposals", proposals)

    def verify(self, generation: int) -> None:
        if self.store.has_record(generation):
            return  # finished before a crash: its record is the truth
        if self.store.has_stage(generation, "verdicts"):
            return
        with self._timed(generation, "verify"):
            self._ensure_state(generation)
            proposals = self._get(generation, "proposals")
            batches = self._get(generation, "batches") if self._async_propose else {}
            pools = self._previous_pools(generation)

            def context(s: int, round_: int) -> JudgeContext:
                return JudgeContext(
                    env=self.env,
                    seed=s,
                    generation=generation,
                    rng=stream(s, generation, "verify" if round_ == 0 else f"verify:revision{round_}"),
                    researcher=self.researchers[s],
                    pool=pools[s],
                    arm=self.arm,
                )

            async def judge_all() -> list:
                async def one(s: int):
                    return await self._scoped(generation, f"verify/s{s}", judge(s))

                async def judge(s: int):
                    if self._rounds:  # the researcher-verifier dialogue
                        return await verify_with_dialogue(
                            self.verifier,
                            self.researchers[s],
                            proposals[s],
                            batches[s].provenance,
                            lambda r: context(s, r),
                            lambda r: stream(s, generation, f"revise:{r}"),
                            self._rounds,
                        )
                    return await judge_valid(self.verifier, proposals[s], context(s, 0))

                if self._asks_human:  # a person's questions come seed by seed, in a fixed order (verifiers/human.py)
                    return [await one(s) for s in self.seeds]
                return await asyncio.gather(*(one(s) for s in self.seeds))

            results = dict(zip(self.seeds, self._run_async(judge_all())))
            if self._rounds:
                self._put(generation, "dialogue", results)
                results = {s: v.verdicts for s, v in results.items()}
            self._put(generation, "verdicts", results)

    def curate(self, generation: int) -> None:
        if self.store.has_record(generation):
            return  # finished before a crash: its record is the truth
        with self._timed(generation, "curate"):
            proposals = self._final(generation)
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
        if self.store.has_record(generation):
            return  # finished before a crash: its record is the truth
        with self._timed(generation, "learn"):
            self._ensure_state(generation)
            pools = self._get(generation, "pools")
            for s in self.seeds:
                self.researchers[s].learn(pools[s])
            self._state_generation = generation + 1
            self._put(generation, "states", {s: self.researchers[s].state() for s in self.seeds})

    def measure(self, generation: int) -> str | None:
        if self.store.has_record(generation):
            return self.store.read_record(generation).get("stopped") or self._budget_stop(generation)
        start = time.perf_counter()
        proposals = self._final(generation)
        verdicts = self._get(generation, "verdicts")
        pools = self._get(generation, "pools")
        states = self._get(generation, "states")
        batches = self._get(generation, "batches") if self._async_propose else {}
        dialogue = self._get(generation, "dialogue") if self._rounds else {}
        truth = self._oracle_truth(proposals)
        rows: list = []
        if is_recorded(generation, self.loop):
            rows = self._metric_rows(generation, proposals, verdicts, truth, batches, dialogue)
        lines = []
        for s, (valid, quality, good) in zip(self.seeds, truth):
            lines += self._verdict_lines(generation, s, proposals[s], verdicts[s], valid, quality, good, batches, dialogue)
        spend, spend_to_date = self.ledger.spend(generation, batches, dialogue, verdicts)
        stopped = self.ledger.failure_stop(batches, dialogue, verdicts)
        record = {
            "generation": generation,
            "researchers": {str(s): states[s] for s in self.seeds},
            "pools": {str(s): pools[s] for s in self.seeds},  # methods are written as their fields
            "metrics": rows,
            "spend": spend,
            "spend_to_date": spend_to_date,
        }
        if stopped:
            record["stopped"] = stopped
        self._timings[(generation, "measure")] = time.perf_counter() - start
        record["timings"] = self._timing_rows(generation)
        self._close_journals()  # every call of the generation has ended
        self.store.write_record(generation, record, json_lines(lines), keep_calls=redone_on_resume(stopped))
        return stopped or self._budget_stop(generation)

    def _budget_stop(self, generation: int) -> str | None:
        """The cost limit stops an arm only with generations left: one that has just recorded
        its last generation finished, and resuming it would do nothing."""
        return self.ledger.budget_stop() if generation + 1 < self.loop.generations else None

    def _verdict_lines(self, generation: int, seed: int, methods: list, verdicts: list, valid, quality, good, batches, dialogue) -> list[dict]:
        """One seed's lines of verdicts.jsonl: every slot, with its oracle quality."""
        origins = dialogue[seed].provenance if seed in dialogue else batches[seed].provenance if seed in batches else None
        method_key, arm, costly = self.env.method_key, self.arm, self._costly
        lines = []
        # plain Python values: numpy scalars cost microseconds apiece, for every line
        for i, (m, v, ok, q, gd) in enumerate(zip(methods, verdicts, valid.tolist(), quality.tolist(), good.tolist())):
            line = {
                "arm": arm,
                "seed": seed,
                "generation": generation,
                "index": i,
                "method": m,
                "key": method_key(m) if ok else "invalid",
                "accept": v.accept,
                "score": v.score,
                "oracle_quality": q if ok and q == q else None,  # q != q: NaN
                "good": gd,
                "cost": {k: x for k, x in v.cost.__dict__.items() if x},
                "rationale": v.rationale,
            }
            if v.accept is True and costly:
                line["provenance"] = self.ledger.provenance(origins[i] if origins else None)
            lines.append(line)
        return lines

    def _oracle_truth(self, proposals: dict[int, list]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per seed: which slots hold a real method, their oracle quality (NaN where none, or
        where the method could not be evaluated) and whether they are truly good."""
        out = []
        for s in self.seeds:
            methods = proposals[s]
            valid = np.array([not is_invalid(m) for m in methods], dtype=bool)
            quality = np.full(len(methods), np.nan)
            good = np.zeros(len(methods), dtype=bool)
            if valid.any():
                quality[valid] = self.env.oracle([m for m, ok in zip(methods, valid) if ok])
                good[valid] = self.env.is_good(quality[valid])
            out.append((valid, quality, good))
        return out

    def _metric_rows(self, generation: int, proposals: dict, verdicts: dict, truth: list, batches: dict, dialogue: dict) -> list:
        """The generation's metric rows, seed by seed in a fixed order.

        Invalid slots (``InvalidProposal``) are left out of every metric, as they are never
        judged. A seed may have no slot at all (a researcher whose every output was
        unusable): its means and its diversity are NaN (never 0), its counts 0.
        """
        verifier_metrics = getattr(self.verifier, "metrics", None)  # e.g. an audit's confusion counts
        rows = []
        for s, (valid, quality, good) in zip(self.seeds, truth):
            vs = verdicts[s]
            # plain Python over the seed's few dozen slots: a numpy call costs more than the loop
            ok = valid.tolist()
            tp = fp = fn = tn = accepted = scored = 0
            for v, is_valid, is_good in zip(vs, ok, good.tolist()):
                if not is_valid or v.accept is None:
                    continue
                scored += 1
                if v.accept is True:
                    accepted += 1
                    tp, fp = tp + is_good, fp + (not is_good)
                else:
                    fn, tn = fn + is_good, tn + (not is_good)
            judged = quality[valid]
            unevaluable = int(np.isnan(judged).sum())
            mean, best = _mean_and_best(judged, unevaluable)
            out = {
                # methods that could not be evaluated (quality NaN) are counted apart, not averaged
                "quality_mean": mean,
                "quality_best": best,
                "unevaluable": float(unevaluable),  # e.g. code that failed in the sandbox
                "accept_rate": accepted / scored if scored else float("nan"),
                "unscored": float(sum(ok) - scored),
            }
            out.update(self.env.diversity([m for m, keep in zip(proposals[s], ok) if keep]))
            out.update({"tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn)})
            spent = Cost.total(v.cost for v, keep in zip(vs, ok) if keep)
            out.update({f"cost_{k}": float(getattr(spent, k)) for k in COST_METRICS})
            if verifier_metrics is not None:
                out.update(verifier_metrics([v for v, keep in zip(vs, ok) if keep]))
            rows += [(s, k, v) for k, v in out.items()]
            if self._async_propose:
                rows += [(s, k, v) for k, v in self.ledger.researcher_metrics(batches[s], dialogue.get(s), valid).items()]
            if s in dialogue:  # what the researcher proposed before any revision, for paired starts
                first = [m for m in self._get(generation, "proposals")[s] if not is_invalid(m)]
                rows.append((s, "quality_mean_first", float(np.mean(self.env.oracle(first))) if first else float("nan")))
        return rows
