import math

import pytest
import torch

from tip_ray.tip import (
    FullLogProbs,
    TeacherHidden,
    TopKLogProbs,
    index_signal,
    is_exact,
    num_rows,
    signal_form,
    topk_from_logprobs,
    vocab_size_of,
)


def _random_logprobs(n: int, v: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(n, v, generator=g, dtype=torch.float64) * 2, dim=-1).to(dtype)


@pytest.mark.parametrize("n,v,k", [(1, 7, 1), (5, 13, 4), (3, 50, 50), (4, 32000, 20)])
def test_topk_matches_naive_sort_and_tail(n, v, k):
    lp = _random_logprobs(n, v, seed=v + k)
    sig = topk_from_logprobs(lp, k)
    assert sig.indices.shape == (n, k) and sig.indices.dtype == torch.int64
    for row in range(n):
        values = lp[row].tolist()
        expected = sorted(range(v), key=lambda t: (-values[t], t))[:k]
        assert sig.indices[row].tolist() == expected
        assert torch.equal(sig.logprobs[row], lp[row, expected])
        covered = sum(math.exp(values[t]) for t in expected)
        if covered < 1 - 1e-6:
            assert sig.tail_logprob[row].item() == pytest.approx(math.log(1 - covered), rel=1e-4, abs=1e-4)
        else:
            assert math.isfinite(sig.tail_logprob[row].item()) and sig.tail_logprob[row].item() < -10


def test_topk_ties_take_lower_id_and_bf16_input():
    lp = torch.log(torch.tensor([[0.1, 0.3, 0.3, 0.3]])).to(torch.bfloat16)
    sig = topk_from_logprobs(lp, 2)
    assert sig.indices.tolist() == [[1, 2]]
    assert sig.logprobs.dtype == torch.bfloat16 and sig.tail_logprob.dtype == torch.float32
    assert sig.tail_logprob.item() == pytest.approx(math.log(1 - 2 * float(torch.exp(lp[0, 1].double()))), abs=1e-3)


def test_forms_exactness_index_and_vocab():
    lp = _random_logprobs(6, 9, seed=1)
    full = FullLogProbs(lp)
    top = topk_from_logprobs(lp, 3)
    hid = TeacherHidden(torch.randn(6, 4))
    assert [signal_form(s) for s in (full, top, hid)] == ["full", "topk", "hidden"]
    assert [is_exact(s) for s in (full, top, hid)] == [True, False, True]
    idx = torch.tensor([4, 0])
    assert torch.equal(index_signal(full, idx).logprobs, lp[[4, 0]])
    sub = index_signal(top, idx)
    assert isinstance(sub, TopKLogProbs) and torch.equal(sub.indices, top.indices[[4, 0]])
    assert torch.equal(sub.tail_logprob, top.tail_logprob[[4, 0]])
    assert torch.equal(index_signal(hid, idx).hidden, hid.hidden[[4, 0]])
    assert num_rows(index_signal(full, torch.zeros(6, dtype=torch.bool))) == 0
    assert vocab_size_of(full) == 9
    assert vocab_size_of(top) is None
    assert vocab_size_of(hid) is None and vocab_size_of(hid, torch.zeros(11, 4)) == 11


def test_bad_signals_are_rejected_clearly():
    with pytest.raises(ValueError, match="2-D"):
        FullLogProbs(torch.zeros(3))
    with pytest.raises(ValueError, match="int64"):
        TopKLogProbs(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="must match"):
        TopKLogProbs(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="tail_logprob"):
        TopKLogProbs(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="k must be in"):
        topk_from_logprobs(torch.zeros(2, 5), 6)
    with pytest.raises(TypeError, match="FullLogProbs, TopKLogProbs or TeacherHidden"):
        signal_form(torch.zeros(2, 2))
