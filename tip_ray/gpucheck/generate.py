"""Section ``generate``: Hugging Face generate throughput of the check's model, for the record.

The project's own rollout backend (``tip_ray.rollout.hf.HFGenerateBackend``) samples at
temperature 1 from the randomly initialised Qwen3-shaped model in bfloat16: one short warm-up
call, then one timed call. Tokens/s counts the tokens actually sampled (a response ends early
when it samples the end-of-sequence id, as in a real rollout).
"""

from __future__ import annotations

import time

import torch

from tip_ray.rollout.backend import SamplingRequest
from tip_ray.rollout.hf import HFGenerateBackend

from .budget import Deadline, SectionRecord
from .measure import is_out_of_memory, synchronize
from .model import build_model, parameter_count
from .sizes import Sizes


def run(device: torch.device, sizes: Sizes, deadline: Deadline, record: SectionRecord) -> None:
    model = build_model(sizes.model, device)
    vocab = sizes.model["vocab_size"]
    backend = HFGenerateBackend(model, eos_token_id=vocab - 1, pad_token_id=0, batch_size=sizes.generate_batch)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, vocab - 1, (sizes.generate_prompt,), generator=g).tolist() for _ in range(sizes.generate_batch)]
    record.info(parameters=parameter_count(model), dtype="bfloat16", batch=sizes.generate_batch,
                prompt_tokens=sizes.generate_prompt, max_new_tokens=sizes.generate_new_tokens, temperature=1.0)
    row = {"batch": sizes.generate_batch, "max_new_tokens": sizes.generate_new_tokens}
    try:
        backend.generate(prompts, SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=4, n=1, seed=1))
        if not deadline.allows():
            record.out_of_time(["timed generate"])
            return
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        samples = backend.generate(
            prompts, SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=sizes.generate_new_tokens, n=1, seed=2)
        )
        synchronize(device)
        seconds = time.perf_counter() - start
        tokens = sum(len(s.response_ids) for s in samples)
        row.update(status="ok", tokens=tokens, seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1))
        if device.type == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    except Exception as exc:  # noqa: BLE001 - out of memory is a result; anything else propagates
        if not is_out_of_memory(exc):
            raise
        row.update(status="oom", error=str(exc).strip().splitlines()[0][:300])
    record.case(row)
