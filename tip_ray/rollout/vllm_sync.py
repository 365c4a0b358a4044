"""Weight sync into running vLLM engines: learner weights in, no engine restart.

Two ways in, both ending in vLLM's in-place reload (``Worker.reload_weights``), which loads
checkpoint-format tensors layer by layer and re-runs each layer's post-load processing (weight
repacking on CPU, quantisation on GPU), so kernels never keep stale copies of old weights:

- **state dict** (CPU, or any machine): the full gathered state dict reaches every engine worker
  through ``LLM.collective_rpc`` (by reference in the in-process engine, pickled otherwise).
- **NCCL broadcast** (GPU): learner rank 0 and every engine worker join a stateless process group
  (vLLM's ``StatelessProcessGroup`` + ``PyNcclCommunicator``, outside torch.distributed's global
  group, so neither the learner's FSDP group nor vLLM's tensor-parallel group is disturbed); rank 0
  broadcasts tensor by tensor in an agreed order and each worker feeds what it receives straight
  into the reload.

``WeightSyncExtension`` is what vLLM mixes into its workers (``worker_extension_cls``); its
methods run on every worker through ``collective_rpc``. ``WeightBroadcaster`` is the learner
side of the broadcast. Nothing here imports vLLM at module level: the learner imports this
module on machines where only the broadcaster is used.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

EXTENSION_QUALNAME = "tip_ray.rollout.vllm_sync.WeightSyncExtension"

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


def tensor_specs(state_dict: Mapping[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    """The broadcast plan of a state dict: one spec per tensor, in the dict's order."""
    specs = []
    for name, tensor in state_dict.items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise ValueError(f"weight sync: {name} has dtype {tensor.dtype}; expected one of {sorted(_DTYPES)}")
        specs.append(TensorSpec(name=name, dtype=dtype, shape=tuple(tensor.shape)))
    return tuple(specs)


class WeightSyncExtension:
    """Mixed into every vLLM worker (``worker_extension_cls``); called through ``collective_rpc``.

    Method names carry a ``tip_`` prefix: vLLM refuses an extension whose names clash with its
    worker's own attributes.
    """

    def tip_reload_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> int:
        """Reload every weight from a full Hugging Face-named state dict; returns tensors fed.

        Each worker takes the tensors it needs (tensor-parallel shards are cut by vLLM's
        weight loaders). A tied LM head is skipped by vLLM's loader: it is the embedding.
        """
        items = list(state_dict.items())
        self.reload_weights(weights_iterator=iter(items), is_checkpoint_format=True)
        return len(items)

    def tip_join_broadcast_group(self, host: str, port: int, rank_offset: int, world_size: int) -> int:
        """Join the learner's broadcast group as rank ``rank_offset + this worker's rank``."""
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.parallel_state import get_world_group
        from vllm.distributed.utils import StatelessProcessGroup

        rank = rank_offset + get_world_group().rank
        group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size)
        self._tip_broadcast = PyNcclCommunicator(group, device=self.device)
        return rank

    def tip_receive_broadcast(self, specs: Sequence[TensorSpec]) -> int:
        """Receive the tensors of ``specs`` from rank 0, in order, and reload them as they come."""
        comm = getattr(self, "_tip_broadcast", None)
        if comm is None:
            raise RuntimeError(
                "weight sync: tip_receive_broadcast before tip_join_broadcast_group; "
                "join the learner's broadcast group first"
            )
        stream = torch.cuda.current_stream()

        def received() -> Iterator[tuple[str, torch.Tensor]]:
            for spec in specs:
                buffer = torch.empty(spec.shape, dtype=_DTYPES[spec.dtype], device=self.device)
                comm.broadcast(buffer, src=0, stream=stream)
                yield spec.name, buffer

        # The reload consumes the generator in spec order, so every receiver posts the same
        # sequence of broadcasts as the sender.
        self.reload_weights(weights_iterator=received(), is_checkpoint_format=True)
        stream.synchronize()
        return len(specs)

    def tip_leave_broadcast_group(self) -> None:
        self._tip_broadcast = None

    def tip_parameter_checksum(self) -> float:
        """Sum of every parameter as float64: a cheap fingerprint to check a sync arrived."""
        model = self.model_runner.get_model()
        return float(sum(p.detach().double().sum().item() for p in model.parameters()))


def free_port(host: str = "") -> int:
    """A TCP port free right now on this machine (for the broadcast group's store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class WeightBroadcaster:
    """Learner rank 0's end of the NCCL weight broadcast (CUDA only).

    world_size = 1 + the total number of engine workers (sum of tensor-parallel sizes); each
    engine joins with ``rank_offset`` = 1 + the number of workers of the engines before it.
    Construct it while the engines join (both sides block until all ranks are there).
    """

    def __init__(self, host: str, port: int, world_size: int, device: torch.device | int | str = 0):
        if not torch.cuda.is_available():
            raise RuntimeError("WeightBroadcaster needs CUDA; on CPU sync weights with the state dict")
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        self.device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        group = StatelessProcessGroup.create(host=host, port=port, rank=0, world_size=world_size)
        self._comm = PyNcclCommunicator(group, device=self.device)

    def broadcast(self, state_dict: Mapping[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
        """Send every tensor in ``tensor_specs(state_dict)`` order; the receivers must be given
        the same specs (call ``tensor_specs`` first and hand them to the engines)."""
        specs = tensor_specs(state_dict)
        stream = torch.cuda.current_stream(self.device)
        for spec in specs:
            tensor = state_dict[spec.name].detach().to(self.device, non_blocking=True).contiguous()
            self._comm.broadcast(tensor, src=0, stream=stream)
        stream.synchronize()
        return specs
