"""A state dict packed into one byte buffer, for the object store.

Ray shares a numpy array in the object store with every reader on the node (zero-copy), while a
dict of torch tensors is pickled storage by storage and rebuilt by every reader. The learner
publishes each policy version once and several stages read it (rollout workers, the selector,
evaluation), so the weights travel as one uint8 array plus a small table of where each tensor
lies; a reader's tensors are views of the shared buffer, and loading them into its model is the
only copy it makes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

ALIGN = 64  # bytes: every tensor starts on a cache line, so any dtype view of it is aligned


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # byte offset in the buffer
    nbytes: int


@dataclass(frozen=True)
class PackedWeights:
    buffer: np.ndarray  # [total bytes] uint8
    entries: tuple[TensorEntry, ...]

    def __len__(self) -> int:
        return len(self.entries)


def _storage_key(tensor: torch.Tensor) -> tuple:
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def pack_state_dict(state: Mapping[str, torch.Tensor]) -> PackedWeights:
    """Copy `state` (CPU tensors) into one buffer. Tensors that are the same view of the same
    storage (tied embeddings) are stored once and unpack as one tensor again."""
    entries: list[TensorEntry] = []
    first_of: dict[tuple, TensorEntry] = {}
    offset = 0
    for name, tensor in state.items():
        if tensor.device.type != "cpu":
            raise ValueError(f"pack_state_dict: {name!r} is on {tensor.device}; gather the weights to the CPU first")
        key = _storage_key(tensor)
        if key in first_of:
            same = first_of[key]
            entries.append(TensorEntry(name, same.dtype, same.shape, same.offset, same.nbytes))
            continue
        nbytes = tensor.numel() * tensor.element_size()
        entry = TensorEntry(name, tensor.dtype, tuple(tensor.shape), offset, nbytes)
        entries.append(entry)
        first_of[key] = entry
        offset += -(-nbytes // ALIGN) * ALIGN
    buffer = np.empty(offset, dtype=np.uint8)
    flat = torch.from_numpy(buffer)
    written: set[int] = set()
    for entry, tensor in zip(entries, state.values()):
        if entry.offset in written or entry.nbytes == 0:
            continue
        _view(flat, entry).copy_(tensor)
        written.add(entry.offset)
    return PackedWeights(buffer=buffer, entries=tuple(entries))


def _view(flat: torch.Tensor, entry: TensorEntry) -> torch.Tensor:
    return flat[entry.offset:entry.offset + entry.nbytes].view(entry.dtype).view(entry.shape)


def unpack_state_dict(packed: PackedWeights) -> dict[str, torch.Tensor]:
    """The tensors as views of the packed buffer, in the packed order. A buffer that came from
    the object store is read-only: load the views into a model (which copies), never write them."""
    with warnings.catch_warnings():
        # torch warns that it cannot mark a tensor read-only; nothing here writes to it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        flat = torch.from_numpy(packed.buffer)
    return {entry.name: _view(flat, entry) for entry in packed.entries}
