"""The prices task: a price only the tool knows, the solved conversation, the checker, and the
layout the tool-using pair is taught (the one the multi-turn driver produces)."""

from __future__ import annotations

import hashlib
import random

import pytest

from tip_ray.tasks import prices


def reference_price(item: str) -> int:
    # Written out again from the rule: the first four bytes of SHA-256, big-endian, into 100..999.
    return 100 + int(hashlib.sha256(item.encode()).hexdigest()[:8], 16) % 900


def test_prices_are_a_fixed_hash_of_the_code_in_range():
    rng = random.Random(3)
    codes = [f"SKU{rng.randrange(10_000):04d}" for _ in range(200)]
    seen = {prices.price_of(c) for c in codes}
    for code in codes:
        assert prices.price_of(code) == reference_price(code)
        assert 100 <= prices.price_of(code) <= 999
    assert len(seen) > 150  # spread out: not guessable from a few memorised values


@pytest.mark.parametrize("bad", ["sku4821", "SKU482", "SKU48210", "SKUABCD", "KQ3", "", 7, None])
def test_a_malformed_code_is_an_error_the_model_can_read(bad):
    with pytest.raises(KeyError, match="SKU and four digits"):
        prices.price_of(bad)


def test_problems_are_seeded_and_answers_add_up():
    rows = prices.make_dataset(50, 5)
    assert rows == prices.make_dataset(50, 5) and rows != prices.make_dataset(50, 6)
    for row in rows:
        item, amount = row["prompt"].rstrip("=").split("+")
        assert item == row["item"]
        assert int(row["answer"]) == reference_price(item) + int(amount)
        assert int(row["answer"]) <= 9999  # within the arithmetic task's four columns
        assert prices.grade(row["solution"], row["answer"])
        assert not prices.grade(row["solution"].replace("####", "#"), row["answer"])


def test_the_solved_conversation_calls_the_tool_then_works_the_sum():
    from tip_ray.envs.hermes import parse_tool_calls

    problem = prices.PriceProblem(item="SKU4821", amount=487)
    user, call, tool, final = problem.conversation()
    assert user == {"role": "user", "content": "SKU4821+487="}
    (parsed,) = parse_tool_calls(call["content"])
    assert (parsed.name, parsed.arguments) == ("price", {"item": "SKU4821"})
    assert " " not in call["content"]  # compact JSON
    assert tool["content"] == str(reference_price("SKU4821"))
    total = reference_price("SKU4821") + 487
    assert final["content"].startswith(f"{reference_price('SKU4821')}+487=")
    assert prices.grade(final["content"], str(total))


def test_the_prices_environment_is_registered_and_answers_calls():
    from tip_ray.envs.hermes import parse_tool_calls
    from tip_ray.envs.registry import environment_names, load_environment
    from tip_ray.envs.tool_runner import run_tool_calls

    assert "prices" in environment_names()
    environment = load_environment("prices")
    assert set(environment.tools) == {"price"}
    assert [s["function"]["name"] for s in environment.schemas] == ["price"]
    calls = parse_tool_calls(prices.tool_call_text("SKU4821") + prices.tool_call_text("sku4821"))
    good, bad = run_tool_calls(calls, environment.tools, timeout_s=5.0, cut=lambda t: (t, False))
    assert (good.status, good.text) == ("ok", str(reference_price("SKU4821")))
    assert bad.status == "error" and "SKU and four digits" in bad.text


def test_the_taught_layout_is_the_chat_templates_rendering_with_model_tokens_marked():
    from tip_ray.demo.tools_bootstrap import TOOL_LIMITS, build_tools_tokenizer, conversation_ids
    from tip_ray.envs.template import ToolMessageRenderer

    tokenizer = build_tools_tokenizer()
    renderer = ToolMessageRenderer(tokenizer, TOOL_LIMITS.max_tool_response_tokens)
    problem = prices.PriceProblem(item="SKU0071", amount=5120)
    ids, written = conversation_ids(tokenizer, renderer, problem)
    rendered = tokenizer.apply_chat_template(problem.conversation(), tokenize=False)
    assert tokenizer.decode(ids) == rendered.removesuffix("|")  # the template's glue after the last turn
    assert tokenizer.unk_token_id not in ids  # every character is in the vocabulary
    model_text = tokenizer.decode([t for t, w in zip(ids, written) if w])
    assert model_text == prices.tool_call_text("SKU0071") + "<eos>" + problem.worked_sum() + "<eos>"
    assert len(ids) <= TOOL_LIMITS.max_total_tokens


def test_the_tools_tokenizer_keeps_the_demo_ids():
    from tip_ray.demo.tools_bootstrap import build_tools_tokenizer
    from tip_ray.models.tiny import build_char_tokenizer
    from tip_ray.tasks import arithmetic

    demo, tools = build_char_tokenizer(arithmetic.ALPHABET), build_tools_tokenizer()
    assert tools.convert_ids_to_tokens(list(range(len(demo)))) == demo.convert_ids_to_tokens(list(range(len(demo))))
    assert len(tools) > len(demo)


def test_a_prices_run_must_offer_the_price_tool():
    from tip_ray.config.loader import load_yaml_tree
    from tip_ray.config.pipeline import PipelineConfig

    doc = load_yaml_tree("pipelines/demo_tools.yaml")
    PipelineConfig.model_validate(doc)  # as shipped: valid
    doc["rollout"]["environment"] = {"type": "single_turn"}
    with pytest.raises(ValueError, match=r"data.task 'prices' needs its tool: set rollout.environment"):
        PipelineConfig.model_validate(doc)
    doc["data"]["task"] = "arithmetic"
    with pytest.raises(ValueError, match=r"eval.benchmark 'prices' needs its tool"):
        PipelineConfig.model_validate(doc)
