"""Published weights travel as one packed buffer: every tensor comes back bit-identical (dtypes,
shapes, tied weights), straight and through a real local Ray, where readers share the object
store's copy instead of rebuilding the tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tip_ray.packed_weights import ALIGN, PackedWeights, pack_state_dict, unpack_state_dict
from tip_ray.weights import WeightVersion, resolve_state_dict


def mixed_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(37, 5, generator=g)
    return {
        "embed.weight": embed,
        "layer.weight": torch.randn(5, 7, generator=g).to(torch.bfloat16),
        "layer.bias": torch.randn(3, generator=g).half(),
        "transposed": torch.randn(4, 6, generator=g).t(),  # not contiguous
        "steps": torch.tensor(12, dtype=torch.int64),  # 0-dim
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "lm_head.weight": embed,  # tied: the same tensor under a second name
    }


def test_pack_round_trip_is_bit_identical_and_keeps_ties():
    state = mixed_state()
    packed = pack_state_dict(state)
    out = unpack_state_dict(packed)
    assert list(out) == list(state)
    for name, tensor in state.items():
        assert out[name].dtype == tensor.dtype and out[name].shape == tensor.shape, name
        assert torch.equal(out[name], tensor), name
    # The tied pair is stored once and unpacks as one tensor again.
    assert out["lm_head.weight"].data_ptr() == out["embed.weight"].data_ptr()
    distinct = sum(-(-t.numel() * t.element_size() // ALIGN) * ALIGN
                   for name, t in state.items() if name != "lm_head.weight")
    assert packed.buffer.nbytes == distinct and packed.buffer.dtype == np.uint8
    assert all(entry.offset % ALIGN == 0 for entry in packed.entries)


def test_packing_copies_the_learners_tensors():
    state = {"w": torch.ones(3)}
    packed = pack_state_dict(state)
    state["w"].add_(1.0)  # the learner's next update must not reach a published version
    assert torch.equal(unpack_state_dict(packed)["w"], torch.ones(3))


def test_a_gpu_tensor_is_refused_with_its_name():
    meta = torch.empty(2, device="meta")
    with pytest.raises(ValueError, match="'w' is on meta"):
        pack_state_dict({"w": meta})


def test_readers_share_the_object_stores_copy(ray_local):
    ray = ray_local
    state = mixed_state()

    @ray.remote
    class Reader:
        def read(self, refs):
            out = resolve_state_dict(WeightVersion(1, refs=tuple(refs)))
            raw = ray.get(refs[0])
            # Zero-copy: the buffer is the object store's shared, read-only memory.
            shared = isinstance(raw, PackedWeights) and not raw.buffer.flags.writeable
            return {name: t.clone() for name, t in out.items()}, shared

    ref = ray.put(pack_state_dict(state))
    got, shared = ray.get(Reader.remote().read.remote([ref]))
    assert shared
    for name, tensor in state.items():
        assert torch.equal(got[name], tensor), name
    # The driver resolves the same handle (checkpoints, the final export).
    local = resolve_state_dict(WeightVersion(1, refs=(ref,)))
    assert torch.equal(local["layer.weight"], state["layer.weight"])


def test_in_process_dicts_and_plain_object_store_dicts_still_resolve(ray_local):
    state = {"w": torch.arange(4.0)}
    assert resolve_state_dict(WeightVersion(1, refs=(state,))) is state
    from_store = resolve_state_dict(WeightVersion(1, refs=(ray_local.put(state),)))
    assert torch.equal(from_store["w"], state["w"])
    assert resolve_state_dict(WeightVersion(0)) is None
