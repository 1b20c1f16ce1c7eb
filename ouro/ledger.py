"""The information ledger: what each generation spent, the run's budget, and failed calls.

Every generation record (``arms/ARM/gen-N.json``) carries ``spend``, what that
generation cost split into ``verifier`` (the verdicts' costs) and ``researcher``
(proposing and revising), and ``spend_to_date``, the arm's running total. Records are
written atomically and read back on resume, so the ledger survives crashes and is
never counted twice. The run's spend is the sum over arms of their latest running
totals: that is what ``cost_limit_usd`` is checked against at the end of each
generation, and before an arm starts one.

Three reasons to stop an arm early live here, worded once, and ``ouro resume`` acts on
each: the budget (the generation finished; raise the limit with ``--set
cost_limit_usd=...`` and the arm goes on with the next one); a generation in which more
than ``max_failed_share`` of a component's calls failed for good (the endpoint never
answered); and a generation in which none of a component's calls gave output that
validated (the endpoint answered; the model's output did not fit). After either of the
last two, resume *redoes* the generation that stopped: its record is set aside, and only
the calls without a usable answer are asked again, the call journal (``ouro.journal``)
giving back the rest as paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ouro.store import ArmStore
from ouro.types import JUDGE_FAILED, JUDGE_INVALID, Cost, ProposalBatch, Verdict

BUDGET_STOP = "cost limit reached"
FAILURE_STOP = "too many failed calls"
INVALID_STOP = "model output never validated"
RESEARCHER_COST_METRICS = ("tokens_in", "tokens_out", "usd", "calls", "retries")


def cost_dict(cost: Cost) -> dict[str, float]:
    return cost.model_dump()


def add_spend(a: dict | None, b: dict) -> dict:
    """Running total of two ``{"verifier": cost, "researcher": cost}`` dicts."""
    a = a or {}
    return {part: cost_dict(Cost(**a.get(part, {})) + Cost(**b.get(part, {}))) for part in ("verifier", "researcher")}


def generation_spend(verdicts: Iterable[Verdict], researcher: Iterable[ProposalBatch]) -> dict:
    return {
        "verifier": cost_dict(Cost.total(v.cost for v in verdicts)),
        "researcher": cost_dict(Cost.total(b.cost for b in researcher)),
    }


def total_usd(spend: dict | None) -> float:
    return sum(float(part.get("usd", 0.0)) for part in (spend or {}).values())


def researcher_metrics(proposed: ProposalBatch, revision: ProposalBatch, invalid: int, rounds: int, revised: int) -> dict[str, float]:
    """Per seed and generation: what proposing and revising cost, and how the calls went."""
    cost = proposed.cost + revision.cost
    out = {f"researcher_{k}": float(getattr(cost, k)) for k in RESEARCHER_COST_METRICS}
    out.update(
        {
            "researcher_requests": float(proposed.requests + revision.requests),
            "researcher_failed": float(proposed.failed + revision.failed),
            "invalid": float(invalid),
            "feedback_rounds": float(rounds),
            "revised": float(revised),
        }
    )
    return out


# ------------------------------------------------------------------ the budget


def latest_spend(run_dir: Path, arm: str) -> dict | None:
    store = ArmStore(Path(run_dir), arm)
    finished = store.finished_generations()
    return store.read_record(finished[-1]).get("spend_to_date") if finished else None


def run_spend_usd(run_dir: Path, arms: Iterable[str]) -> float:
    """Dollars spent by every arm of the run so far (finished generations)."""
    return sum(total_usd(latest_spend(run_dir, a)) for a in arms)


def budget_stop(run_dir: Path, arms: Iterable[str], limit: float | None) -> str | None:
    """The reason to stop when the run's spend has reached ``limit``; None otherwise."""
    if limit is None:
        return None
    spent = run_spend_usd(run_dir, arms)
    if spent < limit:
        return None
    return (
        f"{BUDGET_STOP}: the run spent ${spent:.4f} of cost_limit_usd ${limit:g}; continue with: "
        f"ouro resume {run_dir} --set cost_limit_usd=HIGHER"
    )


# ------------------------------------------------------------------ failed calls


def failure_stop(
    component: str, failed: int, total: int, limit: float | None, run_dir: Path, last_error: str = ""
) -> str | None:
    """The reason to stop when more than ``limit`` of a component's calls failed for good:
    the endpoint never answered them (retries and time budget spent, or an error not worth
    retrying). Calls whose output never validated are not failed calls (see
    :func:`invalid_stop`)."""
    if limit is None or total == 0 or failed / total <= limit:
        return None
    why = f"; last error: {last_error}" if last_error else ""
    return (
        f"{FAILURE_STOP}: {failed} of {total} {component} calls failed for good (the endpoint never answered), "
        f"more than max_failed_share {limit:g}{why}. Fix the endpoint, then redo this generation with: "
        f"ouro resume {run_dir} (answers already received are reused, not paid for again)"
    )


def invalid_stop(component: str, invalid: int, total: int, valid: int, run_dir: Path, last_error: str = "") -> str | None:
    """The reason to stop when none of a component's calls gave output that validated.

    Invalid output does not count towards the failure stop, and a share of it never stops
    a run. The endpoint answered, was paid, and what the model said after its re-asks
    (``validation_retries``) is an outcome of the experiment, not an outage: a researcher
    whose proposals degrade into text that no longer parses is collapsing, and
    ``invalid`` (researcher) and ``unscored`` (judge) measure it. Stopping at
    ``max_failed_share`` would cut off the very generations that show it, and "fix the
    endpoint" would send the user after a server that works.

    Only a generation in which *nothing* validated stops the arm (``valid == 0``): the
    loop then has nothing to learn from (an empty pool leaves the researcher as it was),
    so every further generation would repeat this one at full price. That is nearly
    always the set-up (a server that ignores the schema, a model too small to follow
    it), so the reason names the model and the schema, not the endpoint. ``ouro resume``
    redoes the generation and asks those calls again, for after the model or server has
    been fixed.
    """
    if total == 0 or valid or not invalid:
        return None
    why = f"; last: {last_error}" if last_error else ""
    return (
        f"{INVALID_STOP}: none of {total} {component} calls gave usable output; in {invalid} of them the model "
        f"answered, but its output never fitted the schema, re-asks included{why}. The endpoint works: check "
        f"that the model can follow the schema (for vLLM, structured_mode and the server's structured-output "
        f"backend), then redo this generation with: ouro resume {run_dir}"
    )


def resumable(reason: str | None) -> bool:
    """Whether ``ouro resume`` may lift this stop (it re-checks the budget first)."""
    return bool(reason) and reason.startswith((BUDGET_STOP, FAILURE_STOP, INVALID_STOP))


def redone_on_resume(reason: str | None) -> bool:
    """Whether ``ouro resume`` redoes the generation that stopped for this reason (its
    calls failed, or none validated) rather than going on with the next one."""
    return bool(reason) and reason.startswith((FAILURE_STOP, INVALID_STOP))


def verifier_failures(verdicts: Iterable[Verdict]) -> tuple[int, int, str]:
    """(failed calls, judged, last reason) over verdicts that came from calls."""
    judged = [v for v in verdicts if v.cost.calls > 0]
    failed = [v for v in judged if v.accept is None and v.rationale.startswith(JUDGE_FAILED)]
    return len(failed), len(judged), failed[-1].rationale if failed else ""


def verifier_invalid(verdicts: Iterable[Verdict]) -> tuple[int, int, int, str]:
    """(invalid outputs, judged, scored, last reason) over verdicts that came from calls."""
    judged = [v for v in verdicts if v.cost.calls > 0]
    invalid = [v for v in judged if v.accept is None and v.rationale.startswith(JUDGE_INVALID)]
    scored = sum(1 for v in judged if v.accept is not None)
    return len(invalid), len(judged), scored, invalid[-1].rationale if invalid else ""


def spend_summary(spend: dict[str, Any] | None) -> dict[str, Any]:
    """The ledger block of an arm in summary.json: verifier, researcher, and totals."""
    spend = spend or {}
    verifier, researcher = Cost(**spend.get("verifier", {})), Cost(**spend.get("researcher", {}))
    both = verifier + researcher
    return {
        "verifier": cost_dict(verifier),
        "researcher": cost_dict(researcher),
        "tokens_in": both.tokens_in,
        "tokens_out": both.tokens_out,
        "usd": both.usd,
        "calls": both.calls,
        "retries": both.retries,
    }


# ------------------------------------------------------------------ one arm's books


class ArmLedger:
    """The cohort's bookkeeping for one arm: spend, stop reasons, provenance, researcher metrics.

    It holds no state a resumed process could not rebuild: the running spend of the
    previous generation is read back from its record when not in memory.
    """

    def __init__(self, config: Any, arm: str, store: Any, verifier: Any, researcher: Any) -> None:
        self.config = config
        self.arm = arm
        self.store = store
        self.verifier = verifier
        self.researcher = researcher
        self._to_date: dict[int, dict] = {}

    def spend(self, generation: int, batches: dict, dialogue: dict, verdicts: dict) -> tuple[dict, dict]:
        """This generation's spend, and the arm's running total including it."""
        spend = generation_spend(
            (v for vs in verdicts.values() for v in vs),
            [*batches.values(), *(d.revision for d in dialogue.values())],
        )
        self._to_date[generation] = add_spend(self._before(generation), spend)
        return spend, self._to_date[generation]

    def _before(self, generation: int) -> dict | None:
        if generation == 0:
            return None
        if generation - 1 not in self._to_date:
            self._to_date[generation - 1] = self.store.read_record(generation - 1).get("spend_to_date")
        return self._to_date[generation - 1]

    def budget_stop(self) -> str | None:
        """Checked after the generation's record is written, so that its spend counts."""
        arms = [a.name for a in self.config.arms]
        return budget_stop(self.store.run_dir, arms, self.config.cost_limit_usd)

    def failure_stop(self, batches: dict, dialogue: dict, verdicts: dict) -> str | None:
        """Stop when more than a component's ``max_failed_share`` of its calls failed for
        good, or when none of its calls gave output that validated (``invalid_stop``)."""
        run_dir = self.store.run_dir
        if batches:
            parts = [*batches.values(), *(d.revision for d in dialogue.values())]
            last = next((b.last_error for b in reversed(parts) if b.last_error), "")
            requests, failed = sum(b.requests for b in parts), sum(b.failed for b in parts)
            failed_calls = sum(b.failed_calls for b in parts)
            reason = failure_stop("researcher", failed_calls, requests, self.researcher.max_failed_share, run_dir, last)
            reason = reason or invalid_stop("researcher", failed - failed_calls, requests, requests - failed, run_dir, last)
            if reason:
                return reason
        limit = getattr(self.verifier, "max_failed_share", None)
        if limit is None:
            return None
        judged_verdicts = [v for vs in verdicts.values() for v in vs]
        failed, judged, last = verifier_failures(judged_verdicts)
        reason = failure_stop("judge", failed, judged, limit, run_dir, last)
        if reason:
            return reason
        invalid, judged, scored, last = verifier_invalid(judged_verdicts)
        return invalid_stop("judge", invalid, judged, scored, run_dir, last)

    def provenance(self, origin: dict | None) -> dict:
        """Where an accepted proposal came from, and who accepted it."""
        describe = getattr(self.verifier, "describe", None)
        arm = next(a for a in self.config.arms if a.name == self.arm)
        verifier = describe() if callable(describe) else {"kind": arm.verifier.kind}
        return {"researcher": self.config.researcher.kind, **(origin or {}), "verifier": {"arm": self.arm, **verifier}}

    def researcher_metrics(self, batch: ProposalBatch, dialogue: Any, valid: np.ndarray) -> dict[str, float]:
        revision = dialogue.revision if dialogue is not None else ProposalBatch()
        rounds = dialogue.rounds if dialogue is not None else 0
        revised = sum(1 for r in dialogue.revised if r) if dialogue is not None else 0
        return researcher_metrics(batch, revision, int((~np.asarray(valid)).sum()), rounds, revised)
