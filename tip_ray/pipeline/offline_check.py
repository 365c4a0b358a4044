"""What `tip-ray validate` can check on a laptop without a network, and what it leaves unchecked.

Validation is run before a job goes to a cluster, often where the hub cannot be reached. It
checks everything local (schema, local model folders, tokenizers, data rows) and reports what
only a download could check (a hub model not in the local cache, a hub dataset, demo models not
built yet) as unchecked, with the reason, instead of failing. `--strict` resolves everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from tip_ray.config.models import DemoModel, HubModel

from tip_ray.config.pipeline import PipelineConfig


@dataclass(frozen=True)
class Unchecked:
    key: str  # e.g. models.student
    reason: str


def _hub_model_cached(source: HubModel) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.name, "config.json", revision=source.revision)
    return isinstance(found, str)


def model_sources(config: PipelineConfig) -> list[tuple[str, object]]:
    sources = [("models.student", config.models.student)]
    if config.models.teacher is not None:
        sources.append(("models.teacher", config.models.teacher))
    for name, teacher in (config.teachers or {}).items():
        sources.append((f"teachers.{name}.model", teacher.model))
    if config.models.tokenizer is not None:
        sources.append(("models.tokenizer", config.models.tokenizer))
    return sources


def unchecked_offline(config: PipelineConfig) -> list[Unchecked]:
    """The parts of `config` that only a download (or a 5-minute bootstrap) could check."""
    from tip_ray.pipeline.demo_source import demo_models_built

    gaps = []
    for key, source in model_sources(config):
        if isinstance(source, HubModel) and not _hub_model_cached(source):
            gaps.append(Unchecked(key, f"hub model {source.name!r} is not in the local Hugging Face cache "
                                       f"(validate does not download it; --strict does)"))
        elif isinstance(source, DemoModel) and not demo_models_built(source.task):
            gaps.append(Unchecked(key, "the demo models are not built yet (the first `tip-ray demo` or "
                                       "run builds them; --strict does now)"))
    if config.data.type == "hub":
        gaps.append(Unchecked("data", f"hub dataset {config.data.name!r} is not read by validate (--strict reads it)"))
    return gaps


def check_local_parts(config: PipelineConfig) -> str:
    """Check the local model folders and the data rows (when local); a summary of what was read."""
    from tip_ray.config.models import LocalModel
    from tip_ray.data.prompts import read_prompt_rows
    from tip_ray.pipeline.prepare import resolve_model_path

    for key, source in model_sources(config):
        if isinstance(source, LocalModel):
            resolve_model_path(source, key)
    if config.data.type == "hub":
        return "data not read"
    rows, report = read_prompt_rows(config.data)
    return f"{len(rows)} prompt rows read ({len(report.skipped_bad)} bad rows skipped; not tokenized)"
