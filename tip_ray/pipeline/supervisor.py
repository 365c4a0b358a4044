"""`run_pipeline`: one distillation run from a config, supervised. It claims the run folder, starts
or joins Ray, and runs attempts (pipeline.session) until one finishes: an attempt that ends with a
stage that died or hung is followed by a new one from the last checkpoint, up to
train.max_resumes times (what a run survives: pipeline.faults)."""

from __future__ import annotations

import logging
import uuid
from typing import Callable

import ray

from tip_ray.checkpoint import FaultCounters
from tip_ray.checkpoint.reaper import start_reaper, stop_reaper
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline.actors import shutdown_actors, start_actors
from tip_ray.pipeline.faults import RunFailed, StageDied, StageTimeout
from tip_ray.pipeline.prepare import PreparedRun, prepare_run, write_resolved_config
from tip_ray.pipeline.ray_lifecycle import embedded_session_dir, init_ray
from tip_ray.pipeline.resume_point import ResumeMode, find_checkpoint
from tip_ray.pipeline.run_folder import claim_run_folder
from tip_ray.pipeline.run_log import attach_run_log
from tip_ray.pipeline.session import RunSession
from tip_ray.pipeline.signals import StopRequest
from tip_ray.pipeline.summary import RunSummary

log = logging.getLogger("tip_ray")


def run_pipeline(
    config: PipelineConfig,
    *,
    address: str | None = None,
    run_dir: str | None = None,
    prepared: PreparedRun | None = None,
    on_step: Callable[[dict], None] | None = None,
    resume: ResumeMode = "auto",
) -> RunSummary:
    """Run (or continue) a distillation run. `resume`: "auto" continues from the run folder's
    newest complete checkpoint when there is one; "require" fails when there is none."""
    prepared = prepared or prepare_run(config, run_dir)
    # Only the run holding the lock writes anything: a second driver refused there must not
    # replace the running one's files; partial checkpoints go first, freeing their space.
    lock = claim_run_folder(prepared.run_dir, lambda folder: write_resolved_config(config, folder))
    handler = attach_run_log(prepared.run_dir)
    started_ray = False
    reaper = None
    stop_request = StopRequest().install()
    try:
        found, state = find_checkpoint(prepared, resume)  # a config that cannot resume fails here
        started_ray = init_ray(config, address)
        stop_request.install()  # after ray.init, which installs a SIGTERM handler of its own
        if started_ray and (address or config.cluster.address) == "local":
            reaper = start_reaper(embedded_session_dir())
        faults: FaultCounters | None = None
        failure: Exception | None = None
        resumed_here = 0  # automatic resumes by this process (the limit is per process)
        while True:
            actors = None
            session = None
            try:
                prefix = f"tip-ray/{config.name}/{uuid.uuid4().hex[:6]}/"
                actors = start_actors(prepared, max_restarts=config.train.max_actor_restarts, name_prefix=prefix)
                session = RunSession(prepared, actors, on_step, faults, after_failure=failure)
                session.stop_request = stop_request
                return session.run(found, state)
            except (StageDied, StageTimeout) as exc:
                faults = session.faults if session is not None else (faults or FaultCounters())
                if resumed_here >= config.train.max_resumes:
                    raise RunFailed(
                        f"{exc}; the run already resumed by itself {resumed_here} time(s) "
                        f"(train.max_resumes={config.train.max_resumes}); its checkpoints are under "
                        f"{prepared.run_dir / 'checkpoints'}: `tip-ray run ... --resume` continues it"
                    ) from exc
                resumed_here += 1
                failure = exc
                log.warning("%s; stopping every actor and resuming from the last checkpoint "
                            "(automatic resume %d of at most %d)", exc, resumed_here,
                            config.train.max_resumes)
                found, state = find_checkpoint(prepared, "auto")
            finally:
                if session is not None:
                    session.close()
                shutdown_actors(actors)
    finally:
        log.removeHandler(handler)
        handler.close()
        if started_ray:
            ray.shutdown()
        stop_request.restore()
        stop_reaper(reaper)
        lock.release()
