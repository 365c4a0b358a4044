"""The rollout stage: a student replica that samples responses for a PromptBatch.

Used as a Ray actor by the pipeline and as a plain object by the in-process loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tip_ray.broadcast import GroupAddress
from tip_ray.config.rollout import RolloutConfig
from tip_ray.envs.build import build_driver
from tip_ray.envs.template import prompt_tools
from tip_ray.records import PromptBatch, RolloutBatch
from tip_ray.rollout.backend import SamplingRequest
from tip_ray.rollout.backends import build_backend
from tip_ray.rollout.pack import pack_rollout
from tip_ray.weights import VersionedWeights, WeightVersion


@dataclass(frozen=True)
class RolloutSettings:
    """The run's rollout section as written, plus what the config does not say: the resolved
    student folder, the run seed, dtype, thread budget and context window."""

    model_path: str
    rollout: RolloutConfig
    seed: int
    dtype: str = "float32"
    num_threads: int | None = None
    name: str = "rollout-0"
    max_model_len: int | None = None  # prompt + response budget (sizes the vLLM KV cache)


class RolloutWorker:
    def __init__(self, settings: RolloutSettings):
        from tip_ray.models.loading import limit_torch_threads, load_tokenizer

        limit_torch_threads(settings.num_threads)
        self.settings = settings
        self.tokenizer = load_tokenizer(settings.model_path)
        self.backend = build_backend(settings, self.tokenizer)
        self.weights = VersionedWeights(self.backend.load_weights)
        self.calls = 0
        self.driver = build_driver(settings.rollout.environment, self.backend, self.tokenizer)
        # Evaluation prompts are encoded as the training prompts are: with the tool schemas.
        self.prompt_tools = prompt_tools(settings.rollout.environment, self.driver.environment if self.driver else None)

    def sync_counts(self) -> dict[str, int]:
        """How this worker's weights arrived: state dicts loaded vs broadcasts received."""
        return {"loads": self.weights.loads, "broadcasts": self.weights.broadcasts}

    def ready(self) -> str:
        return self.settings.name

    def generate(self, prompts: PromptBatch, weights: WeightVersion) -> RolloutBatch:
        self.weights.ensure(weights)
        self.calls += 1
        start = time.perf_counter()
        sampling = self.settings.rollout.sampling
        request = SamplingRequest(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            n=self.settings.rollout.samples_per_prompt,
            # A batch's samples depend only on the run seed and the batch: retries and resumed
            # runs redo exactly the same rollouts.
            seed=self.settings.seed * 1_000_003 + prompts.batch_id,
        )
        environment = None
        if self.driver is not None:
            samples, report = self.driver.generate(prompts.prompt_ids, request)
            texts, environment = list(report.final_texts), report.counts()
        else:
            samples = self.backend.generate(prompts.prompt_ids, request)
            texts = self.tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
        return pack_rollout(
            prompts,
            samples,
            policy_version=self.weights.version,
            pad_token_id=self.tokenizer.pad_token_id,
            texts=texts,
            seconds=time.perf_counter() - start,
            environment=environment,
        )

    def broadcast_ranks(self) -> int:
        return int(self.backend.broadcast_ranks)

    def join_weight_group(self, address: GroupAddress, rank_offset: int) -> list[int]:
        """Join learner rank 0's broadcast group (rollout.weight_sync: broadcast)."""
        return self.backend.join_broadcast_group(address, rank_offset)

    def receive_weights(self, version: int) -> int:
        """Take the broadcast of policy `version` now; returns the tensors received."""
        count = self.backend.receive_broadcast()
        self.weights.received(version)
        return count

    def complete(self, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int,
                 seed: int, weights: WeightVersion, use_chat_template: bool = True) -> list[list[str]]:
        """For evaluation: n decoded responses per text prompt, with the given weights (in a tool
        environment, each episode's last model turn)."""
        from tip_ray.data.prompts import encode_prompt

        self.weights.ensure(weights)
        ids = [encode_prompt(self.tokenizer, text, use_chat_template, self.prompt_tools) for text in prompts]
        request = SamplingRequest(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, n=n, seed=seed)
        if self.driver is not None:  # a tool environment: the episode runs, its final answer is graded
            samples, report = self.driver.generate(ids, request)
            texts = list(report.final_texts)
        else:
            samples = self.backend.generate(ids, request)
            texts = self.tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
        grouped: list[list[str]] = [[] for _ in prompts]
        for sample, text in zip(samples, texts):
            grouped[sample.prompt_index].append(text)
        return grouped
