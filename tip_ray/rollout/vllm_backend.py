"""vLLM rollout backend: batched sampling on a vLLM engine whose weights follow the learner.

Behaves like the Hugging Face backend (tip_ray/rollout/hf.py): token-id prompts in, n samples
per prompt out (grouped by prompt), each with the end-of-sequence token when one was sampled and
the log-prob of every sampled token under the raw model distribution. vLLM's default
``logprobs_mode="raw_logprobs"`` reports log-probs before temperature and top-p, which is exactly
that. Only the tokenizer's EOS token ends a response (the model folder's generation config is
ignored, as in the Hugging Face backend), and each prompt gets its own seed derived from the
request's, so a batch is sampled the same way on every retry.

Weights: ``load_weights`` reloads a full Hugging Face-named state dict in place through the
worker extension (tip_ray/vllm_engine/extension.py) and drops the prefix cache, whose KV blocks were
computed with the old weights. With ``rollout.weight_sync: broadcast`` the same extension receives
the weights from learner rank 0 over a broadcast group instead (NCCL on GPU, gloo on CPU;
``join_broadcast_group`` / ``receive_broadcast``).

Engine building, the tokenizer check and the worker extension are shared with the vLLM
teacher: tip_ray/vllm_engine/.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import torch

from tip_ray.broadcast import GroupAddress
from tip_ray.rollout.backend import Sample, SamplingRequest
from tip_ray.vllm_engine.engine import (
    EngineOptions,
    VLLMEngineError,
    build_engine,
    import_vllm,
    on_cpu_build,
    read_config,
    release_memory,
    shutdown_engine,
    text_config,
)
from tip_ray.vllm_engine.tokenizer_check import check_tokenizer_matches


class VLLMBackend:
    """A RolloutBackend on a vLLM engine (see the module docstring)."""

    def __init__(
        self,
        model_path: str,
        *,
        tokenizer,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        kv_cache_space_gib: int = 1,
        enforce_eager: bool = True,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        sleep_when_idle: bool = False,
        num_threads: int | None = None,
        prefix_caching: bool | None = None,
    ):
        import_vllm()
        config = read_config(model_path)
        own_tokenizer = check_tokenizer_matches(tokenizer, model_path, config)
        self.model_path = model_path
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.vocab_size = int(text_config(config)["vocab_size"])
        self.tied_embeddings = bool(
            text_config(config).get("tie_word_embeddings", config.get("tie_word_embeddings", False))
        )
        self.options = EngineOptions(
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_space_gib=kv_cache_space_gib,
            enforce_eager=enforce_eager,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            max_logprobs=1,
            enable_sleep_mode=sleep_when_idle,
            num_threads=num_threads,
            enable_prefix_caching=prefix_caching,
        )
        tokenizer_path = None if own_tokenizer else getattr(tokenizer, "name_or_path", None)
        self.llm = build_engine(model_path, self.options, tokenizer_path=tokenizer_path)
        self.sleep_when_idle = sleep_when_idle and not on_cpu_build()
        self.asleep = False
        self.sync_seconds = 0.0  # time of the last weight sync
        # Prompt tokens sent and those whose KV blocks the engine found in its prefix cache
        # (cumulative; a multi-turn rollout resends each conversation every turn).
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0

    # ------------------------------------------------------------------ sampling

    def _sampling_params(self, request: SamplingRequest, prompt_index: int):
        from vllm import SamplingParams

        greedy = request.temperature == 0.0
        # vLLM gives child sample j of a prompt the seed (prompt seed + j): spacing prompt seeds
        # n apart keeps every sample's seed distinct.
        seed = (request.seed * 1_000_003 + prompt_index * request.n) % (2**63 - 1)
        return SamplingParams(
            n=1 if greedy else request.n,  # vLLM refuses n > 1 greedy: generate() repeats it
            temperature=0.0 if greedy else request.temperature,
            top_p=1.0 if greedy else request.top_p,
            top_k=0,
            max_tokens=request.max_new_tokens,
            seed=seed,
            logprobs=0,  # the sampled token's log-prob only (raw distribution, see module doc)
            flat_logprobs=True,
            detokenize=False,  # the rollout worker decodes
            skip_special_tokens=False,
        )

    def _check_prompts(self, prompts: Sequence[Sequence[int]]) -> None:
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError(f"vLLM rollout: prompt {i} is empty; every prompt needs >= 1 token")
            bad = [t for t in prompt if not 0 <= int(t) < self.vocab_size]
            if bad:
                raise ValueError(
                    f"vLLM rollout: prompt {i} holds token ids {bad[:5]} outside the model's "
                    f"vocabulary [0, {self.vocab_size}); was it encoded with another tokenizer?"
                )

    def generate(self, prompts: Sequence[Sequence[int]], request: SamplingRequest) -> list[Sample]:
        """n samples per prompt, grouped by prompt (see RolloutBackend.generate)."""
        if request.n < 1 or request.max_new_tokens < 1:
            raise ValueError(f"vLLM rollout: need n >= 1 and max_new_tokens >= 1, got {request}")
        self._check_prompts(prompts)
        self.wake_up()
        inputs = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts]
        params = [self._sampling_params(request, i) for i in range(len(prompts))]
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
        except Exception as exc:
            raise VLLMEngineError(
                f"vLLM engine for {self.model_path} failed while sampling {len(prompts)} prompts "
                f"x {request.n}: {type(exc).__name__}: {exc}"
            ) from exc
        samples: list[Sample] = []
        self.prompt_tokens += sum(len(p) for p in prompts)
        self.cached_prompt_tokens += sum(int(o.num_cached_tokens or 0) for o in outputs)
        for prompt_index, output in enumerate(outputs):
            completions = sorted(output.outputs, key=lambda c: c.index)
            if request.temperature == 0.0:
                completions = completions * request.n  # greedy samples of a prompt are identical
            if len(completions) != request.n:
                raise VLLMEngineError(
                    f"vLLM engine returned {len(completions)} samples for prompt {prompt_index}, "
                    f"expected {request.n}"
                )
            for completion in completions:
                tokens = tuple(int(t) for t in completion.token_ids)
                logprobs = tuple(float(x) for x in completion.logprobs.logprobs)
                if len(logprobs) != len(tokens):
                    raise VLLMEngineError(
                        f"vLLM engine returned {len(logprobs)} log-probs for {len(tokens)} tokens"
                    )
                samples.append(Sample(prompt_index=prompt_index, response_ids=tokens, logprobs=logprobs))
        if self.sleep_when_idle:
            self.sleep()
        return samples

    # ------------------------------------------------------------------ weights

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Reload every weight from a full Hugging Face-named state dict, in place.

        A tied LM head may be present (it must then equal the embedding) or absent; an untied
        one must be present.
        """
        self._check_state_dict(state_dict)
        start = time.perf_counter()
        self._wake_weights()
        try:
            self.llm.collective_rpc("tip_reload_state_dict", args=(dict(state_dict),))
        except Exception as exc:
            raise VLLMEngineError(
                f"vLLM engine for {self.model_path}: weight reload failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.llm.reset_prefix_cache()  # cached KV blocks hold the old weights' keys and values
        self.sync_seconds = time.perf_counter() - start

    def _check_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        if not state_dict:
            raise ValueError("weight sync: the state dict is empty")
        head = state_dict.get("lm_head.weight")
        embed = state_dict.get("model.embed_tokens.weight")
        if self.tied_embeddings:
            if head is not None and embed is not None and head.data_ptr() != embed.data_ptr() \
                    and not torch.equal(head, embed):
                raise ValueError(
                    "weight sync: the model ties lm_head to the embedding, but the state dict's "
                    "lm_head.weight differs from model.embed_tokens.weight; the engine cannot "
                    "hold a separate head (untie the embeddings in the model config instead)"
                )
        elif head is None:
            raise ValueError(
                "weight sync: the model has its own lm_head (untied embeddings) but the state dict "
                "has no lm_head.weight; send the full state dict"
            )
        for name, tensor in state_dict.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"weight sync: {name} is a {type(tensor).__name__}, not a tensor")

    @property
    def broadcast_ranks(self) -> int:
        """Members this engine adds to a broadcast group: one per tensor-parallel worker."""
        return self.options.tensor_parallel_size

    def join_broadcast_group(self, address: GroupAddress, rank_offset: int) -> list[int]:
        """Join learner rank 0's broadcast group (blocks until every rank joined)."""
        return self.llm.collective_rpc("tip_join_broadcast_group", args=(address, rank_offset))

    def receive_broadcast(self) -> int:
        """Take the weights learner rank 0 broadcasts now; returns tensors received."""
        start = time.perf_counter()
        self._wake_weights()
        try:
            counts = self.llm.collective_rpc("tip_receive_broadcast")
        except Exception as exc:
            raise VLLMEngineError(
                f"vLLM engine for {self.model_path}: weight broadcast failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.llm.reset_prefix_cache()
        self.sync_seconds = time.perf_counter() - start
        return int(counts[0])

    # ------------------------------------------------------------------ colocation

    def sleep(self) -> None:
        """Free GPU memory for a learner sharing the GPUs: weights offloaded to host memory and
        KV cache released (level 1; level 2 would drop the weights, wrong whenever a rollout
        reuses a version without a sync in between). No-op on CPU builds."""
        if not self.options.enable_sleep_mode or self.asleep or on_cpu_build():
            return
        self.llm.sleep(level=1)
        self.asleep = True

    def _wake_weights(self) -> None:
        if self.asleep:
            self.llm.wake_up(tags=["weights"])

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()  # everything still asleep (weights, if no sync came; KV cache)
            self.asleep = False

    def close(self) -> None:
        if self.llm is not None:
            shutdown_engine(self.llm)
            self.llm = None
            release_memory()
