"""Experiment configs: YAML validated by pydantic, with dotted command-line overrides.

The component sections (``environment``, ``researcher``, each arm's ``verifier``) are
discriminated unions over the registries, built when the config model is first asked
for, so a new component only registers its config class. Every model forbids unknown
keys; every error is reported as one line naming the field path.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


class ConfigError(Exception):
    """Invalid user input: the message is one line that names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoopConfig(_Strict):
    generations: int = Field(20, ge=1, le=1_000_000)
    proposals: int = Field(30, ge=1, le=10_000_000, description="proposals per generation and seed")
    regime: Literal["replace", "accumulate", "mix"] = "replace"
    real_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of every pool drawn fresh from real data (mix)")
    record_every: int = Field(1, ge=1, description="record metrics every k generations (and the last)")

    @model_validator(mode="after")
    def _mix_needs_fraction(self) -> "LoopConfig":
        if self.regime == "mix" and self.real_fraction <= 0:
            raise ValueError("regime 'mix' needs real_fraction > 0")
        return self


def _union(registry) -> Any:
    models = registry.models()
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="kind")]


@functools.lru_cache(maxsize=1)
def experiment_model() -> type[BaseModel]:
    """The experiment config model, over every registered component kind."""
    from ouro.agents import RESEARCHERS
    from ouro.environments import ENVIRONMENTS
    from ouro.verifiers import verifier_config_union

    arm = create_model(
        "ArmConfig",
        __base__=_Strict,
        name=(Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)], ...),
        verifier=(verifier_config_union(), ...),  # also resolves verifiers nested in verifiers
    )

    class ExperimentBase(_Strict):
        @field_validator("seeds", check_fields=False)
        @classmethod
        def _seeds(cls, v: int | list[int]) -> int | list[int]:
            if isinstance(v, int) and v < 1:
                raise ValueError("seeds must be >= 1 (an int N means seeds 0..N-1)")
            if isinstance(v, list) and (not v or len(set(v)) != len(v) or min(v) < 0):
                raise ValueError("seeds must be a non-empty list of distinct non-negative ints")
            return v

        @field_validator("arms", check_fields=False)
        @classmethod
        def _arms(cls, v: list) -> list:
            names = [a.name for a in v]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"arm names must be unique; repeated: {', '.join(dup)}")
            return v

        @property
        def seed_list(self) -> list[int]:
            return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    return create_model(
        "ExperimentConfig",
        __base__=ExperimentBase,
        name=(Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)], ...),
        seeds=(Union[Annotated[int, Field(le=100_000)], list[int]], 5),
        environment=(_union(ENVIRONMENTS), ...),
        researcher=(_union(RESEARCHERS), ...),
        loop=(LoopConfig, LoopConfig()),
        arms=(Annotated[list[arm], Field(min_length=1)], ...),
        workers=(Annotated[int, Field(ge=1, le=512)], 1),
        cost_limit_usd=(Annotated[float, Field(gt=0)] | None, None),
    )


# ------------------------------------------------------------------ overrides


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` in place. List items are addressed by index or by ``name``."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. loop.generations=5")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, ".".join(parts[: i + 1]))
            if last:
                node[idx] = _parse_value(raw)
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_value(raw)
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"--set {key}: '{'.'.join(parts[:i])}' is not a section")


def _list_index(items: list, part: str, path: str) -> int:
    if re.fullmatch(r"-?\d+", part):
        idx = int(part)
        if -len(items) <= idx < len(items):
            return idx
        raise ConfigError(f"--set {path}: index out of range (there are {len(items)} items)")
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    raise ConfigError(f"--set {path}: no item named {part!r}")


# ------------------------------------------------------------------ errors


def _field_path(loc: tuple, data: Any) -> str:
    """Render a pydantic error location against the input, dropping union tags."""
    out, _ = _walk(loc, data)
    return ".".join(out).replace(".[", "[") or "(top level)"


def _walk(loc: tuple, node: Any) -> tuple[list[str], int]:
    """The parts of ``loc`` to show, and how many of them name nothing in the input.

    A discriminated union's tag is not a field, and is dropped; a tag that is also a key
    of its mapping (a judge of kind ``model`` has a ``model`` field) is read both ways,
    and the reading that finds more of the location in the input wins.
    """
    if not loc:
        return [], 0
    part, rest = loc[0], loc[1:]
    if isinstance(node, dict) and isinstance(part, str):
        is_tag = part in (node.get("kind"), node.get("provider"))
        if part in node:
            out, missed = _walk(rest, node[part])
            if is_tag:
                tag_out, tag_missed = _walk(rest, node)
                if tag_missed < missed:
                    return tag_out, tag_missed
            return [part, *out], missed
        if is_tag:
            return _walk(rest, node)  # a discriminated union's tag, not a field
        out, missed = _walk(rest, None)
        return [part, *out], missed + 1
    if isinstance(node, dict) and isinstance(part, int):
        return _walk(rest, node)  # a single mapping given where a list is accepted (e.g. one dgp)
    if isinstance(node, list) and isinstance(part, int):
        out, missed = _walk(rest, node[part] if 0 <= part < len(node) else None)
        return [f"[{part}]", *out], missed
    if isinstance(part, str) and "[" in part:  # e.g. 'function-after[...]'
        return _walk(rest, None)
    out, missed = _walk(rest, None)
    return [f"[{part}]" if isinstance(part, int) else str(part), *out], missed + 1


def format_validation_error(err: ValidationError, data: Any, source: str = "config") -> str:
    first = err.errors()[0]
    path = _field_path(tuple(first["loc"]), data)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "union_tag_invalid":
        ctx = first.get("ctx", {})
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        msg = f"unknown {tag} {ctx.get('tag')!r}; known {tag}s: {ctx.get('expected_tags')}"
    elif first["type"] == "literal_error" and first["loc"][-1] == "kind":
        msg = f"unknown kind {first['input']!r}; known kinds: {first.get('ctx', {}).get('expected')}"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = len(err.errors()) - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {msg}{tail}"


# ------------------------------------------------------------------ loading


# libyaml's safe loader, where PyYAML was built with it: every arm's process reads the
# run's config, and the pure-Python parser takes about 10 ms for it
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.load(p.read_text(), Loader=_SAFE_LOADER) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data


def validate(data: dict, source: str = "config"):
    if "sweep" in data:
        raise ConfigError(f"{source}: sweep: this is a study (a grid of runs); run it with: ouro sweep {source}")
    try:
        return experiment_model().model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, data, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None):
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_yaml(path)
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate(data, source=str(path))


def dump_config(config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------ resuming with changes

RESUME_SAFE = ("cost_limit_usd", "workers")
RESUME_SAFE_PROVIDER = (
    "base_url",
    "api_key_env",
    "timeout_s",
    "max_attempts",
    "max_total_s",
    "backoff_initial_s",
    "backoff_max_s",
    "concurrency",
)
"""What ``ouro resume --set`` may change: the budget, the worker count, and how a model is
reached (not which model, nor how it samples). Everything else would make the finished
generations and the ones still to come answers to different questions."""


def check_resume_override(data: dict, assignment: str) -> None:
    """Refuse, in one line, an override that is not safe to apply to a run in progress."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. cost_limit_usd=20")
    key = assignment.split("=", 1)[0].strip()
    parts = [p for p in key.split(".") if p]
    if len(parts) == 1 and parts[0] in RESUME_SAFE:
        return
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, ".".join(parts[: i + 1]))]
        elif isinstance(node, dict) and isinstance(node.get(part), (dict, list)):
            node = node[part]
        else:
            node = None
            break
    if parts and isinstance(node, dict) and "provider" in node and parts[-1] in RESUME_SAFE_PROVIDER:
        return
    raise ConfigError(
        f"--set {key}: cannot be changed when resuming (the finished generations were made with it); "
        f"resume accepts {', '.join(RESUME_SAFE)}, and a model's {', '.join(RESUME_SAFE_PROVIDER)}"
    )


def amend_saved_config(path: str | Path, overrides: list[str]):
    """Apply safe overrides to a run's saved config.yaml, validate, and save it back."""
    from ouro.store import atomic_write_text

    data = read_yaml(path)
    for assignment in overrides:
        check_resume_override(data, assignment)
        apply_override(data, assignment)
    config = validate(data, source=str(path))
    atomic_write_text(Path(path), dump_config(config))
    return config
