"""The example's backend choice with vLLM installed, and the rollout worker it then builds on a
llama-shaped student like SmolLM2 (LlamaForCausalLM, tied embeddings, prompts through a chat
template, an end-of-turn EOS): greedy samples checked against a float64 reference, before and
after a weight sync that arrives as the learner publishes it (one packed, read-only buffer)."""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import eos_prone, perturbed, reference_logprobs, require_vllm

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.config.rollout import RolloutConfig, SamplingConfig  # noqa: E402
from tip_ray.data.prompts import encode_prompt  # noqa: E402
from tip_ray.models.tiny import EOS_ID, TinyModelSpec, build_char_tokenizer, build_tiny_model, save_model  # noqa: E402
from tip_ray.rollout.backend import SamplingRequest  # noqa: E402
from tip_ray.rollout.backend_choice import choose_rollout_backend, vllm_installed, with_rollout_backend  # noqa: E402
from tip_ray.packed_weights import pack_state_dict  # noqa: E402
from tip_ray.weights import WeightVersion  # noqa: E402

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

        # A new policy version as the learner publishes it: packed into one buffer, read-only as
        # the object store hands it out, the tied LM head under its own name too.
        trained = perturbed(model, seed=9, scale=1.0)
        packed = pack_state_dict(trained.state_dict())
        packed.buffer.flags.writeable = False
        worker.weights.ensure(WeightVersion(version=1, refs=(packed,)))
        assert worker.weights.version == 1
        after = worker.backend.generate(prompts, SamplingRequest(0.0, 1.0, 12, 1, seed=0))
        moved = False
        for old, new in zip(greedy[0::2], after):
            ids = list(prompts[new.prompt_index]) + list(new.response_ids)
            p = len(prompts[new.prompt_index])
            ref = reference_logprobs(trained, ids)[p - 1 : -1].gather(1, torch.tensor(new.response_ids)[:, None]).squeeze(1)
            got = torch.tensor(new.logprobs, dtype=torch.float64)
            assert torch.allclose(got, ref, atol=1e-3)  # every layer, rotary included, took the new weights
            moved |= old.response_ids != new.response_ids or not torch.allclose(
                got, torch.tensor(old.logprobs, dtype=torch.float64), atol=1e-3)
        assert moved, "the engine's log-probs did not change with the new weights"
    finally:
        worker.backend.close()
