"""The learner ranks' torch.distributed group: rank 0's rendezvous address, joining, leaving."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from tip_ray.broadcast import free_port
from tip_ray.constants import LEARNER_GROUP_TIMEOUT_S
from tip_ray.learner.settings import LearnerSettings


def rendezvous_address() -> tuple[str, int]:
    """Rank 0's reachable address and a free port, for the process group's rendezvous."""
    import ray

    host = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    return host, free_port()


def join_process_group(settings: LearnerSettings, rank: int, master_addr: str, master_port: int) -> torch.device:
    """Join the learner group as `rank` (blocks until every rank joined); returns this rank's device."""
    os.environ["MASTER_ADDR"] = master_addr
    os.environ["MASTER_PORT"] = str(master_port)
    device = torch.device("cuda", torch.cuda.current_device()) if settings.group_backend == "nccl" else torch.device("cpu")
    dist.init_process_group(
        settings.group_backend, rank=rank, world_size=settings.world_size,
        timeout=datetime.timedelta(seconds=LEARNER_GROUP_TIMEOUT_S),
    )
    return device


def leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
