"""A tools run through the pipeline's stages in one process (no Ray): an installed environment
named in the YAML, real multi-turn rollouts, teacher, selector and one learner update."""

from __future__ import annotations

import json
import math
import textwrap

import yaml

from tests.pipeline_doc import tiny_pipeline_doc

PLUGIN = """
import time

from tip_ray.envs.base import Environment


def boom():
    raise RuntimeError("down")


def make():
    return Environment(name="scripted", tools={
        "add": lambda a, b: a + b, "boom": boom, "big": lambda: "9" * 100, "hang": lambda: time.sleep(20),
    })
"""


def install_plugin(tmp_path, monkeypatch) -> None:
    (tmp_path / "scripted_tools.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "scripted_tools-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scripted-tools\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tip_ray.environments]\nscripted = scripted_tools:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_tools_run_trains_on_model_written_tokens_only(tool_model, tmp_path, monkeypatch):
    from tip_ray.config import load_pipeline
    from tip_ray.models.loading import load_tokenizer
    from tip_ray.models.tiny import DEFAULT_TEACHER_SPEC, TinyPair, build_tiny_model, save_model
    from tip_ray.pipeline.inprocess import InProcessLoop
    from tip_ray.pipeline.prepare import prepare_run

    (tmp_path / "site").mkdir()
    install_plugin(tmp_path / "site", monkeypatch)
    tokenizer = load_tokenizer(str(tool_model))
    teacher = save_model(build_tiny_model(DEFAULT_TEACHER_SPEC, len(tokenizer), seed=1), tokenizer, tmp_path / "teacher")
    pair = TinyPair(tokenizer_path=tool_model, teacher_path=teacher, student_path=tool_model)
    users = ["add", "boom", "big", "hi"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": u, "answer": "5"}) + "\n" for u in users))
    doc = tiny_pipeline_doc(
        pair, prompts, tmp_path / "run",
        data={"chat_template": "auto", "shuffle": False},
        rollout={"prompts_per_step": 4, "samples_per_prompt": 1,
                 "sampling": {"temperature": 0.0, "max_new_tokens": 64},
                 "environment": {"type": "tools", "name": "scripted", "max_turns": 2,
                                 "max_tool_response_tokens": 48, "tool_timeout_s": 1.0, "max_total_tokens": 160}},
        train={"steps": 1, "seed": 0, "stage_timeout_s": 120},
    )
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    loop = InProcessLoop(prepare_run(load_pipeline(tmp_path / "p.yaml"), write=False))
    try:
        step = loop.step(0)
    finally:
        loop.close()
    env = step.environment
    assert env["env/trajectories"] == 4 and env["env/tool_calls"] == 3
    assert env["env/tool_errors"] == 1 and env["env/tool_outputs_cut"] == 1
    assert env["env/turns_mean"] == (2 + 2 + 2 + 1) / 4
    # Statistics, selection and the loss saw the model-written tokens and nothing else.
    assert step.num_response_tokens == env["env/model_tokens"] > 0
    assert env["env/environment_tokens"] > 0 and env["env/model_token_share"] < 1.0
    assert 0 < step.num_selected <= step.num_response_tokens
    assert math.isfinite(step.loss) and step.loss > 0
