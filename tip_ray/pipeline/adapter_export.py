"""The final export of a LoRA run's adapters: gathered from the learner ranks, written in
peft's adapter format next to the merged Hugging Face model."""

from __future__ import annotations

from pathlib import Path

from tip_ray.learner.lora import LoraSettings
from tip_ray.learner.lora_export import export_adapter
from tip_ray.pipeline.waits import wait_all


def export_final_adapter(learners: list, settings: LoraSettings, base_model_path: str, out_dir: Path,
                         timeout_s: float) -> Path:
    """Every learner rank takes part in the gather; rank 0's adapters are written to `out_dir`."""
    adapters = wait_all([r.adapter_weights.remote() for r in learners], "learner (adapter export)", timeout_s)[0]
    return export_adapter(adapters, settings, base_model_path, out_dir)
