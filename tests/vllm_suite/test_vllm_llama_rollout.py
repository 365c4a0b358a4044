"""The example's backend choice with vLLM installed, and the rollout worker it then builds on a
llama-shaped student like SmolLM2 (LlamaForCausalLM, tied embeddings, prompts through a chat
template, an end-of-turn EOS): greedy samples checked against a float64 reference."""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import eos_prone, reference_logprobs, require_vllm

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.config.rollout import RolloutConfig, SamplingConfig  # noqa: E402
from tip_ray.data.prompts import encode_prompt  # noqa: E402
from tip_ray.models.tiny import EOS_ID, TinyModelSpec, build_char_tokenizer, build_tiny_model, save_model  # noqa: E402
from tip_ray.rollout.backend import SamplingRequest  # noqa: E402
from tip_ray.rollout.backend_choice import choose_rollout_backend, vllm_installed, with_rollout_backend  # noqa: E402

# SmolLM2's shape in miniature: llama, grouped-query attention, tied embeddings (head_dim 32).
LLAMA_SPEC = TinyModelSpec(arch="llama", hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                           intermediate_size=128, max_position_embeddings=256, tie_word_embeddings=True)
# ChatML, as SmolLM2's template (its turn markers spelled in the character alphabet).
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_auto_picks_vllm_here():
    assert vllm_installed()
    choice = choose_rollout_backend("auto", "hf", vllm_found=vllm_installed())
    assert choice.type == "vllm" and "installed" in choice.reason


def test_chosen_backend_samples_a_tied_llama_student(tmp_path):
    from tip_ray.commands.run import load_with_overrides
    from tip_ray.rollout.vllm_backend import VLLMBackend
    from tip_ray.rollout.worker import RolloutSettings, RolloutWorker

    tokenizer = build_char_tokenizer(chat_template=CHAT_TEMPLATE)
    # EOS-prone enough that about half of the sampled responses end with it (measured with HF
    # generate: 8 of 12 at temperature 1, 24 tokens).
    model = eos_prone(build_tiny_model(LLAMA_SPEC, len(tokenizer), seed=5), scale=16.0)
    path = str(save_model(model, tokenizer, tmp_path / "llama"))
    # The example's own pipeline, switched as `tip-ray example` switches it.
    config = with_rollout_backend(load_with_overrides("smollm2_pruned", []),
                                  choose_rollout_backend("auto", "hf", vllm_found=True).type)
    rollout = config.rollout.model_copy(update={"sampling": SamplingConfig(temperature=1.0, max_new_tokens=24)})
    assert isinstance(rollout, RolloutConfig) and rollout.backend.type == "vllm"
    worker = RolloutWorker(RolloutSettings(model_path=path, rollout=rollout, seed=0, num_threads=2,
                                           max_model_len=128))
    try:
        assert isinstance(worker.backend, VLLMBackend) and worker.backend.tied_embeddings
        prompts = [encode_prompt(worker.tokenizer, text, True) for text in ("12+7=", "hello", "9*9=")]
        assert all(worker.tokenizer.decode(p).endswith("<|im_end|>\n<|im_start|>assistant\n") for p in prompts)
        greedy = worker.backend.generate(prompts, SamplingRequest(0.0, 1.0, 12, 2, seed=0))
        sampled = worker.backend.generate(prompts, SamplingRequest(1.0, 1.0, 24, 4, seed=0))
        assert [s.prompt_index for s in greedy] == [0, 0, 1, 1, 2, 2]
        ended = 0
        for is_greedy, sample in [(True, s) for s in greedy] + [(False, s) for s in sampled]:
            ids = list(prompts[sample.prompt_index]) + list(sample.response_ids)
            p = len(prompts[sample.prompt_index])
            ref = reference_logprobs(model, ids)[p - 1 : -1]
            chosen = torch.tensor(sample.response_ids)
            ref_chosen = ref.gather(1, chosen[:, None]).squeeze(1)
            # The raw log-prob of every sampled token (the engine runs float32 here).
            assert torch.allclose(torch.tensor(sample.logprobs, dtype=torch.float64), ref_chosen, atol=1e-3)
            if is_greedy:  # every token is the float64 argmax, up to float32 ties
                assert torch.all(ref_chosen >= ref.max(-1).values - 1e-3)
            # EOS ends a response and appears nowhere before its end.
            assert EOS_ID not in sample.response_ids[:-1]
            ended += not is_greedy and sample.response_ids[-1] == EOS_ID
        assert ended > 0, "no sampled response ended with EOS"
    finally:
        worker.backend.close()
