"""Test support for the teacher service: pipelines over the tiny pair, the deterministic columns
of a metrics row, and a hand-made rollout batch."""

from __future__ import annotations

import yaml

from tests.pipeline_doc import tiny_pipeline_doc

# Columns that depend only on the data, the seed and the numbers (not on time or memory).
TIMING_WORDS = ("seconds", "tokens_per_s", "_s", "time", "memory", "mib", "queue", "wall", "restarts")


def deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(w in k for w in TIMING_WORDS)}


def service_config(pair, prompts, tmp_path, label: str, *, seed: int = 0, steps: int = 2,
                   backend: dict | None = None, signal: dict | None = None):
    from tip_ray.config import load_pipeline

    doc = tiny_pipeline_doc(pair, prompts, tmp_path / label, name=f"tiny-{label}",
                            train={"steps": steps, "seed": seed, "stage_timeout_s": 600})  # slow actor starts on a crowded machine
    doc["teacher"] = {"signal": signal or {"type": "hidden"}, **({"backend": backend} if backend else {})}
    path = tmp_path / f"{label}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_pipeline(path)


def rollout_batch(vocab_size: int, rows: int = 2, length: int = 12, batch_id: int = 0):
    import torch

    from tip_ray.records import RolloutBatch

    generator = torch.Generator().manual_seed(batch_id)
    ids = torch.randint(3, vocab_size, (rows, length), generator=generator)
    response = torch.zeros(rows, length, dtype=torch.bool)
    response[:, length // 2:] = True
    return RolloutBatch(batch_id=batch_id, policy_version=0, input_ids=ids,
                        attention_mask=torch.ones(rows, length, dtype=torch.int64), response_mask=response,
                        prompt_index=torch.arange(rows), response_texts=("",) * rows, seconds=0.0)
