"""Two teachers routed by data source through real local-Ray stage actors (tiny models): each
row is scored by its own teacher (its signal equals a float64 forward of that teacher and not of
the other), the per-teacher statistics match a float64 reference, and a whole run writes the
per-teacher columns. Plus the vocabulary check that runs before anything starts."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from tests.teacher.several_teachers import TABLE, second_teacher, tagged_prompts, two_teacher_doc
from tip_ray.config import load_pipeline


@pytest.fixture(scope="module")
def two_teachers(tiny_pair, demo_prompts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("two")
    return second_teacher(folder / "second"), tagged_prompts(demo_prompts, folder / "tagged.jsonl")


def load(tmp_path, doc):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_pipeline(path)


def float64_logprobs(model_path, rollout) -> torch.Tensor:
    """[N, V] float64 log-probs predicting each response token, row-major."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float64).eval()
    with torch.no_grad():
        logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits
    rows, cols = rollout.response_mask.nonzero(as_tuple=True)
    return logits[rows, cols - 1].log_softmax(-1)


def test_each_row_is_scored_by_its_teacher(ray_local, tiny_pair, two_teachers, tmp_path):
    import ray

    from tip_ray.data.prompts import PromptSampler
    from tip_ray.pipeline.actors import shutdown_actors, start_actors
    from tip_ray.pipeline.controller import Controller
    from tip_ray.pipeline.prepare import prepare_run

    second, prompts = two_teachers
    config = load(tmp_path, two_teacher_doc(
        tiny_pair, second, prompts, tmp_path / "run", data={"shuffle": False},
        rollout={"prompts_per_step": 6, "num_workers": 1}, train={"steps": 1, "seed": 0, "stage_timeout_s": 600}))
    prepared = prepare_run(config)
    paths = {"first": str(tiny_pair.teacher_path), "second": str(second)}
    assert [t.name for t in prepared.teachers] == ["first", "second"]
    actors = start_actors(prepared, max_restarts=0, name_prefix="several-teachers/")
    try:
        assert actors.scorer_teacher == [0, 1]
        controller = Controller(prepared, actors, PromptSampler(prepared.prompts, seed=0, shuffle=False))
        controller.wait_ready()
        controller.start(0)
        item = controller.queue[0]
        # Rows 0..5 alternate short/long: the one rollout shard is cut into one part per teacher.
        assert item.batch.prompt_rows == (0, 2, 4, 1, 3, 5) and item.batch.teachers == (0, 0, 0, 1, 1, 1)
        parts = ray.get(item.scored_refs)
        summary = ray.get(item.summary_ref)
    finally:
        shutdown_actors(actors)
    assert [p.rollout.prompt_rows for p in parts] == [(0, 2, 4), (1, 3, 5)]
    names = ["first", "second"]
    for name, other, part in zip(names, reversed(names), parts):
        mine = float64_logprobs(paths[name], part.rollout)
        theirs = float64_logprobs(paths[other], part.rollout)
        got = part.teacher.logprobs.double()
        assert torch.allclose(got, mine, atol=1e-4), f"{name}'s rows were not scored by {name}"
        assert (got - theirs).abs().max() > 0.05, f"{name}'s and {other}'s distributions are not distinguishable"
    # The per-teacher statistics of the summary: the student (version 0, the folder's weights)
    # against each row's own teacher, in float64.
    for name, part in zip(names, parts):
        log_p = float64_logprobs(str(tiny_pair.student_path), part.rollout)
        log_q = float64_logprobs(paths[name], part.rollout)
        reverse_kl = (log_p.exp() * (log_p - log_q)).sum(-1)
        entropy = -(log_p.exp() * log_p).sum(-1) / math.log(log_p.shape[-1])  # normalised, as TIP's
        stats = summary.per_teacher[name]
        assert stats["response_tokens"] == part.rollout.num_response_tokens
        assert abs(stats["mean_reverse_kl"] - float(reverse_kl.mean())) < 1e-4
        assert abs(stats["mean_entropy"] - float(entropy.mean())) < 1e-4
    assert summary.per_teacher["first"]["mean_reverse_kl"] != summary.per_teacher["second"]["mean_reverse_kl"]
    assert sum(s["response_tokens"] for s in summary.per_teacher.values()) == summary.num_response_tokens
    assert sum(s["selected_tokens"] for s in summary.per_teacher.values()) == summary.num_selected


@pytest.mark.slow  # a whole run: about 100 s on a loaded 2-core machine; the routing test above stays fast
def test_a_run_of_two_teachers_writes_per_teacher_columns(ray_local, tiny_pair, two_teachers, tmp_path):
    from tip_ray.pipeline.metrics import read_metrics
    from tip_ray.pipeline.supervisor import run_pipeline

    second, prompts = two_teachers
    config = load(tmp_path, two_teacher_doc(tiny_pair, second, prompts, tmp_path / "run",
                                            rollout={"prompts_per_step": 6},
                                            train={"steps": 2, "seed": 0, "stage_timeout_s": 600}))
    run_pipeline(config)
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        per = {name: {k.split("/")[2]: v for k, v in r.items() if k.startswith(f"teacher/{name}/")}
               for name in TABLE.values()}
        assert sum(p["response_tokens"] for p in per.values()) == r["response_tokens"]
        assert sum(p["selected_tokens"] for p in per.values()) == r["selected_tokens"]
        for p in per.values():
            if p["response_tokens"]:
                assert abs(sum(p[f"quadrant_share_q{q}"] for q in range(1, 5)) - 1) < 1e-9
                assert p["selected_fraction"] == p["selected_tokens"] / p["response_tokens"]


def test_every_teacher_must_share_the_students_vocabulary(tiny_pair, demo_prompts, tmp_path):
    from tip_ray.config.loader import ConfigError
    from tip_ray.models.tiny import save_tiny_pair
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.tasks.arithmetic import ALPHABET

    other = save_tiny_pair(tmp_path / "other", alphabet=ALPHABET[::-1], seed=3).teacher_path
    config = load(tmp_path, two_teacher_doc(tiny_pair, other, tagged_prompts(demo_prompts, tmp_path / "p.jsonl"),
                                            tmp_path / "run"))
    with pytest.raises(ConfigError) as info:
        prepare_run(config, write=False)
    message = str(info.value)
    assert message.startswith("teachers.second: ") and "tokenizers differ" in message
    assert str(tiny_pair.student_path) in message and str(other) in message


def test_a_row_naming_an_unknown_teacher_stops_the_run_before_it_starts(tiny_pair, two_teachers, tmp_path):
    from tip_ray.data.prompts import DataError
    from tip_ray.pipeline.prepare import prepare_run

    second, prompts = two_teachers
    rows = prompts.read_text().splitlines()
    assert '"source": "short"' in rows[4]
    rows[4] = rows[4].replace('"source": "short"', '"source": "poems"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        prepare_run(load(tmp_path, two_teacher_doc(tiny_pair, second, bad, tmp_path / "run")), write=False)
    assert str(info.value) == (f"{bad}:5: source 'poems' is not in data.teacher_table (its sources: long, "
                               f"short); add it there")
    # Named directly (no table): the message lists the teachers.
    direct = tmp_path / "direct.jsonl"
    direct.write_text("".join(line.replace('"source": "short"', '"source": "first"')
                              .replace('"source": "long"', '"source": "second"') + "\n" for line in rows))
    doc = two_teacher_doc(tiny_pair, second, direct, tmp_path / "run")
    doc["data"] = {k: v for k, v in doc["data"].items() if k != "teacher_table"}
    with pytest.raises(DataError) as info:
        prepare_run(load(tmp_path, doc), write=False)
    assert str(info.value) == (f"{direct}:5: source names teacher 'poems', which teachers: does not define "
                               f"(the teachers: first, second)")
