"""Write gathered student weights as a Hugging Face folder (loadable by from_pretrained and vLLM)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping

import torch


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def export_hf(state_dict: Mapping[str, torch.Tensor], base_model_path: str, out_dir: str | Path) -> Path:
    """Save `state_dict` with the config and tokenizer of `base_model_path`, atomically: the
    folder appears under its final name only once complete."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tip_ray.models.state_dict import load_full_state_dict

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    config = AutoConfig.from_pretrained(base_model_path)
    model = AutoModelForCausalLM.from_config(config)
    load_full_state_dict(model, state_dict)
    with quiet_progress_bars():  # a per-shard bar would cut into the run's own progress line
        model.save_pretrained(tmp, safe_serialization=True)
    return publish_with_tokenizer(tmp, out, base_model_path)


def publish_with_tokenizer(tmp: Path, out: Path, base_model_path: str) -> Path:
    """Add the base model's tokenizer to the folder written at `tmp`, then put it in place of `out`
    (readers see the old folder or the whole new one, never a half-written one)."""
    from tip_ray.models.loading import copy_tokenizer

    copy_tokenizer(base_model_path, tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
