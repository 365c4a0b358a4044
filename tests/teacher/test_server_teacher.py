"""The external-server teacher (teacher.backend type 'server') against a small HTTP server on
127.0.0.1 that answers like `vllm serve`, with log-probs computed from a real tiny model.

Checked: what is sent (token ids, prompt_logprobs k, max_tokens 1), the alignment of the parsed
top-k with the in-process top-k path and with a float64 reference, the selector statistics,
k validation (config time and start), the tokenizer check, retries and errors.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import socket
import time

import pytest
import torch
from openai_fake import FakeVLLMServer

from tip_ray.config.loader import ConfigError
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.teacher import TeacherConfig, TopKSignal
from tip_ray.config.teacher_server import ServerTeacher
from tip_ray.models.loading import load_tokenizer
from tip_ray.records import PromptBatch
from tip_ray.rollout.backend import Sample
from tip_ray.rollout.pack import pack_rollout
from tip_ray.teacher.openai_logprobs import ServerAnswerError, position_topk
from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer
from tip_ray.teacher.server_client import TeacherServerError
from tip_ray.teacher.server_scorer import ServerTeacherScorer
from tip_ray.tip.signal import TopKLogProbs
from tip_ray.tip.stats import token_stats

K = 5
FAST_RETRY = {"timeout_s": 10.0, "max_retries": 3, "backoff_s": 0.05, "max_logprobs": 20}


@pytest.fixture(scope="module")
def teacher(tiny_pair):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_pair.teacher_path), dtype=torch.float32).eval()
    return model, load_tokenizer(str(tiny_pair.tokenizer_path))


def _server_options(url: str, **extra) -> dict:
    return {"url": url, "model": None, "api_key_env": None, **FAST_RETRY, **extra}


def _settings(tiny_pair, k=K, micro_batch_size=3, vocab_size=None) -> ScorerSettings:
    teacher = TeacherConfig(signal=TopKSignal(type="topk", k=k), micro_batch_size=micro_batch_size)
    return ScorerSettings(model_path=str(tiny_pair.teacher_path), teacher=teacher, dtype="float32",
                          vocab_size=vocab_size)


def _server_scorer(settings: ScorerSettings, *, server: dict, tokenizer_path: str) -> ServerTeacherScorer:
    """The scorer for `settings` with the teacher behind `server` (teacher.backend type server)."""
    teacher = settings.teacher.model_copy(update={"backend": ServerTeacher(type="server", **server)})
    return ServerTeacherScorer(dataclasses.replace(settings, teacher=teacher), tokenizer_path=tokenizer_path)


def _rollout(tokenizer, seed=0):
    """Prompts of different lengths, responses of 0, 1 and 9 tokens (one row has none)."""
    vocab = len(tokenizer)
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in ("12+7=", "3+40=", "8+8=", "100+1=")]
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(len(prompts)):
        for length in ((0, 9) if i == 1 else (1, 9)):
            tokens = torch.randint(3, vocab, (length,), generator=gen).tolist()
            samples.append(Sample(prompt_index=i, response_ids=tuple(tokens), logprobs=(-1.0,) * length))
    batch = PromptBatch(batch_id=7, prompt_ids=tuple(tuple(p) for p in prompts), answers=(None,) * len(prompts),
                        prompt_rows=tuple(range(len(prompts))))
    return pack_rollout(batch, samples, policy_version=0, pad_token_id=0, texts=("",) * len(samples), seconds=0.0)


@torch.no_grad()
def _reference(model, rollout):
    """[N, V] float64 log-softmax predicting each response token, and the tokens (row-major)."""
    model64 = copy.deepcopy(model).double()
    rows, tokens = [], []
    for row in range(rollout.input_ids.shape[0]):
        length = int(rollout.attention_mask[row].sum())
        ids = rollout.input_ids[row, :length]
        lps = model64(ids[None]).logits[0].log_softmax(-1)
        for t in rollout.response_mask[row, :length].nonzero().squeeze(1).tolist():
            rows.append(lps[t - 1])
            tokens.append(int(ids[t]))
    return torch.stack(rows), torch.tensor(tokens)


def test_server_topk_equals_the_in_process_topk_path(tiny_pair, teacher):
    model, tokenizer = teacher
    rollout = _rollout(tokenizer)
    with FakeVLLMServer(model, tokenizer) as server:
        scorer = _server_scorer(_settings(tiny_pair, vocab_size=len(tokenizer)),
                                     server=_server_options(server.url + "/v1/"),
                                     tokenizer_path=str(tiny_pair.tokenizer_path))
        scored = scorer.score(rollout)
        sent = [body for path, body in server.requests if path == "/v1/completions"]
    # 7 rows with response tokens, 3 a request, after the one start-up probe of k.
    scoring = sent[1:]
    assert [len(body["prompt"]) for body in scoring] == [3, 3, 1]
    expected_rows = [rollout.input_ids[r, : int(rollout.attention_mask[r].sum())].tolist()
                     for r in range(rollout.input_ids.shape[0]) if rollout.response_mask[r].any()]
    assert [ids for body in scoring for ids in body["prompt"]] == expected_rows  # token ids, never text
    assert all(b["prompt_logprobs"] == K and b["max_tokens"] == 1 and b["model"] == "teacher" for b in scoring)

    n = rollout.num_response_tokens
    assert isinstance(scored.teacher, TopKLogProbs)
    assert scored.teacher.indices.shape == (n, K) and scored.teacher_sampled_logprobs.shape == (n,)

    in_process = TeacherScorer(_settings(tiny_pair)).score(rollout)
    ref, tokens = _reference(model, rollout)
    ref_values, ref_indices = ref.topk(K + 1, dim=-1)
    clear_cut = (ref_values[:, K - 1] - ref_values[:, K]) > 1e-5
    assert clear_cut.float().mean() > 0.9
    assert torch.equal(scored.teacher.indices[clear_cut], in_process.teacher.indices[clear_cut])
    assert torch.equal(scored.teacher.indices[clear_cut], ref_indices[clear_cut, :K])
    assert torch.allclose(scored.teacher.logprobs, in_process.teacher.logprobs, atol=1e-5)
    assert torch.allclose(scored.teacher.tail_logprob, in_process.teacher.tail_logprob, atol=1e-4)
    assert torch.allclose(scored.teacher_sampled_logprobs, in_process.teacher_sampled_logprobs, atol=1e-5)
    # Against the independent float64 reference: the sampled token and the picked top-k values.
    assert torch.allclose(scored.teacher_sampled_logprobs.double(), ref.gather(1, tokens[:, None]).squeeze(1), atol=1e-5)
    assert torch.allclose(scored.teacher.logprobs.double(), ref.gather(1, scored.teacher.indices), atol=1e-5)

    # What the selector computes from either signal: entropy and both divergences.
    student_logits = torch.randn(n, len(tokenizer), generator=torch.Generator().manual_seed(3))
    ours, theirs = token_stats(student_logits, scored.teacher), token_stats(student_logits, in_process.teacher)
    for name in ("entropy", "reverse_kl", "forward_kl"):
        assert torch.allclose(getattr(ours, name), getattr(theirs, name), atol=1e-5), name
    assert ours.approximate


def test_config_refuses_k_above_the_servers_max_logprobs(tiny_pair, tmp_path):
    from tests_support import server_doc

    doc = server_doc(tiny_pair, tmp_path, k=32, server={"url": "http://127.0.0.1:8000"})
    with pytest.raises(ValueError, match=r"teacher.signal.k is 32 .*teacher.backend.max_logprobs = 20.*--max-logprobs 32"):
        PipelineConfig.model_validate(doc)
    assert PipelineConfig.model_validate(
        server_doc(tiny_pair, tmp_path, k=32, server={"url": "http://127.0.0.1:8000/v1/", "max_logprobs": 32})
    ).teacher.backend.url == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match=r"teacher\.backend\.server\.url\s+Field required"):
        PipelineConfig.model_validate(server_doc(tiny_pair, tmp_path, k=4, server=None))
    with pytest.raises(ValueError, match="top-k log-probs only"):
        PipelineConfig.model_validate(server_doc(tiny_pair, tmp_path, k=4, server={"url": "http://h:1"}, form="full"))
    with pytest.raises(ValueError, match="url must be http"):
        PipelineConfig.model_validate(server_doc(tiny_pair, tmp_path, k=4, server={"url": "h:1"}))


def test_config_file_error_names_the_key(tiny_pair, tmp_path):
    import yaml

    from tests_support import server_doc
    from tip_ray.config.loader import load_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(server_doc(tiny_pair, tmp_path, k=21, server={"url": "http://127.0.0.1:9"})))
    with pytest.raises(ConfigError, match="teacher.signal.k is 21"):
        load_pipeline(path)


def test_start_asks_the_server_for_its_logprob_limit(tiny_pair, teacher):
    model, tokenizer = teacher
    # The config declares 20, the server was started with --max-logprobs 4.
    with FakeVLLMServer(model, tokenizer, max_logprobs=4) as server:
        with pytest.raises(TeacherServerError, match=r"refuses teacher.signal.k = 5 .*greater than max allowed: 4"):
            _server_scorer(_settings(tiny_pair), server=_server_options(server.url),
                                tokenizer_path=str(tiny_pair.tokenizer_path))


def test_start_refuses_a_server_with_another_tokenizer(tiny_pair, teacher):
    from tip_ray.models.tiny import build_char_tokenizer

    model, _ = teacher
    with FakeVLLMServer(model, build_char_tokenizer()) as server:
        with pytest.raises(TeacherServerError, match="tokenises differently from the student's tokenizer"):
            _server_scorer(_settings(tiny_pair), server=_server_options(server.url),
                                tokenizer_path=str(tiny_pair.tokenizer_path))


def test_start_names_the_served_models(tiny_pair, teacher):
    model, tokenizer = teacher
    with FakeVLLMServer(model, tokenizer, served_name="big-teacher") as server:
        with pytest.raises(TeacherServerError, match=r"teacher.backend.model 'other' is not served .*big-teacher"):
            _server_scorer(_settings(tiny_pair), server=_server_options(server.url, model="other"),
                                tokenizer_path=str(tiny_pair.tokenizer_path))


def test_5xx_answers_and_dropped_connections_are_retried(tiny_pair, teacher):
    model, tokenizer = teacher
    rollout = _rollout(tokenizer, seed=1)
    with FakeVLLMServer(model, tokenizer) as server:
        scorer = _server_scorer(_settings(tiny_pair, micro_batch_size=16), server=_server_options(server.url),
                                     tokenizer_path=str(tiny_pair.tokenizer_path))
        server.fail_first, server.drop_first = 1, 1
        scored = scorer.score(rollout)
        attempts = [p for p, _ in server.requests if p == "/v1/completions"]
    assert len(attempts) == 1 + 3  # the start probe, a 503, a closed connection, one answer
    expected = TeacherScorer(_settings(tiny_pair)).score(rollout)
    assert torch.allclose(scored.teacher_sampled_logprobs, expected.teacher_sampled_logprobs, atol=1e-5)


def test_a_server_that_stays_down_fails_with_its_url(tiny_pair, teacher):
    model, tokenizer = teacher
    with FakeVLLMServer(model, tokenizer, fail_first=100) as server:
        with pytest.raises(TeacherServerError, match=r"/v1/completions did not answer after 4 attempts \(HTTP 503"):
            _server_scorer(_settings(tiny_pair), server=_server_options(server.url),
                                tokenizer_path=str(tiny_pair.tokenizer_path))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TeacherServerError) as info:
        _server_scorer(_settings(tiny_pair), server=_server_options(f"http://127.0.0.1:{port}"),
                            tokenizer_path=str(tiny_pair.tokenizer_path))
    assert f"teacher server http://127.0.0.1:{port}/v1/models did not answer after 4 attempts" in str(info.value)
    assert "vllm serve" in str(info.value)
    assert time.monotonic() - start < 5  # 0.05 + 0.1 + 0.2 s of backoff, bounded
    again = pickle.loads(pickle.dumps(info.value))  # crosses Ray's object store intact
    assert again.url == info.value.url and str(again) == str(info.value)


def test_api_key_comes_from_the_named_variable(tiny_pair, teacher, monkeypatch):
    model, tokenizer = teacher
    with FakeVLLMServer(model, tokenizer, api_key="s3cret") as server:
        options = _server_options(server.url, api_key_env="TEACHER_KEY")
        monkeypatch.delenv("TEACHER_KEY", raising=False)
        with pytest.raises(TeacherServerError, match="api_key_env names 'TEACHER_KEY', which is not set"):
            _server_scorer(_settings(tiny_pair), server=options, tokenizer_path=str(tiny_pair.tokenizer_path))
        monkeypatch.setenv("TEACHER_KEY", "wrong")
        with pytest.raises(TeacherServerError, match=r"refused the request \(HTTP 401\)"):
            _server_scorer(_settings(tiny_pair), server=options, tokenizer_path=str(tiny_pair.tokenizer_path))
        monkeypatch.setenv("TEACHER_KEY", "s3cret")
        _server_scorer(_settings(tiny_pair), server=options, tokenizer_path=str(tiny_pair.tokenizer_path))


def test_malformed_positions_are_named():
    entry = lambda lp, rank: {"logprob": lp, "rank": rank}  # noqa: E731
    ids, lps, own = position_topk({"7": entry(-3.0, 4), "1": entry(-0.5, 1), "2": entry(-1.5, 2)}, 7, 2, "p")
    assert ids == [1, 2] and lps == [-0.5, -1.5] and own == -3.0
    ids, _, own = position_topk({"2": entry(-1.5, 2), "1": entry(-0.5, 1)}, 2, 2, "p")
    assert ids == [1, 2] and own == -1.5
    with pytest.raises(ServerAnswerError, match="p: 1 log-probs for prompt_logprobs=2"):
        position_topk({"2": entry(-1.5, 2)}, 2, 2, "p")
    with pytest.raises(ServerAnswerError, match="the prompt token 9 is missing"):
        position_topk({"2": entry(-1.5, 2), "1": entry(-0.5, 1)}, 9, 2, "p")
    with pytest.raises(ServerAnswerError, match="is not a log-probability"):
        position_topk({"2": entry(0.5, 1), "1": entry(-0.5, 2)}, 2, 2, "p")


def test_the_pipeline_config_builds_the_server_scorer(tiny_pair, teacher, tmp_path):
    """teacher.backend type 'server' in a pipeline file reaches the stage the run starts."""
    from tests_support import server_doc

    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.stages import teacher_stage

    model, tokenizer = teacher
    with FakeVLLMServer(model, tokenizer, served_name="tiny-teacher") as server:
        config = PipelineConfig.model_validate(
            server_doc(tiny_pair, tmp_path, k=K, server={"url": server.url, "model": "tiny-teacher"}))
        prepared = prepare_run(config, write=False)
        cls, args, kwargs = teacher_stage(prepared, plan_placement(config)["teacher"], 0)
        assert cls is ServerTeacherScorer
        scorer = cls(*args, **kwargs)
        rollout = _rollout(tokenizer, seed=2)
        scored = scorer.score(rollout)
    expected = TeacherScorer(_settings(tiny_pair)).score(rollout)
    assert scored.teacher.k == K
    assert torch.allclose(scored.teacher.logprobs, expected.teacher.logprobs, atol=1e-5)


def test_k_above_the_vocabulary_is_refused_before_any_request(tiny_pair, teacher):
    """vLLM's engine dies on prompt_logprobs above the vocabulary, so nothing may be sent."""
    model, tokenizer = teacher
    with FakeVLLMServer(model, tokenizer) as server:
        with pytest.raises(TeacherServerError, match=rf"teacher.signal.k is 20 but the student's vocabulary has {len(tokenizer)}"):
            _server_scorer(_settings(tiny_pair, k=20, vocab_size=len(tokenizer)),
                                server=_server_options(server.url), tokenizer_path=str(tiny_pair.tokenizer_path))
        assert server.requests == []
