"""Reading a run folder or a sweep report folder for the HTML report.

Tolerant by design: a report is often made of a run that is still going, was killed, or was
written by an older tip-ray with fewer columns. A missing file gives an empty part, a line that
is not JSON (a half-written last line) is skipped and noted, and every string that reaches the
page has secret values masked (see tip_ray.checkpoint.redact).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tip_ray.checkpoint.redact import redact
from tip_ray.errors import TipRayError

METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
CONFIG_FILE = "config.resolved.yaml"
SWEEP_RESULTS_FILE = "results.jsonl"
SWEEP_IMAGES = ("token_map.png",)  # made by `tip-ray sweep` from the models; shown as they are


class ReportError(TipRayError, ValueError):
    """The folder given to `tip-ray report` holds nothing a report can be made of."""


@dataclass(frozen=True)
class RunData:
    """What a run folder holds: one metrics row per step, one row per evaluation."""

    name: str
    folder: Path
    metrics: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    config_text: str | None  # the resolved config, secrets masked; None when absent
    notes: list[str] = field(default_factory=list)  # what could not be read, for the page


@dataclass(frozen=True)
class SweepData:
    """What a sweep report folder holds: one result row per (variant, seed)."""

    name: str
    folder: Path
    records: list  # tip_ray.sweep.runner.RunRecord
    order: list[str]  # variant labels in the order the sweep ran them
    images: dict[str, bytes]  # file name -> PNG bytes of plots the sweep wrote itself
    summary_text: str | None  # the sweep's own README.md, secrets masked
    notes: list[str] = field(default_factory=list)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {redact(str(k)): _masked(v) for k, v in value.items()}
    return value


def read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; bad lines are skipped and counted in `notes`."""
    if not path.is_file():
        notes.append(f"{path.name} is missing")
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(_masked(row))
        else:
            bad.append(number)
    if bad:
        shown = ", ".join(str(n) for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        notes.append(f"{path.name}: {len(bad)} line(s) that are not a JSON object were skipped (line {shown})")
    return rows


def _read_text(path: Path) -> str | None:
    return redact(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else None


def run_name(folder: Path, config_text: str | None) -> str:
    """The run's `name:` from its resolved config, else the folder's name."""
    if config_text:
        import yaml

        try:
            tree = yaml.safe_load(config_text)
        except yaml.YAMLError:
            tree = None
        if isinstance(tree, dict) and isinstance(tree.get("name"), str):
            return redact(tree["name"])
    return redact(folder.name)


def is_sweep_folder(folder: Path) -> bool:
    return (folder / SWEEP_RESULTS_FILE).is_file() and not (folder / METRICS_FILE).is_file()


def read_run(folder: Path) -> RunData:
    notes: list[str] = []
    config_text = _read_text(folder / CONFIG_FILE)
    if config_text is None:
        notes.append(f"{CONFIG_FILE} is missing")
    metrics = read_jsonl(folder / METRICS_FILE, notes)
    evals = read_jsonl(folder / EVALS_FILE, notes)
    return RunData(name=run_name(folder, config_text), folder=folder, metrics=metrics, evals=evals,
                   config_text=config_text, notes=notes)


def _record(row: dict[str, Any]):
    from tip_ray.sweep.runner import RunRecord

    row = dict(row)
    row["curve"] = [tuple(point) for point in row.get("curve", [])]
    return RunRecord(**row)


def read_sweep(folder: Path) -> SweepData:
    notes: list[str] = []
    records, order = [], []
    for number, row in enumerate(read_jsonl(folder / SWEEP_RESULTS_FILE, notes), start=1):
        try:
            record = _record(row)
        except TypeError as exc:  # a row of another shape (another tip-ray version)
            notes.append(f"{SWEEP_RESULTS_FILE}: result {number} skipped ({exc})")
            continue
        records.append(record)
        if record.label not in order:
            order.append(record.label)
    images = {name: (folder / name).read_bytes() for name in SWEEP_IMAGES if (folder / name).is_file()}
    return SweepData(name=redact(folder.name), folder=folder, records=records, order=order, images=images,
                     summary_text=_read_text(folder / "README.md"), notes=notes)


def read_folder(path: str | Path) -> RunData | SweepData:
    """A run folder or a sweep report folder; a clear error for anything else."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"report: {folder} is not a folder; give a run folder (runs/<name>/) or a "
                          f"sweep report folder (the sweep's report_dir)")
    if is_sweep_folder(folder):
        return read_sweep(folder)
    if not any((folder / name).is_file() for name in (METRICS_FILE, EVALS_FILE, CONFIG_FILE)):
        runs = sorted(p.parent.name for p in folder.glob(f"*/{METRICS_FILE}"))
        if runs:  # e.g. a sweep's runs folder
            raise ReportError(f"report: {folder} holds run folders ({', '.join(runs[:3])}"
                              f"{', ...' if len(runs) > 3 else ''}): give one of them, or for a sweep its "
                              f"report folder (the sweep's report_dir, with results.jsonl)")
        raise ReportError(f"report: {folder} holds none of {METRICS_FILE}, {EVALS_FILE}, {CONFIG_FILE} "
                          f"(a run folder) or {SWEEP_RESULTS_FILE} (a sweep report folder)")
    return read_run(folder)
