"""The final hidden states (LM-head inputs) of a model at the positions that predict each
response token: what the teacher turns into its signal and the selector into student statistics.

The token at position t is predicted by the hidden state at t - 1.
"""

from __future__ import annotations

import torch

from tip_ray.records import RolloutBatch


def predicting_positions(response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, t-1) of every response token, row-major: where its predicting hidden state sits."""
    rows, cols = response_mask.nonzero(as_tuple=True)
    return rows, cols - 1


@torch.no_grad()
def final_hidden_at_responses(model, rollout: RolloutBatch, micro_batch_size: int) -> torch.Tensor:
    """[N, d] final hidden states (LM-head inputs) predicting each response token."""
    pieces = []
    device = next(model.parameters()).device
    total = rollout.input_ids.shape[0]
    for start in range(0, total, micro_batch_size):
        stop = min(start + micro_batch_size, total)
        mask = rollout.response_mask[start:stop]
        if not mask.any():
            continue
        width = int(rollout.attention_mask[start:stop].sum(1).max())
        out = model.model(
            input_ids=rollout.input_ids[start:stop, :width].to(device),
            attention_mask=rollout.attention_mask[start:stop, :width].to(device),
        )
        rows, cols = predicting_positions(mask[:, :width])
        pieces.append(out.last_hidden_state[rows.to(device), cols.to(device)].float())
    if not pieces:
        return torch.zeros((0, model.config.hidden_size), dtype=torch.float32, device=device)
    return torch.cat(pieces)
