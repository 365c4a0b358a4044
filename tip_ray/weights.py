"""Policy versions and the weights that go with them.

A stage that uses the student's weights is told, with every call, which version to use and
where to find it. A stage whose weights are older loads them first, so a stage that Ray restarted
(fresh from the model folder) catches up by itself, and a retried call is redone with the same
weights it was first asked with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from tip_ray.packed_weights import PackedWeights, unpack_state_dict


@dataclass(frozen=True)
class WeightVersion:
    version: int  # learner updates applied
    # [ObjectRef] of the full weights (a PackedWeights, or a state dict in-process), inside a list so that Ray passes the reference instead
    # of resolving it into every call; None means "the weights in the model folder".
    refs: tuple[Any, ...] | None = None


def resolve_state_dict(handle: WeightVersion) -> Mapping[str, torch.Tensor] | None:
    """The weights of `handle` (None: the model folder's). Published versions come out of the
    object store as views of its shared buffer: read-only, to be loaded into a model."""
    if handle.refs is None:
        return None
    value = handle.refs[0]
    if isinstance(value, Mapping):  # in-process runs pass the dict itself
        return value
    if not isinstance(value, PackedWeights):
        import ray

        value = ray.get(value)
    return unpack_state_dict(value) if isinstance(value, PackedWeights) else value


class VersionedWeights:
    """Tracks the version a stage holds and loads newer (or restored) weights when asked."""

    def __init__(self, load: Callable[[Mapping[str, torch.Tensor]], None]):
        self._load = load
        self.version = 0
        self.loads = 0  # state dicts loaded through `ensure`
        self.broadcasts = 0  # versions that arrived by broadcast instead

    def received(self, version: int) -> None:
        """Weights of `version` arrived by another way (a broadcast): later calls with that
        version need not load them again."""
        self.version = version
        self.broadcasts += 1

    def ensure(self, handle: WeightVersion) -> None:
        if handle.version == self.version and (handle.refs is None or self.loads + self.broadcasts > 0):
            return
        state = resolve_state_dict(handle)
        if state is None:
            if handle.version != 0:
                raise RuntimeError(
                    f"weights for policy version {handle.version} were not provided"
                )
        else:
            self._load(state)
            self.loads += 1
        self.version = handle.version
