"""The student as the learner trains it: the causal LM under an FSDP root that also computes the
selective loss, built and sharded with FSDP2."""

from __future__ import annotations

import torch

from tip_ray.learner.lora import add_adapters
from tip_ray.learner.settings import LearnerSettings
from tip_ray.records import SelectedBatch
from tip_ray.tip import selective_distill_loss


class SelectiveStudent(torch.nn.Module):
    """The FSDP root: the trunk plus the selective loss, so the root's parameters (embeddings,
    final norm, LM head) are unsharded for exactly the duration of the loss computation."""

    def __init__(self, causal_lm: torch.nn.Module):
        super().__init__()
        self.lm = causal_lm

    def forward(self, batch: SelectedBatch, *, loss: str, beta: float, chunk_size: int,
                global_count: float, teacher_head: torch.Tensor | None) -> torch.Tensor:
        width = int(batch.attention_mask.sum(1).max()) if batch.attention_mask.numel() else 1
        hidden = self.lm.model(
            input_ids=batch.input_ids[:, :width], attention_mask=batch.attention_mask[:, :width]
        ).last_hidden_state
        # The token at (row, t) is predicted by the hidden state at (row, t - 1).
        predicting = batch.positions.clone()
        predicting[:, 1] -= 1
        head = self.lm.get_output_embeddings().weight
        if predicting.shape[0] == 0:
            # Nothing selected here: a zero that still reaches every parameter, so that the
            # backward pass (and FSDP's gradient reduction) runs like on any other rank.
            return hidden.sum() * 0.0 + head.sum() * 0.0
        return selective_distill_loss(
            hidden,
            head,
            predicting,
            batch.teacher,
            batch.weights,
            loss=loss,
            beta=beta,
            global_token_count=global_count,
            teacher_head=teacher_head,
            chunk_size=chunk_size,
            sampled_tokens=batch.sampled_tokens,
        )


def build_sharded_student(settings: LearnerSettings, device: torch.device) -> SelectiveStudent:
    """The student in float32 on `device`, dropout off, LoRA adapters if asked, each decoder layer
    and then the root sharded with FSDP2 (bfloat16 compute when settings.dtype says so)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from tip_ray.models.loading import load_causal_lm

    lm = load_causal_lm(settings.model_path, dtype="float32").to(device)
    lm.train()
    # Dropout would make the selector's statistics and the learner's loss disagree.
    for module in lm.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if settings.lora is not None:
        lm = add_adapters(lm, settings.lora)
    wrapper = SelectiveStudent(lm)
    mp = None
    if settings.dtype == "bfloat16":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for layer in lm.model.layers:
        fully_shard(layer, **kwargs)
    fully_shard(wrapper, **kwargs)
    return wrapper
