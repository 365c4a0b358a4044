"""The vLLM teacher scorer against the Hugging Face scorer and a float64 reference.

Tolerance: top-k log-probs and the sampled token's log-prob to 2e-4 absolute; top-k indices
exactly, except where the reference's k-th and (k+1)-th values are closer than that (a tie
either side of the cut may legitimately go either way).
"""

from __future__ import annotations

import pytest
import torch

from tests.vllm_suite.conftest import reference_logprobs, require_vllm
from tip_ray.config.teacher import TeacherConfig, TopKSignal
from tip_ray.records import PromptBatch
from tip_ray.rollout.backend import Sample
from tip_ray.rollout.pack import pack_rollout
from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer
from tip_ray.tip.signal import TopKLogProbs, signal_form

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.teacher.vllm_scorer import VLLMTeacherScorer  # noqa: E402

ATOL = 2e-4
K = 8


def topk_settings(path: str, k: int, micro_batch_size: int = 16, server: dict | None = None, **extra) -> ScorerSettings:
    """Scorer settings for the top-k form (served by `server` when given, the options of
    teacher.backend type server)."""
    from tip_ray.config.teacher_server import ServerTeacher

    backend = {"backend": ServerTeacher(type="server", **server)} if server else {}
    teacher = TeacherConfig(signal=TopKSignal(type="topk", k=k), micro_batch_size=micro_batch_size, **backend)
    return ScorerSettings(model_path=path, teacher=teacher, **extra)


def _rollout(prompt_ids, vocab_size: int, seed: int = 0):
    """A RolloutBatch with random responses of various lengths, one of them empty."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(len(prompt_ids)):
        for length in (0 if i == 1 else 3, 11):
            tokens = torch.randint(4, vocab_size, (length,), generator=gen).tolist()
            samples.append(Sample(prompt_index=i, response_ids=tuple(tokens), logprobs=(-1.0,) * length))
    prompts = PromptBatch(
        batch_id=3,
        prompt_ids=tuple(tuple(p) for p in prompt_ids),
        answers=(None,) * len(prompt_ids),
        prompt_rows=tuple(range(len(prompt_ids))),
    )
    return pack_rollout(prompts, samples, policy_version=0, pad_token_id=0,
                        texts=("",) * len(samples), seconds=0.0)


@pytest.fixture(scope="module")
def scorer(teacher_dir):
    path, _ = teacher_dir
    settings = topk_settings(path, K, dtype="float32")
    engine = VLLMTeacherScorer(settings, kv_cache_space_gib=1, max_model_len=256)
    yield engine
    engine.close()


def test_topk_matches_float64_reference_and_hf_scorer(scorer, teacher_dir, tokenizer, prompt_ids):
    path, model = teacher_dir
    rollout = _rollout(prompt_ids, len(tokenizer))
    scored = scorer.score(rollout)
    assert signal_form(scored.teacher) == "topk" and scored.teacher.k == K
    n = rollout.num_response_tokens
    assert scored.teacher.indices.shape == (n, K) and scored.teacher_sampled_logprobs.shape == (n,)

    # Independent float64 reference, row-major over the response mask.
    ref_rows, ref_sampled = [], []
    for row in range(rollout.input_ids.shape[0]):
        length = int(rollout.attention_mask[row].sum())
        ids = rollout.input_ids[row, :length].tolist()
        ref = reference_logprobs(model, ids)
        for t in rollout.response_mask[row, :length].nonzero().squeeze(1).tolist():
            ref_rows.append(ref[t - 1])
            ref_sampled.append(ref[t - 1, ids[t]])
    ref_full = torch.stack(ref_rows)
    ref_vals, ref_idx = ref_full.topk(K + 1, dim=-1)
    assert torch.allclose(scored.teacher_sampled_logprobs.double(), torch.stack(ref_sampled), atol=ATOL)
    assert torch.allclose(scored.teacher.logprobs.double(), ref_vals[:, :K], atol=ATOL)
    clear_cut = (ref_vals[:, K - 1] - ref_vals[:, K]) > ATOL
    assert torch.equal(scored.teacher.indices[clear_cut], ref_idx[clear_cut, :K])
    # Whatever was picked carries its own reference value (so a tie swap is still exact).
    picked = ref_full.gather(1, scored.teacher.indices)
    assert torch.allclose(picked, scored.teacher.logprobs.double(), atol=ATOL)
    covered = ref_vals[:, :K].exp().sum(-1)
    assert torch.allclose(scored.teacher.tail_logprob.double(), torch.log1p(-covered), atol=1e-3)

    # Same contract as the Hugging Face scorer's top-k form.
    hf = TeacherScorer(topk_settings(path, K, dtype="float32")).score(rollout)
    assert isinstance(hf.teacher, TopKLogProbs)
    assert torch.equal(hf.teacher.indices[clear_cut], scored.teacher.indices[clear_cut])
    assert torch.allclose(hf.teacher.logprobs, scored.teacher.logprobs, atol=ATOL)
    assert torch.allclose(hf.teacher_sampled_logprobs, scored.teacher_sampled_logprobs, atol=ATOL)


def test_only_the_topk_form_and_a_k_within_the_vocabulary(teacher_dir, tokenizer):
    path, _ = teacher_dir
    with pytest.raises(ValueError, match="top-k form only"):
        VLLMTeacherScorer(ScorerSettings(model_path=path, teacher=TeacherConfig()))
    with pytest.raises(ValueError, match=r"teacher.signal.k must be in \[1, "):
        VLLMTeacherScorer(topk_settings(path, len(tokenizer) + 5))
