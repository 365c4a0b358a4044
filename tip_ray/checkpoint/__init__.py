"""Checkpoints and resuming: atomic step_<N> folders with a checksummed manifest, the driver's
state (data position, policy version, counters, RNGs), putting a run folder back at a checkpoint,
one driver per run folder, and keeping secrets out of what a run writes.

The learner's own state (FSDP-sharded weights and optimizer, scheduler, RNG) is written by the
learner ranks themselves: see tip_ray.learner.rank_checkpoint.
"""

from tip_ray.checkpoint.lock import RunFolderBusy, RunLock
from tip_ray.checkpoint.manifest import CheckpointDamaged, verify_manifest, write_manifest
from tip_ray.checkpoint.redact import RedactingFilter, redact, scrub_file
from tip_ray.checkpoint.resume import config_changes, restore_logs, save_logs
from tip_ray.checkpoint.state import FaultCounters, TrainerState, TrainingCounters, read_state, write_state
from tip_ray.checkpoint.store import CheckpointStore, FoundCheckpoint

__all__ = [
    "CheckpointDamaged",
    "CheckpointStore",
    "FaultCounters",
    "FoundCheckpoint",
    "RedactingFilter",
    "RunFolderBusy",
    "RunLock",
    "TrainerState",
    "TrainingCounters",
    "config_changes",
    "read_state",
    "redact",
    "restore_logs",
    "save_logs",
    "scrub_file",
    "verify_manifest",
    "write_manifest",
    "write_state",
]
