"""One distillation run from a config: checks, Ray, the stages, the step loop, checkpoints and
resuming, the run folder.

A run survives what expensive runs meet:

- The driver dies (kill -9, a lost node): a checkpoint is written every checkpoint.every_steps
  updates and at the end; `tip-ray run` on the same run folder continues from the newest complete
  one (`--resume` insists on one). Data order, step counter and LR schedule continue; the rows of
  metrics.jsonl after the checkpoint are dropped and their batches trained again, and the batches
  that were in flight when it was written are sampled again: both counts are logged and recorded.
- A rollout, teacher or selector actor dies: Ray restarts it and retries its call (see the
  controller); the run counts the restart and goes on.
- A learner rank dies (or an actor runs out of restarts), or a stage hangs past
  train.stage_timeout_s (reported with its name): the step ends, every actor is stopped and the
  run resumes from its last checkpoint by itself, up to train.max_resumes times.
- Bad numbers: a step with NaN/inf in its teacher signal, loss or gradient, or whose update would
  make a weight NaN/inf, is skipped and counted; train.max_consecutive_bad_steps in a row stop it.
- SIGTERM (preemption): the step finishes, a checkpoint is written if it fits (pipeline.signals).
- A checkpoint on a full disk stops the run, the last good one kept (checkpoint.space).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import ray

from tip_ray.checkpoint import (
    CheckpointStore,
    FaultCounters,
    FoundCheckpoint,
    RedactingFilter,
    TrainerState,
    TrainingCounters,
    config_changes,
    read_state,
    restore_logs,
    save_logs,
    write_state,
)
from tip_ray.checkpoint.reaper import start_reaper, stop_reaper
from tip_ray.checkpoint.state import capture_driver_rng, restore_driver_rng
from tip_ray.config.loader import ConfigError
from tip_ray.config.schema import PipelineConfig
from tip_ray.data.prompts import DataPosition, PromptSampler
from tip_ray.envs.episode import environment_step_metrics
from tip_ray.pipeline.connect import ray_init
from tip_ray.pipeline.controller import Controller, StageDied, StageTimeout, shutdown_actors, start_actors
from tip_ray.pipeline.metrics import MetricsLog, Progress, read_metrics, step_metrics
from tip_ray.pipeline.prepare import PreparedRun, prepare_run, write_resolved_config
from tip_ray.pipeline.run_folder import claim_run_folder, secure_run_dir  # noqa: F401 (re-exported)
from tip_ray.pipeline.signals import StopRequest, stop_after
from tip_ray.pipeline.trackers import open_trackers
from tip_ray.pipeline.train_accuracy import batch_accuracy, train_accuracy_fn
from tip_ray.records import PromptBatch
from tip_ray.weights import WeightVersion
from tip_ray.errors import TipRayError

log = logging.getLogger("tip_ray")

ResumeMode = Literal["auto", "require"]


class TooManyBadSteps(TipRayError, RuntimeError):
    """train.max_consecutive_bad_steps updates in a row were skipped for non-finite numbers."""


class RunFailed(TipRayError, RuntimeError):
    """A stage died or hung more often than train.max_resumes lets the run resume by itself."""


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    steps: int
    final_loss: float
    tokens_trained: int  # selected tokens the learner trained on (skipped steps excluded)
    response_tokens: int  # tokens sampled
    peak_learner_mib: float
    wall_seconds: float
    evals: tuple[tuple[int, float], ...]  # (step, accuracy)
    final_model: Path | None  # Hugging Face folder of the trained student
    resumed_from: int | None = None  # checkpoint step this process last resumed from
    resumes: int = 0
    batches_redone: int = 0
    in_flight_relaunched: int = 0
    actor_restarts: int = 0
    skipped_steps: int = 0
    final_adapter: Path | None = None  # peft adapter folder of a LoRA run (final_model is merged)


def skip_reason(extra: dict[str, float]) -> str:
    if extra.get("nonfinite_inputs"):
        return "teacher signal or statistics"
    if extra.get("nonfinite_weights"):
        return "weights after the update (it was refused; the learning rate may be too large)"
    return "loss or gradient"


def make_prompt_batch(sampler: PromptSampler, batch_id: int, size: int) -> PromptBatch:
    picked = sampler.next_batch(size)
    return PromptBatch(
        batch_id=batch_id,
        prompt_ids=tuple(p.ids for _, p in picked),
        answers=tuple(p.answer for _, p in picked),
        data_positions=tuple((pos.epoch, pos.index) for pos, _ in picked),
        prompt_rows=tuple(p.row for _, p in picked),
    )


def init_ray(config: PipelineConfig, address: str | None) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    target = address or config.cluster.address
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if target == "local":
        # No dashboard or job server for an embedded run; were one enabled, loopback only.
        kwargs.update(num_cpus=config.cluster.num_cpus or os.cpu_count(), include_dashboard=False,
                      dashboard_host="127.0.0.1")
        # Custom pool resources on the one local node, so pool-mapped runs also fit a laptop.
        if config.cluster.pools:
            kwargs["resources"] = {p.resource: 1000.0 for p in config.cluster.pools.values()}
    ray_init(target, **kwargs)
    return True


def embedded_session_dir() -> str:
    """The session folder of the Ray this process started (unique to it), or '' if unknown."""
    try:
        return ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # a Ray without it: no reaper rather than a guessed folder
        return ""


def attach_run_log(run_dir: Path) -> logging.Handler:
    """run.log in the run folder: every event of the run, secrets masked, appended across resumes."""
    path = run_dir / "run.log"
    path.touch(mode=0o600, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


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
                faults.automatic_resumes += 1
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


class RunSession:
    """One attempt at the run with one set of actors: restore, then the step loop."""

    def __init__(self, prepared: PreparedRun, actors, on_step, faults: FaultCounters | None,
                 after_failure: Exception | None = None):
        self.prepared = prepared
        self.config = prepared.config
        self.actors = actors
        self.on_step = on_step
        self.controller = Controller(prepared, actors)
        self.store = CheckpointStore(prepared.run_dir, self.config.checkpoint.keep_last)
        # Fault counts survive an automatic resume in this process; a new process reads them back.
        self.faults = faults if faults is not None else FaultCounters()
        self._faults_from_checkpoint = faults is None
        self.after_failure = after_failure
        self.training = TrainingCounters()
        self.sampler = PromptSampler(prepared.prompts, seed=self.config.train.seed, shuffle=self.config.data.shuffle)
        self.positions: dict[int, DataPosition] = {}  # batch id -> data position of its first prompt
        self.weights_cache: dict[int, WeightVersion] = {}  # versions in-flight batches still use
        self.next_launch = 0
        self.wall_before = 0.0  # wall time spent by earlier processes (from the checkpoint)
        self.start_wall = time.perf_counter()
        self.metrics: MetricsLog | None = None
        self.progress: Progress | None = None
        self.resumed_from: int | None = None
        self.stop_request: StopRequest | None = None  # set by run_pipeline: SIGTERM stops between steps
        self.checkpoint_seconds: list[float] = []  # write times measured in this process

    # ------------------------------------------------------------------ restore

    def restore(self, found: FoundCheckpoint | None, state: TrainerState | None) -> int:
        """Load checkpoint `found` (if any) into the learners and the sampler and put the run
        folder's logs back at its step; returns the step to continue from."""
        run_dir = self.prepared.run_dir
        metrics_file = run_dir / "metrics.jsonl"
        had_rows = metrics_file.is_file() and metrics_file.stat().st_size > 0
        if found is None or state is None:
            dropped = restore_logs(run_dir, None)
            if had_rows or self.after_failure is not None:
                self.faults.resumes += 1
                self.faults.batches_redone += dropped
                log.warning("no checkpoint to resume from: the run starts over from step 0; %d trained "
                            "batch(es) will be trained again", dropped)
            return 0
        self.controller.load_learners(found.path / "learner")
        if self._faults_from_checkpoint:
            self.faults = state.faults
        self.training = state.training
        self.wall_before = state.wall_seconds
        restore_driver_rng(state)
        self.sampler.position = DataPosition(state.data_epoch, state.data_index)
        for version in state.policy_versions:
            self.weights_cache[version] = self._load_policy(found.path, version)
        self.weights_cache[state.step] = self.controller.publish_weights(state.step)
        dropped = restore_logs(run_dir, found.path)
        self.faults.resumes += 1
        self.faults.batches_redone += dropped
        self.faults.in_flight_relaunched += state.in_flight
        self.resumed_from = state.step
        log.warning(
            "resumed from checkpoint step_%d: %d batch(es) trained after it are trained again and "
            "%d batch(es) that were in flight when it was written are sampled again; no other "
            "prompt is repeated or skipped", state.step, dropped, state.in_flight,
        )
        return state.step

    @staticmethod
    def _load_policy(folder: Path, version: int) -> WeightVersion:
        from safetensors.torch import load_file

        state = load_file(str(folder / "policy" / f"version_{version}.safetensors"))
        return WeightVersion(version=version, refs=(ray.put(state),))

    # ------------------------------------------------------------------ checkpoint

    def checkpoint_due(self, step: int) -> bool:
        every = self.config.checkpoint.every_steps
        return step == self.config.train.steps or bool(every and step % every == 0)

    def write_checkpoint(self, step: int, learner_step: int) -> Path:
        """Everything needed to continue after update `step`, atomically (see CheckpointStore);
        a write that fails (a full disk) stops the run (tip_ray.checkpoint.space.write_or_stop)."""
        from tip_ray.checkpoint.space import write_or_stop

        begin = time.perf_counter()
        # A stage that dies while writing is left to the automatic resume.
        final = write_or_stop(self.store, step, lambda: self._write_checkpoint(step, learner_step),
                              passthrough=(StageDied, StageTimeout))
        self.checkpoint_seconds.append(time.perf_counter() - begin)
        return final

    def _write_checkpoint(self, step: int, learner_step: int) -> Path:
        from safetensors.torch import save_file

        begin = time.perf_counter()
        run_dir = self.prepared.run_dir
        tmp = self.store.begin(step)
        learner_dir = tmp / "learner"
        self.controller.save_learners(learner_dir)
        if not (learner_dir / "shards").is_dir():
            raise RuntimeError(
                f"the learner ranks wrote their checkpoint shards to {learner_dir} on their own "
                f"node, which this driver cannot see: put logging.run_dir on storage shared by the "
                f"driver and the learner nodes"
            )
        lag = self.config.train.max_policy_lag
        in_flight = list(range(step, self.next_launch))
        versions = sorted({max(0, b - lag) for b in in_flight} - {0, step})
        if versions:
            (tmp / "policy").mkdir()
        for version in versions:
            weights = ray.get(self.weights_cache[version].refs[0])
            # Tied weights share storage, which safetensors refuses: save independent copies.
            save_file({k: v.detach().clone().contiguous() for k, v in weights.items()},
                      str(tmp / "policy" / f"version_{version}.safetensors"))
        position = self.positions.get(step, self.sampler.position)
        py_rng, torch_rng = capture_driver_rng()
        write_state(tmp, TrainerState(
            step=step,
            learner_step=learner_step,
            data_epoch=position.epoch,
            data_index=position.index,
            data_seed=self.config.train.seed,
            data_shuffle=self.config.data.shuffle,
            num_prompts=len(self.prepared.prompts),
            prompts_per_step=self.config.rollout.prompts_per_step,
            max_policy_lag=lag,
            in_flight=len(in_flight),
            policy_versions=tuple(versions),
            training=self.training,
            faults=self.faults,
            wall_seconds=self.wall_before + time.perf_counter() - self.start_wall,
            python_rng=py_rng,
            torch_rng=torch_rng,
        ))
        write_resolved_config(self.config, tmp)
        save_logs(run_dir, tmp)
        if self.config.checkpoint.export_hf:
            from tip_ray.learner.export import export_hf

            export_hf(ray.get(self.weights_cache[step].refs[0]), self.prepared.student_path, tmp / "hf")
        final = self.store.commit(tmp, step)
        log.info("checkpoint %s written in %.1f s (%d batch(es) in flight)", final.name,
                 time.perf_counter() - begin, len(in_flight))
        return final

    # ------------------------------------------------------------------ loop

    def launch_until(self, limit: int) -> None:
        """Launch batches up to id `limit` - 1; batch b is sampled with version max(0, b - lag)."""
        config = self.config
        limit = min(limit, config.train.steps)
        while self.next_launch < limit:
            b = self.next_launch
            self.positions[b] = self.sampler.position
            batch = make_prompt_batch(self.sampler, b, config.rollout.prompts_per_step)
            self.pending[b] = batch
            self.controller.launch(batch, self.weights_cache[max(0, b - config.train.max_policy_lag)])
            self.next_launch += 1

    def run(self, found: FoundCheckpoint | None, state: TrainerState | None) -> RunSummary:
        config = self.config
        controller = self.controller
        controller.wait_ready()
        controller.setup_learners()
        first = self.restore(found, state)
        report = self.prepared.data_report
        if first == 0 and self.resumed_from is None:
            log.info("data: %d rows read, %d bad rows skipped, %d overlong prompts truncated, %d dropped",
                     report.rows_read, len(report.skipped_bad), report.truncated_overlong, report.dropped_overlong)
        total = config.train.steps
        self.weights_cache.setdefault(0, WeightVersion(version=0))  # the model folder's weights
        self.next_launch = first
        self.pending: dict[int, PromptBatch] = {}
        grade = train_accuracy_fn(config)
        self.metrics = MetricsLog(self.prepared.run_dir, tensorboard=config.logging.tensorboard,
                                  trackers=open_trackers(config, self.prepared.run_dir),
                                  tracker_timeout_s=config.logging.tracking.close_timeout_s)
        self.progress = Progress(total, first, config.logging.progress)
        evaluator = None
        if config.eval.every_steps or config.eval.at_start:
            from tip_ray.pipeline.evaluation import RunEvaluator

            evaluator = RunEvaluator(config.eval, self.actors.rollouts[0], config.data.chat_template == "auto",
                                     config.train.seed)
            if first == 0 and evaluator.due(0, total):
                self._evaluate(evaluator, self.weights_cache[0], 0)
        signal_form = config.teacher.signal.type
        self.launch_until(first + controller.lag + 1)
        weights = self.weights_cache[first]
        learner_step = state.learner_step if (state is not None and first) else 0
        for step in range(first, total):
            if self.stop_request is not None and self.stop_request.requested:
                stop_after(self, step, learner_step)
            step_start = time.perf_counter()
            item, rollouts, summary, restarted = controller.consume(step)
            for name in restarted:
                self.faults.actor_restarts += 1
                log.warning("actor %s was restarted by Ray (restart %d of at most %d for it); its "
                            "call in flight was redone with the same weights and seed", name,
                            controller.restarts[name], config.train.max_actor_restarts)
            result = controller.train(item.selected_ref)
            sync_start = time.perf_counter()
            weights = controller.publish_weights(step + 1)
            sync_seconds = time.perf_counter() - sync_start
            self.weights_cache[step + 1] = weights
            for version in [v for v in self.weights_cache if v < step + 1 - controller.lag]:
                del self.weights_cache[version]
            self.launch_until(step + 2 + controller.lag)
            batch = self.pending.pop(step)
            row = step_metrics(
                result,
                summary,
                learner_version=step,
                signal_form=signal_form,
                signal_exact=signal_form != "topk",
                rollout_seconds=max(r.seconds for r in rollouts),
                teacher_seconds=summary.teacher_seconds,
                step_seconds=time.perf_counter() - step_start,
                in_flight=len(controller.queue),
                accuracy=batch_accuracy(rollouts, batch, grade),
            )
            row["prompt_rows"] = list(batch.prompt_rows)
            row["weight_sync"] = "broadcast" if controller.broadcast_weights else "object_store"
            row["weight_sync_seconds"] = sync_seconds
            row.update(self._count_step(result, rollouts, step))
            row.update(environment_step_metrics([r.environment for r in rollouts]))
            if evaluator is not None and evaluator.due(step + 1, total):
                row["eval_accuracy"] = self._evaluate(evaluator, weights, step + 1)
            self.metrics.write(row)
            self.progress.update(row)
            if self.training.consecutive_bad_steps >= config.train.max_consecutive_bad_steps:
                raise TooManyBadSteps(
                    f"{self.training.consecutive_bad_steps} updates in a row (up to step {step + 1}) were "
                    f"skipped for NaN/inf in the teacher signal, loss, gradients or updated weights "
                    f"(train.max_consecutive_bad_steps={config.train.max_consecutive_bad_steps}); "
                    f"see {self.prepared.run_dir / 'metrics.jsonl'}. Check the teacher and the learning "
                    f"rate; `tip-ray run ... --resume` continues from the last checkpoint"
                )
            learner_step = result.step
            if self.checkpoint_due(step + 1):
                self.write_checkpoint(step + 1, result.step)
            if self.on_step:
                self.on_step(row)
        return self._summary(weights)

    def _count_step(self, result, rollouts, step: int) -> dict[str, Any]:
        """Update the run's counters with one step and return them for its metrics row."""
        training = self.training
        empty = sum(int((r.response_mask.sum(1) == 0).sum()) for r in rollouts)
        training.empty_responses += empty
        training.nonfinite_inputs += int(result.extra.get("nonfinite_inputs", 0))
        if result.skipped:
            training.skipped_steps += 1
            training.consecutive_bad_steps += 1
            log.warning("step %d skipped: non-finite %s (%d in a row)", step + 1, skip_reason(result.extra),
                        training.consecutive_bad_steps)
        else:
            training.consecutive_bad_steps = 0
        report = self.prepared.data_report
        return {
            "nonfinite_inputs": int(result.extra.get("nonfinite_inputs", 0)),
            "nonfinite_weights": int(result.extra.get("nonfinite_weights", 0)),
            "empty_responses": empty,
            "skipped_steps": training.skipped_steps,
            "actor_restarts": self.faults.actor_restarts,
            "resumes": self.faults.resumes,
            "batches_redone": self.faults.batches_redone,
            "in_flight_relaunched": self.faults.in_flight_relaunched,
            "data_rows_skipped": len(report.skipped_bad),
            "prompts_truncated": report.truncated_overlong,
            "prompts_dropped": report.dropped_overlong,
        }

    def _evaluate(self, evaluator, weights: WeightVersion, step: int) -> float | None:
        """Evaluate, bounded in time: a generation or a grader that hangs costs the evaluation,
        never the run (the row records the timeout and training goes on)."""
        cfg = evaluator.cfg
        answers = len(evaluator.problems) * cfg.samples_per_problem
        limit = self.config.train.stage_timeout_s + cfg.grade_timeout_s * answers
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["report"] = evaluator.run(weights)
            except BaseException as exc:  # reported below, in the driver's thread
                outcome["error"] = exc

        thread = threading.Thread(target=work, name=f"eval-step-{step}", daemon=True)
        thread.start()
        thread.join(limit)
        row: dict[str, Any] = {"step": step, "benchmark": cfg.benchmark}
        accuracy = None
        if thread.is_alive():
            row["error"] = f"timed out after {limit:.0f} s"
            log.warning("evaluation at step %d did not finish within %.0f s (train.stage_timeout_s + "
                        "eval.grade_timeout_s per answer); training goes on without it", step, limit)
        elif "error" in outcome:
            raise outcome["error"]
        else:
            report = outcome["report"]
            accuracy = report.mean.value
            row.update({**report.summary(), "accuracy": accuracy, "generate_s": report.generate_s,
                        "grade_s": report.grade_s})
            self.progress.note_eval(accuracy)
        with (self.prepared.run_dir / "evals.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        return accuracy

    def _summary(self, weights: WeightVersion) -> RunSummary:
        run_dir = self.prepared.run_dir
        final_model = run_dir / "final_model"
        if weights.refs is not None:
            from tip_ray.learner.export import export_hf

            final_model = export_hf(ray.get(weights.refs[0]), self.prepared.student_path, final_model)
        final_adapter = None
        if self.config.learner.lora is not None:
            from tip_ray.learner.lora import LoraSettings
            from tip_ray.pipeline.adapter_export import export_final_adapter

            final_adapter = export_final_adapter(
                self.actors.learners, LoraSettings.from_config(self.config.learner.lora),
                self.prepared.student_path, run_dir / "final_adapter", self.config.train.stage_timeout_s)
        rows = read_metrics(run_dir)  # the whole run, across resumes
        evals = []
        path = run_dir / "evals.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip() and json.loads(line).get("accuracy") is not None:
                    evals.append((int(json.loads(line)["step"]), float(json.loads(line)["accuracy"])))
        return RunSummary(
            run_dir=run_dir,
            steps=self.config.train.steps,
            final_loss=rows[-1]["loss"] if rows else float("nan"),
            tokens_trained=sum(r["selected_tokens"] for r in rows if not r.get("skipped")),
            response_tokens=sum(r["response_tokens"] for r in rows),
            peak_learner_mib=max((r["learner_peak_mib"] for r in rows), default=0.0),
            wall_seconds=time.perf_counter() - self.start_wall,
            evals=tuple(evals),
            final_model=final_model if final_model.exists() else None,
            resumed_from=self.resumed_from,
            resumes=self.faults.resumes,
            batches_redone=self.faults.batches_redone,
            in_flight_relaunched=self.faults.in_flight_relaunched,
            actor_restarts=self.faults.actor_restarts,
            skipped_steps=self.training.skipped_steps,
            final_adapter=final_adapter,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.metrics is not None:
            self.metrics.close()
