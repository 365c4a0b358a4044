"""Everything checked before any actor starts: model folders, tokenizer/vocabulary agreement,
the dataset, and the run folder. A bad input fails here, with nothing left running."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from tip_ray.config.loader import ConfigError, resolved_config_yaml
from tip_ray.config.model_sources import GGUFModel, PrunedModel
from tip_ray.config.models import DemoModel, HubModel, LocalModel
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.data.prompts import EncodedPrompt, ReadReport, encode_rows, read_prompt_rows
from tip_ray.data.teacher_routes import route_prompts
from tip_ray.envs.template import prompt_tools
from tip_ray.pipeline.teacher_routing import PreparedTeacher, prepare_teachers


@dataclass(frozen=True)
class PreparedRun:
    config: PipelineConfig
    student_path: str
    teacher_path: str
    tokenizer_path: str
    prompts: list[EncodedPrompt]
    data_report: ReadReport
    run_dir: Path
    pad_token_id: int
    eos_token_id: int
    vocab_size: int  # the student's; the distributions compared have this many entries
    teachers: tuple[PreparedTeacher, ...] = ()  # every teacher, the default first (teacher_path's)
    teacher_of_row: Mapping[int, int] = field(default_factory=dict)  # dataset row -> teacher index; {} = 0


def resolve_model_path(source: Any, where: str) -> str:
    if isinstance(source, LocalModel):
        path = Path(source.path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{where}.path: {path} is not a model folder (no config.json there); "
                f"give the folder written by save_pretrained"
            )
        return str(path.resolve())
    if isinstance(source, HubModel):
        from huggingface_hub import snapshot_download

        from tip_ray.models.loading import hub_offline

        offline = hub_offline()
        try:
            # Offline (HF_HUB_OFFLINE=1), a model already in the local cache is used as is.
            return snapshot_download(source.name, revision=source.revision, local_files_only=offline)
        except Exception as exc:
            if offline:
                raise ConfigError(f"{where}: hub model {source.name!r} is not in the local Hugging Face "
                                  f"cache and HF_HUB_OFFLINE=1 forbids fetching it") from None
            raise ConfigError(f"{where}: cannot fetch hub model {source.name!r}: {exc}") from None
    if isinstance(source, DemoModel):
        from tip_ray.pipeline.demo_source import resolve_demo

        return resolve_demo(source)
    if isinstance(source, (GGUFModel, PrunedModel)):
        from tip_ray.models.sources import resolve_derived

        return resolve_derived(source, where, resolve_model_path)
    raise ConfigError(f"{where}: unknown model source {source!r}")


def write_resolved_config(config: PipelineConfig, run_dir: Path) -> Path:
    """config.resolved.yaml in the run folder, secret values masked before it touches the disk."""
    from tip_ray.checkpoint.redact import mask_tree

    path = run_dir / "config.resolved.yaml"
    tmp = path.with_name(path.name + ".tmp")
    # Masked value by value, then dumped: a masked value stays a quoted scalar, valid YAML.
    doc = mask_tree(yaml.safe_load(resolved_config_yaml(config)))
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def run_dir_for(config: PipelineConfig, override: str | None = None) -> Path:
    if not override:
        from tip_ray.pipeline.run_folder import check_run_name

        check_run_name(config.name, config.logging.run_dir)
    return Path(override or config.logging.run_dir.format(name=config.name)).expanduser().resolve()


def prepare_run(config: PipelineConfig, run_dir: str | None = None, write: bool = True) -> PreparedRun:
    from tip_ray.models.loading import load_tokenizer

    student = resolve_model_path(config.models.student, "models.student")
    teachers, vocab_size = prepare_teachers(config, student, resolve_model_path)
    tokenizer_path = (
        resolve_model_path(config.models.tokenizer, "models.tokenizer")
        if config.models.tokenizer
        else student
    )
    if config.learner.lora is not None:
        from tip_ray.learner.lora import LoraSettings, check_targets

        check_targets(student, LoraSettings.from_config(config.learner.lora))
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError(f"models.tokenizer: {tokenizer_path} defines no pad or eos token")
    rows, report = read_prompt_rows(config.data)
    prompts = encode_rows(rows, tokenizer, config.data, report, tools=prompt_tools(config.rollout.environment))
    teacher_of_row = route_prompts(prompts, config.data, [t.name for t in teachers]) if config.teachers else {}
    folder = run_dir_for(config, run_dir)
    if write:
        # The user's permissions only: run folders may hold prompts and weights. The resolved
        # config is written by the run, once it holds the folder's lock (write_resolved_config).
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return PreparedRun(
        config=config,
        student_path=student,
        teacher_path=teachers[0].path,
        tokenizer_path=tokenizer_path,
        prompts=prompts,
        data_report=report,
        run_dir=folder,
        pad_token_id=int(tokenizer.pad_token_id),
        eos_token_id=int(tokenizer.eos_token_id),
        vocab_size=vocab_size,
        teachers=teachers,
        teacher_of_row=teacher_of_row,
    )
