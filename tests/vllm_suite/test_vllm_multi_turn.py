"""Multi-turn tool-calling rollouts through the real vLLM (CPU) engine.

The tiny tool model of tests/agentic (trained in seconds to write scripted tool calls) is
served by vLLM; the multi-turn driver sends it token ids and appends the ids it returns, turn
by turn, with the calculator's answers rendered through the chat template in between. Checked:
the greedy trajectory is exactly the scripted one and exactly what the Hugging Face backend
produces through the same driver; the model-written flags; the environment counts; and every
sampled log-prob against a float64 forward over the final trajectory. Prefix caching is on, as
for every multi-turn vLLM run: a resent conversation finds its earlier context in the cache.

Tolerance: log-probs to 2e-4 absolute, as in test_vllm_rollout.py (vLLM runs float32 with its
own kernels; a float64 reference of the same weights).
"""

from __future__ import annotations

import pytest
import torch

from tests.agentic.tool_model import build_tool_model, model_runs, prompt_ids
from tests.vllm_suite.conftest import reference_logprobs, require_vllm
from tip_ray.envs.calculator import calculator_environment
from tip_ray.envs.driver import MultiTurnDriver
from tip_ray.envs.episode import ToolLimits
from tip_ray.rollout.backend import SamplingRequest

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.rollout.vllm_backend import VLLMBackend  # noqa: E402

LOGPROB_ATOL = 2e-4
LIMITS = ToolLimits(max_turns=4, max_tool_response_tokens=64, tool_timeout_s=10.0, max_total_tokens=200)
# "add": a call to add(2, 3), the calculator's answer, then the final answer; "hi": no tool.
EXPECTED_MODEL_TURNS = {
    "add": ['<tool_call>{"name":"add","arguments":{"a":2,"b":3}}</tool_call>', "5"],
    "hi": ["hello"],
}


@pytest.fixture(scope="module")
def tool_folder(tmp_path_factory):
    path, steps = build_tool_model(tmp_path_factory.mktemp("tool_model"))
    assert steps < 600, "the tiny model did not learn its scripted turns"
    return str(path)


@pytest.fixture(scope="module")
def tool_tokenizer(tool_folder):
    from tip_ray.models.loading import load_tokenizer

    return load_tokenizer(tool_folder)  # as the rollout worker loads it


@pytest.fixture(scope="module")
def engine(tool_folder, tool_tokenizer):
    backend = VLLMBackend(tool_folder, tokenizer=tool_tokenizer, dtype="float32", kv_cache_space_gib=1,
                          max_model_len=512, max_num_seqs=16, prefix_caching=True)
    yield backend
    backend.close()


def test_the_rollout_worker_runs_a_tools_environment_on_vllm_with_prefix_caching(tool_folder, tool_tokenizer):
    """`rollout.backend.type: vllm` with `environment.type: tools`, as a pipeline builds it (runs
    before the module's engine starts: one in-process engine at a time)."""
    from tip_ray.config.environment import ToolEnvironmentConfig
    from tip_ray.config.rollout import RolloutConfig, SamplingConfig, VLLMRollout
    from tip_ray.records import PromptBatch
    from tip_ray.rollout.worker import RolloutSettings, RolloutWorker
    from tip_ray.weights import WeightVersion

    environment = ToolEnvironmentConfig(type="tools", name="calculator", max_turns=4, max_tool_response_tokens=64,
                                        max_total_tokens=200)
    rollout = RolloutConfig(backend=VLLMRollout(type="vllm"), samples_per_prompt=1, environment=environment,
                            sampling=SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=80))
    worker = RolloutWorker(RolloutSettings(model_path=tool_folder, rollout=rollout, seed=0, dtype="float32",
                                           max_model_len=512))
    try:
        assert worker.backend.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
        prompts = tuple(tuple(prompt_ids(tool_tokenizer, u)) for u in ("add", "hi"))
        batch = PromptBatch(batch_id=0, prompt_ids=prompts, answers=(None, None), prompt_rows=(0, 1))
        out = worker.generate(batch, WeightVersion(version=0))
        assert out.environment["tool_calls"] == 1 and out.environment["turns"] == 3
        assert out.environment["stop_answered"] == 2
        assert int(out.response_mask.sum()) == out.environment["model_tokens"]
        assert list(out.response_texts) == ["5", "hello"]  # each trajectory's final answer
        row = out.input_ids[0, : int(out.attention_mask[0].sum())].tolist()
        environment_ids = [t for t, written in zip(row[len(prompts[0]):], out.response_mask[0, len(prompts[0]):])
                           if not written]
        assert tool_tokenizer.decode(environment_ids) == "|T:5|A:"
    finally:
        worker.backend.close()


def _run(backend, tokenizer, users, request):
    driver = MultiTurnDriver(backend, tokenizer, calculator_environment(), LIMITS)
    prompts = [prompt_ids(tokenizer, u) for u in users]
    samples, report = driver.generate(prompts, request)
    return prompts, samples, report


def test_greedy_tool_trajectory_is_the_scripted_one_and_matches_hugging_face(engine, tool_folder, tool_tokenizer):
    from tip_ray.models.loading import load_causal_lm
    from tip_ray.rollout.hf import HFGenerateBackend

    users = ["add", "hi"]
    greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=80, n=1, seed=0)
    before = (engine.prompt_tokens, engine.cached_prompt_tokens)
    prompts, samples, report = _run(engine, tool_tokenizer, users, greedy)

    for user, sample in zip(users, samples):
        assert model_runs(tool_tokenizer, sample) == EXPECTED_MODEL_TURNS[user]
        assert len(sample.model_written) == len(sample.response_ids) == len(sample.logprobs)
        # Environment positions carry no log-prob; each model turn ends with the end token.
        assert all(lp == 0.0 for lp, w in zip(sample.logprobs, sample.model_written) if not w)
        ends = [i for i, t in enumerate(sample.response_ids) if t == tool_tokenizer.eos_token_id]
        assert all(sample.model_written[i] for i in ends) and len(ends) == len(EXPECTED_MODEL_TURNS[user])
    add = samples[0]
    env_ids = [t for t, w in zip(add.response_ids, add.model_written) if not w]
    assert tool_tokenizer.decode(env_ids) == "|T:5|A:"  # template glue, the tool's answer, next header

    counts = report.counts()
    assert counts["trajectories"] == 2 and counts["turns"] == 3 and counts["turns_max"] == 2
    assert counts["tool_calls"] == 1 and counts["tool_errors"] == 0 and counts["tool_timeouts"] == 0
    assert counts["stop_answered"] == 2
    assert counts["model_tokens"] == sum(sum(s.model_written) for s in samples)
    assert counts["environment_tokens"] == len(env_ids)
    metrics = report.metrics()
    assert metrics["env/model_token_share"] == pytest.approx(
        counts["model_tokens"] / (counts["model_tokens"] + counts["environment_tokens"]))

    # Turn 2 resends turn 1's whole context as ids (prompt, call, tool answer, header).
    assert engine.prompt_tokens - before[0] == sum(map(len, prompts)) + len(prompts[0]) + len(add.response_ids) - 2
    assert counts["prompt_tokens"] == engine.prompt_tokens - before[0]
    assert counts["cached_prompt_tokens"] == engine.cached_prompt_tokens - before[1]

    # The same driver over Hugging Face generate writes exactly the same ids.
    hf = HFGenerateBackend(load_causal_lm(tool_folder, dtype="float32"), tool_tokenizer.eos_token_id,
                           tool_tokenizer.pad_token_id, batch_size=8)
    _, hf_samples, _ = _run(hf, tool_tokenizer, users, greedy)
    assert [s.response_ids for s in hf_samples] == [s.response_ids for s in samples]
    assert [s.model_written for s in hf_samples] == [s.model_written for s in samples]


def test_a_resent_conversation_hits_the_prefix_cache_and_samples_the_same(engine, tool_tokenizer):
    """What turn 2 of a long conversation does: resend turn 1's context plus new tokens. The
    engine's full KV blocks (128 tokens on the CPU build) of that context come from the cache, and
    the continuation is the one computed without any cache."""
    assert engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    gen = torch.Generator().manual_seed(4)
    context = torch.randint(3, len(tool_tokenizer), (block + 40,), generator=gen).tolist()
    greedy = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=12, n=1, seed=0)
    first = engine.generate([context], greedy)[0]
    resent = context + list(first.response_ids) + prompt_ids(tool_tokenizer, "add")
    before = engine.cached_prompt_tokens
    cached_run = engine.generate([resent], greedy)[0]
    hits = engine.cached_prompt_tokens - before
    assert hits >= block, f"{hits} of {len(resent)} resent prompt tokens came from the prefix cache"
    engine.llm.reset_prefix_cache()
    before = engine.cached_prompt_tokens
    fresh = engine.generate([resent], greedy)[0]
    assert engine.cached_prompt_tokens == before  # nothing cached after the reset
    assert fresh.response_ids == cached_run.response_ids
    assert torch.allclose(torch.tensor(fresh.logprobs), torch.tensor(cached_run.logprobs), atol=LOGPROB_ATOL)


def test_the_driver_reports_the_prefix_cached_share(engine, tool_tokenizer):
    """env/prefix_cached_share: a batch whose long prompt the engine has seen comes from the cache."""
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    gen = torch.Generator().manual_seed(5)
    context = [torch.randint(3, len(tool_tokenizer), (block + 20,), generator=gen).tolist()]
    driver = MultiTurnDriver(engine, tool_tokenizer, calculator_environment(), LIMITS)
    request = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=4, n=1, seed=0)
    _, first = driver.generate(context, request)
    _, second = driver.generate(context, request)
    assert first.prompt_tokens == second.prompt_tokens >= block + 20
    assert second.cached_prompt_tokens >= block > first.cached_prompt_tokens
    share = second.metrics()["env/prefix_cached_share"]
    assert share == pytest.approx(second.cached_prompt_tokens / second.prompt_tokens) and share > 0.5


def test_sampled_logprobs_match_a_float64_forward_over_the_final_trajectory(engine, tool_folder, tool_tokenizer):
    from tip_ray.models.loading import load_causal_lm

    model = load_causal_lm(tool_folder, dtype="float32")
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=80, n=3, seed=11)
    prompts, samples, report = _run(engine, tool_tokenizer, ["add", "hi"], request)
    assert [s.prompt_index for s in samples] == [0, 0, 0, 1, 1, 1]
    assert report.counts()["tool_calls"] >= 1, "no sampled trajectory called a tool"
    worst, checked = 0.0, 0
    for sample in samples:
        prompt = prompts[sample.prompt_index]
        reference = reference_logprobs(model, prompt + list(sample.response_ids))
        for offset, (token, written, got) in enumerate(zip(sample.response_ids, sample.model_written, sample.logprobs)):
            if written:
                worst = max(worst, abs(float(reference[len(prompt) + offset - 1, token]) - got))
                checked += 1
    assert checked == report.counts()["model_tokens"]
    assert worst < LOGPROB_ATOL, f"max |vLLM - float64 reference| = {worst:.2e} over {checked} tokens"
    # Same seed, same trajectories (each turn's draw is seeded per batch).
    _, again, _ = _run(engine, tool_tokenizer, ["add", "hi"], request)
    assert [s.response_ids for s in again] == [s.response_ids for s in samples]
