"""Students made from a teacher by keeping some of its decoder layers.

The embeddings, final norm, head and tokenizer are kept as they are, so the student shares the
teacher's vocabulary exactly; kept layers keep their weights (layer ``keep[j]`` of the teacher
becomes layer ``j`` of the student). Works for the decoder-only families whose layers live at
``model.layers.<i>`` (Llama, Qwen2/3, Mistral, ...).
"""

from __future__ import annotations

import math
import re

from tip_ray.errors import TipRayError

_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class LayerSelectionError(TipRayError, ValueError):
    """A set of layers to keep that the model does not have (out of range, empty, repeated)."""


def layers_every(num_layers: int, keep_every: int) -> list[int]:
    """ceil(L/k) layer indices evenly spaced from the first (0) to the last (L-1).

    The first layer reads the embeddings and the last one feeds the final norm and head, so both
    are always kept; the rest are spread between them (L=30, k=2: 0, 2, 4, ..., 27, 29).
    """
    if num_layers < 1:
        raise LayerSelectionError(f"the model has {num_layers} decoder layers; nothing to keep")
    if keep_every < 1:
        raise LayerSelectionError(f"keep_every {keep_every}: keep every k-th layer with k >= 1")
    count = math.ceil(num_layers / keep_every)
    if count == 1:
        return [num_layers - 1] if num_layers > 1 else [0]
    return sorted({round(i * (num_layers - 1) / (count - 1)) for i in range(count)})


def check_layers(keep: list[int], num_layers: int, where: str = "keep_layers") -> list[int]:
    """``keep`` when it names existing layers, each once, in increasing order."""
    if not keep:
        raise LayerSelectionError(f"{where}: empty; keep at least one of the {num_layers} layers")
    outside = [i for i in keep if not 0 <= i < num_layers]
    if outside:
        raise LayerSelectionError(
            f"{where}: {outside} out of range; the model has {num_layers} layers (indices 0..{num_layers - 1})"
        )
    if len(set(keep)) != len(keep):
        repeated = sorted({i for i in keep if keep.count(i) > 1})
        raise LayerSelectionError(f"{where}: layers {repeated} listed more than once")
    if keep != sorted(keep):
        raise LayerSelectionError(f"{where}: {keep}: give the indices in increasing order")
    return list(keep)


def pruned_config(config, keep: list[int]):
    """A copy of the model config with only the kept layers (per-layer lists cut to match)."""
    copy = config.__class__.from_dict(config.to_dict())
    num_layers = config.num_hidden_layers
    copy.num_hidden_layers = len(keep)
    for name, value in vars(config).items():  # e.g. layer_types in Qwen2/3 configs
        if isinstance(value, list) and len(value) == num_layers and name != "architectures":
            setattr(copy, name, [value[i] for i in keep])
    return copy


def prune_layers(model, keep: list[int]):
    """A new model of the same class holding ``model``'s layers ``keep`` (and everything else)."""
    from transformers import AutoModelForCausalLM

    keep = check_layers(keep, model.config.num_hidden_layers)
    state = model.state_dict()
    if not any(_LAYER_KEY.match(key) for key in state):
        raise LayerSelectionError(
            f"{type(model).__name__}: no model.layers.<i> weights; pruning supports decoder-only models "
            "laid out like Llama/Qwen"
        )
    new_index = {old: new for new, old in enumerate(keep)}
    kept = {}
    for key, tensor in state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            kept[key] = tensor
        elif int(match.group(1)) in new_index:
            kept[f"model.layers.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor
    student = AutoModelForCausalLM.from_config(pruned_config(model.config, keep), dtype=next(model.parameters()).dtype)
    student.load_state_dict(kept, strict=True)
    student.generation_config = model.generation_config
    return student.eval()
