"""`tip-ray eval`: a model (folder or run checkpoint) on a benchmark, n samples per problem,
mean@n and pass@k with standard errors, through the pipeline's rollout backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a benchmark (mean@n, pass@k)")
    p.add_argument("--model", required=True, help="model folder, or a run folder (uses its final_model)")
    p.add_argument("--benchmark", default="demo", choices=["demo", "math500", "aime24", "aime25"],
                   help="the demo's arithmetic held-out set (generated) or a math benchmark")
    p.add_argument("--path", default=None, help="local JSONL (or folder) of a math benchmark")
    p.add_argument("--hf-dataset", default=None, help="Hugging Face dataset name ('default' for the usual one)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N problems")
    p.add_argument("-n", "--samples", type=int, default=1, help="samples per problem (n of mean@n)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest response, in tokens")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"], help="rollout backend")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per generate call (hf)")
    p.add_argument("--chat-template", default="auto", choices=["auto", "never"],
                   help="auto: wrap prompts in the tokenizer's chat template when it has one")
    p.add_argument("--grade-timeout", type=float, default=5.0, help="seconds per answer (math)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--out", default=None, help="write the report (JSON, with every sample) here")
    p.set_defaults(handler=handle)


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
FLAGS = {"num_problems": "--limit", "samples_per_problem": "-n/--samples", "temperature": "--temperature",
         "max_new_tokens": "--max-new-tokens", "grade_timeout_s": "--grade-timeout", "path": "--path",
         "hf_dataset": "--hf-dataset", "benchmark": "--benchmark"}


def resolve_model(path: str) -> str:
    from tip_ray.config.loader import ConfigError

    folder = Path(path).expanduser()
    for candidate in (folder, folder / "final_model"):
        if (candidate / "config.json").is_file():
            if not any(any(candidate.glob(pattern)) for pattern in WEIGHT_FILES):
                raise ConfigError(f"--model {path}: {candidate} has config.json but no weights "
                                  f"({' or '.join(WEIGHT_FILES)}); is the model fully written?")
            return str(candidate)
    raise ConfigError(f"--model {path}: neither a model folder (config.json) nor a run folder with final_model/")


def eval_config(args: argparse.Namespace):
    """The evaluation settings from the flags; a bad value is named by its flag."""
    from pydantic import ValidationError

    from tip_ray.config.evaluation import EvalConfig
    from tip_ray.config.loader import ConfigError

    if args.out and not Path(args.out).expanduser().resolve().parent.is_dir():
        raise ConfigError(f"--out {args.out}: the folder it would be written in does not exist")
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be a positive number of sequences, got {args.batch_size}")
    try:
        return EvalConfig(benchmark=args.benchmark, path=args.path, hf_dataset=args.hf_dataset,
                          num_problems=args.limit, samples_per_problem=args.samples,
                          temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                          grade_timeout_s=args.grade_timeout)
    except ValidationError as exc:
        problems = [f"{FLAGS.get(str(err['loc'][0]), err['loc'][0]) if err['loc'] else 'flags'} "
                    f"{err['input']!r}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("; ".join(problems)) from None


def handle(args: argparse.Namespace) -> int:
    from tip_ray.config.loader import ConfigError
    from tip_ray.config.rollout import HFRollout, RolloutConfig, SamplingConfig, VLLMRollout
    from tip_ray.errors import TipRayError
    from tip_ray.pipeline.evaluation import RunEvaluator
    from tip_ray.rollout.worker import RolloutSettings, RolloutWorker
    from tip_ray.weights import WeightVersion

    cfg = eval_config(args)
    model = resolve_model(args.model)
    backend = HFRollout(batch_size=args.batch_size) if args.backend == "hf" else VLLMRollout(type="vllm")
    sampling = SamplingConfig(temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens)
    settings = RolloutSettings(
        model_path=model, rollout=RolloutConfig(backend=backend, samples_per_prompt=args.samples, sampling=sampling),
        seed=args.seed,
    )
    try:
        worker = RolloutWorker(settings)
    except TipRayError:
        raise
    except Exception as exc:  # damaged or foreign weights: say which folder, not where it broke
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"--model {args.model}: cannot load the model in {model} "
                          f"({type(exc).__name__}: {reason})") from None
    evaluator = RunEvaluator(cfg, worker, args.chat_template == "auto", args.seed, remote=False)
    report = evaluator.run(WeightVersion(0))
    summary = report.summary()
    print(f"{args.benchmark}: {report.num_problems} problems x {report.n} samples, "
          f"temperature {args.temperature}, model {model}")
    print(f"  mean@{report.n} = {report.mean.value:.4f} ± {report.mean.stderr:.4f}")
    for k, est in sorted(report.pass_at.items()):
        print(f"  pass@{k} = {est.value:.4f} ± {est.stderr:.4f}")
    print(f"  generate {report.generate_s:.1f} s, grade {report.grade_s:.1f} s")
    if args.out:
        samples = [{"id": o.problem_id, "answer": o.answer, "responses": list(o.responses),
                    "correct": list(o.correct)} for o in report.outcomes]
        Path(args.out).write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    return 0
