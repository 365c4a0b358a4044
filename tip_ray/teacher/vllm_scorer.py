"""The teacher stage on a vLLM engine: prefill prompt+response once, read the teacher's top-k.

vLLM's ``prompt_logprobs=k`` returns, for every prompt position t >= 1, the log-prob of the
token at t and the k most likely tokens of the distribution at t - 1 that predicted it, over the
raw (unwarped) distribution. Scoring a rollout row as a prompt therefore yields, at each response
position, exactly what the Hugging Face scorer's top-k form holds (tip_ray/teacher/scorer.py):
the top-k indices and log-probs, the tail bucket, and the teacher log-prob of the sampled token.
Only the top-k form exists here; the exact forms (hidden states, full log-probs) stay on the
Hugging Face scorer, and the config refuses teacher.backend type 'vllm' with them.

With ``flat_logprobs`` vLLM keeps each position's k + 1 entries in flat lists (sampled token
first, then ranks 1..k), so the tensors are built without one Python object per entry.
"""

from __future__ import annotations

import time

import torch

from tip_ray.records import RolloutBatch, ScoredBatch
from tip_ray.teacher.scorer import ScorerSettings
from tip_ray.tip.signal import TopKLogProbs, tail_logprob_of
from tip_ray.vllm_engine.engine import (
    EngineOptions,
    VLLMEngineError,
    build_engine,
    gpus_held,
    read_config,
    release_memory,
    shutdown_engine,
    text_config,
)
from tip_ray.vllm_engine.tokenizer_check import check_tokenizer_matches


class VLLMTeacherScorer:
    """Same role and ``score`` contract as TeacherScorer, for ``teacher.signal.type: topk``.

    tensor_parallel_size None means "every GPU this process holds" (one engine per teacher
    actor, its tensor-parallel workers on the actor's GPUs). A teacher actor owns its GPUs, so
    the engine may take most of their memory. Give max_model_len (longest prompt + response):
    the default, the model's full context, can leave no room for the KV cache of one sequence.
    """

    def __init__(
        self,
        settings: ScorerSettings,
        *,
        tensor_parallel_size: int | None = None,
        gpu_memory_utilization: float = 0.85,
        kv_cache_space_gib: int = 1,
        enforce_eager: bool = True,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        tokenizer=None,
    ):
        if settings.teacher.signal.type != "topk":
            raise ValueError(
                f"teacher.backend type 'vllm' yields the top-k form only, got teacher.signal.type "
                f"{settings.teacher.signal.type!r}; set it to 'topk' or use teacher.backend {{type: hf}}"
            )
        self.k = settings.teacher.signal.k
        config = read_config(settings.model_path)
        self.vocab_size = int(text_config(config)["vocab_size"])
        if not 1 <= self.k <= self.vocab_size:
            raise ValueError(
                f"teacher.signal.k must be in [1, {self.vocab_size}] (the teacher's vocabulary), "
                f"got {self.k}"
            )
        if tokenizer is not None:
            check_tokenizer_matches(tokenizer, settings.model_path, config)
        self.settings = settings
        self.options = EngineOptions(
            tensor_parallel_size=tensor_parallel_size or gpus_held(),
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_space_gib=kv_cache_space_gib,
            enforce_eager=enforce_eager,
            dtype=settings.dtype,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            max_logprobs=self.k,
            num_threads=settings.num_threads,
        )
        self.llm = build_engine(settings.model_path, self.options, with_extension=False)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def ready(self) -> str:
        return self.settings.name

    def _row_requests(self, rollout: RolloutBatch):
        """(row, token ids, response positions) of every row that has response tokens."""
        requests = []
        lengths = rollout.attention_mask.sum(1).tolist()
        for row, length in enumerate(lengths):
            positions = rollout.response_mask[row, :length].nonzero().squeeze(1)
            if positions.numel() == 0:
                continue
            if length > self.max_model_len:
                raise ValueError(
                    f"vLLM teacher: rollout row {row} holds {length} tokens but the engine's "
                    f"max_model_len is {self.max_model_len}; lower data.max_prompt_tokens + "
                    f"rollout.sampling.max_new_tokens or raise the engine's max_model_len"
                )
            if int(positions[0]) == 0:
                raise ValueError(f"vLLM teacher: rollout row {row} has no prompt token before its response")
            ids = rollout.input_ids[row, :length].tolist()
            requests.append((row, ids, positions))
        return requests

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        from vllm import SamplingParams

        start = time.perf_counter()
        k = self.k
        requests = self._row_requests(rollout)
        params = SamplingParams(
            max_tokens=1,  # prefill is the work; the one sampled token is thrown away
            temperature=0.0,
            prompt_logprobs=k,
            flat_logprobs=True,
            detokenize=False,
        )
        outputs = []
        if requests:
            try:
                outputs = self.llm.generate(
                    [{"prompt_token_ids": ids} for _, ids, _ in requests], params, use_tqdm=False
                )
            except Exception as exc:
                raise VLLMEngineError(
                    f"vLLM teacher engine for {self.settings.model_path} failed while scoring batch "
                    f"{rollout.batch_id}: {type(exc).__name__}: {exc}"
                ) from exc
        indices, logprobs, sampled = [], [], []
        for (row, ids, positions), output in zip(requests, outputs):
            flat = output.prompt_logprobs
            # Position 0 has no entry; every later position has k + 1: the token there, then top-k.
            widths = [e - s for s, e in zip(flat.start_indices[1:], flat.end_indices[1:])]
            if len(widths) != len(ids) - 1 or any(w != k + 1 for w in widths):
                raise VLLMEngineError(
                    f"vLLM teacher: unexpected prompt log-prob layout for row {row} "
                    f"({len(widths)} positions for {len(ids)} tokens, widths {sorted(set(widths))}, "
                    f"expected {k + 1})"
                )
            first = flat.start_indices[1]
            lp = torch.tensor(flat.logprobs[first:], dtype=torch.float32).view(len(ids) - 1, k + 1)
            tok = torch.tensor(flat.token_ids[first:], dtype=torch.int64).view(len(ids) - 1, k + 1)
            # Entry t - 1 of the view describes the distribution at t - 1 predicting token t.
            at = positions - 1
            indices.append(tok[at, 1:])
            logprobs.append(lp[at, 1:])
            sampled.append(lp[at, 0])
        if indices:
            top_indices, top_logprobs = torch.cat(indices), torch.cat(logprobs)
            sampled_logprobs = torch.cat(sampled)
        else:
            top_indices = torch.zeros((0, k), dtype=torch.int64)
            top_logprobs = torch.zeros((0, k), dtype=torch.float32)
            sampled_logprobs = torch.zeros((0,), dtype=torch.float32)
        signal = TopKLogProbs(
            indices=top_indices, logprobs=top_logprobs, tail_logprob=tail_logprob_of(top_logprobs)
        )
        return ScoredBatch(
            rollout=rollout,
            teacher=signal,
            teacher_sampled_logprobs=sampled_logprobs,
            seconds=time.perf_counter() - start,
        )

    def close(self) -> None:
        if self.llm is not None:
            shutdown_engine(self.llm)
            self.llm = None
            release_memory()
