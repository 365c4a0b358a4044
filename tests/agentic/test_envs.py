"""Environments: the registry (built-ins and entry points), the Hermes parser, and the tool runner."""

from __future__ import annotations

import pickle
import textwrap
import time

import pytest

from tip_ray.envs.base import Environment, EnvironmentConfigError
from tip_ray.envs.hermes import parse_tool_calls
from tip_ray.envs.registry import ENTRY_POINT_GROUP, environment_names, load_environment
from tip_ray.envs.tool_runner import run_tool_calls


def no_cut(text: str) -> tuple[str, bool]:
    return text, False


def test_builtins_are_registered_and_single_turn_has_no_tools():
    assert environment_names()[:2] == ["single_turn", "calculator"]
    single = load_environment("single_turn")
    assert not single.multi_turn and dict(single.tools) == {}
    calc = load_environment("calculator")
    assert calc.multi_turn and calc.tools["add"](a=2, b=40) == 42


def test_unknown_environment_names_the_known_ones_and_pickles():
    with pytest.raises(EnvironmentConfigError, match="no environment 'nope'; known: single_turn, calculator") as info:
        load_environment("nope")
    assert ENTRY_POINT_GROUP in str(info.value)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_a_tool_must_be_callable():
    with pytest.raises(EnvironmentConfigError, match="tool 'x' is a int, not a callable"):
        Environment(name="bad", tools={"x": 3})


def _install(tmp_path, monkeypatch, module: str, entries: str) -> None:
    """A package installed the way pip leaves one: a module and its .dist-info on sys.path."""
    (tmp_path / "agentic_plugin.py").write_text(textwrap.dedent(module))
    info = tmp_path / "agentic_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agentic-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_installed_package_registers_environments_by_entry_point(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, """
        from tip_ray.envs.base import Environment

        def shout(text):
            return text.upper()

        def make():
            return Environment(name="shouting", tools={"shout": shout})

        READY = Environment(name="ready", tools={"shout": shout})
        NOT_AN_ENVIRONMENT = 3
    """, "shouting = agentic_plugin:make\nready = agentic_plugin:READY\nwrong = agentic_plugin:NOT_AN_ENVIRONMENT\n"
         "broken = agentic_plugin_missing:make")
    assert {"shouting", "ready", "wrong", "broken"} <= set(environment_names())
    assert load_environment("shouting").tools["shout"](text="hi") == "HI"
    assert load_environment("ready").name == "ready"
    with pytest.raises(EnvironmentConfigError, match="gave a int; it must be a tip_ray.envs.base.Environment"):
        load_environment("wrong")
    with pytest.raises(EnvironmentConfigError, match="loading entry point 'agentic_plugin_missing:make' failed"):
        load_environment("broken")


@pytest.mark.parametrize("text, expected", [
    ('Let me add. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>', [("add", {"a": 1, "b": 2}, None)]),
    ('<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1}"}\n</tool_call>', [("add", {"a": 1}, None)]),
    ('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b"}</tool_call>',
     [("a", {}, None), ("b", {}, None)]),
    ("The answer is 3.", []),
    ('<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>', [("", {}, "invalid JSON")]),
    ('<tool_call>{"arguments": {}}</tool_call>', [("", {}, 'expected {"name"')]),
    ('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', [("add", {}, "must be a JSON object")]),
    ('<tool_call>{"name": "add", "arguments": {}}', [("", {}, "without </tool_call>")]),
])
def test_hermes_calls_are_parsed_and_malformed_ones_say_why(text, expected):
    calls = parse_tool_calls(text)
    assert len(calls) == len(expected)
    for call, (name, arguments, error) in zip(calls, expected):
        assert (call.name, call.arguments) == (name, arguments)
        if error is None:
            assert call.error is None
        else:
            assert error in call.error


def _hang():
    time.sleep(30)


def _boom(**kwargs):
    raise RuntimeError("disk on fire")


TOOLS = {"add": lambda a, b: a + b, "hang": _hang, "boom": _boom, "rows": lambda: [{"x": 1}]}


def test_every_failure_becomes_text_the_model_reads():
    calls = parse_tool_calls(
        '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
        '<tool_call>{"name": "boom", "arguments": {"x": 1}}</tool_call>'
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>'  # missing argument: a TypeError
        '<tool_call>{"name": "rows", "arguments": {}}</tool_call>'
        '<tool_call>not json</tool_call>'
        '<tool_call>{"name": "hang", "arguments": {}}</tool_call>'
    )
    start = time.perf_counter()
    outcomes = run_tool_calls(calls, TOOLS, timeout_s=0.5, cut=no_cut)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, "a hung tool held the rollout"
    assert [o.status for o in outcomes] == ["ok", "error", "error", "error", "ok", "error", "timeout"]
    assert outcomes[0].text == "5"
    assert outcomes[1].text == "error: tool raised RuntimeError: disk on fire"
    assert "unknown tool 'nope'; available tools: add, boom, hang, rows" in outcomes[2].text
    assert outcomes[3].text.startswith("error: tool raised TypeError")
    assert outcomes[4].text == '[{"x": 1}]'
    assert "invalid JSON" in outcomes[5].text
    assert outcomes[6].text == "error: tool 'hang' did not answer within 0.5 s"


def test_outputs_go_through_the_cut():
    calls = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 500, "b": 500}}</tool_call>')
    outcome, = run_tool_calls(calls, TOOLS, timeout_s=5, cut=lambda text: (text[:2], len(text) > 2))
    assert (outcome.text, outcome.cut) == ("10", True)


def test_calls_run_concurrently_not_one_after_another():
    sleep_s, n = 0.5, 8

    def nap():
        time.sleep(sleep_s)
        return "rested"

    calls = parse_tool_calls('<tool_call>{"name": "nap", "arguments": {}}</tool_call>' * n)
    start = time.perf_counter()
    outcomes = run_tool_calls(calls, {"nap": nap}, timeout_s=10, cut=no_cut)
    wall = time.perf_counter() - start
    assert [o.text for o in outcomes] == ["rested"] * n
    assert sum(o.seconds for o in outcomes) >= n * sleep_s * 0.9  # each really slept
    assert wall < 2 * sleep_s, f"{n} calls of a {sleep_s} s tool took {wall:.2f} s: they ran one after another"
