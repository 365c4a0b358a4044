"""The demo's own pipeline (pipelines/demo.yaml: demo pair, TIP Soft-OR 50%, 2 learner ranks)
turned into a LoRA run, for the slow LoRA tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_LORA = {"rank": 16, "alpha": 32.0, "target_modules": "all-linear"}


def demo_lora_config(run_dir: Path, steps: int, eval_problems: int):
    from tip_ray.config.loader import load_pipeline
    from tip_ray.demo.bootstrap import ensure_demo_models

    ensure_demo_models(progress=False)  # cached after the first build
    overrides = {
        "learner": {"lora": DEMO_LORA, "optimizer": {"lr": 3.0e-3, "warmup_steps": 2}},
        "train": {"steps": steps},
        "cluster": {"address": "local"},
        "logging": {"run_dir": str(run_dir), "progress": False},
        "checkpoint": {"every_steps": 0},
        "eval": {"every_steps": steps, "at_start": True, "num_problems": eval_problems},
    }
    return load_pipeline(REPO / "pipelines" / "demo.yaml", overrides)
