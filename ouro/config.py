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


def _parse_value(text: str, key: str) -> Any:
    try:
        return load_yaml_text(text)
    except DuplicateKeyError as e:
        raise ConfigError(f"--set {key}: {e.key!r} is given twice in the value") from None
    except yaml.YAMLError:
        return text


_KEY_PART = re.compile(r"\[([^\[\]]*)\]|([^.\[\]]+)")


def key_parts(key: str, option: str = "--set") -> list[str]:
    """A dotted key's parts: ``arms[3].verifier.alpha`` (the form errors print) and
    ``arms.3.verifier.alpha`` both give ``['arms', '3', 'verifier', 'alpha']``; an item
    may be named in brackets too (``arms[montecarlo]``)."""
    key = key.strip()
    parts, pos = [], 0
    while pos < len(key):
        if key[pos] == "." and parts:
            pos += 1
        m = _KEY_PART.match(key, pos)
        if m is None or (m.group(1) is not None and not m.group(1).strip()):
            raise ConfigError(f"{option} {key}: not a key (dotted names, list items as .3 or [3])")
        parts.append((m.group(1) if m.group(1) is not None else m.group(2)).strip())
        pos = m.end()
    return parts


def _user_path(parts: list[str]) -> str:
    """Parts as errors print them: list indices in brackets."""
    return "".join(f"[{p}]" if re.fullmatch(r"-?\d+", p) else f".{p}" for p in parts).lstrip(".")


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` in place. List items are addressed by index or by ``name``,
    after a dot or in brackets (``arms[3].verifier.alpha``, ``arms.montecarlo.verifier``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. loop.generations=5")
    key, raw = assignment.split("=", 1)
    parts = key_parts(key)
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, _user_path(parts[: i + 1]))
            if last:
                node[idx] = _parse_value(raw, key.strip())
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_value(raw, key.strip())
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"--set {key.strip()}: '{_user_path(parts[:i])}' is not a section")


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


def _drop_tags(loc: tuple, data: Any) -> tuple:
    """``loc`` without the tags of discriminated unions: a part that is no key of the
    mapping it indexes but one of its values (``trimmed_mean`` for ``family: trimmed_mean``)."""
    out, node = [], data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            if part not in node and part in [v for v in node.values() if isinstance(v, str)]:
                continue
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part] if 0 <= part < len(node) else None
        elif not (isinstance(node, dict) and isinstance(part, int)):
            node = None
        out.append(part)
    return tuple(out)


def _member_tag(loc: tuple, kind: str, data: Any) -> int | None:
    """Where an error's location names a member of a plain union (``constrained-int``,
    ``list[int]``), an internal tag that is no field of the input: its index, or None."""
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                node = node[part]
            else:  # a missing field, or a member's name where the input holds a mapping
                return None if kind == "missing" else i
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part] if 0 <= part < len(node) else None
        elif isinstance(part, str) and node is not None and not isinstance(node, dict):
            return i  # a name where the input holds a value: pydantic's name for a member
        elif not (isinstance(node, dict) and isinstance(part, int)):
            return None
    return None


_KINDS = {"int": ("an integer", "integers"), "float": ("a number", "numbers"), "str": ("a string", "strings"),
          "bool": ("true or false", "booleans"), "none": ("null", "nulls")}  # fmt: skip


def _accepted(tag: str, plural: bool = False) -> str:
    """What a union member's tag accepts, in words: ``list[int]`` -> 'a list of integers'."""
    base = tag.removeprefix("constrained-")
    if base.startswith("list[") and base.endswith("]"):
        return ("lists of " if plural else "a list of ") + _accepted(base[5:-1], plural=True)
    if base.startswith("dict["):
        return "mappings" if plural else "a mapping"
    if base in _KINDS:
        return _KINDS[base][plural]
    return tag


def _first_error(errors: list[dict], data: Any) -> tuple[tuple, str, int]:
    """The error to report, as (location without union tags, message, errors it stands for).

    A value that no member of a plain union accepts (``seeds: abc``) reports what the
    union accepts; one that got into a member (``seeds: [1, x]``) reports that member's
    error."""
    locs = [_drop_tags(tuple(e["loc"]), data) for e in errors]
    first, loc = errors[0], locs[0]
    k = _member_tag(loc, first["type"], data)
    if k is None:
        return loc, _message(first), 1
    group = [(e, lc) for e, lc in zip(errors, locs) if lc[:k] == loc[:k] and len(lc) > k and isinstance(lc[k], str)]
    if len({lc[k] for _, lc in group}) < 2:  # a union fails in every member: one is no union
        return loc, _message(first), 1
    deepest, inner = max(group, key=lambda g: len(g[1]))
    if len(inner) > k + 1:
        return inner[:k] + inner[k + 1 :], _message(deepest), len(group)
    kinds = list(dict.fromkeys(_accepted(str(lc[k])) for _, lc in group))
    return loc[:k], f"Input should be {' or '.join(kinds)}, not {first.get('input')!r}", len(group)


_NUMBER_CHECKS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of", "finite_number"}


def _message(error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ")
    if isinstance(error.get("input"), bool) and error["type"] in _NUMBER_CHECKS:
        msg = "Input should be a number, not a boolean"  # true read as 1 (see reject_coerced_bools)
    elif error["type"] == "extra_forbidden":
        msg = "unknown key"
    elif error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        msg = f"unknown {tag} {ctx.get('tag')!r}; known {tag}s: {ctx.get('expected_tags')}"
    elif error["type"] == "literal_error" and error["loc"][-1] == "kind":
        msg = f"unknown kind {error['input']!r}; known kinds: {error.get('ctx', {}).get('expected')}"
    elif error["type"] == "missing":
        msg = "required field is missing"
    return msg


def format_validation_error(err: ValidationError, data: Any, source: str = "config") -> str:
    errors = err.errors()
    loc, msg, covered = _first_error(errors, data)
    path = _field_path(loc, data)
    more = len(errors) - covered
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {msg}{tail}"


def reject_coerced_bools(data: Any, model: BaseModel, source: str = "config") -> None:
    """Refuse ``true``/``false`` given where a number is expected: pydantic's lax mode
    reads them as 1 and 0. Compares the input with what was validated from it: a boolean
    that came out a number was coerced. Raises a one-line ConfigError naming the field."""
    if not _has_bool(data):
        return
    path = _coerced(data, model.model_dump(), [])
    if path is not None:
        raise ConfigError(f"{source}: {_user_path(path) or '(top level)'}: Input should be a number, not a boolean")


def _has_bool(data: Any) -> bool:
    if isinstance(data, bool):
        return True
    if isinstance(data, dict):
        return any(_has_bool(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_bool(v) for v in data)
    return False


def _coerced(data: Any, value: Any, path: list[str]) -> list[str] | None:
    """The path of the first boolean in ``data`` that came out of validation a number."""
    if isinstance(data, bool):
        return path if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(data, dict):
        if isinstance(value, list) and len(value) == 1:  # a single mapping given where a list is accepted
            return _coerced(data, value[0], path)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, dict):
            for k, v in data.items():
                if k in value:
                    found = _coerced(v, value[k], [*path, str(k)])
                    if found:
                        return found
    elif isinstance(data, list) and isinstance(value, (list, tuple)) and len(data) == len(value):
        for i, (d, v) in enumerate(zip(data, value)):
            found = _coerced(d, v, [*path, str(i)])
            if found:
                return found
    return None


# ------------------------------------------------------------------ loading


# libyaml's safe loader, where PyYAML was built with it: every arm's process reads the
# run's config, and the pure-Python parser takes about 10 ms for it
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, mark, first) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.mark, self.first = key, mark, first


class _Loader(_SAFE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    first = seen.setdefault((key_node.tag, key_node.value), key_node.start_mark)
                    if first is not key_node.start_mark:
                        raise DuplicateKeyError(key_node.value, key_node.start_mark, first)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """YAML (safe) with duplicate keys refused: raises DuplicateKeyError, or yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)


def _key_path(text: str, mark) -> str:
    """The path, as errors print it, of the mapping key that starts at ``mark``."""
    found: list[str] = []

    def walk(node, path: list, seen: set) -> bool:
        if id(node) in seen:
            return False
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                here = [*path, str(k.value)]
                if k.start_mark.index == mark.index:
                    found.extend(here)
                    return True
                if walk(v, here, seen):
                    return True
        elif isinstance(node, yaml.SequenceNode):
            return any(walk(v, [*path, str(i)], seen) for i, v in enumerate(node.value))
        return False

    try:
        walk(yaml.compose(text, Loader=_SAFE_LOADER), [], set())
    except yaml.YAMLError:
        pass
    return _user_path(found) if found else "?"


def read_text(path: str | Path, what: str = "config file") -> str:
    """A user's file as UTF-8 text; anything else is a one-line ConfigError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a {what}")
    if not p.exists():
        raise ConfigError(f"{what} not found: {p}")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} on line {line}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read it: {e.strerror}") from None


def _lines(a: int, b: int) -> str:
    return f"on line {a}" if a == b else f"lines {a} and {b}"


def parse_yaml(text: str, source: str) -> Any:
    """A user's YAML text; invalid YAML and duplicate keys are one-line ConfigErrors naming ``source``."""
    try:
        return load_yaml_text(text)
    except DuplicateKeyError as e:
        raise ConfigError(
            f"{source}: {_key_path(text, e.mark)}: key given twice ({_lines(e.first.line + 1, e.mark.line + 1)})"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    data = parse_yaml(read_text(p), str(p)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data


def validate(data: dict, source: str = "config"):
    if "sweep" in data:
        raise ConfigError(f"{source}: sweep: this is a study (a grid of runs); run it with: ouro sweep {source}")
    try:
        config = experiment_model().model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, data, source)) from None
    reject_coerced_bools(data, config, source)
    return config


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
    parts = key_parts(key)
    if len(parts) == 1 and parts[0] in RESUME_SAFE:
        return
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, _user_path(parts[: i + 1]))]
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
