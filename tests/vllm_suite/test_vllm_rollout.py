"""The vLLM rollout backend on a real (CPU) engine: sampling, log-probs, weight sync.

Tolerance: log-probs are compared with a float64 reference of the same weights to 2e-4 absolute
(vLLM runs float32 here with its own kernels; the gap measured on this machine is ~3e-5).
"""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import perturbed, reference_logprobs, require_vllm
from tip_ray.models.tiny import EOS_ID, PAD_ID, build_tiny_model
from tip_ray.rollout.backend import SamplingRequest
from tip_ray.rollout.hf import HFGenerateBackend

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.rollout.vllm_backend import VLLMBackend  # noqa: E402

LOGPROB_ATOL = 2e-4


@pytest.fixture(scope="module")
def backend(student_dir, tokenizer):
    path, _ = student_dir
    engine = VLLMBackend(path, tokenizer=tokenizer, dtype="float32", kv_cache_space_gib=1,
                         max_model_len=256, max_num_seqs=64)
    yield engine
    engine.close()


def test_samples_are_grouped_by_prompt_and_end_at_eos(backend, prompt_ids):
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=24, n=5, seed=3)
    samples = backend.generate(prompt_ids, request)
    assert [s.prompt_index for s in samples] == [i for i in range(len(prompt_ids)) for _ in range(5)]
    for s in samples:
        assert 1 <= len(s.response_ids) <= 24
        assert len(s.logprobs) == len(s.response_ids)
        assert all(lp <= 0.0 for lp in s.logprobs)
        # EOS only as the last token, and a short response only because EOS ended it.
        assert EOS_ID not in s.response_ids[:-1]
        if len(s.response_ids) < 24:
            assert s.response_ids[-1] == EOS_ID
    assert any(s.response_ids[-1] == EOS_ID for s in samples), "the EOS-prone model never stopped"
    # Samples of one prompt differ from one another (n independent draws, not one repeated).
    first = {s.response_ids for s in samples[:5]}
    assert len(first) > 1


def test_same_seed_same_samples_other_seed_other_samples(backend, prompt_ids):
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=12, n=3, seed=7)
    again = backend.generate(prompt_ids, request)
    assert backend.generate(prompt_ids, request) == again
    other = backend.generate(prompt_ids, SamplingRequest(1.0, 1.0, 12, 3, seed=8))
    assert [s.response_ids for s in other] != [s.response_ids for s in again]


def test_logprobs_are_raw_model_logprobs_and_sampling_follows_settings(backend, student_dir, prompt_ids):
    """Temperature 0.7 / top-p 0.8 shape the sampling, not the reported log-probs."""
    _, model = student_dir
    temperature, top_p = 0.7, 0.8
    samples = backend.generate(prompt_ids, SamplingRequest(temperature, top_p, 16, n=4, seed=5))
    worst = 0.0
    for s in samples:
        prompt = prompt_ids[s.prompt_index]
        ref = reference_logprobs(model, prompt + list(s.response_ids))
        for i, (token, got) in enumerate(zip(s.response_ids, s.logprobs)):
            raw = ref[len(prompt) - 1 + i]
            worst = max(worst, abs(float(raw[token]) - got))
            # The sampled token lies in the top-p nucleus of the temperature-scaled distribution.
            probs = (raw / temperature).softmax(-1)
            order = probs.argsort(descending=True)
            mass_before = probs[order].cumsum(0) - probs[order]
            nucleus = set(order[mass_before < top_p + 1e-6].tolist())
            assert token in nucleus
    assert worst < LOGPROB_ATOL, f"max |vLLM - float64 reference| = {worst:.2e}"


def _hf_backend(model):
    return HFGenerateBackend(model, eos_token_id=EOS_ID, pad_token_id=PAD_ID, batch_size=8)


def test_greedy_equals_hugging_face_before_and_after_a_weight_sync(backend, student_dir, prompt_ids):
    _, model = student_dir
    greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=20, n=1, seed=0)
    before = backend.generate(prompt_ids, greedy)
    assert [s.response_ids for s in before] == [s.response_ids for s in _hf_backend(model).generate(prompt_ids, greedy)]

    trained = perturbed(model, seed=21)
    state = trained.state_dict()
    assert "lm_head.weight" in state  # tied: the same tensor as the embedding, sent anyway
    backend.load_weights(state)
    after = backend.generate(prompt_ids, greedy)
    expected = _hf_backend(trained).generate(prompt_ids, greedy)
    assert [s.response_ids for s in after] == [s.response_ids for s in expected]
    assert [s.response_ids for s in after] != [s.response_ids for s in before], "sync changed nothing"
    for got, ref in zip(after, expected):
        assert torch.allclose(torch.tensor(got.logprobs), torch.tensor(ref.logprobs), atol=LOGPROB_ATOL)

    # Back to the original weights: the engine follows (no stale prefix cache, no stale kernels).
    backend.load_weights(model.state_dict())
    assert backend.generate(prompt_ids, greedy) == before


def test_weights_broadcast_over_gloo_reach_the_engine(backend, student_dir, prompt_ids):
    """rollout.weight_sync: broadcast on CPU: a sender (learner rank 0's role, here a thread)
    broadcasts over gloo; the engine's worker reloads tensor by tensor and then decodes exactly
    as Hugging Face does with the sent weights."""
    import threading

    from tip_ray.broadcast import BroadcastGroup, GroupAddress, free_port

    _, model = student_dir
    trained = perturbed(model, seed=23)
    sent = {k: v.clone() for k, v in trained.state_dict().items()}
    address = GroupAddress("127.0.0.1", free_port(), world_size=2, transport="gloo", timeout_s=60)
    outcome: dict = {}

    def sender() -> None:
        try:
            group = BroadcastGroup(address, 0)
            outcome["joined"] = True
            outcome["bytes"] = group.send(sent)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        assert backend.join_broadcast_group(address, rank_offset=1) == [1]
        assert backend.receive_broadcast() == len(sent)
    finally:
        thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["bytes"] == sum(t.numel() * t.element_size() for t in sent.values())
    greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=20, n=1, seed=0)
    expected = _hf_backend(trained).generate(prompt_ids, greedy)
    assert [s.response_ids for s in backend.generate(prompt_ids, greedy)] == [s.response_ids for s in expected]
    backend.load_weights(model.state_dict())  # the module's engine back to the original weights


def test_a_tied_head_that_differs_from_the_embedding_is_refused(backend, student_dir):
    _, model = student_dir
    state = dict(model.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"].clone() + 1.0
    with pytest.raises(ValueError, match="ties lm_head"):
        backend.load_weights(state)


def test_prompt_ids_outside_the_vocabulary_are_refused(backend):
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        backend.generate([[1, 5, 10_000]], SamplingRequest(1.0, 1.0, 4, 1, 0))


def test_untied_lm_head_is_synced(tmp_path, tokenizer, prompt_ids):
    """A model with its own LM head: changing only the head changes greedy output, in step with HF."""
    from tests.vllm_suite.conftest import STUDENT_SPEC
    from dataclasses import replace
    from tip_ray.models.tiny import save_model

    model = build_tiny_model(replace(STUDENT_SPEC, tie_word_embeddings=False), len(tokenizer), seed=31)
    path = save_model(model, tokenizer, tmp_path / "untied")
    engine = VLLMBackend(str(path), tokenizer=tokenizer, dtype="float32", max_model_len=256)
    try:
        greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=16, n=1, seed=0)
        before = engine.generate(prompt_ids, greedy)
        with torch.no_grad():
            model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape,
                                                   generator=torch.Generator().manual_seed(5)))
        state = model.state_dict()
        engine.load_weights(state)
        after = engine.generate(prompt_ids, greedy)
        expected = _hf_backend(model).generate(prompt_ids, greedy)
        assert [s.response_ids for s in after] == [s.response_ids for s in expected]
        assert after != before
        headless = {k: v for k, v in state.items() if k != "lm_head.weight"}
        with pytest.raises(ValueError, match="no lm_head.weight"):
            engine.load_weights(headless)
    finally:
        engine.close()
