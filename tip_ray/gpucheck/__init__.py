"""Tier-1 GPU check: runs on a bare GPU machine with only torch and transformers installed.

    python -m tip_ray.gpucheck --out DIR              # on the GPU (about 3-5 minutes)
    python -m tip_ray.gpucheck --device cpu --toy --out DIR   # the same code at toy sizes

Four sections, each in its own process under its own time budget: the method core in bfloat16
against the float64 path (``numerics``), the learner's loss step at Qwen3-4B's dimensions
(``loss_step``), the whole FSDP2 learner step of a randomly initialised Qwen3-shaped model
(``learner_step``) and Hugging Face generate throughput (``generate``). Results: JSON per
section plus one combined JSON and a Markdown table (docs/gpu.md describes them).

Nothing here, nor any project module it imports, may import Ray, pydantic or vLLM: a bare GPU
machine has none of them (a test holds this).
"""
