"""The controller keeps the data position of only the batches not yet trained: a long run's
checkpoints still resume from the right prompt, and the table stays at most L + 1 entries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import load_pipeline
from tip_ray.data.prompts import EncodedPrompt, PromptSampler
from tip_ray.pipeline.batches import make_prompt_batch
from tip_ray.pipeline.actors import StageActors
from tip_ray.pipeline.controller import Controller, InFlight
from tip_ray.weights import WeightVersion


class ScheduleOnly(Controller):
    """The controller's lag schedule with the stage calls left out: a launch only queues the
    batch, a publish only names the version (what this test checks never reaches an actor)."""

    def launch(self, batch, weights):
        assert weights.version == max(0, batch.batch_id - self.lag)
        self.queue.append(InFlight(batch, [], [], None, None))

    def publish(self, version):
        weights = WeightVersion(version=version)
        self.weights_cache[version] = weights
        return weights


@pytest.mark.parametrize("lag", [0, 2])
def test_positions_stay_bounded_and_checkpoints_resume_from_the_next_batch(tmp_path, lag):
    steps, per_step, num_prompts = 500, 3, 7  # many epochs: positions wrap around
    pair = SimpleNamespace(student_path=tmp_path / "student", teacher_path=tmp_path / "teacher")
    doc = tiny_pipeline_doc(pair, tmp_path / "prompts.jsonl", tmp_path / "run",
                            train={"steps": steps, "seed": 3, "max_policy_lag": lag},
                            rollout={"prompts_per_step": per_step})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = load_pipeline(path)
    prompts = [EncodedPrompt(row=i, ids=(i + 1,), answer=None) for i in range(num_prompts)]
    no_actors = StageActors(rollouts=[], scorers=[], selector=None, learners=[])  # never called here
    controller = ScheduleOnly(SimpleNamespace(config=config), actors=no_actors,
                              sampler=PromptSampler(prompts, seed=3, shuffle=True))
    # Where a run that continues at step s must sample from: the sampler after s batches.
    reference = PromptSampler(prompts, seed=3, shuffle=True)
    expected = []
    for b in range(steps + 1):
        expected.append(reference.position)
        if b < steps:
            make_prompt_batch(reference, b, per_step)

    controller.start(0)
    assert controller.position_at(0) == expected[0]
    largest = len(controller.positions)
    for step in range(steps):
        item = controller.queue.popleft()
        assert item.batch.batch_id == step
        controller.advance(step + 1)
        largest = max(largest, len(controller.positions))
        assert controller.position_at(step + 1) == expected[step + 1]
        assert min(controller.positions, default=step + 1) >= step + 1
    assert largest <= lag + 1
    assert controller.positions == {}
