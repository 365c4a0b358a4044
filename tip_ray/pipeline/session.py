"""One attempt at a run with one set of actors: restore from the checkpoint, then the step loop
(consume a batch, train on it, publish the weights, write its metrics row, checkpoint when due).
The supervisor (pipeline.supervisor) starts a new attempt when a stage dies or hangs."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from tip_ray.checkpoint import CheckpointStore, FaultCounters, FoundCheckpoint, TrainerState, TrainingCounters
from tip_ray.data.prompts import PromptSampler
from tip_ray.pipeline.checkpoint_writer import checkpoint_due, write_checkpoint
from tip_ray.pipeline.controller import Controller
from tip_ray.pipeline.counters import count_step
from tip_ray.pipeline.evaluation import RunEvaluator, evaluate_bounded
from tip_ray.pipeline.faults import TooManyBadSteps
from tip_ray.envs.episode import environment_step_metrics
from tip_ray.pipeline.metrics import MetricsLog, Progress, step_metrics
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.restore import restore
from tip_ray.pipeline.signals import StopRequest, stop_after
from tip_ray.pipeline.summary import RunSummary, final_summary
from tip_ray.pipeline.trackers import open_trackers
from tip_ray.pipeline.train_accuracy import batch_accuracy, train_accuracy_fn
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


class RunSession:
    """One attempt at the run with one set of actors: restore, then the step loop."""

    def __init__(self, prepared: PreparedRun, actors, on_step, faults: FaultCounters | None,
                 after_failure: Exception | None = None):
        self.prepared = prepared
        self.config = prepared.config
        self.actors = actors
        self.on_step = on_step
        self.store = CheckpointStore(prepared.run_dir, self.config.checkpoint.keep_last)
        # Fault counts survive an automatic resume in this process; a new process reads them back.
        self.faults = faults if faults is not None else FaultCounters()
        self.faults_from_checkpoint = faults is None
        self.after_failure = after_failure
        self.training = TrainingCounters()
        self.sampler = PromptSampler(prepared.prompts, seed=self.config.train.seed, shuffle=self.config.data.shuffle)
        self.controller = Controller(prepared, actors, self.sampler)
        self.wall_before = 0.0  # wall time spent by earlier processes (from the checkpoint)
        self.start_wall = time.perf_counter()
        self.metrics: MetricsLog | None = None
        self.progress: Progress | None = None
        self.resumed_from: int | None = None
        self.stop_request: StopRequest | None = None  # set by run_pipeline: SIGTERM stops between steps
        self.checkpoint_seconds: list[float] = []  # write times measured in this process

    def run(self, found: FoundCheckpoint | None, state: TrainerState | None) -> RunSummary:
        config = self.config
        controller = self.controller
        controller.wait_ready()
        controller.setup_learners()
        first = restore(self, found, state)
        report = self.prepared.data_report
        if first == 0 and self.resumed_from is None:
            log.info("data: %d rows read, %d bad rows skipped, %d overlong prompts truncated, %d dropped",
                     report.rows_read, len(report.skipped_bad), report.truncated_overlong, report.dropped_overlong)
        total = config.train.steps
        grade = train_accuracy_fn(config)
        self.metrics = MetricsLog(self.prepared.run_dir, tensorboard=config.logging.tensorboard,
                                  trackers=open_trackers(config, self.prepared.run_dir),
                                  tracker_timeout_s=config.logging.tracking.close_timeout_s)
        self.progress = Progress(total, first, config.logging.progress)
        evaluator = None
        if config.eval.every_steps or config.eval.at_start:
            evaluator = RunEvaluator(config.eval, self.actors.rollouts[0], config.data.chat_template == "auto",
                                     config.train.seed)
            if first == 0 and evaluator.due(0, total):
                self._evaluate(evaluator, controller.weights_cache[0], 0)
        signal_form = config.teacher.signal.type
        controller.start(first)
        weights = controller.weights_cache[first]
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
            weights, sync_seconds = controller.advance(step + 1)
            batch = item.batch
            typed = step_metrics(
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
                prompt_rows=batch.prompt_rows,
                weight_sync="broadcast" if controller.publisher.broadcast else "object_store",
                weight_sync_seconds=sync_seconds,
                counters=count_step(self.training, self.faults, self.prepared.data_report, result, rollouts, step),
                environment=environment_step_metrics([r.environment for r in rollouts]),
            )
            if evaluator is not None and evaluator.due(step + 1, total):
                typed = replace(typed, evaluated=True, eval_accuracy=self._evaluate(evaluator, weights, step + 1))
            row = typed.to_row()
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
            if checkpoint_due(config, step + 1):
                self.write_checkpoint(step + 1, result.step)
            if self.on_step:
                self.on_step(row)
        return final_summary(self, weights)

    def write_checkpoint(self, step: int, learner_step: int):
        return write_checkpoint(self, step, learner_step)

    def _evaluate(self, evaluator, weights: WeightVersion, step: int) -> float | None:
        return evaluate_bounded(evaluator, weights, step, stage_timeout_s=self.config.train.stage_timeout_s,
                                run_dir=self.prepared.run_dir, progress=self.progress)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.metrics is not None:
            self.metrics.close()
