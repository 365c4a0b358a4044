"""The same stages called one after another in this process, without Ray.

A reference for the Ray pipeline: the overhead benchmark compares the two, and tests use it to
check that orchestration changes nothing in the numbers. One learner rank (world size 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tip_ray.envs.episode import environment_step_metrics
from tip_ray.learner.rank import LearnerRank
from tip_ray.pipeline.placement import Role, plan_placement
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.batches import make_prompt_batch
from tip_ray.pipeline.stages import learner_settings, rollout_settings, scorer_settings, selector_settings
from tip_ray.data.prompts import PromptSampler
from tip_ray.rollout.worker import RolloutWorker
from tip_ray.select.selector import Selector
from tip_ray.teacher.scorer import TeacherScorer
from tip_ray.weights import WeightVersion


@dataclass(frozen=True)
class InProcessStep:
    step: int
    loss: float
    grad_norm: float
    num_selected: int
    num_response_tokens: int
    seconds: float
    environment: dict[str, float]  # env/ metrics of a multi-turn step, {} for single-turn


class InProcessLoop:
    def __init__(self, prepared: PreparedRun):
        import dataclasses

        self.prepared = prepared
        if prepared.config.teachers and len(prepared.config.teachers) > 1:
            raise ValueError("the in-process loop scores with one teacher: run a pipeline of several "
                             "teachers (teachers:) with run_pipeline")
        plans = plan_placement(prepared.config)
        self.rollout = RolloutWorker(rollout_settings(prepared, plans[Role.ROLLOUT], 0))
        self.scorer = TeacherScorer(scorer_settings(prepared, plans[Role.TEACHER], 0))
        self.selector = Selector(selector_settings(prepared, plans[Role.SELECTOR], 0))
        settings = dataclasses.replace(learner_settings(prepared, plans[Role.LEARNER]), world_size=1)
        self.learner = LearnerRank(0, settings)
        host, port = self.learner.rendezvous_address()
        self.learner.setup(host, port)
        config = prepared.config
        self.sampler = PromptSampler(prepared.prompts, seed=config.train.seed, shuffle=config.data.shuffle)
        self.weights = WeightVersion(version=0)

    def step(self, step: int) -> InProcessStep:
        start = time.perf_counter()
        config = self.prepared.config
        batch = make_prompt_batch(self.sampler, step, config.rollout.prompts_per_step)
        rollout = self.rollout.generate(batch, self.weights)
        scored = self.scorer.score(rollout)
        selected, summary = self.selector.select(self.weights, scored)
        result = self.learner.train_step(selected)
        self.weights = WeightVersion(version=step + 1, refs=(self.learner.full_state_dict(),))
        return InProcessStep(
            step=step,
            loss=result.loss,
            grad_norm=result.grad_norm,
            num_selected=summary.num_selected,
            num_response_tokens=summary.num_response_tokens,
            seconds=time.perf_counter() - start,
            environment=environment_step_metrics([rollout.environment]),
        )

    def close(self) -> None:
        self.learner.shutdown()
