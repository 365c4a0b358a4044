"""`teacher.backend: {type: service}`: what the config accepts and refuses (no Ray)."""

from __future__ import annotations

import pytest

from tests.teacher.service_support import service_config
from tip_ray.config import ConfigError


def test_a_service_backend_in_every_signal_form(tiny_pair, demo_prompts, tmp_path):
    for signal in ({"type": "hidden"}, {"type": "full"}, {"type": "topk", "k": 4}):
        config = service_config(tiny_pair, demo_prompts, tmp_path, f"ok-{signal['type']}", signal=signal,
                                backend={"type": "service", "name": "demo-teacher"})
        backend = config.teacher.backend
        assert (backend.type, backend.name, backend.on_missing, backend.wait_s) == ("service", "demo-teacher", "fail", 300.0)


@pytest.mark.parametrize("backend, message", [
    ({"type": "service"}, "teacher.backend.service.name"),
    ({"type": "service", "name": "has space"}, "a teacher service name is 1-63 letters"),
    ({"type": "service", "name": "a/replica-0"}, "a teacher service name is 1-63 letters"),
    ({"type": "service", "name": "t", "on_missing": "retry"}, "'fail' or 'wait'"),
    ({"type": "service", "name": "t", "wait_s": 0}, "greater than 0"),
    ({"type": "service", "name": "t", "url": "http://x"}, "url"),
], ids=["no-name", "space", "slash", "on_missing", "wait_s", "unknown-key"])
def test_bad_service_backends_are_refused(tiny_pair, demo_prompts, tmp_path, backend, message):
    with pytest.raises(ConfigError) as caught:
        service_config(tiny_pair, demo_prompts, tmp_path, "bad", backend=backend)
    assert message in str(caught.value)


def test_the_cli_refuses_an_embedded_ray_and_a_bad_name(capsys):
    from tip_ray.cli import main

    with pytest.raises(SystemExit):
        main(["teacher", "serve", "demo"])  # argparse: --name is required
    assert main(["teacher", "status", "--address", "local"]) == 2
    assert "a teacher service lives on a running Ray cluster" in capsys.readouterr().err
    assert main(["teacher", "serve", "demo", "--name", "bad name", "--address", "auto"]) == 2
    assert "--name: a teacher service name is 1-63 letters" in capsys.readouterr().err
