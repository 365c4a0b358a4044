"""The check's sizes: the real ones for the GPU, toy ones for the CPU run in the test suite."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Sizes:
    # numerics: the method core in bfloat16 on the device against float64 on the CPU
    numerics_vocab: int
    numerics_hidden: int
    numerics_rows: int  # rollouts
    numerics_time: int  # positions per rollout
    # loss step: the learner's loss alone, at Qwen3-4B's dimensions (student) and Qwen3-8B's (teacher)
    loss_vocab: int
    loss_hidden: int
    loss_teacher_hidden: int
    loss_shapes: tuple[tuple[int, int], ...]  # (sequences, response tokens), in the order run
    loss_chunk: int
    loss_dtype: str = "bfloat16"  # what FSDP's bf16 mixed precision hands the loss; CPU toy runs use float32
    # learner step and generate: a randomly initialised Qwen3-shaped model
    model: dict = field(default_factory=dict)
    step_sequences: int = 4
    step_prompt: int = 256
    step_response: int = 8192
    generate_batch: int = 32
    generate_prompt: int = 128
    generate_new_tokens: int = 128
    warmup: int = 1
    repeats: int = 2
    cpu_threads: int | None = None  # torch threads on the CPU; None keeps torch's own choice

    def with_overrides(self, **changes) -> Sizes:
        return replace(self, **changes)


QWEN3_0_6B = {
    # Qwen3-0.6B's published shape (0.6B parameters, tied embeddings); built from this, never downloaded.
    "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}

FULL = Sizes(
    numerics_vocab=151936, numerics_hidden=128, numerics_rows=4, numerics_time=48,
    loss_vocab=151936, loss_hidden=2560, loss_teacher_hidden=4096,
    # 1 x 8192 first: the targets are judged there (plain fits), so a budget overrun cannot lose it
    loss_shapes=((1, 8192), (8, 8192)), loss_chunk=512,
    model=QWEN3_0_6B,
)

TOY = Sizes(
    numerics_vocab=4096, numerics_hidden=32, numerics_rows=3, numerics_time=24,
    # float32: bf16 matrix products on a CPU without bf16 units are emulated and slow
    loss_vocab=4096, loss_hidden=32, loss_teacher_hidden=48,
    loss_shapes=((2, 128),), loss_chunk=64, loss_dtype="float32",
    model={**QWEN3_0_6B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512},
    step_sequences=2, step_prompt=8, step_response=56,
    generate_batch=4, generate_prompt=8, generate_new_tokens=8,
    warmup=1, repeats=1,
    cpu_threads=1,  # a correctness run: one thread is fastest on a shared, busy CPU
)

BUDGETS_S = {"numerics": 40, "loss_step": 110, "learner_step": 110, "generate": 40}
"""Seconds per section on the GPU: a section starts no new case once its budget is spent and is
killed GRACE_S after it (which also covers the process start: importing torch, initialising
CUDA), so the whole check ends within 7 minutes even when every section overruns."""

GRACE_S = 30

TOY_BUDGETS_S = {"numerics": 60, "loss_step": 60, "learner_step": 90, "generate": 60}
