"""The rollout stage with `rollout.backend.type: vllm`: the worker builds the engine from the
config's backend options, samples a PromptBatch and follows policy versions."""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import perturbed, reference_logprobs, require_vllm
from tip_ray.config.rollout import RolloutConfig, SamplingConfig, VLLMRollout
from tip_ray.records import PromptBatch
from tip_ray.rollout.backend import SamplingRequest
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
            prompt_rows=tuple(range(len(prompt_ids))),
        )
        first = worker.generate(batch, WeightVersion(version=0))
        assert first.policy_version == 0
        assert first.input_ids.shape[0] == 2 * len(prompt_ids)
        assert torch.equal(first.prompt_index, torch.arange(len(prompt_ids)).repeat_interleave(2))
        # Greedy: both samples of a prompt agree.
        assert torch.equal(first.input_ids[0::2], first.input_ids[1::2])
        # The backend's samples (what the worker packs) carry one log-prob per response token.
        greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=10, n=2, seed=0)
        before = worker.backend.generate(batch.prompt_ids, greedy)
        for sample in before:
            assert len(sample.logprobs) == len(sample.response_ids) > 0
            assert all(lp <= 0 for lp in sample.logprobs)

        trained = perturbed(model, seed=44, scale=1.0)
        second = worker.generate(batch, WeightVersion(version=1, refs=(trained.state_dict(),)))
        assert second.policy_version == 1
        assert worker.backend.sync_seconds > 0
        # The engine runs the checkpoint's dtype rule ("auto": bfloat16 on CPU builds), so the
        # new policy is checked through its log-probs, to bfloat16 precision.
        after = worker.backend.generate(batch.prompt_ids, greedy)
        moved = False
        for old, new in zip(before, after):
            ids = list(batch.prompt_ids[new.prompt_index]) + list(new.response_ids)
            p = len(batch.prompt_ids[new.prompt_index])
            ref = reference_logprobs(trained, ids)[:-1].gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
            got = torch.tensor(new.logprobs, dtype=torch.float64)
            assert torch.allclose(got, ref[p - 1:], atol=0.05)
            moved |= old.response_ids != new.response_ids or not torch.allclose(
                got, torch.tensor(old.logprobs, dtype=torch.float64), atol=0.05)
        assert moved, "the log-probs after loading version 1 equal those of version 0"
    finally:
        worker.backend.close()
