"""The rollout stage: a student replica that samples responses for a PromptBatch.

Used as a Ray actor by the pipeline and as a plain object by the in-process loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from tip_ray.broadcast import GroupAddress
from tip_ray.envs.build import build_driver
from tip_ray.records import PromptBatch, RolloutBatch
from tip_ray.rollout.backend import RolloutBackend, SamplingRequest
from tip_ray.rollout.pack import pack_rollout
from tip_ray.weights import VersionedWeights, WeightVersion


@dataclass(frozen=True)
class RolloutSettings:
    model_path: str
    backend: str  # "hf" or "vllm"
    backend_options: dict
    temperature: float
    top_p: float
    max_new_tokens: int
    samples_per_prompt: int
    seed: int
    dtype: str = "float32"
    num_threads: int | None = None
    name: str = "rollout-0"
    max_model_len: int | None = None  # prompt + response budget (sizes the vLLM KV cache)
    environment: object = None  # rollout.environment (config.environment); None or single_turn: one turn


def build_backend(settings: RolloutSettings, tokenizer) -> RolloutBackend:
    if settings.backend == "hf":
        from tip_ray.models.loading import load_causal_lm
        from tip_ray.rollout.hf import HFGenerateBackend

        model = load_causal_lm(settings.model_path, dtype=settings.dtype)
        if torch.cuda.is_available():
            model = model.cuda()
        return HFGenerateBackend(
            model,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            batch_size=int(settings.backend_options.get("batch_size", 64)),
        )
    if settings.backend == "vllm":
        from tip_ray.rollout.vllm_backend import VLLMBackend

        # The engine runs in the learner's dtype and keeps the actor's thread budget; its context
        # is the run's prompt + response budget, not the model's full window.
        return VLLMBackend(
            settings.model_path,
            tokenizer=tokenizer,
            dtype=settings.dtype,
            seed=settings.seed,
            num_threads=settings.num_threads,
            max_model_len=settings.max_model_len,
            **settings.backend_options,
        )
    raise ValueError(f"rollout.backend.type {settings.backend!r}: expected 'hf' or 'vllm'")


class RolloutWorker:
    def __init__(self, settings: RolloutSettings):
        from tip_ray.models.loading import limit_torch_threads, load_tokenizer

        limit_torch_threads(settings.num_threads)
        self.settings = settings
        self.tokenizer = load_tokenizer(settings.model_path)
        self.backend = build_backend(settings, self.tokenizer)
        self.weights = VersionedWeights(self.backend.load_weights)
        self.calls = 0
        self.driver = build_driver(settings.environment, self.backend, self.tokenizer)

    def sync_counts(self) -> dict[str, int]:
        """How this worker's weights arrived: state dicts loaded vs broadcasts received."""
        return {"loads": self.weights.loads, "broadcasts": self.weights.broadcasts}

    def ready(self) -> str:
        return self.settings.name

    def generate(self, prompts: PromptBatch, weights: WeightVersion) -> RolloutBatch:
        self.weights.ensure(weights)
        self.calls += 1
        start = time.perf_counter()
        request = SamplingRequest(
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_new_tokens=self.settings.max_new_tokens,
            n=self.settings.samples_per_prompt,
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
            worker=self.settings.name,
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
        """For evaluation: n decoded responses per text prompt, with the given weights."""
        from tip_ray.data.prompts import encode_prompt

        self.weights.ensure(weights)
        ids = [encode_prompt(self.tokenizer, text, use_chat_template) for text in prompts]
        request = SamplingRequest(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, n=n, seed=seed)
        samples = self.backend.generate(ids, request)
        texts = self.tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
        grouped: list[list[str]] = [[] for _ in prompts]
        for sample, text in zip(samples, texts):
            grouped[sample.prompt_index].append(text)
        return grouped
