"""`tip-ray example --backend auto|hf|vllm`: which rollout backend a run gets, and the pipeline
config it then runs (no vLLM needed: the choice only asks whether vLLM can be found)."""

from __future__ import annotations

import importlib.util

import pytest

from tip_ray.config.yaml_read import ConfigError
from tip_ray.errors import TipRayError
from tip_ray.rollout.backend_choice import choose_rollout_backend, vllm_installed, with_rollout_backend


@pytest.mark.parametrize("configured", ["hf", "vllm"])
def test_auto_takes_vllm_when_found_else_hf(configured):
    assert choose_rollout_backend("auto", configured, vllm_found=True).type == "vllm"
    fallback = choose_rollout_backend("auto", configured, vllm_found=False)
    assert fallback.type == "hf" and "not installed" in fallback.reason


@pytest.mark.parametrize("found", [True, False])
def test_hf_is_forced_whatever_is_installed(found):
    assert choose_rollout_backend("hf", "vllm", vllm_found=found).type == "hf"


def test_vllm_forced_without_vllm_is_a_clear_error():
    assert choose_rollout_backend("vllm", "hf", vllm_found=True).type == "vllm"
    with pytest.raises(ConfigError, match=r"--backend vllm: vLLM is not installed.*--backend hf") as info:
        choose_rollout_backend("vllm", "hf", vllm_found=False)
    assert isinstance(info.value, TipRayError)


def test_auto_keeps_a_backend_the_user_set():
    kept = choose_rollout_backend("auto", "hf", vllm_found=True, configured_explicitly=True)
    assert kept.type == "hf" and "--set" in kept.reason
    with pytest.raises(ConfigError, match="vllm is not installed"):
        choose_rollout_backend("auto", "vllm", vllm_found=False, configured_explicitly=True)


def test_unknown_request_is_refused():
    with pytest.raises(ConfigError, match="--backend 'tgi': expected one of auto, hf, vllm"):
        choose_rollout_backend("tgi", "hf", vllm_found=True)


def test_vllm_installed_matches_find_spec():
    assert vllm_installed() is (importlib.util.find_spec("vllm") is not None)


def test_switching_the_example_pipeline_changes_only_its_backend():
    from tip_ray.commands.run import load_with_overrides

    config = load_with_overrides("smollm2_pruned", [])
    assert config.rollout.backend.type == "hf"
    switched = with_rollout_backend(config, "vllm")
    assert switched.rollout.backend.type == "vllm"
    assert switched.rollout.backend.kv_cache_space_gib == 1  # the vLLM section's own defaults
    assert switched.model_dump(exclude={"rollout": {"backend"}}) == config.model_dump(exclude={"rollout": {"backend"}})
    assert with_rollout_backend(config, "hf") is config
    assert with_rollout_backend(switched, "hf").rollout.backend.type == "hf"


def test_example_refuses_forced_vllm_before_any_work(capsys):
    if vllm_installed():
        pytest.skip("vLLM is installed here: --backend vllm is accepted (tests/vllm_suite covers it)")
    from tip_ray.cli import main

    code = main(["example", "--backend", "vllm"])
    assert code != 0
    err = capsys.readouterr().err
    assert "tip-ray: error: --backend vllm: vLLM is not installed" in err
