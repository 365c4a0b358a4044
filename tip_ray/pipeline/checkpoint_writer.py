"""Writing a run's checkpoint: the learner shards, the driver's state, the policy versions that
in-flight batches were sampled with, the resolved config and the run folder's logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tip_ray.checkpoint import TrainerState, save_logs, write_state
from tip_ray.checkpoint.state import capture_driver_rng
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline.faults import StageDied, StageTimeout
from tip_ray.pipeline.prepare import write_resolved_config
from tip_ray.pipeline.session_state import SessionState
from tip_ray.weights import resolve_state_dict

log = logging.getLogger("tip_ray")


def checkpoint_due(config: PipelineConfig, step: int) -> bool:
    every = config.checkpoint.every_steps
    return step == config.train.steps or bool(every and step % every == 0)


def write_checkpoint(session: SessionState, step: int, learner_step: int) -> Path:
    """Everything needed to continue after update `step`, atomically (see CheckpointStore);
    a write that fails (a full disk) stops the run (tip_ray.checkpoint.space.write_or_stop)."""
    from tip_ray.checkpoint.space import write_or_stop

    begin = time.perf_counter()
    # A stage that dies while writing is left to the automatic resume.
    final = write_or_stop(session.store, step, lambda: _write_checkpoint(session, step, learner_step),
                          passthrough=(StageDied, StageTimeout))
    session.checkpoint_seconds.append(time.perf_counter() - begin)
    return final


def _write_checkpoint(session: SessionState, step: int, learner_step: int) -> Path:
    from safetensors.torch import save_file

    begin = time.perf_counter()
    run_dir = session.prepared.run_dir
    tmp = session.store.begin(step)
    learner_dir = tmp / "learner"
    session.controller.save_learners(learner_dir)
    if not (learner_dir / "shards").is_dir():
        raise RuntimeError(
            f"the learner ranks wrote their checkpoint shards to {learner_dir} on their own "
            f"node, which this driver cannot see: put logging.run_dir on storage shared by the "
            f"driver and the learner nodes"
        )
    lag = session.config.train.max_policy_lag
    in_flight, versions = session.controller.in_flight_after(step)
    if versions:
        (tmp / "policy").mkdir()
    for version in versions:
        weights = resolve_state_dict(session.controller.weights_cache[version])
        # Tied weights share storage, which safetensors refuses: save independent copies.
        save_file({k: v.detach().clone().contiguous() for k, v in weights.items()},
                  str(tmp / "policy" / f"version_{version}.safetensors"))
    position = session.controller.position_at(step)
    py_rng, torch_rng = capture_driver_rng()
    write_state(tmp, TrainerState(
        step=step,
        learner_step=learner_step,
        data_epoch=position.epoch,
        data_index=position.index,
        data_seed=session.config.train.seed,
        data_shuffle=session.config.data.shuffle,
        num_prompts=len(session.prepared.prompts),
        prompts_per_step=session.config.rollout.prompts_per_step,
        max_policy_lag=lag,
        in_flight=len(in_flight),
        policy_versions=tuple(versions),
        training=session.training,
        faults=session.faults,
        wall_seconds=session.wall_before + time.perf_counter() - session.start_wall,
        python_rng=py_rng,
        torch_rng=torch_rng,
    ))
    write_resolved_config(session.config, tmp)
    save_logs(run_dir, tmp)
    if session.config.checkpoint.export_hf:
        from tip_ray.learner.export import export_hf

        export_hf(resolve_state_dict(session.controller.weights_cache[step]), session.prepared.student_path, tmp / "hf")
    final = session.store.commit(tmp, step)
    log.info("checkpoint %s written in %.1f s (%d batch(es) in flight)", final.name,
             time.perf_counter() - begin, len(in_flight))
    return final
