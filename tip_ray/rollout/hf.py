"""Hugging Face `generate` rollout backend (CPU, or GPU when vLLM is not wanted)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from tip_ray.broadcast import BroadcastGroup, GroupAddress
from tip_ray.models.state_dict import load_full_state_dict
from tip_ray.rollout.backend import Sample, SamplingRequest


class HFGenerateBackend:
    """Batched sampling with `model.generate`; left-pads prompts, stops at the EOS token."""

    def __init__(self, model: torch.nn.Module, eos_token_id: int, pad_token_id: int, batch_size: int):
        self.model = model.eval()
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.group: BroadcastGroup | None = None

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], request: SamplingRequest) -> list[Sample]:
        expanded = [(i, list(p)) for i, p in enumerate(prompts) for _ in range(request.n)]
        samples: list[Sample] = []
        gen = torch.Generator().manual_seed(request.seed)
        for start in range(0, len(expanded), self.batch_size):
            chunk = expanded[start : start + self.batch_size]
            # One seed per chunk drawn from the request's generator: reproducible per batch.
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            samples.extend(self._generate_chunk(chunk, request))
        return samples

    def _generate_chunk(self, chunk: list[tuple[int, list[int]]], request: SamplingRequest) -> list[Sample]:
        width = max(len(p) for _, p in chunk)
        input_ids = torch.full((len(chunk), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (_, ids) in enumerate(chunk):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        greedy = request.temperature == 0.0
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            do_sample=not greedy,
            temperature=None if greedy else request.temperature,
            top_p=None if greedy else request.top_p,
            top_k=None,
            max_new_tokens=request.max_new_tokens,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        new_tokens = out.sequences[:, width:].cpu()
        # Raw logits: the log-probs reported are those of the model, not of the warped sampler.
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1).cpu()
        token_lp = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        samples = []
        for row, (prompt_index, _) in enumerate(chunk):
            tokens = new_tokens[row].tolist()
            length = len(tokens)
            if self.eos_token_id in tokens:
                length = tokens.index(self.eos_token_id) + 1
            samples.append(
                Sample(
                    prompt_index=prompt_index,
                    response_ids=tuple(tokens[:length]),
                    logprobs=tuple(token_lp[row, :length].tolist()),
                )
            )
        return samples

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        load_full_state_dict(self.model, state_dict)

    broadcast_ranks = 1  # one process holds the whole model

    def join_broadcast_group(self, address: GroupAddress, rank_offset: int) -> list[int]:
        self.group = None  # leave any older group first
        self.group = BroadcastGroup(address, rank_offset, device=self.device)
        return [rank_offset]

    @torch.no_grad()
    def receive_broadcast(self) -> int:
        """Copy each tensor learner rank 0 broadcasts into the parameter of the same name."""
        if self.group is None:
            raise RuntimeError("weight broadcast: receive before joining learner rank 0's group")
        targets = self.model.state_dict(keep_vars=True)  # tied weights: two names, one tensor
        unknown, count = [], 0
        for name, tensor in self.group.receive():  # drained whole: every rank posts every broadcast
            count += 1
            target = targets.get(name)
            if target is None or tuple(target.shape) != tuple(tensor.shape):
                unknown.append(name)
                continue
            target.copy_(tensor)
        if unknown:
            raise ValueError(f"weight broadcast: tensors the model does not have (or of another shape): {unknown[:5]}")
        return count

    def close(self) -> None:
        self.model = None
