"""Evaluation in a tool environment runs whole episodes: the graded text is the last model turn,
written after the tool's real answer (a single-turn evaluation would grade the tool call)."""

from __future__ import annotations

from tool_model import SCRIPTS


def test_complete_runs_the_episode_and_returns_the_final_answer(tool_model):
    from tip_ray.config.rollout import RolloutConfig
    from tip_ray.rollout.worker import RolloutSettings, RolloutWorker
    from tip_ray.weights import WeightVersion

    environment = {"type": "tools", "name": "calculator", "max_turns": 3, "max_tool_response_tokens": 8,
                   "tool_timeout_s": 5, "max_total_tokens": 200}
    rollout = RolloutConfig.model_validate({"environment": environment, "backend": {"type": "hf", "batch_size": 4}})
    worker = RolloutWorker(RolloutSettings(model_path=str(tool_model), rollout=rollout, seed=0))
    (answers,) = worker.complete(["add"], n=1, temperature=0.0, max_new_tokens=64, seed=0,
                                 weights=WeightVersion(0, None))
    # The scripted model calls add(2, 3); the calculator answers 5; the model repeats it.
    assert SCRIPTS["add"][0][1].startswith("<tool_call>")
    assert answers == ["5"]

    single = RolloutWorker(RolloutSettings(model_path=str(tool_model), rollout=RolloutConfig(), seed=0))
    (first_turn,) = single.complete(["add"], n=1, temperature=0.0, max_new_tokens=64, seed=0,
                                    weights=WeightVersion(0, None))
    assert first_turn == [SCRIPTS["add"][0][1]]  # without the environment: only the call
