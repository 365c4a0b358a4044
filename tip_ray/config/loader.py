"""Load a pipeline YAML: safe parsing, `include:` of reusable pieces, and errors that name the place.

A mapping may hold ``include: <path>`` (or a list of paths). The included documents are merged
first, in order, and the mapping's own keys override them (deep merge for nested mappings).
Paths are relative to the including file, falling back to the project's shipped ``configs/``
(``configs/selection/soft_or_50.yaml`` or ``selection/soft_or_50.yaml``; tip_ray.config.shipped
finds it in a checkout and in an installed wheel alike); an included piece must be a
``.yaml``/``.yml`` file inside the pipeline's own folder tree or the shipped ``configs/``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tip_ray.config.numbers import FieldValueError
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.shipped import shipped_configs
from tip_ray.config.yaml_read import ConfigError, parse_config_yaml, read_config_text

INCLUDE_KEY = "include"
MAX_INCLUDE_DEPTH = 16
INCLUDE_SUFFIXES = (".yaml", ".yml")


def _read_yaml(path: Path) -> Any:
    return parse_config_yaml(read_config_text(path), str(path))


def include_roots(pipeline_file: Path) -> tuple[Path, ...]:
    """The folders includes may come from: the pipeline's own folder tree and the shipped configs/."""
    return (pipeline_file.parent, shipped_configs())


def _resolve_include(ref: Any, including_file: Path, key_path: str, pipeline_file: Path) -> Path:
    where = f"{including_file}: {key_path or '<top>'}.include"
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{where} must be a file path or a list of them, got {ref!r}")
    roots = include_roots(pipeline_file)
    configs = shipped_configs()
    for base in (including_file.parent, configs.parent, configs):
        candidate = (base / ref).resolve()
        if not candidate.is_file():
            continue
        # Only YAML pieces from the pipeline's tree or configs/: an include never reads (nor,
        # through an error message, shows) an arbitrary file such as /etc/shadow.
        if candidate.suffix not in INCLUDE_SUFFIXES:
            raise ConfigError(f"{where}: {ref!r} is not a YAML piece (includes end in .yaml or .yml)")
        if not any(candidate.is_relative_to(root.resolve()) for root in roots):
            raise ConfigError(
                f"{where}: {ref!r} is outside the folders includes may come from "
                f"({', '.join(str(root) for root in roots)}); copy the piece there"
            )
        return candidate
    raise ConfigError(
        f"{where}: {ref!r} not found next to the file or in the shipped configs/ ({configs})"
    )


def deep_merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`. A mapping that names another strategy (`type`) than the one
    it overrides replaces it whole: the old strategy's keys would not belong to the new one."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _switches_type(merged[key], value):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _switches_type(base: dict, override: dict) -> bool:
    return "type" in override and "type" in base and override["type"] != base["type"]


def _expand(node: Any, file: Path, key_path: str, depth: int, chain: tuple[Path, ...]) -> Any:
    if isinstance(node, list):
        return [_expand(item, file, f"{key_path}[{i}]", depth, chain) for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    own = {}
    for key, value in node.items():
        if key == INCLUDE_KEY:
            continue
        if not isinstance(key, str):
            raise ConfigError(f"{file}: {key_path or '<top>'}: keys must be strings, got {key!r}")
        own[key] = _expand(value, file, f"{key_path}.{key}" if key_path else key, depth, chain)
    if INCLUDE_KEY not in node:
        return own
    refs = node[INCLUDE_KEY]
    refs = refs if isinstance(refs, list) else [refs]
    merged: dict = {}
    for ref in refs:
        path = _resolve_include(ref, file, key_path, chain[0])
        if path in chain or depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{file}: include cycle or too deep nesting through {path}")
        piece = _read_yaml(path)
        if piece is None:
            piece = {}
        if not isinstance(piece, dict):
            raise ConfigError(f"{path}: an included piece must be a mapping, got {type(piece).__name__}")
        merged = deep_merge(merged, _expand(piece, path, key_path, depth + 1, chain + (path,)))
    return deep_merge(merged, own)


def load_yaml_tree(path: str | Path) -> dict:
    """Parse `path` and its includes into one plain mapping (no validation)."""
    file = Path(path).resolve()
    if file.suffix.lower() not in INCLUDE_SUFFIXES:
        # Only configuration files are read: an error must never quote lines of another file.
        raise ConfigError(f"{file}: a pipeline or sweep is a .yaml or .yml file; is this the right file?")
    doc = _read_yaml(file)
    if doc is None:
        raise ConfigError(f"{file}: the file is empty; a pipeline needs at least name, models, data")
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: the top level must be a mapping, got {type(doc).__name__}")
    try:
        return _expand(doc, file, "", 0, (file,))
    except RecursionError:
        # A self-referencing alias (&a [*a]) or absurd nesting: no configuration looks like that.
        raise ConfigError(f"{file}: nested too deeply (or refers to itself through an alias)") from None


def _members(annotation: Any) -> list[Any]:
    """The pydantic models an annotation may hold (unwrapping Optional, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[Any] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_members(arg))
    return found


def _dict_value(annotation: Any) -> Any:
    """The value annotation of a dict[...] annotation (possibly inside Optional), else None."""
    for candidate in (annotation, *(getattr(annotation, "__args__", ()) or ())):
        if getattr(candidate, "__origin__", None) is dict:
            return candidate.__args__[1]
    return None


def _tag_values(model: type[BaseModel]) -> tuple:
    field = model.model_fields.get("type")
    return getattr(field.annotation, "__args__", ()) if field is not None else ()


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model holding the last key of `loc`, for 'did you mean' hints."""
    current: Any = model
    for part in loc[:-1]:
        members = _members(current)
        if len(members) == 1 and part in members[0].model_fields:
            current = members[0].model_fields[part].annotation
            continue
        tagged = [m for m in members if part in _tag_values(m)]
        if tagged:
            current = tagged[0]
            continue
        value = _dict_value(current)
        if value is None:
            return []
        current = value
    members = _members(current)
    return sorted(members[0].model_fields) if len(members) == 1 else []


def format_validation_error(file: Path, exc: ValidationError) -> str:
    lines = [f"{file}: invalid pipeline configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = err["msg"]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, FieldValueError):  # a model-level check that names its field
            loc, message = loc + (cause.field,), str(cause)
        key_path = ".".join(str(part) for part in loc) or "<top>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(PipelineConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = (f"unknown key{hint} (the keys allowed here are: {', '.join(allowed)})"
                       if allowed else "unknown key")
        elif err["type"] in ("union_tag_invalid", "literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected_tags") or err.get("ctx", {}).get("expected")
            if expected and str(expected) not in message:
                message = f"{message} (allowed: {expected})"
        elif err["type"] == "missing":
            message = "required key is missing"
        given = err.get("input")
        quiet = err["type"] == "missing" or isinstance(given, (dict, list)) or repr(given) in message or str(given) in message
        shown = "" if quiet else f" (got {given!r})"
        lines.append(f"  - {key_path}: {message}{shown}")
    return "\n".join(lines)


def load_pipeline(path: str | Path, overrides: dict | None = None) -> PipelineConfig:
    """Read, include, merge `overrides` (a nested mapping) and validate one pipeline YAML."""
    file = Path(path).resolve()
    tree = load_yaml_tree(file)
    if overrides:
        tree = deep_merge(tree, overrides)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(file, exc)) from None


def dotted(key: str, value: Any) -> dict:
    """`a.b.c`, value into {"a": {"b": {"c": value}}}."""
    node: Any = value
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def parse_override(text: str) -> dict:
    """`a.b.c=value` (value parsed as YAML) into a nested mapping, for `--set` on the CLI."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. train.steps=10")
    key, raw = text.split("=", 1)
    value = parse_config_yaml(raw, f"--set {text!r}")
    return dotted(key, value)


def resolved_config_yaml(config: PipelineConfig) -> str:
    """The fully resolved config as YAML, written next to every run."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
