"""The environment's tool schemas reach the chat template when prompts are encoded: by the data
loader (training prompts) and by the rollout worker (evaluation prompts), the same way."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config.environment import SingleTurnEnvironment, ToolEnvironmentConfig
from tip_ray.data.prompts import encode_prompt
from tip_ray.envs.base import Environment
from tip_ray.envs.calculator import calculator_environment
from tip_ray.envs.template import prompt_tools
from tip_ray.models.tiny import TinyModelSpec, TinyPair, build_char_tokenizer, build_tiny_model, save_model
from tool_model import CHAT_TEMPLATE as TEMPLATE_WITHOUT_TOOLS

# Qwen3/Hermes-style: the tools as JSON lines in a system block, then the conversation; an
# assistant turn ends with the character tokenizer's end token.
TOOLS_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' %}{{- '<|im_start|>user\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- elif m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' + m.content + '<eos>\\n' }}"
    "{%- elif m.role == 'tool' %}{{- '<|im_start|>user\\n<tool_response>\\n' + m.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SCHEMAS = [dict(s) for s in calculator_environment().schemas]
QUESTION = "What is 2+3?"


def _expected_text(question: str, schemas) -> str:
    """The prompt written out by hand from the template above."""
    tools = "".join("\n" + json.dumps(s) for s in schemas)
    system = f"<|im_start|>system\n# Tools\n<tools>{tools}\n</tools><|im_end|>\n" if schemas else ""
    return f"{system}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def test_encoded_prompt_carries_every_tool_schema_as_the_template_renders_it():
    tokenizer = build_char_tokenizer(chat_template=TOOLS_TEMPLATE)
    ids = encode_prompt(tokenizer, QUESTION, use_chat_template=True, tools=SCHEMAS)
    expected = _expected_text(QUESTION, SCHEMAS)
    assert ids == [tokenizer.convert_tokens_to_ids(c) for c in expected]  # one id per character
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tools=SCHEMAS,
                                             add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(ids) == rendered == expected
    for schema in SCHEMAS:
        assert f'"name": "{schema["function"]["name"]}"' in rendered and json.dumps(schema) in rendered
    without = encode_prompt(tokenizer, QUESTION, use_chat_template=True)
    assert tokenizer.decode(without) == _expected_text(QUESTION, [])


def test_a_template_that_ignores_tools_gives_the_same_ids():
    tokenizer = build_char_tokenizer(chat_template=TEMPLATE_WITHOUT_TOOLS)
    with_tools = encode_prompt(tokenizer, QUESTION, use_chat_template=True, tools=SCHEMAS)
    assert with_tools == encode_prompt(tokenizer, QUESTION, use_chat_template=True)
    assert tokenizer.decode(with_tools) == f"U:{QUESTION}|A:"


def test_plain_text_prompts_never_carry_tools():
    tokenizer = build_char_tokenizer(chat_template=TOOLS_TEMPLATE)
    assert encode_prompt(tokenizer, QUESTION, use_chat_template=False, tools=SCHEMAS) == tokenizer(QUESTION)["input_ids"]


def test_prompt_tools_follow_the_environment_config():
    tools = ToolEnvironmentConfig(type="tools", name="calculator")
    assert tools.tools_in_prompt is True
    assert prompt_tools(tools) == SCHEMAS
    assert prompt_tools(tools.model_copy(update={"tools_in_prompt": False})) is None
    assert prompt_tools(SingleTurnEnvironment()) is None and prompt_tools(None) is None
    no_schemas = Environment(name="bare", tools={"add": lambda a, b: a + b})
    assert prompt_tools(tools, no_schemas) is None  # the loaded environment is used, not reloaded


def test_tools_in_prompt_must_be_a_boolean():
    with pytest.raises(ValueError, match="tools_in_prompt"):
        ToolEnvironmentConfig(type="tools", name="calculator", tools_in_prompt="sometimes")


@pytest.fixture(scope="module")
def tools_pair(tmp_path_factory) -> TinyPair:
    root = tmp_path_factory.mktemp("tools_pair")
    tokenizer = build_char_tokenizer(chat_template=TOOLS_TEMPLATE)
    spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=1, num_kv_heads=1, intermediate_size=16)
    student = save_model(build_tiny_model(spec, len(tokenizer), seed=0), tokenizer, root / "student")
    teacher = save_model(build_tiny_model(spec, len(tokenizer), seed=1), tokenizer, root / "teacher")
    return TinyPair(tokenizer_path=student, teacher_path=teacher, student_path=student)


@pytest.mark.parametrize("tools_in_prompt", [True, False])
def test_training_and_evaluation_prompts_are_encoded_alike(tools_pair, tmp_path, tools_in_prompt):
    """prepare_run encodes the dataset with the schemas; RolloutWorker.complete hands the
    backend the same ids for the same text; `tools_in_prompt: false` leaves them out of both."""
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.rollout.worker import RolloutSettings, RolloutWorker
    from tip_ray.weights import WeightVersion

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": QUESTION, "answer": "5"}) + "\n")
    environment = {"type": "tools", "name": "calculator", "tools_in_prompt": tools_in_prompt}
    doc = tiny_pipeline_doc(tools_pair, prompts, tmp_path / "run",
                            data={"chat_template": "auto", "max_prompt_tokens": 1024},
                            rollout={"environment": environment, "samples_per_prompt": 1,
                                     "sampling": {"temperature": 0.0, "max_new_tokens": 1}})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    prepared = prepare_run(load_pipeline(tmp_path / "p.yaml"), write=False)
    expected_text = _expected_text(QUESTION, SCHEMAS if tools_in_prompt else [])
    tokenizer = build_char_tokenizer(chat_template=TOOLS_TEMPLATE)
    expected = [tokenizer.convert_tokens_to_ids(c) for c in expected_text]
    assert list(prepared.prompts[0].ids) == expected

    worker = RolloutWorker(RolloutSettings(model_path=prepared.student_path, rollout=prepared.config.rollout, seed=0))
    sent = []
    generate = worker.backend.generate

    def recording(ids, request):  # the real backend still samples; we keep what it was given
        sent.extend(ids)
        return generate(ids, request)

    worker.backend.generate = recording
    worker.complete([QUESTION], n=1, temperature=0.0, max_new_tokens=1, seed=0, weights=WeightVersion(version=0))
    assert [list(ids) for ids in sent] == [expected]
