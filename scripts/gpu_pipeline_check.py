"""A few pipeline steps on a GPU machine, teacher and student on separate devices.

    python scripts/gpu_pipeline_check.py [--steps 3] [--weight-sync auto|broadcast] [--out result.json]

Builds a tiny teacher/student pair and demo prompts (nothing downloaded), then runs the real
pipeline on an embedded Ray: the student pool holds the vLLM rollout engine and the learner rank
on GPU 0 (sharing it, 0.4 GPU each), the teacher pool holds the teacher scorer and the selector,
on their own GPUs when the machine has three or more, else on the CPU. `--weight-sync broadcast`
sends the weights from the learner to the engine over a broadcast group (gloo through host memory,
as the two share a GPU) instead of the object store. Prints and writes one JSON result: steps
done, wall time, final loss, where each role ran, how weights were synced.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pipeline_doc(pair, prompts: Path, run_dir: Path, steps: int, teacher_gpus: float,
                 weight_sync: str = "auto") -> dict:
    """The tests' tiny pipeline with a vLLM rollout engine and the two pools placed on GPUs."""
    from tests.pipeline_doc import tiny_pipeline_doc

    return tiny_pipeline_doc(
        pair, prompts, run_dir,
        name="gpu-check",
        rollout={
            "backend": {"type": "vllm", "gpu_memory_utilization": 0.2, "enforce_eager": True},
            "num_workers": 1,
            "prompts_per_step": 8,
            "samples_per_prompt": 4,
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32},
            "weight_sync": weight_sync,
        },
        teacher={"backend": {"type": "hf"}},
        learner={"micro_batch_size": 16},
        train={"steps": steps, "stage_timeout_s": 240},
        cluster={
            "pools": {
                "teacher": {"resource": "teacher_pool", "gpus_per_actor": teacher_gpus, "cpus_per_actor": 1},
                "student": {"resource": "student_pool", "gpus_per_actor": 0.4, "cpus_per_actor": 1},
            },
            "roles": {"rollout": "student", "learner": "student", "teacher": "teacher", "selector": "teacher"},
        },
        checkpoint={"every_steps": 0, "keep_last": 1, "export_hf": False},
    )


def weight_sync_used(run_dir: Path) -> str:
    """How the run's last step synced weights, and how long it took (from metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = rows[-1] if rows else {}
    return f"{last.get('weight_sync', '?')} ({last.get('weight_sync_seconds', float('nan')):.3f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--weight-sync", choices=("auto", "object_store", "broadcast"), default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_pipeline_check: no CUDA GPU visible")
    from tip_ray.config.pipeline import PipelineConfig
    from tip_ray.tasks.arithmetic import write_jsonl
    from tip_ray.models.tiny import TinyModelSpec, save_tiny_pair
    from tip_ray.pipeline.supervisor import run_pipeline

    gpus = torch.cuda.device_count()
    teacher_gpus = 1.0 if gpus >= 3 else 0.0
    result: dict = {"gpus": gpus, "teacher_device": "own GPU" if teacher_gpus else "CPU",
                    "student_device": "GPU (rollout engine + learner sharing it)"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # head_dim 32 for the student: a size every vLLM attention backend takes.
        pair = save_tiny_pair(
            root / "pair",
            student_spec=TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                       intermediate_size=128, max_position_embeddings=256),
        )
        prompts = write_jsonl(root / "prompts.jsonl", n=256, seed=7)
        config = PipelineConfig.model_validate(
            pipeline_doc(pair, prompts, root / "run", args.steps, teacher_gpus, args.weight_sync)
        )
        start = time.perf_counter()
        try:
            summary = run_pipeline(config)
        except Exception as exc:  # reported in the table, not a traceback wall
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500],
                          seconds=round(time.perf_counter() - start, 1))
        else:
            result.update(ok=summary.steps == args.steps, steps=summary.steps,
                          seconds=round(summary.wall_seconds, 1), final_loss=summary.final_loss,
                          response_tokens=summary.response_tokens, tokens_trained=summary.tokens_trained,
                          peak_learner_mib=round(summary.peak_learner_mib),
                          weight_sync=weight_sync_used(root / "run"))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not result["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
