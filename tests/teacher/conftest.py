"""Fixtures of the teacher-service tests."""

from __future__ import annotations

import pytest

from tests.teacher.service_support import service_config


@pytest.fixture
def served(ray_local, tiny_pair, demo_prompts, tmp_path):
    """Start a one-replica service (hidden signal) for the tiny pair; yields (name, prepared run)."""
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.service_control import start_service, stop_service

    started = []

    def start(name: str, *, max_restarts: int = -1, signal: dict | None = None):
        prepared = prepare_run(service_config(tiny_pair, demo_prompts, tmp_path, f"serve-{name}", signal=signal),
                               write=False)
        start_service(prepared, name, replicas=1, max_restarts=max_restarts)
        started.append(name)
        return prepared

    yield start
    for name in started:
        try:
            stop_service(name)
        except Exception:  # a test may have stopped it already
            pass


