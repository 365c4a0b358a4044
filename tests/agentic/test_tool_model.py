"""A real tiny model that writes Hermes tool calls, run through the driver with `HFGenerateBackend`.

The model is taught the scripted first turns (tests/agentic/tool_model.py), so its real greedy
samples reach each tool event: a good call answered, a hung tool, a raising tool, malformed JSON,
an oversized output; the run goes on after each and counts it.
"""

from __future__ import annotations

import time

import pytest
from tool_model import SCRIPTS, prompt_ids


def _hang():
    time.sleep(20)


def _boom():
    raise RuntimeError("down")


@pytest.mark.slow  # ~60 s on 2 loaded cores; the pipeline test covers calls, errors and cuts by default
def test_a_real_model_reaches_every_tool_event_and_the_run_goes_on(tool_model):
    from tip_ray.envs.base import Environment
    from tip_ray.envs.driver import MultiTurnDriver
    from tip_ray.envs.episode import ToolLimits
    from tip_ray.models.loading import load_causal_lm, load_tokenizer
    from tip_ray.rollout.backend import SamplingRequest
    from tip_ray.rollout.hf import HFGenerateBackend

    tokenizer = load_tokenizer(str(tool_model))
    backend = HFGenerateBackend(load_causal_lm(str(tool_model)), tokenizer.eos_token_id, tokenizer.pad_token_id, 8)
    tools = {"add": lambda a, b: a + b, "hang": _hang, "boom": _boom, "big": lambda: "9" * 100}
    limits = ToolLimits(max_turns=2, max_tool_response_tokens=8, tool_timeout_s=0.5, max_total_tokens=200)
    driver = MultiTurnDriver(backend, tokenizer, Environment("scripted", tools), limits)
    users = list(SCRIPTS)
    samples, report = driver.generate([prompt_ids(tokenizer, u) for u in users],
                                      SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=64, n=1, seed=0))
    episodes = dict(zip(users, report.episodes))
    for user, sample in zip(users, samples):
        first = [t for t, w in zip(sample.response_ids, sample.model_written) if w][: len(SCRIPTS[user][0][1]) + 1]
        assert tokenizer.decode(first, skip_special_tokens=True) == SCRIPTS[user][0][1], f"{user}: not the scripted turn"
    add = episodes["add"]
    assert (add.turns, add.tool_calls, add.tool_errors, add.stop) == (2, 1, 0, "answered")
    assert report.final_texts[users.index("add")] == "5"  # it read the tool's answer
    assert episodes["hi"].turns == 1 and episodes["hi"].stop == "answered"
    assert episodes["hang"].tool_timeouts == 1
    assert episodes["boom"].tool_errors == 1 and episodes["bad"].tool_errors == 1
    assert episodes["big"].outputs_cut == 1
    for user in ("hang", "boom", "bad", "big"):
        assert episodes[user].turns == 2, f"{user}: the trajectory did not go on after the tool event"
    metrics = report.metrics()
    assert metrics["env/tool_calls"] == 5 and metrics["env/tool_errors"] == 2 and metrics["env/tool_timeouts"] == 1
    assert 0.0 < metrics["env/model_token_share"] < 1.0
    assert metrics["env/tool_s"] < 3.0  # the hung tool cost its 0.5 s limit, not its 20 s
