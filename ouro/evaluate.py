"""Judge one method, outside any loop: the Monte Carlo verifier's test and the oracle.

``ouro evaluate --method-file FILE`` is how a person (or a CI job) checks a hand-written
or model-written estimator: a ``.py`` file is a code method, run only in the sandbox; a
``.json`` or ``.yaml`` file is a DSL spec.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from ouro.config import (
    ConfigError,
    DuplicateKeyError,
    apply_override,
    format_validation_error,
    load_yaml_text,
    parse_yaml,
    read_text,
    reject_coerced_bools,
)
from ouro.environments import ENVIRONMENTS
from ouro.verifiers import JudgeContext
from ouro.verifiers.montecarlo import MonteCarloVerifierConfig


def read_method(path: Path, env) -> object:
    text = read_text(path, "method file")
    if path.suffix == ".py":
        spec = {"family": "code", "source": text, "name": path.stem}
    else:
        try:
            spec = load_yaml_text(text)
        except DuplicateKeyError:
            parse_yaml(text, str(path))  # raises, naming the key
        except yaml.YAMLError:
            raise ConfigError(f"{path}: neither Python (.py) nor a valid JSON/YAML method spec") from None
    try:
        method = env.parse_method(spec)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, spec, source=str(path))) from None
    if isinstance(method, BaseModel):
        reject_coerced_bools(spec, method, source=str(path))
    return method


def method_environments() -> list[str]:
    """Kinds whose proposals are methods judged one by one (the others drive the loop with
    a vectorized cohort of their own, and have no method to evaluate)."""
    return [k for k in ENVIRONMENTS.kinds() if not callable(getattr(ENVIRONMENTS[k], "cohort", None))]


def build_environment(kind: str, overrides: list[str]):
    kinds = method_environments()
    if kind not in kinds:
        problem = f"{kind!r} has no methods to evaluate" if kind in ENVIRONMENTS else f"unknown kind {kind!r}"
        raise ConfigError(f"--env: {problem}; environments with methods: {', '.join(kinds)}")
    data: dict = {"kind": kind}
    for assignment in overrides:
        apply_override(data, assignment.removeprefix("environment."))
    try:
        config = ENVIRONMENTS[kind].model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, data, source="environment")) from None
    reject_coerced_bools(data, config, source="environment")
    return config.build()


def evaluate_method(env, method, replications: int, alpha: float, seed: int = 0) -> dict:
    verifier = MonteCarloVerifierConfig(replications=replications, alpha=alpha).build(env)
    ctx = JudgeContext(env=env, seed=seed, generation=0, rng=np.random.default_rng(seed))
    verdict = asyncio.run(verifier.judge([method], ctx))[0]
    evidence = verdict.evidence or {}
    ran = bool(evidence)
    quality = float(env.oracle([method])[0]) if ran else None
    return {
        "method": env.method_key(method),
        "verdict": "accepted" if verdict.accept else "rejected",
        "accepted": bool(verdict.accept),
        "reason": verdict.rationale,
        "evidence": {
            "replications": replications,
            "efficiency": evidence.get("efficiency"),
            "log_gain": evidence.get("gain"),
            "se": evidence.get("se"),
            "p_value": evidence.get("p"),
            "alpha": alpha,
        },
        "oracle_quality": None if quality is None or np.isnan(quality) else quality,
    }


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2)
