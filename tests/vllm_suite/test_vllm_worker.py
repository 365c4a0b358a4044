"""The rollout stage with `rollout.backend.type: vllm`: the worker builds the engine from the
config's backend options, samples a PromptBatch and follows policy versions."""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import perturbed, reference_logprobs, require_vllm
from tip_ray.config.rollout import RolloutConfig, SamplingConfig, VLLMRollout
from tip_ray.records import PromptBatch
from tip_ray.weights import WeightVersion

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.rollout.worker import RolloutSettings, RolloutWorker  # noqa: E402


def test_worker_samples_and_follows_policy_versions(student_dir, prompt_ids):
    path, model = student_dir
    rollout = RolloutConfig(backend=VLLMRollout(type="vllm"), samples_per_prompt=2,
                            sampling=SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=10))
    settings = RolloutSettings(model_path=path, rollout=rollout, seed=0)
    worker = RolloutWorker(settings)
    try:
        batch = PromptBatch(
            batch_id=0,
            prompt_ids=tuple(tuple(p) for p in prompt_ids),
            answers=(None,) * len(prompt_ids),
            data_positions=tuple((0, i) for i in range(len(prompt_ids))),
            prompt_rows=tuple(range(len(prompt_ids))),
        )
        first = worker.generate(batch, WeightVersion(version=0))
        assert first.policy_version == 0
        assert first.input_ids.shape[0] == 2 * len(prompt_ids)
        assert torch.equal(first.prompt_index, torch.arange(len(prompt_ids)).repeat_interleave(2))
        # Greedy: both samples of a prompt agree, and the recorded log-probs sit on the response.
        assert torch.equal(first.input_ids[0::2], first.input_ids[1::2])
        assert bool((first.sampled_logprobs[first.response_mask] <= 0).all())
        assert bool((first.sampled_logprobs[~first.response_mask] == 0).all())

        trained = perturbed(model, seed=44, scale=1.0)
        second = worker.generate(batch, WeightVersion(version=1, refs=(trained.state_dict(),)))
        assert second.policy_version == 1
        assert worker.backend.sync_seconds > 0
        # The engine runs the checkpoint's dtype rule ("auto": bfloat16 on CPU builds), so the
        # new policy is checked through its log-probs, to bfloat16 precision.
        for row in range(second.input_ids.shape[0]):
            length = int(second.attention_mask[row].sum())
            ids = second.input_ids[row, :length]
            mask = second.response_mask[row, :length]
            ref = reference_logprobs(trained, ids.tolist())[:-1].gather(1, ids[1:, None]).squeeze(1)
            got = second.sampled_logprobs[row, :length][mask]
            assert torch.allclose(got.double(), ref[mask[1:]], atol=0.05)
        same_shape = second.sampled_logprobs.shape == first.sampled_logprobs.shape
        assert not same_shape or not torch.allclose(second.sampled_logprobs, first.sampled_logprobs, atol=0.05)
    finally:
        worker.backend.close()
