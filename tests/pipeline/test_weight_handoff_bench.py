"""benchmarks/weight_handoff.py measures weights of the example student's real shapes: its table
of shapes equals SmolLM2-135M's (built on the meta device from the same dimensions), so the
megabytes it hands over are the ones a run hands over."""

from __future__ import annotations

import torch

from tests.benchmark_module import load_benchmark


def test_shapes_are_smollm2s():
    from transformers import LlamaConfig, LlamaForCausalLM

    bench = load_benchmark("weight_handoff")
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert bench.student_shapes(30) == expected
    assert sum(torch.Size(s).numel() for s in expected.values()) == 134_515_008  # SmolLM2-135M
    assert len(bench.student_shapes(15)) == 2 + 15 * 9
