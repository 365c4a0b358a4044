"""Resolve the built model sources (GGUF files, pruned students) to cached model folders.

Called from prepare (tip_ray.pipeline.prepare.resolve_model_path) before any actor starts, so a
bad file, a layer list the model does not have or a missing package fails there; a folder once
built is reused by every later run (see tip_ray.models.cache).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tip_ray.config.model_sources import GGUFModel, PrunedModel
from tip_ray.models.cache import build_threads, cache_base, cached_build, file_sha256, record_key, torch_threads

# Bumped when pruning or healing changes what it writes, so old cached students are rebuilt.
PRUNER_VERSION = 1


def resolve_gguf(source: GGUFModel, where: str) -> str:
    from tip_ray.models.gguf import converted_folder, locate_gguf

    path = locate_gguf(source.path, source.package, source.file, where)
    return str(converted_folder(path, where=where))


def folder_digest(folder: str | Path) -> str:
    """SHA-256 over a model folder's config and weight files (what decides its outputs)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + [folder / "config.json"]:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def kept_layers(source: PrunedModel, num_layers: int, where: str) -> list[int]:
    from tip_ray.models.prune import check_layers, layers_every

    if source.keep_layers is not None:
        return check_layers(list(source.keep_layers), num_layers, f"{where}.keep_layers")
    return layers_every(num_layers, int(source.keep_every))


def heal_prompts(source: PrunedModel) -> list[str | None]:
    """``heal.samples`` prompts: the file's prompts shuffled by the seed (cycled when fewer),
    or free writing from the start token when no file is given."""
    from tip_ray.models.heal import read_prompts

    heal = source.heal
    if heal.prompts is None:
        return [None] * heal.samples
    prompts = read_prompts(heal.prompts, heal.prompt_field)
    random.Random(heal.seed).shuffle(prompts)
    return [prompts[i % len(prompts)] for i in range(heal.samples)]


def build_pruned(base: str, keep: list[int], source: PrunedModel, out_dir: Path, progress: bool = True) -> dict:
    """Prune the model at ``base`` to the layers ``keep``, heal it, and write it to ``out_dir``."""
    from tip_ray.models.heal import heal, sample_responses
    from tip_ray.models.loading import load_causal_lm, load_tokenizer
    from tip_ray.models.prune import prune_layers
    from tip_ray.models.tiny import save_model

    teacher = load_causal_lm(base, dtype="float32").eval()
    tokenizer = load_tokenizer(base)
    student = prune_layers(teacher, keep)
    losses: list[float] = []
    settings = source.heal
    if settings.steps:
        if progress:
            print(f"healing the pruned student: {settings.samples} teacher samples, {settings.steps} steps", flush=True)
        samples = sample_responses(teacher, tokenizer, heal_prompts(source), settings.max_new_tokens,
                                  settings.temperature, settings.seed)
        losses = heal(student, teacher, samples, settings.steps, settings.batch_size, settings.lr,
                      int(tokenizer.pad_token_id), settings.seed, progress)
    save_model(student, tokenizer, out_dir)
    student.generation_config.save_pretrained(out_dir)
    return {"kept_layers": keep, "teacher_layers": teacher.config.num_hidden_layers,
            "parameters": sum(p.numel() for p in student.parameters()), "heal_losses": losses}


def resolve_pruned(source: PrunedModel, where: str, resolve: Callable[[Any, str], str],
                   cache_dir: str | Path | None = None) -> str:
    from tip_ray.models.loading import read_model_config

    base = resolve(source.base, f"{where}.base")
    num_layers = int(read_model_config(base).get("num_hidden_layers") or 0)
    keep = kept_layers(source, num_layers, where)
    if source.heal.steps:
        heal_prompts(source)  # a bad prompts file fails now, not after the model is loaded
    record = {
        "version": PRUNER_VERSION,
        "base": folder_digest(base),
        "keep": keep,
        "heal": source.heal.model_dump(mode="json"),
        "heal_prompts_sha256": file_sha256(Path(source.heal.prompts).expanduser()) if source.heal.prompts else None,
    }
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_base() / "pruned"
    def build(staging: Path) -> dict:
        with torch_threads(build_threads()):
            return build_pruned(base, keep, source, staging)

    folder = cached_build(root / record_key(record), record, build)
    return str(folder)


def resolve_derived(source: GGUFModel | PrunedModel, where: str, resolve: Callable[[Any, str], str]) -> str:
    """The model folder for a GGUF or pruned source; ``resolve`` resolves a pruned model's base
    (any source, the demo models included: the pipeline passes its own resolver)."""
    if isinstance(source, GGUFModel):
        return resolve_gguf(source, where)
    return resolve_pruned(source, where, resolve)
