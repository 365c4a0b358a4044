"""A tiny model that writes tool calls (trained once per test run, a few seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tool_model(tmp_path_factory):
    from tool_model import build_tool_model

    path, steps = build_tool_model(tmp_path_factory.mktemp("tool_model"))
    assert steps < 600, "the tiny model did not learn its scripted turns"
    return path
