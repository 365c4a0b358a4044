"""What the driver saves in a checkpoint besides the learner's own state: where the data stands,
which policy version the run is at, the counters of what went wrong so far, and the driver's RNGs.

Stored as JSON (no pickle): a checkpoint's driver state can be read and checked by anyone.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATE_NAME = "trainer_state.json"


@dataclass
class TrainingCounters:
    """Counts tied to the trained state: restored from the checkpoint on resume, because the steps
    after it are redone (and would otherwise be counted twice)."""

    skipped_steps: int = 0  # updates not applied: non-finite loss, gradient or teacher signal
    consecutive_bad_steps: int = 0  # skipped updates in a row, up to the last one


@dataclass
class FaultCounters:
    """Counts of faults survived: they only grow over the life of a run, across resumes."""

    actor_restarts: int = 0  # rollout/teacher/selector actors that Ray restarted
    resumes: int = 0  # times the run continued from a checkpoint (or started over)
    batches_redone: int = 0  # trained batches after the resumed checkpoint, trained again
    in_flight_relaunched: int = 0  # batches sampled but not trained when a checkpoint was written


@dataclass(frozen=True)
class TrainerState:
    step: int  # updates consumed by the run: the policy version of the checkpointed weights
    learner_step: int  # updates the learner applied (skipped ones excluded)
    data_epoch: int  # the first prompt of batch `step` is order(data_epoch)[data_index]
    data_index: int
    data_seed: int
    data_shuffle: bool
    num_prompts: int
    prompts_per_step: int
    max_policy_lag: int
    in_flight: int  # batches launched but not trained when this was written (relaunched on resume)
    policy_versions: tuple[int, ...]  # older weight versions saved for those in-flight batches
    training: TrainingCounters = field(default_factory=TrainingCounters)
    faults: FaultCounters = field(default_factory=FaultCounters)
    wall_seconds: float = 0.0  # wall time of the run up to this checkpoint, over all its processes
    python_rng: str = ""  # base64 of random.getstate(), JSON-encoded
    torch_rng: str = ""  # base64 of torch.get_rng_state()

    def to_json(self) -> str:
        doc = asdict(self)
        doc["policy_versions"] = list(self.policy_versions)
        return json.dumps(doc, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        doc = json.loads(text)
        known = {f.name for f in fields(cls)}
        doc = {k: v for k, v in doc.items() if k in known}
        doc["policy_versions"] = tuple(doc.get("policy_versions", ()))
        doc["training"] = _known(TrainingCounters, doc.get("training", {}))
        doc["faults"] = _known(FaultCounters, doc.get("faults", {}))
        return cls(**doc)


def _known(cls, values: dict):
    """`cls` from the saved values it still has a field for: a checkpoint written by a version
    that kept more counters still resumes."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def capture_driver_rng() -> tuple[str, str]:
    import torch

    py = base64.b64encode(json.dumps(random.getstate()).encode()).decode()
    th = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    return py, th


def restore_driver_rng(state: TrainerState) -> None:
    import torch

    if state.python_rng:
        version, internal, gauss = json.loads(base64.b64decode(state.python_rng))
        random.setstate((version, tuple(internal), gauss))
    if state.torch_rng:
        raw = bytearray(base64.b64decode(state.torch_rng))
        torch.set_rng_state(torch.frombuffer(raw, dtype=torch.uint8).clone())


def write_state(folder: Path, state: TrainerState) -> None:
    (folder / STATE_NAME).write_text(state.to_json())


def read_state(folder: Path) -> TrainerState:
    return TrainerState.from_json((folder / STATE_NAME).read_text())
