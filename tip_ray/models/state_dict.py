"""Load a gathered full state dict into a Hugging Face model (rollout, selector and export alike)."""

from __future__ import annotations

from typing import Mapping

import torch


def load_full_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a gathered state dict; a tied LM head may be absent from it (it is the embedding)."""
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(
            f"weight sync: state dict does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
