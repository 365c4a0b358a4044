"""Weight broadcast from learner rank 0 to the rollout workers (rollout.weight_sync: broadcast):
the group itself (gloo, real TCP store), a Hugging Face model taking a broadcast in place, and
a run on a real local Ray cluster where two rollout workers join one group and load no state dict by the rollout workers (tests/reliability/test_broadcast_sync.py compares whole runs
with the object-store sync and restarts a rollout worker mid-run)."""

from __future__ import annotations

import threading

import pytest
import ray
import torch

from tests.conftest import live_actor
from tests.pipeline_doc import tiny_pipeline_doc
from tests.reliability.conftest import read_rows, write_pipeline
from tip_ray.broadcast import BroadcastGroup, GroupAddress, free_port, tensor_specs


def run_members(world_size: int, member) -> list:
    """Run `member(rank, address)` for every rank in its own thread; results by rank."""
    address = GroupAddress("127.0.0.1", free_port(), world_size, "gloo", timeout_s=30)
    results: list = [None] * world_size
    errors: list = []

    def body(rank: int) -> None:
        try:
            results[rank] = member(rank, address)
        except Exception as exc:  # surfaced below, with the rank
            errors.append((rank, exc))

    threads = [threading.Thread(target=body, args=(rank,)) for rank in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def mixed_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "model.embed_tokens.weight": torch.randn(11, 4, generator=g),
        "model.norm.weight": torch.randn(4, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(8, 4, generator=g).to(torch.float16),
        "lm_head.weight": torch.randn(11, 4, generator=g),
        "scalar": torch.tensor(2.5),
    }


def test_every_receiver_gets_every_tensor_in_order_bit_for_bit():
    sent = mixed_state_dict()

    def member(rank, address):
        group = BroadcastGroup(address, rank)
        if rank == 0:
            return group.send(sent)
        return list(group.receive())

    results = run_members(3, member)
    assert results[0] == sum(t.numel() * t.element_size() for t in sent.values())
    for received in results[1:]:
        assert [name for name, _ in received] == list(sent)
        for name, tensor in received:
            assert tensor.dtype == sent[name].dtype and torch.equal(tensor, sent[name])


def test_roles_and_ranks_are_checked():
    address = GroupAddress("127.0.0.1", free_port(), 2, "gloo", timeout_s=5)
    with pytest.raises(ValueError, match="rank 2 outside a group of 2"):
        BroadcastGroup(address, 2)
    with pytest.raises(ValueError, match="transport 'mpi'"):
        BroadcastGroup(GroupAddress("127.0.0.1", free_port(), 1, "mpi"), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype torch.int64"):
        tensor_specs({"step": torch.tensor([1])})

    def member(rank, address):
        group = BroadcastGroup(address, rank)
        with pytest.raises(RuntimeError, match="only rank 0 sends" if rank else "does not receive"):
            group.send({}) if rank else next(group.receive())
        return rank

    assert run_members(2, member) == [0, 1]


def test_hf_backend_takes_a_broadcast_in_place(tiny_pair):
    """Tied embeddings: lm_head.weight and the embedding are one tensor, sent under both names."""
    from tip_ray.models.loading import load_causal_lm
    from tip_ray.rollout.hf import HFGenerateBackend

    model = load_causal_lm(str(tiny_pair.student_path), dtype="float32")
    trained = load_causal_lm(str(tiny_pair.student_path), dtype="float32")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sent = {k: v.clone() for k, v in trained.state_dict().items()}
    backend = HFGenerateBackend(model, eos_token_id=0, pad_token_id=0, batch_size=4)

    def member(rank, address):
        if rank == 0:
            return BroadcastGroup(address, 0).send(sent)
        backend.join_broadcast_group(address, rank_offset=rank)
        return backend.receive_broadcast()

    assert run_members(2, member)[1] == len(sent)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, sent[name]), name


def test_broadcast_before_joining_is_a_clear_error(tiny_pair):
    from tip_ray.models.loading import load_causal_lm
    from tip_ray.rollout.hf import HFGenerateBackend

    backend = HFGenerateBackend(load_causal_lm(str(tiny_pair.student_path), dtype="float32"), 0, 0, 4)
    with pytest.raises(RuntimeError, match="before joining"):
        backend.receive_broadcast()


def test_two_rollout_workers_join_one_group(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    config = load_pipeline(write_pipeline(tmp_path, tiny_pipeline_doc(
        tiny_pair, demo_prompts, tmp_path / "run", name="bcast2",
        rollout={"num_workers": 2, "prompts_per_step": 4, "samples_per_prompt": 2,
                 "sampling": {"temperature": 1.0, "max_new_tokens": 16}, "weight_sync": "broadcast"},
        train={"steps": 3, "seed": 0, "stage_timeout_s": 120})))
    counts: list[dict] = []

    def inspect(row: dict) -> None:
        if row["step"] == 3:
            counts.extend(ray.get(live_actor("tip-ray/bcast2/", f"rollout-{i}").sync_counts.remote())
                          for i in range(2))

    run_pipeline(config, on_step=inspect)
    assert counts == [{"loads": 0, "broadcasts": 3}] * 2
    assert [r["weight_sync"] for r in read_rows(tmp_path / "run")] == ["broadcast"] * 3


@pytest.mark.parametrize("mode, gpus, expected", [
    ("auto", 0, (False, "gloo")),        # CPU: the object store
    ("auto", 1, (True, "nccl")),         # whole GPUs: NCCL broadcast
    ("auto", 0.4, (False, "gloo")),      # a shared GPU: NCCL cannot link two ranks on it
    ("broadcast", 0, (True, "gloo")),    # asked for on CPU: gloo
    ("broadcast", 0.4, (True, "gloo")),  # asked for on a shared GPU: gloo through host memory
    ("object_store", 1, (False, "nccl")),
])
def test_weight_sync_mode_follows_the_config_and_the_pools(tiny_pair, demo_prompts, tmp_path, mode, gpus, expected):
    from tip_ray.config.pipeline import PipelineConfig
    from tip_ray.pipeline.weight_publish import weight_sync_mode

    pools = {"teacher": {"resource": "teacher_pool", "gpus_per_actor": gpus},
             "student": {"resource": "student_pool", "gpus_per_actor": gpus}}
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, rollout={"weight_sync": mode},
                            cluster={"address": "auto", "pools": pools})
    assert weight_sync_mode(PipelineConfig.model_validate(doc)) == expected


def test_colocated_engines_sync_through_the_object_store(tiny_pair, demo_prompts, tmp_path):
    from tip_ray.config.pipeline import PipelineConfig
    from tip_ray.pipeline.weight_publish import weight_sync_mode

    pools = {"teacher": {"resource": "teacher_pool", "gpus_per_actor": 1},
             "student": {"resource": "student_pool", "gpus_per_actor": 0.5}}
    rollout = {"backend": {"type": "vllm", "sleep_when_idle": True}}
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, rollout=rollout, cluster={"address": "auto", "pools": pools})
    assert weight_sync_mode(PipelineConfig.model_validate(doc)) == (False, "gloo")
    doc["rollout"]["weight_sync"] = "broadcast"
    with pytest.raises(ValueError, match="sleep_when_idle .* needs rollout.weight_sync object_store or auto"):
        PipelineConfig.model_validate(doc)


def test_weight_sync_forms_and_transport_override(tiny_pair, demo_prompts, tmp_path):
    from tip_ray.config.pipeline import PipelineConfig
    from tip_ray.pipeline.weight_publish import weight_sync_mode

    def mode(sync, gpus=0.0):
        pools = {"teacher": {"resource": "teacher_pool", "gpus_per_actor": gpus},
                 "student": {"resource": "student_pool", "gpus_per_actor": gpus}}
        doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, rollout={"weight_sync": sync},
                                cluster={"address": "auto", "pools": pools})
        return weight_sync_mode(PipelineConfig.model_validate(doc))

    assert mode("broadcast") == mode({"type": "broadcast"}) == (True, "gloo")
    assert mode({"type": "broadcast", "transport": "gloo"}, gpus=1) == (True, "gloo")  # forced over host memory
    assert mode({"type": "broadcast", "transport": "nccl"}, gpus=1) == (True, "nccl")
    with pytest.raises(ValueError, match="transport nccl needs whole GPUs on the rollout and learner roles"):
        mode({"type": "broadcast", "transport": "nccl"}, gpus=0.5)
    with pytest.raises(ValueError, match="'nvlink'"):
        mode({"type": "nvlink"})
    with pytest.raises(ValueError, match="transport"):
        mode({"type": "object_store", "transport": "gloo"})  # only broadcast has a transport
