"""The tool-using demo pair: its teaching loop, its accuracy check through the real driver and
tool, and (slow) the shipped recipe's targets."""

from __future__ import annotations

import pytest
import torch

from tip_ray.demo import tools_bootstrap as tb
from tip_ray.demo.bootstrap import SFTSettings
from tip_ray.models.tiny import TinyModelSpec, build_tiny_model
from tip_ray.tasks import prices


def test_teaching_lowers_the_loss_on_model_written_tokens_only():
    from tip_ray.envs.template import ToolMessageRenderer

    tokenizer = tb.build_tools_tokenizer()
    renderer = ToolMessageRenderer(tokenizer, tb.TOOL_LIMITS.max_tool_response_tokens)
    problems = prices.make_problems(4, 9)
    input_ids, attention, labels = tb._batch(tokenizer, renderer, problems)
    for row, problem in enumerate(problems):
        learned = labels[row][labels[row] != -100].tolist()
        # Exactly the call and the worked sum with their end tokens: the tool answer and template are not learned.
        assert tokenizer.decode(learned) == prices.tool_call_text(problem.item) + "<eos>" + problem.worked_sum() + "<eos>"
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64, max_position_embeddings=tb.CONTEXT), len(tokenizer))
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.item()
    settings = SFTSettings(steps=30, batch_size=4, lr=3e-3, warmup_steps=1, seed=9)
    steps, accuracy = tb.fine_tune(model, tokenizer, settings, "test", progress=False)
    assert (steps, accuracy) == (30, None)  # no target: no checks, every step taken
    with torch.no_grad():
        after = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.item()
    assert after < before - 1.0


def test_the_accuracy_check_runs_episodes_with_the_real_tool(monkeypatch):
    """A model that has learned nothing solves nothing; the check counts episodes the checker passes."""
    tokenizer = tb.build_tools_tokenizer()
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64, max_position_embeddings=tb.CONTEXT), len(tokenizer))
    assert tb.episode_accuracy(model, tokenizer, prices.make_problems(3, 1)) == 0.0
    # A checker that passes everything gives 1.0: the check really grades the episodes' final texts.
    monkeypatch.setattr(prices, "grade", lambda text, answer: True)
    assert tb.episode_accuracy(model, tokenizer, prices.make_problems(3, 1)) == 1.0


def test_a_cache_from_another_recipe_is_not_used(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "COMPLETE.json").write_text('{"recipe": {"eval_size": 1}}')
    assert tb.cached_tools_models(tmp_path / "tools") is None


@pytest.mark.slow
def test_the_shipped_recipe_makes_a_reliable_teacher_and_a_weaker_student(tmp_path):
    """Minutes of CPU (about 25 on the 2-core machine under load), on top of the demo pair."""
    models = tb.ensure_tools_models(tmp_path / "tools", progress=False)
    assert models.teacher_accuracy >= 0.9
    assert 0.1 <= models.student_accuracy <= models.teacher_accuracy - 0.3
