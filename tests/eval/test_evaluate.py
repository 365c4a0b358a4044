"""evaluate(): n samples per problem, graded, summarised; and the Hugging Face generate_fn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tip_ray.tasks import arithmetic as task
from tip_ray.tasks.registry import get_task
from tip_ray.eval.benchmarks import load_task_benchmark
from tip_ray.eval.evaluate import evaluate
from tip_ray.eval.hf_generate import HFGenerator, SamplingSettings, format_prompt
from tip_ray.models.loading import load_causal_lm, load_tokenizer
from tip_ray.models.tiny import build_char_tokenizer

demo_grader = get_task("arithmetic").grade_all


def scripted_generate(pattern):
    """A generate_fn whose j-th sample for problem i is right iff pattern[i][j]."""
    def generate(prompts, n):
        out = []
        for prompt in prompts:
            a, b = map(int, prompt[:-1].split("+"))
            index = scripted_generate.index[prompt]
            out.append([task.solve(a, b) if pattern[index][j] else f"#### {a + b + 1}" for j in range(n)])
        return out
    return generate


def test_report_matches_the_known_pattern():
    problems = load_task_benchmark("demo", n=6)
    rng = np.random.default_rng(0)
    pattern = rng.random((6, 4)) < 0.4
    scripted_generate.index = {p.prompt: i for i, p in enumerate(problems)}
    report = evaluate(scripted_generate(pattern), problems, n=4, grader=demo_grader, chunk_size=4)
    assert [o.correct for o in report.outcomes] == [tuple(bool(x) for x in row) for row in pattern]
    assert report.mean.value == pytest.approx(pattern.mean(axis=1).mean())
    assert report.pass_at[4].value == pytest.approx(pattern.any(axis=1).mean())
    assert sorted(report.pass_at) == [1, 2, 4]
    summary = report.summary()
    assert summary["mean@4"] == report.mean.value and summary["num_problems"] == 6
    assert "pass@2_stderr" in summary


def test_bad_generate_output_and_bad_k_are_refused():
    problems = load_task_benchmark("demo", n=2)
    with pytest.raises(ValueError, match="expected 3 per prompt"):
        evaluate(lambda prompts, n: [["x"] * (n - 1) for _ in prompts], problems, 3, demo_grader)
    with pytest.raises(ValueError, match="1 <= k <= n=2"):
        evaluate(lambda prompts, n: [["x"] * n for _ in prompts], problems, 2, demo_grader, ks=[4])
    with pytest.raises(ValueError, match="no problems"):
        evaluate(lambda prompts, n: [], [], 1, demo_grader)


def test_hf_generator_samples_n_per_prompt_reproducibly(tiny_pair):
    tokenizer = load_tokenizer(str(tiny_pair.student_path))
    model = load_causal_lm(str(tiny_pair.student_path))
    prompts = [p.prompt for p in load_task_benchmark("demo", n=3)]
    sampling = SamplingSettings(max_new_tokens=6, temperature=1.0, seed=3)
    first = HFGenerator(model, tokenizer, sampling, batch_size=4)(prompts, 3)
    again = HFGenerator(model, tokenizer, sampling, batch_size=4)(prompts, 3)
    other_seed = HFGenerator(model, tokenizer, SamplingSettings(max_new_tokens=6, temperature=1.0, seed=4),
                             batch_size=4)(prompts, 3)
    assert [len(g) for g in first] == [3, 3, 3]
    assert first == again  # same seed and batching, same samples
    assert first != other_seed
    assert len({s for g in first for s in g}) > 1  # random weights at temperature 1: samples differ
    greedy = HFGenerator(model, tokenizer, SamplingSettings(max_new_tokens=6))(prompts, 2)
    assert all(g[0] == g[1] for g in greedy)
    assert all(len(tokenizer(s, add_special_tokens=False)["input_ids"]) <= 6 for g in first for s in g)


def test_chat_template_is_applied_only_when_present():
    plain = build_char_tokenizer("abc+=")
    assert format_prompt(plain, "a+b=", None) == "a+b="
    with pytest.raises(ValueError, match="no chat"):
        format_prompt(plain, "a+b=", True)
    templated = build_char_tokenizer("abc+=<>", chat_template="<{{ messages[0]['content'] }}>")
    assert format_prompt(templated, "a+b=", None) == "<a+b=>"
    assert format_prompt(templated, "a+b=", False) == "a+b="


def test_sampling_settings_are_checked():
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingSettings(top_p=0)
    assert torch.get_num_threads() >= 1
