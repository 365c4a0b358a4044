"""Read a model's LM head (output projection) from its folder without building the model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

HEAD_KEYS = ("lm_head.weight",)
EMBED_KEYS = ("model.embed_tokens.weight", "embed_tokens.weight", "transformer.wte.weight")


def load_lm_head(model_path: str, dtype: torch.dtype = torch.float32, rows: int | None = None) -> torch.Tensor:
    """[V, d] output projection; the input embedding when the model ties them. `rows` keeps the
    first rows only: a teacher whose vocabulary is padded beyond the shared tokenizer is cut to
    the student's size (the padding rows are ids no tokenizer emits)."""
    from safetensors import safe_open

    folder = Path(model_path)
    config = json.loads((folder / "config.json").read_text())
    tied = bool(config.get("tie_word_embeddings", False))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to read the LM head from")
    wanted = (EMBED_KEYS if tied else HEAD_KEYS + EMBED_KEYS)
    for key in wanted:
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                if key in handle.keys():
                    head = handle.get_tensor(key).to(dtype)
                    return head[:rows] if rows is not None else head
    raise KeyError(f"{folder}: none of {wanted} found in the safetensors files")
