"""The sweep file: a base pipeline, the variants to compare, the seeds, and where the report goes.

    sweep:
      base: ../demo.yaml               # relative to this file
      seeds: [0, 1, 2]
      set: {train.steps: 20}           # overrides for every run (dotted keys)
      runs:
        - {label: all, rule: {type: all}}
        - {label: soft_or-50, rule: {type: soft_or, ratio: 0.5}}
      report_dir: docs/sweeps/demo     # relative to the working directory
      heldout_kl:                      # optional: also measure KL(student || teacher) held out
        prompts: data/math500/heldout.jsonl
        num_prompts: 16
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tip_ray.config.base import Strict
from tip_ray.config.loader import ConfigError, deep_merge, dotted, format_validation_error, load_pipeline, load_yaml_tree
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.selection import SelectionRule
from tip_ray.config.shipped import locate_pipeline


class SweepRun(Strict):
    label: str = Field(description="Name of the variant in the report, e.g. soft_or-50.")
    rule: SelectionRule = Field(description="The selection rule (and its ratio) of this variant.")


class HeldoutKLSpec(Strict):
    """Reverse KL, KL(student || teacher) per token, on the student's own samples of held-out
    prompts: before distillation (once per seed) and after each run. For real pairs, where no
    checker scores the student, this is how far it still is from its teacher."""

    prompts: str = Field(description="JSONL of held-out prompts, relative to the working directory.")
    field: str = Field(default="problem", description="Prompt field of each row.")
    num_prompts: int = Field(default=16, gt=0, description="Prompts used (the file's first ones).")
    samples_per_prompt: int = Field(default=1, gt=0, description="Student samples per prompt.")
    max_new_tokens: int | None = Field(
        default=None, gt=0, description="Tokens per sample (default: the pipeline's rollout.sampling.max_new_tokens)."
    )


class SweepSpec(Strict):
    base: str = Field(description="Base pipeline YAML, relative to the sweep file.")
    seeds: list[int] = Field(min_length=1, description="Seeds; every variant runs with each.")
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted-key overrides for all runs.")
    runs: list[SweepRun] = Field(min_length=1, description="The variants compared.")
    report_dir: str = Field(description="Report folder, relative to the working directory.")
    runs_dir: str | None = Field(
        default=None, description="Run folders (default runs/sweeps/<sweep file name>), relative to the working directory."
    )
    token_stats_prompts: int = Field(default=64, gt=0, description="Prompts sampled for the h-delta scatter.")
    heldout_kl: HeldoutKLSpec | None = Field(
        default=None, description="Also measure the held-out reverse KL to the teacher before and after each run."
    )

    @field_validator("runs")
    @classmethod
    def _unique_labels(cls, runs: list[SweepRun]) -> list[SweepRun]:
        labels = [r.label for r in runs]
        duplicates = sorted({l for l in labels if labels.count(l) > 1})
        if duplicates:
            raise ValueError(f"run labels must be unique; repeated: {', '.join(duplicates)}")
        return runs


class LoadedSweep(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    spec: SweepSpec
    base_path: Path
    base: PipelineConfig

    @property
    def report_dir(self) -> Path:
        return Path(self.spec.report_dir).expanduser().resolve()

    @property
    def runs_dir(self) -> Path:
        """Run folders (weights, metrics) stay out of the report folder."""
        return Path(self.spec.runs_dir or f"runs/sweeps/{self.path.stem}").expanduser().resolve()

    def overrides(self) -> dict:
        merged: dict = {}
        for key, value in self.spec.set.items():
            merged = deep_merge(merged, dotted(key, value))
        return merged

    def run_config(self, run: SweepRun, seed: int, extra: dict | None = None) -> PipelineConfig:
        """The pipeline of one (variant, seed), validated; `extra` is merged over it last."""
        override = deep_merge(self.overrides(), {
            "name": f"{self.base.name}-{run.label}-s{seed}",
            "selection": {"rule": run.rule.model_dump()},
            "train": {"seed": seed},
            "logging": {"run_dir": str(self.runs_dir / f"{run.label}-s{seed}"), "progress": False},
        })
        if extra:
            override = deep_merge(override, extra)
        return load_pipeline(self.base_path, override)


def load_sweep(path: str | Path) -> LoadedSweep:
    file = locate_pipeline(str(path)).resolve()  # a path, or a shipped sweep's name (sweeps/demo_rules)
    tree = load_yaml_tree(file)
    if set(tree) != {"sweep"}:
        raise ConfigError(f"{file}: a sweep file has one top-level key, 'sweep' (got {sorted(tree)})")
    try:
        spec = SweepSpec.model_validate(tree["sweep"])
    except ValidationError as exc:
        raise ConfigError(format_validation_error(file, exc).replace("pipeline configuration", "sweep")) from None
    base_path = (file.parent / spec.base).resolve()
    loaded = LoadedSweep(path=file, spec=spec, base_path=base_path, base=load_pipeline(base_path))
    # Every (variant, seed) must validate before anything runs.
    configs = [loaded.run_config(run, spec.seeds[0]) for run in spec.runs]
    if spec.heldout_kl is not None:
        _check_heldout(file, spec.heldout_kl, configs)
    return loaded


def _check_heldout(file: Path, heldout: HeldoutKLSpec, configs: list[PipelineConfig]) -> None:
    from tip_ray.models.heal import PromptsFileError, read_prompts

    try:
        read_prompts(heldout.prompts, heldout.field, place="sweep.heldout_kl.prompts",
                     field_key="sweep.heldout_kl.field")
    except PromptsFileError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    if not all(c.checkpoint.export_hf for c in configs):
        raise ConfigError(f"{file}: sweep.heldout_kl measures each run's final model: set "
                          "checkpoint.export_hf: true (in the sweep's `set:` or the base pipeline)")
