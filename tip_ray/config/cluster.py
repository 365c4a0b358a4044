"""cluster: the Ray address, named resource pools, and which pool each role runs on. This module
imports neither torch nor ray."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tip_ray.config.addresses import ray_address_problem
from tip_ray.config.base import Strict
from tip_ray.pools import KNOWN_POOLS


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
