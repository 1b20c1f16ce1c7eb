"""Verification of one seed's proposals, and the researcher-verifier dialogue.

``judge_valid`` shows the verifier only real methods: an ``InvalidProposal`` (a reply
that never validated, a call that failed) gets a reject naming its reason, and the
verifier never sees it.

``verify_with_dialogue``: when the researcher can revise (``feedback_rounds > 0``), each
proposal the verifier rejected goes back to the researcher with the verdict's rationale
and evidence; the revision is judged in turn, up to ``feedback_rounds`` times within
the generation. What is recorded is the final proposal of each slot and its final
verdict, whose cost includes every judgement of that slot (a revision does not hide
what judging its predecessors cost). A revision that fails leaves the slot as it was.
Revisions of a round run concurrently, like the first proposals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ouro.types import Feedback, ProposalBatch, Verdict, is_invalid
from ouro.verifiers.base import JudgeContext


@dataclass
class SeedVerification:
    """One seed's verified generation: final proposals and verdicts, and the dialogue's count."""

    proposals: list
    verdicts: list[Verdict]
    provenance: list[dict | None]
    revision: ProposalBatch = field(default_factory=ProposalBatch)  # what revising cost (no methods)
    rounds: int = 0  # dialogue rounds that ran (0: no rejected proposal, or no dialogue)
    revised: list[int] = field(default_factory=list)  # per slot, how many times it was revised


async def judge_valid(verifier: Any, proposals: list, context: JudgeContext) -> list[Verdict]:
    """Verdicts for every slot; the verifier sees only the valid proposals."""
    idx = [i for i, m in enumerate(proposals) if not is_invalid(m)]
    judged = await verifier.judge([proposals[i] for i in idx], context) if idx else []
    if len(judged) != len(idx):
        raise RuntimeError(f"verifier returned {len(judged)} verdicts for {len(idx)} proposals")
    out: list[Verdict] = [Verdict(accept=False, rationale=f"invalid proposal: {m.invalid}") if is_invalid(m) else None for m in proposals]  # type: ignore[misc]
    for i, verdict in zip(idx, judged):
        out[i] = verdict
    return out


async def verify_with_dialogue(
    verifier: Any,
    researcher: Any,
    proposals: list,
    provenance: list[dict | None] | None,
    context_for: Callable[[int], JudgeContext],
    rng_for: Callable[[int], np.random.Generator],
    rounds: int,
) -> SeedVerification:
    """Judge, then let the researcher revise what was rejected, up to ``rounds`` times.

    ``context_for(r)`` and ``rng_for(r)`` give round r its own random streams (round 0 is
    the first judgement), so a re-run after a crash asks and judges exactly as before.
    """
    proposals = list(proposals)
    provenance = list(provenance) if provenance else [None] * len(proposals)
    verdicts = await judge_valid(verifier, proposals, context_for(0))
    outcome = SeedVerification(proposals, verdicts, provenance, revised=[0] * len(proposals))
    given_up: set[int] = set()
    for r in range(1, rounds + 1):
        slots = [i for i, v in enumerate(verdicts) if v.accept is False and not is_invalid(proposals[i]) and i not in given_up]
        if not slots:
            break
        outcome.rounds = r
        rngs = rng_for(r).spawn(len(slots))
        asks = [
            researcher.apropose(
                1, rng, feedback=Feedback(proposal=proposals[i], rationale=verdicts[i].rationale, evidence=verdicts[i].evidence)
            )
            for i, rng in zip(slots, rngs)
        ]
        batches: list[ProposalBatch] = list(await asyncio.gather(*asks))
        fresh: list[tuple[int, Any, dict | None]] = []
        for i, batch in zip(slots, batches):
            outcome.revision += ProposalBatch(
                cost=batch.cost,
                requests=batch.requests,
                failed=batch.failed,
                failed_calls=batch.failed_calls,
                last_error=batch.last_error,
            )
            if batch.methods and not is_invalid(batch.methods[0]):
                fresh.append((i, batch.methods[0], batch.provenance[0] if batch.provenance else None))
            else:
                given_up.add(i)  # the revision failed: the slot keeps its rejected proposal
        judged = await judge_valid(verifier, [m for _, m, _ in fresh], context_for(r))
        for (i, method, origin), verdict in zip(fresh, judged):
            proposals[i] = method
            verdicts[i] = verdict.model_copy(update={"cost": verdicts[i].cost + verdict.cost})
            provenance[i] = {**origin, "revision": r} if origin else {"revision": r}
            outcome.revised[i] = r
    return outcome
