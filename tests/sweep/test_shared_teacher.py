"""A sweep builds its teacher once: one teacher service for every run that shares the teacher,
the same results as runs with their own teacher, and a switch to turn it off."""

from __future__ import annotations

import pytest

from tests.pipeline_doc import tiny_pipeline_doc
from tests.sweep.test_sweep import write_sweep
from tip_ray.sweep.shared_teacher import shared_teacher_reason
from tip_ray.sweep.spec import load_sweep

RUNS = [{"label": "all", "rule": {"type": "all"}}, {"label": "soft_or-50", "rule": {"type": "soft_or", "ratio": 0.5}}]


def test_which_runs_share_a_teacher(tiny_pair, demo_prompts, tmp_path):
    loaded = load_sweep(write_sweep(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run"), RUNS, seeds=(0, 1)))
    configs = [loaded.run_config(run, seed) for seed in (0, 1) for run in loaded.spec.runs]
    assert shared_teacher_reason(configs) is None  # rules and seeds differ, the teacher does not
    other = configs[0].model_copy(update={"teacher": configs[0].teacher.model_copy(update={"micro_batch_size": 3})})
    assert "teachers differ" in shared_teacher_reason([configs[0], other])
    server = load_sweep(write_sweep(tmp_path, tiny_pipeline_doc(
        tiny_pair, demo_prompts, tmp_path / "run",
        teacher={"signal": {"type": "topk", "k": 4}, "backend": {"type": "server", "url": "http://127.0.0.1:9"}}), RUNS))
    assert "'server', already outside" in shared_teacher_reason([server.run_config(r, 0) for r in server.spec.runs])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_sweep_shares_one_teacher_and_matches_own_teachers(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.sweep.runner import run_sweep
    from tip_ray.pipeline.service_control import list_services

    results = {}
    logs = {}
    for shared in (True, False):
        folder = tmp_path / ("shared" if shared else "own")
        folder.mkdir()
        loaded = load_sweep(write_sweep(folder, tiny_pipeline_doc(tiny_pair, demo_prompts, folder / "run"), RUNS))
        logs[shared] = []
        results[shared] = run_sweep(loaded, log=logs[shared].append, shared_teacher=shared)
    shared_lines = [line for line in logs[True] if "shared teacher service" in line]
    assert len(shared_lines) == 2, logs[True]
    # Built once for both runs, two steps each: four batches scored.
    assert "1 replica construction(s), 4 batch(es) scored for 2 run(s)" in shared_lines[1]
    assert not any("shared teacher service" in line for line in logs[False])
    assert not [n for n in list_services() if n.startswith("sweep-")], "the sweep stops its service"

    def measured(records):
        return [(r.label, r.seed, r.tokens_trained, r.response_tokens, r.quadrant_shares) for r in records]

    assert measured(results[True]) == measured(results[False])
