"""The multi-turn driver: turns, tool calls and their failures, limits, ids kept as sampled.

Most tests drive a replay sampler: it answers each turn with scripted text encoded by the real
tokenizer (as token ids, with made-up log-probs), so every limit and failure is reached on
purpose. The last test samples from a real tiny Hugging Face model through `HFGenerateBackend`.
"""

from __future__ import annotations

import time

import pytest
import torch

from tests.agentic.tool_model import CHAT_TEMPLATE, model_runs
from tip_ray.envs.base import Environment
from tip_ray.envs.driver import MultiTurnDriver
from tip_ray.envs.episode import ToolLimits
from tip_ray.models.tiny import build_char_tokenizer
from tip_ray.rollout.backend import Sample, SamplingRequest

ADD = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
SCRIPTS = {
    "add": [ADD, "5"],
    "loop": [ADD] * 10,
    "hang": ['<tool_call>{"name": "hang", "arguments": {}}</tool_call>', "sorry"],
    "boom": ['<tool_call>{"name": "boom", "arguments": {}}</tool_call>', "sorry"],
    "bad": ['<tool_call>{"name": "add", "arguments": {"a": 2,</tool_call>', "sorry"],
    "unknown": ['<tool_call>{"name": "fly", "arguments": {}}</tool_call>', "sorry"],
    "big": ['<tool_call>{"name": "big", "arguments": {}}</tool_call>', "ok"],
    "nap": ['<tool_call>{"name": "nap", "arguments": {}}</tool_call>', "ok"],
    "hi": ["hello"],
}
NAP_S = 0.4


def _boom():
    raise ValueError("no such city")


TOOLS = {
    "add": lambda a, b: a + b,
    "hang": lambda: time.sleep(20),
    "boom": _boom,
    "big": lambda: "x" * 5000,
    "nap": lambda: time.sleep(NAP_S) or "rested",
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(chat_template=CHAT_TEMPLATE)


class ReplaySampler:
    """A RolloutBackend that writes the scripted turn for each context, as token ids."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = 0

    def generate(self, prompts, request):
        self.calls += 1
        out = []
        for index, ids in enumerate(prompts):
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            user = text.split("U:", 1)[1].split("|", 1)[0]
            turn = text.count("A:") - 1
            ids = self.ids(SCRIPTS[user][turn])[: request.max_new_tokens]
            out.append(Sample(prompt_index=index, response_ids=tuple(ids),
                              logprobs=tuple(-0.01 * (i + 1) for i in range(len(ids)))))
        return out

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]


def limits(**overrides) -> ToolLimits:
    values = dict(max_turns=5, max_tool_response_tokens=1024, tool_timeout_s=5.0, max_total_tokens=2000)
    return ToolLimits(**{**values, **overrides})


def run(tokenizer, users, n=1, max_new_tokens=200, **limit_overrides):
    driver = MultiTurnDriver(ReplaySampler(tokenizer), tokenizer, Environment("test", TOOLS), limits(**limit_overrides))
    prompts = [prompt(tokenizer, u) for u in users]
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, n=n, seed=0)
    samples, report = driver.generate(prompts, request)
    return prompts, samples, report


def prompt(tokenizer, user: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=True,
                                         add_generation_prompt=True, return_dict=True)["input_ids"]


def env_text(tokenizer, sample) -> str:
    return tokenizer.decode([t for t, w in zip(sample.response_ids, sample.model_written) if not w])


def test_a_tool_round_keeps_sampled_ids_and_renders_only_the_tool_message(tokenizer):
    prompts, (sample,), report = run(tokenizer, ["add"])
    replay = ReplaySampler(tokenizer)
    first, second = replay.ids(ADD), replay.ids("5")
    # The environment's part is exactly the template's text between the turns, tokenised alone.
    conversation = [{"role": "user", "content": "add"}, {"role": "assistant", "content": ADD},
                    {"role": "tool", "content": "5"}, {"role": "assistant", "content": "5"}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert rendered == tokenizer.decode(prompts[0] + list(sample.response_ids), skip_special_tokens=False) + "|"
    between = tokenizer("|T:5|A:", add_special_tokens=False)["input_ids"]
    assert list(sample.response_ids) == first + between + second
    assert list(sample.model_written) == [True] * len(first) + [False] * len(between) + [True] * len(second)
    want_lp = [-0.01 * (i + 1) for i in range(len(first))] + [0.0] * len(between) + [-0.01 * (i + 1) for i in range(len(second))]
    assert list(sample.logprobs) == pytest.approx(want_lp)
    episode = report.episodes[0]
    assert (episode.turns, episode.tool_calls, episode.tool_errors, episode.stop) == (2, 1, 0, "answered")
    metrics = report.metrics()
    assert metrics["env/model_token_share"] == pytest.approx((len(first) + len(second)) / len(sample.response_ids))
    assert metrics["env/turns_mean"] == 2 and metrics["env/stop_answered"] == 1
    assert report.final_texts == ("5",)


def test_turn_limit_stops_with_the_call_unanswered(tokenizer):
    _, (one, looped), report = run(tokenizer, ["add", "loop"], max_turns=1)
    assert all(s.model_written == (True,) * len(s.response_ids) for s in (one, looped))
    assert [e.stop for e in report.episodes] == ["turn_limit", "turn_limit"]
    assert report.metrics()["env/tool_calls"] == 0
    _, (looped,), report = run(tokenizer, ["loop"], max_turns=3)
    episode = report.episodes[0]
    assert (episode.turns, episode.tool_calls, episode.stop) == (3, 2, "turn_limit")
    assert report.metrics()["env/stop_turn_limit"] == 1


def test_token_budget_cuts_a_turn_and_refuses_a_tool_message_that_does_not_fit(tokenizer):
    first = len(ReplaySampler(tokenizer).ids(ADD))
    _, (sample,), report = run(tokenizer, ["add"], max_total_tokens=20)
    assert len(sample.response_ids) == 20 and all(sample.model_written)
    assert (report.episodes[0].stop, report.episodes[0].tool_calls) == ("token_budget", 0)
    _, (sample,), report = run(tokenizer, ["add"], max_total_tokens=first + 3)
    assert len(sample.response_ids) == first
    assert (report.episodes[0].stop, report.episodes[0].tool_calls) == ("token_budget", 1)
    assert report.metrics()["env/stop_token_budget"] == 1


def test_a_turn_that_hits_max_new_tokens_ends_the_trajectory(tokenizer):
    _, (sample,), report = run(tokenizer, ["add"], max_new_tokens=10)
    assert len(sample.response_ids) == 10 and report.episodes[0].stop == "length"


@pytest.mark.parametrize("user, counter, seen", [
    ("hang", "tool_timeouts", "did not answer within 0.3 s"),
    ("boom", "tool_errors", "tool raised ValueError: no such city"),
    ("bad", "tool_errors", "malformed tool call: invalid JSON"),
    ("unknown", "tool_errors", "unknown tool 'fly'"),
])
def test_tool_failures_are_told_to_the_model_and_counted(tokenizer, user, counter, seen):
    start = time.perf_counter()
    _, (sample,), report = run(tokenizer, [user], tool_timeout_s=0.3)
    assert time.perf_counter() - start < 5.0
    assert seen in env_text(tokenizer, sample)
    assert model_runs(tokenizer, sample)[-1] == "sorry"  # the run went on to the next turn
    episode = report.episodes[0]
    assert (episode.turns, episode.tool_calls, getattr(episode, counter), episode.stop) == (2, 1, 1, "answered")
    assert report.metrics()[f"env/{counter}"] == 1


def test_oversized_tool_output_is_cut_in_tokens(tokenizer):
    _, (sample,), report = run(tokenizer, ["big"], max_tool_response_tokens=16)
    assert env_text(tokenizer, sample) == "|T:" + "x" * 16 + " [cut]|A:"
    assert report.episodes[0].outputs_cut == 1 and report.metrics()["env/tool_outputs_cut"] == 1
    assert model_runs(tokenizer, sample)[-1] == "ok"


def test_tool_calls_of_a_batch_run_concurrently(tokenizer):
    n = 6
    _, samples, report = run(tokenizer, ["nap"], n=n)
    assert report.metrics()["env/tool_calls"] == n
    assert report.tool_seconds < 2 * NAP_S, f"{n} naps of {NAP_S} s took {report.tool_seconds:.2f} s"
    assert all(model_runs(tokenizer, s)[-1] == "ok" for s in samples)


def test_trajectories_of_a_batch_end_independently(tokenizer):
    _, samples, report = run(tokenizer, ["hi", "add", "loop"], max_turns=4)
    assert [e.stop for e in report.episodes] == ["answered", "answered", "turn_limit"]
    assert [e.turns for e in report.episodes] == [1, 2, 4]
    assert [s.prompt_index for s in samples] == [0, 1, 2]


def test_real_model_ids_and_logprobs_survive_turn_by_turn(tokenizer):
    """Sampled by a real tiny model: each model-written token's recorded log-prob is the model's
    own at that position of the final trajectory (float64 forward), so nothing was re-tokenised."""
    from tip_ray.models.tiny import TinyModelSpec, build_tiny_model
    from tip_ray.rollout.hf import HFGenerateBackend

    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64), len(tokenizer), seed=3)
    backend = HFGenerateBackend(model, tokenizer.eos_token_id, tokenizer.pad_token_id, batch_size=8)
    driver = MultiTurnDriver(backend, tokenizer, Environment("test", TOOLS), limits(max_turns=3, max_total_tokens=40))
    prompts = [prompt(tokenizer, "add"), prompt(tokenizer, "hi")]
    samples, report = driver.generate(prompts, SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=16, n=2, seed=5))
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1]
    reference = model.double().eval()
    for sample, episode in zip(samples, report.episodes):
        assert 0 < len(sample.response_ids) <= 40 and episode.turns >= 1
        ids = torch.tensor(prompts[sample.prompt_index] + list(sample.response_ids))
        with torch.no_grad():
            logprobs = reference(input_ids=ids.unsqueeze(0)).logits[0].log_softmax(-1)
        p = len(prompts[sample.prompt_index])
        for offset, (token, written, recorded) in enumerate(zip(sample.response_ids, sample.model_written, sample.logprobs)):
            if written:
                assert recorded == pytest.approx(float(logprobs[p + offset - 1, token]), abs=1e-4)
            else:
                assert recorded == 0.0


@pytest.mark.parametrize("template, message", [
    (None, "has no chat template"),
    (CHAT_TEMPLATE.replace("T:{{ m['content'] }}|", ""), "drops messages of the 'tool' role"),
    (CHAT_TEMPLATE.replace("<eos>|", "|"), "does not end an assistant turn with the end token '<eos>'"),
    ("{% for m in messages %}{% if loop.last %}[{{ m['content'] }}]{% else %}{{ m['content'] }}<eos>{% endif %}"
     "{% endfor %}", "cannot be appended as a delta"),
])
def test_templates_that_cannot_carry_tool_messages_are_refused_at_start(template, message):
    from tip_ray.envs.template import ChatTemplateError

    tokenizer = build_char_tokenizer(chat_template=template)
    with pytest.raises(ChatTemplateError, match=message):
        MultiTurnDriver(ReplaySampler(tokenizer), tokenizer, Environment("test", TOOLS), limits())
