"""Start or join Ray, turning "cannot reach the cluster" into one clear error."""

from __future__ import annotations

import socket
from typing import Any

import ray

from tip_ray.config.addresses import ray_address_problem
from tip_ray.errors import TipRayError


class ClusterUnreachable(TipRayError, ConnectionError):
    """Ray could not be started or joined at the address given."""


PROBE_TIMEOUT_S = 10.0
RAY_CLIENT_PORT = 10001


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) that must accept a connection for `address` to work, None for local/auto."""
    if address in ("local", "auto"):
        return None
    rest = address.removeprefix("ray://").rstrip("/")
    host, _, port = rest.rpartition(":") if rest.rsplit(":", 1)[-1].isdigit() else (rest, "", "")
    return host.strip("[]"), int(port) if port else RAY_CLIENT_PORT


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when nothing listens at the address: Ray itself would retry for minutes."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or type(exc).__name__}; waited at "
            f"most {timeout_s:g} s); check that the cluster is up and the address is its GCS (HOST:6379) or "
            f"client server (ray://HOST:10001), or use --address local for a run on this machine"
        ) from None


def ray_init(address: str, **kwargs: Any) -> None:
    problem = ray_address_problem(address)
    if problem:
        raise ClusterUnreachable(f"--address / cluster.address: {problem}")
    probe(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterUnreachable(
            f"cannot start or join Ray at {address!r} ({first_line}); check that the cluster is up "
            f"and the address is its GCS (HOST:6379) or client server (ray://HOST:10001), or use "
            f"--address local for a run on this machine"
        ) from None
