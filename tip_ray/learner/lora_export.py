"""Write trained LoRA adapters as a peft adapter folder (adapter_config.json and
adapter_model.safetensors), loadable with `PeftModel.from_pretrained(base, folder)`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import torch

from tip_ray.learner.lora import LoraSettings, LoraSetupError, peft_config


def export_adapter(adapters: Mapping[str, torch.Tensor], settings: LoraSettings, base_model_path: str,
                   out_dir: str | Path) -> Path:
    """Save `adapters` (the learner's adapter tensors, keyed as in the adapted model) with peft's
    own writer, atomically: the folder appears under its final name only once complete."""
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from tip_ray.learner.export import publish_with_tokenizer, quiet_progress_bars

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model_path))
    peft_model = get_peft_model(base, peft_config(settings))
    inner = peft_model.base_model.model
    expected = {k for k in inner.state_dict() if ".lora_A." in k or ".lora_B." in k}
    if set(adapters) != expected:
        raise LoraSetupError(
            f"adapter export: the learner's adapters do not match learner.lora on {base_model_path}: "
            f"missing {sorted(expected - set(adapters))[:3]}, unexpected {sorted(set(adapters) - expected)[:3]}"
        )
    inner.load_state_dict(dict(adapters), strict=False)
    # adapter_config.json names the base it belongs to (a model built from a config has no name).
    peft_model.peft_config["default"].base_model_name_or_path = str(base_model_path)
    with quiet_progress_bars():
        peft_model.save_pretrained(tmp, safe_serialization=True)
    return publish_with_tokenizer(tmp, out, base_model_path)
