"""Where a run continues from: the run folder's newest complete checkpoint, checked against the
config before anything starts."""

from __future__ import annotations

import logging
from typing import Literal

from tip_ray.checkpoint import CheckpointStore, FoundCheckpoint, TrainerState, config_changes, read_state
from tip_ray.config.loader import ConfigError
from tip_ray.pipeline.prepare import PreparedRun

log = logging.getLogger("tip_ray")

ResumeMode = Literal["auto", "require"]


def find_checkpoint(prepared: PreparedRun, resume: ResumeMode) -> tuple[FoundCheckpoint | None, TrainerState | None]:
    """The newest complete checkpoint of the run folder and its driver state, checked against the
    config, before anything starts (damaged checkpoints are set aside with a warning)."""
    config = prepared.config
    store = CheckpointStore(prepared.run_dir, config.checkpoint.keep_last)
    for partial in store.remove_partial():
        log.warning("removed %s: a checkpoint whose writing never finished", partial.name)
    found, _ = store.latest_valid()
    if found is None:
        if resume == "require":
            raise ConfigError(
                f"--resume: no complete checkpoint under {store.root}; run without --resume "
                f"to start this run from the beginning"
            )
        return None, None
    state = read_state(found.path)
    saved = (found.path / "config.resolved.yaml").read_text()
    blocking, harmless = config_changes(saved, config.model_dump(mode="json"))
    if state.num_prompts != len(prepared.prompts):
        blocking.append(f"number of prompts: {state.num_prompts} -> {len(prepared.prompts)}")
    if blocking:
        raise ConfigError(
            f"cannot resume from {found.path}: the run's data order or step definition changed ("
            + "; ".join(blocking[:6])
            + "); restore those settings, or start a new run with another --run-dir"
        )
    for line in harmless:
        log.warning("resuming with a changed setting: %s", line)
    return found, state
