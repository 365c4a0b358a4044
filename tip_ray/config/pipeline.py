"""The pipeline configuration: one pydantic model tree, loaded from one YAML file. Each section is
defined in a module of its own (models, data, rollout, teacher, selection, loss, learner, train,
cluster, tracking, evaluation); this one joins them and checks what spans sections.

Every model forbids unknown keys, so a misspelled key fails before anything starts. Strategies
(model source, data source, rollout backend, teacher signal form and backend, selection rule,
loss) are discriminated unions keyed by ``type``: a new strategy is code plus a name, never an
import path.
This module imports neither torch nor ray.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tip_ray.config.base import Strict
from tip_ray.config.cluster import ClusterConfig
from tip_ray.config.data import DataSource
from tip_ray.config.evaluation import EvalConfig
from tip_ray.config.learner import LearnerConfig
from tip_ray.config.loss import Loss, ReverseKLLoss, refuse_stray_beta
from tip_ray.config.models import ModelsConfig
from tip_ray.config.rollout import RolloutConfig
from tip_ray.config.selection import SelectionConfig
from tip_ray.config.teacher import TeacherConfig
from tip_ray.config.teachers import TeacherSource, check_teachers
from tip_ray.config.tracking import LoggingConfig
from tip_ray.config.train import CheckpointConfig, TrainConfig


class PipelineConfig(Strict):
    """A whole distillation run."""

    name: str = Field(description="Run name; also names the run folder.")
    models: ModelsConfig
    data: DataSource
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teachers: dict[str, TeacherSource] | None = Field(
        default=None, description="Several teachers by name, instead of models.teacher (docs/teachers.md)."
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    loss: Loss = Field(default_factory=ReverseKLLoss)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_options_in_place(cls, value):
        return refuse_stray_beta(value)

    def _tool_task_has_its_tools(self, needs_eval) -> None:
        """A generated task that needs a tool environment (its registry entry names it) cannot be
        solved without it: refuse a run whose data or evaluation asks for the task without it."""
        from tip_ray.eval.benchmarks import benchmark_info
        from tip_ray.tasks.registry import get_task

        environment = self.rollout.environment
        offered = getattr(environment, "name", None)
        for place, wanted, task in (
            ("data.task", getattr(self.data, "task", None), getattr(self.data, "task", None)),
            ("eval.benchmark", self.eval.benchmark, benchmark_info(self.eval.benchmark).task if needs_eval else None),
        ):
            needed = get_task(task).environment if task else None
            if needed and offered != needed:
                raise ValueError(
                    f"{place} {wanted!r} needs its tool: set rollout.environment to "
                    f"{{type: tools, name: {needed}}} (it is {environment.type!r}"
                    f"{f' named {offered!r}' if offered else ''})"
                )

    @model_validator(mode="after")
    def _cross_checks(self) -> "PipelineConfig":
        check_teachers(self)
        needs_eval = self.eval.every_steps or self.eval.at_start
        from tip_ray.eval.benchmarks import benchmark_info

        generated = benchmark_info(self.eval.benchmark).task is not None
        if needs_eval and not generated and not (self.eval.path or self.eval.hf_dataset):
            raise ValueError(
                f"eval.benchmark {self.eval.benchmark!r} needs eval.path (a local JSONL file) "
                f"or eval.hf_dataset"
            )
        self._tool_task_has_its_tools(needs_eval)
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
