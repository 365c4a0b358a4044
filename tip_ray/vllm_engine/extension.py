"""Weight sync into running vLLM engines: learner weights in, no engine restart.

Two ways in, both ending in vLLM's in-place reload (``Worker.reload_weights``), which loads
checkpoint-format tensors layer by layer and re-runs each layer's post-load processing (weight
repacking on CPU, quantisation on GPU), so kernels never keep stale copies of old weights:

- **state dict** (CPU, or any machine): the full gathered state dict reaches every engine worker
  through ``LLM.collective_rpc`` (by reference in the in-process engine, pickled otherwise).
- **broadcast**: learner rank 0 and every engine worker join a stateless broadcast group
  (``tip_ray.broadcast``: NCCL on GPU pools, gloo on CPU); rank 0 broadcasts tensor by tensor in
  an agreed order and each worker feeds what it receives straight into the reload.

``WeightSyncExtension`` is what vLLM mixes into its workers (``worker_extension_cls``); its
methods run on every worker through ``collective_rpc``. Nothing here imports vLLM at module level.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch

from tip_ray.broadcast import BroadcastGroup, GroupAddress

EXTENSION_QUALNAME = "tip_ray.vllm_engine.extension.WeightSyncExtension"


class _Counted:
    """An iterator that counts what went through it (vLLM's reload returns nothing)."""

    def __init__(self, items: Iterator):
        self._items = items
        self.count = 0

    def __iter__(self):
        for item in self._items:
            self.count += 1
            yield item


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

    def tip_join_broadcast_group(self, address: GroupAddress, rank_offset: int) -> int:
        """Join the learner's broadcast group as rank ``rank_offset + this worker's rank``."""
        from vllm.distributed.parallel_state import get_world_group

        rank = rank_offset + get_world_group().rank
        self._tip_broadcast = None  # leave any older group first
        self._tip_broadcast = BroadcastGroup(address, rank, device=self.device)
        return rank

    def tip_receive_broadcast(self) -> int:
        """Receive what rank 0 sends now, tensor by tensor, reloading each as it comes."""
        group = getattr(self, "_tip_broadcast", None)
        if group is None:
            raise RuntimeError(
                "weight sync: tip_receive_broadcast before tip_join_broadcast_group; "
                "join the learner's broadcast group first"
            )
        counted = _Counted(group.receive())
        self.reload_weights(weights_iterator=iter(counted), is_checkpoint_format=True)
        for _ in counted:  # every rank must post every broadcast, even one the loader skipped
            pass
        return counted.count
