"""Putting a run attempt back at its checkpoint: the learners, the driver's counters, random
state and data position, the policy versions in-flight batches were sampled with, and the run
folder's logs."""

from __future__ import annotations

import logging
from pathlib import Path

import ray

from tip_ray.checkpoint import FoundCheckpoint, TrainerState, restore_logs
from tip_ray.checkpoint.state import restore_driver_rng
from tip_ray.data.prompts import DataPosition
from tip_ray.pipeline.session_state import SessionState
from tip_ray.packed_weights import pack_state_dict
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


def restore(session: SessionState, found: FoundCheckpoint | None, state: TrainerState | None) -> int:
    """Load checkpoint `found` (if any) into the learners and the sampler and put the run
    folder's logs back at its step; returns the step to continue from."""
    run_dir = session.prepared.run_dir
    metrics_file = run_dir / "metrics.jsonl"
    had_rows = metrics_file.is_file() and metrics_file.stat().st_size > 0
    if found is None or state is None:
        dropped = restore_logs(run_dir, None)
        if had_rows or session.after_failure is not None:
            session.faults.resumes += 1
            session.faults.batches_redone += dropped
            log.warning("no checkpoint to resume from: the run starts over from step 0; %d trained "
                        "batch(es) will be trained again", dropped)
        return 0
    session.controller.load_learners(found.path / "learner")
    if session.faults_from_checkpoint:
        session.faults = state.faults
    session.training = state.training
    session.wall_before = state.wall_seconds
    restore_driver_rng(state)
    session.sampler.position = DataPosition(state.data_epoch, state.data_index)
    for version in state.policy_versions:
        session.controller.weights_cache[version] = load_policy(found.path, version)
    session.controller.publish(state.step)
    dropped = restore_logs(run_dir, found.path)
    session.faults.resumes += 1
    session.faults.batches_redone += dropped
    session.faults.in_flight_relaunched += state.in_flight
    session.resumed_from = state.step
    log.warning(
        "resumed from checkpoint step_%d: %d batch(es) trained after it are trained again and "
        "%d batch(es) that were in flight when it was written are sampled again; no other "
        "prompt is repeated or skipped", state.step, dropped, state.in_flight,
    )
    return state.step


def load_policy(folder: Path, version: int) -> WeightVersion:
    from safetensors.torch import load_file

    state = load_file(str(folder / "policy" / f"version_{version}.safetensors"))
    return WeightVersion(version=version, refs=(ray.put(pack_state_dict(state)),))
