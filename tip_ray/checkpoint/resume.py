"""Putting a run folder back in the state of a checkpoint before the run continues from it.

metrics.jsonl and evals.jsonl are replaced by the copies saved in the checkpoint (the rows up to
its step); the rows written after it belong to batches that are trained again, so they are
dropped (and counted) rather than left to appear twice. A run started over from step 0 keeps no
rows at all.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from tip_ray.checkpoint.redact import MASK

LOG_FILES = ("metrics.jsonl", "evals.jsonl")
LOGS_DIR = "logs"  # where a checkpoint keeps its copies of the run's JSONL files

# Config keys that fix which prompts each step sees and what a step means: a resumed run that
# changed them would not continue the same run (use a new run folder instead).
IDENTITY_KEYS = (
    "data",
    "train.seed",
    "train.max_policy_lag",
    "rollout.prompts_per_step",
    "rollout.samples_per_prompt",
    "learner.optimizer",
    "learner.lora",
    "loss",
    "selection",
    "teacher.signal",
)
# Inside those, keys that may change without changing the run (a dataset file moved elsewhere;
# the number of prompts it holds is checked separately).
MOVABLE_KEYS = ("data.path",)


def _rows(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _replace_text(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def save_logs(run_dir: Path, checkpoint_tmp: Path) -> None:
    """Copy the run's JSONL logs (as they stand now) into a checkpoint being written."""
    folder = checkpoint_tmp / LOGS_DIR
    folder.mkdir(exist_ok=True)
    for name in LOG_FILES:
        _replace_text(folder / name, _rows(run_dir / name))


def restore_logs(run_dir: Path, checkpoint: Path | None) -> int:
    """Make the run's JSONL logs those of `checkpoint` (empty when None); returns how many
    metrics rows (trained steps) were dropped because they are redone."""
    dropped = 0
    for name in LOG_FILES:
        current = _rows(run_dir / name)
        kept = _rows(checkpoint / LOGS_DIR / name) if checkpoint is not None else []
        if name == "metrics.jsonl":
            dropped = max(len(current) - len(kept), 0)
        if current != kept:
            _replace_text(run_dir / name, kept)
    return dropped


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: doc}


def load_saved_config(saved_yaml: str) -> dict:
    """A checkpoint's resolved config. Older versions masked secrets in the YAML text, leaving
    `key: ***` (a YAML alias that does not load): such values are read back as masked strings."""
    try:
        return yaml.safe_load(saved_yaml) or {}
    except yaml.YAMLError:
        repaired = re.sub(r"^(\s*(?:[^\s#][^#]*?:|-)\s+)(\*\*\*.*?)\s*$",
                          lambda m: m.group(1) + json.dumps(m.group(2)), saved_yaml, flags=re.M)
        return yaml.safe_load(repaired) or {}


def masked_value_matches(old: Any, new: Any) -> bool:
    """True when `old`, a saved value with secrets masked, can be `new`: each mask stands for any
    non-empty text. A masked value is never compared, so resuming does not depend on it."""
    if not (isinstance(old, str) and MASK in old and isinstance(new, str)):
        return False
    pattern = ".+".join(re.escape(part) for part in old.split(MASK))
    return re.fullmatch(pattern, new, flags=re.S) is not None


def config_changes(saved_yaml: str, current: dict) -> tuple[list[str], list[str]]:
    """(blocking, harmless) differences between a checkpoint's resolved config and the current one,
    each as 'key: old -> new'. Values that were masked as secrets match what they may have been."""
    old = _flatten(load_saved_config(saved_yaml))
    new = _flatten(json.loads(json.dumps(current)))
    blocking, harmless = [], []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or masked_value_matches(old.get(key), new.get(key)):
            continue
        line = f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        if key not in MOVABLE_KEYS and any(key == k or key.startswith(k + ".") for k in IDENTITY_KEYS):
            blocking.append(line)
        else:
            harmless.append(line)
    return blocking, harmless
