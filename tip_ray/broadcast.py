"""Weight broadcast: learner rank 0 sends the full weights, tensor by tensor, to every rollout
engine at once, instead of each engine reading a pickled state dict from the object store.

The group is *stateless*: it is built from a TCP store of its own, outside torch.distributed's
global group, so neither the learner's FSDP group nor an engine's tensor-parallel group is
disturbed, and members can leave and a new group be formed when a rollout actor is restarted.

Rank 0 is learner rank 0; the receivers are every engine worker (a Hugging Face rollout worker is
one, a vLLM engine one per tensor-parallel rank). Transports:

- ``gloo``: torch's ``ProcessGroupGloo`` on host tensors (CPU runs; also used by the tests);
- ``nccl``: vLLM's ``PyNcclCommunicator`` over its ``StatelessProcessGroup`` (GPU pools).

Each send starts with a header, the pickled ``TensorSpec`` list (the wire order), so receivers
need no plan agreed beforehand; a receiver then allocates each buffer, takes the broadcast into
it, and hands it on (to vLLM's reload, or a model's parameters) before the next one arrives: no
full second copy of the weights is ever held.
"""

from __future__ import annotations

import datetime
import pickle
import socket
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping, Sequence

import torch

from tip_ray.constants import WEIGHT_GROUP_TIMEOUT_S

Transport = Literal["gloo", "nccl"]

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class TensorSpec:
    """What the receivers allocate for one broadcast tensor (order matters: it is the wire order)."""

    name: str  # Hugging Face parameter name, e.g. "model.layers.0.mlp.up_proj.weight"
    dtype: str  # "float32" | "bfloat16" | "float16"
    shape: tuple[int, ...]

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


def tensor_specs(state_dict: Mapping[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    """The broadcast plan of a state dict: one spec per tensor, in the dict's order."""
    specs = []
    for name, tensor in state_dict.items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise ValueError(f"weight broadcast: {name} has dtype {tensor.dtype}; expected one of {sorted(_DTYPES)}")
        specs.append(TensorSpec(name=name, dtype=dtype, shape=tuple(tensor.shape)))
    return tuple(specs)


@dataclass(frozen=True)
class GroupAddress:
    """Where a broadcast group meets: rank 0's host and a port free there, and the group size."""

    host: str
    port: int
    world_size: int  # 1 (the sender) + every receiving engine worker
    transport: Transport = "gloo"
    timeout_s: float = WEIGHT_GROUP_TIMEOUT_S


def free_port(host: str = "") -> int:
    """A TCP port free right now on this machine (for a group's store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BroadcastGroup:
    """One member of a stateless broadcast group; rank 0 sends, every other rank receives.

    Joining blocks until every rank of ``address.world_size`` has joined. ``device`` is the
    member's own (model) device: gloo always moves host tensors, NCCL uses it when it is a CUDA
    device and the current CUDA device otherwise, so callers need not choose per transport.
    """

    def __init__(self, address: GroupAddress, rank: int, device: torch.device | str | None = None):
        if not 0 <= rank < address.world_size:
            raise ValueError(f"weight broadcast: rank {rank} outside a group of {address.world_size}")
        self.address = address
        self.rank = rank
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if address.transport == "gloo":
            self._open_gloo()
        elif address.transport == "nccl":
            self._open_nccl()
        else:
            raise ValueError(f"weight broadcast: transport {address.transport!r}; expected 'gloo' or 'nccl'")

    def _open_gloo(self) -> None:
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=self.address.timeout_s)
        store = dist.TCPStore(self.address.host, self.address.port, self.address.world_size,
                              self.rank == 0, timeout=timeout)
        self._store = store  # kept alive: rank 0 serves it
        self._gloo = dist.ProcessGroupGloo(store, self.rank, self.address.world_size, timeout)
        self._options = dist.BroadcastOptions()
        self._options.rootRank = 0
        self._options.rootTensor = 0
        self.device = torch.device("cpu")

    def _open_nccl(self) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("weight broadcast: the nccl transport needs CUDA; use gloo on CPU")
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        if self.device.type != "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        group = StatelessProcessGroup.create(host=self.address.host, port=self.address.port,
                                             rank=self.rank, world_size=self.address.world_size)
        self._nccl = PyNcclCommunicator(group, device=self.device)

    def broadcast(self, tensor: torch.Tensor) -> None:
        """In place: rank 0's tensor is sent, every other rank's is overwritten."""
        if self.address.transport == "gloo":
            self._gloo.broadcast([tensor], self._options).wait()
        else:
            self._nccl.broadcast(tensor, src=0, stream=torch.cuda.current_stream(self.device))

    def synchronize(self) -> None:
        if self.address.transport == "nccl":
            torch.cuda.current_stream(self.device).synchronize()

    def _header(self, specs: Sequence[TensorSpec] | None) -> tuple[TensorSpec, ...]:
        """Rank 0 sends the spec list (length, then pickled bytes); the others return it."""
        length = torch.zeros(1, dtype=torch.int64, device=self.device)
        if specs is not None:
            payload = torch.frombuffer(bytearray(pickle.dumps(tuple(specs))), dtype=torch.uint8).to(self.device)
            length[0] = payload.numel()
        self.broadcast(length)
        if specs is None:
            payload = torch.empty(int(length.item()), dtype=torch.uint8, device=self.device)
        self.broadcast(payload)
        if specs is not None:
            return tuple(specs)
        # Only tensor specs travel, between members of one run's own group.
        return pickle.loads(payload.cpu().numpy().tobytes())

    def send(self, state_dict: Mapping[str, torch.Tensor]) -> int:
        """Rank 0: send the spec list, then every tensor of ``state_dict`` in its order; returns
        the bytes of tensors sent."""
        if self.rank != 0:
            raise RuntimeError("weight broadcast: only rank 0 sends")
        specs = self._header(tensor_specs(state_dict))
        sent = 0
        for spec in specs:
            tensor = state_dict[spec.name].detach().to(self.device).contiguous()
            self.broadcast(tensor)
            sent += tensor.numel() * tensor.element_size()
        self.synchronize()
        return sent

    def receive(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks > 0: yield (name, tensor) for every tensor rank 0 sends, in order, each as it
        arrives. The caller must consume the whole iterator: every rank posts every broadcast."""
        if self.rank == 0:
            raise RuntimeError("weight broadcast: rank 0 sends, it does not receive")
        for spec in self._header(None):
            buffer = torch.empty(spec.shape, dtype=spec.torch_dtype, device=self.device)
            self.broadcast(buffer)
            yield spec.name, buffer
        self.synchronize()
