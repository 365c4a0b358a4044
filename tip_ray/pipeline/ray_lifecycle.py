"""Starting or joining Ray for a run, and the session folder of a Ray this process started."""

from __future__ import annotations

import os
from typing import Any

import ray

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline.connect import ray_init


def init_ray(config: PipelineConfig, address: str | None) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    target = address or config.cluster.address
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if target == "local":
        # No dashboard or job server for an embedded run; were one enabled, loopback only.
        kwargs.update(num_cpus=config.cluster.num_cpus or os.cpu_count(), include_dashboard=False,
                      dashboard_host="127.0.0.1")
        # Custom pool resources on the one local node, so pool-mapped runs also fit a laptop.
        if config.cluster.pools:
            kwargs["resources"] = {p.resource: 1000.0 for p in config.cluster.pools.values()}
    ray_init(target, **kwargs)
    return True


def embedded_session_dir() -> str:
    """The session folder of the Ray this process started (unique to it), or '' if unknown."""
    try:
        return ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # a Ray without it: no reaper rather than a guessed folder
        return ""
