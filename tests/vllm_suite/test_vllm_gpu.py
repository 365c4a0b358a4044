"""The vLLM backend on CUDA: sampling, weight sync, sleep/wake for colocation, NCCL broadcast
from a learner process, tensor parallelism. Skipped without a GPU (scripts/gpu_tier2.sh runs them).

Tolerance: float32 log-probs against the float64 CPU reference to 2e-3 absolute (GPU kernels
may use TF32 and other reduction orders).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.vllm_suite.conftest import perturbed, reference_logprobs, require_vllm
from tip_ray.models.tiny import EOS_ID, PAD_ID
from tip_ray.rollout.backend import SamplingRequest
from tip_ray.rollout.hf import HFGenerateBackend

require_vllm()
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

from tip_ray.rollout.vllm_backend import VLLMBackend  # noqa: E402

ATOL = 2e-3
REPO = Path(__file__).resolve().parents[2]
GREEDY = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=16, n=1, seed=0)


def needs_gpus(count: int):
    return pytest.mark.skipif(torch.cuda.device_count() < count, reason=f"needs {count} GPUs")


def hf_greedy(model, prompts):
    model = model.to("cuda")
    try:
        backend = HFGenerateBackend(model, eos_token_id=EOS_ID, pad_token_id=PAD_ID, batch_size=8)
        return [s.response_ids for s in backend.generate(prompts, GREEDY)]
    finally:
        model.to("cpu")


@pytest.fixture(scope="module")
def gpu_backend(student_dir, tokenizer):
    path, _ = student_dir
    engine = VLLMBackend(path, tokenizer=tokenizer, dtype="float32", gpu_memory_utilization=0.25,
                         max_model_len=256, sleep_when_idle=False)
    yield engine
    engine.close()


def test_gpu_sampling_reports_raw_logprobs(gpu_backend, student_dir, prompt_ids):
    _, model = student_dir
    samples = gpu_backend.generate(prompt_ids, SamplingRequest(0.8, 0.9, 16, n=4, seed=1))
    assert [s.prompt_index for s in samples] == [i for i in range(len(prompt_ids)) for _ in range(4)]
    worst = 0.0
    for s in samples:
        prompt = prompt_ids[s.prompt_index]
        ref = reference_logprobs(model, prompt + list(s.response_ids))
        got = torch.tensor(s.logprobs, dtype=torch.float64)
        want = torch.stack([ref[len(prompt) - 1 + i, t] for i, t in enumerate(s.response_ids)])
        worst = max(worst, float((got - want).abs().max()))
    assert worst < ATOL, f"max |vLLM - float64 reference| = {worst:.2e}"


def test_gpu_weight_sync_greedy_equals_hf(gpu_backend, student_dir, prompt_ids):
    _, model = student_dir
    assert [s.response_ids for s in gpu_backend.generate(prompt_ids, GREEDY)] == hf_greedy(model, prompt_ids)
    trained = perturbed(model, seed=3)
    gpu_backend.load_weights(trained.state_dict())
    assert [s.response_ids for s in gpu_backend.generate(prompt_ids, GREEDY)] == hf_greedy(trained, prompt_ids)
    gpu_backend.load_weights(model.state_dict())


def test_sleep_frees_gpu_memory_and_wakes_with_synced_weights(student_dir, tokenizer, prompt_ids):
    path, model = student_dir
    engine = VLLMBackend(path, tokenizer=tokenizer, dtype="float32", gpu_memory_utilization=0.25,
                         max_model_len=256, sleep_when_idle=True)
    try:
        free_awake = torch.cuda.mem_get_info()[0]
        engine.generate(prompt_ids, GREEDY)  # sleeps at the end
        assert engine.asleep
        free_asleep = torch.cuda.mem_get_info()[0]
        # The KV cache (most of the 25% share) is released while asleep.
        assert free_asleep > free_awake + 0.1 * 0.25 * torch.cuda.mem_get_info()[1]
        trained = perturbed(model, seed=9)
        engine.load_weights(trained.state_dict())  # wakes the weights only, then reloads them
        got = [s.response_ids for s in engine.generate(prompt_ids, GREEDY)]
        assert got == hf_greedy(trained, prompt_ids)
    finally:
        engine.close()


BROADCASTER = textwrap.dedent(
    """
    import sys, torch
    from safetensors.torch import load_file
    from tip_ray.broadcast import BroadcastGroup, GroupAddress
    port, weights = int(sys.argv[1]), sys.argv[2]
    torch.cuda.set_device(1)
    sender = BroadcastGroup(GroupAddress("127.0.0.1", port, 2, "nccl"), 0, device="cuda:1")
    sender.send(load_file(weights))
    print("SENT", flush=True)
    """
)


@needs_gpus(2)
def test_nccl_broadcast_from_a_learner_process(gpu_backend, student_dir, prompt_ids, tmp_path):
    """Learner rank 0 (a separate process on GPU 1) broadcasts; the engine on GPU 0 receives."""
    from safetensors.torch import save_file

    from tip_ray.broadcast import GroupAddress, free_port

    _, model = student_dir
    trained = perturbed(model, seed=17)
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items() if k != "lm_head.weight"}, str(weights))
    port = free_port()
    sender = subprocess.Popen(
        [sys.executable, "-c", BROADCASTER, str(port), str(weights)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True,
    )
    try:
        gpu_backend.join_broadcast_group(GroupAddress("127.0.0.1", port, 2, "nccl"), rank_offset=1)
        gpu_backend.receive_broadcast()
        out, _ = sender.communicate(timeout=300)
        assert "SENT" in out
    finally:
        if sender.poll() is None:
            sender.kill()
    assert [s.response_ids for s in gpu_backend.generate(prompt_ids, GREEDY)] == hf_greedy(trained, prompt_ids)
    gpu_backend.load_weights(model.state_dict())


@needs_gpus(2)
def test_tensor_parallel_engine_syncs_and_matches_hf(student_dir, tokenizer, prompt_ids):
    path, model = student_dir
    engine = VLLMBackend(path, tokenizer=tokenizer, dtype="float32", tensor_parallel_size=2,
                         gpu_memory_utilization=0.25, max_model_len=256)
    try:
        trained = perturbed(model, seed=23)
        engine.load_weights(trained.state_dict())
        assert [s.response_ids for s in engine.generate(prompt_ids, GREEDY)] == hf_greedy(trained, prompt_ids)
    finally:
        engine.close()
