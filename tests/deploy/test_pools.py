"""tip_ray.pools: pool names, the resource an actor asks for, and reading pools back from manifests."""

from __future__ import annotations

import copy

import pytest

from tip_ray import pools
from tip_ray.pools import (
    KNOWN_POOLS,
    POOL_LABEL_KEY,
    STUDENT_POOL,
    TEACHER_POOL,
    parse_resources_param,
    pool_resource,
    pools_in_manifest,
)


def _group(name: str, **fields) -> dict:
    return {"groupName": name, "template": {"spec": {"containers": [{"name": "ray-worker"}]}}, **fields}


def _raycluster(*groups: dict, head: dict | None = None) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c"},
        "spec": {"headGroupSpec": head or {"rayStartParams": {"num-cpus": "0"}}, "workerGroupSpecs": list(groups)},
    }


def test_pool_names_are_distinct_and_recognisable():
    assert TEACHER_POOL != STUDENT_POOL
    assert set(KNOWN_POOLS) == {TEACHER_POOL, STUDENT_POOL}
    assert len(set(KNOWN_POOLS)) == len(KNOWN_POOLS)
    assert all(pools.is_pool_resource(name) for name in KNOWN_POOLS)
    assert not pools.is_pool_resource("TPU") and not pools.is_pool_resource("_pool")


@pytest.mark.parametrize("pool", KNOWN_POOLS)
def test_pool_resource_asks_for_a_sliver_of_its_own_pool_only(pool):
    request = pool_resource(pool)
    assert list(request) == [pool]
    assert 0 < request[pool] <= 1
    # A pool node advertises enough of the resource for many actors; GPUs are the real limit.
    assert pools.NODE_POOL_CAPACITY / request[pool] >= 1000
    # Each call returns a fresh dict: callers may add to it.
    request["GPU"] = 1
    assert pool_resource(pool) == {pool: pools.RESOURCE_PER_ACTOR}


@pytest.mark.parametrize("bad", ["teacher", "student", "Teacher_pool", "", "gpu_pool"])
def test_pool_resource_rejects_unknown_pools_by_name(bad):
    with pytest.raises(ValueError) as info:
        pool_resource(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert all(name in message for name in KNOWN_POOLS)
    assert "tip_ray/pools.py" in message


@pytest.mark.parametrize(
    "text",
    [
        "'{\"teacher_pool\": 1000}'",  # what KubeRay itself generates
        '"{\\"teacher_pool\\": 1000}"',  # the escaped spelling of older KubeRay docs
        '{"teacher_pool": 1000}',
        " '{\"teacher_pool\": 1e3}' ",
    ],
)
def test_resources_param_spellings_parse(text):
    assert parse_resources_param(text) == {"teacher_pool": 1000.0}


@pytest.mark.parametrize("text", ["teacher_pool=1000", "'[1, 2]'", "'{\"teacher_pool\": \"lots\"}'", "'{\"a\": true}'", ""])
def test_resources_param_rejects_what_ray_would_not_read(text):
    with pytest.raises(ValueError, match="somewhere"):
        parse_resources_param(text, where="somewhere")


def test_pools_from_start_params_group_fields_and_head():
    doc = _raycluster(
        _group("t", rayStartParams={"resources": "'{\"teacher_pool\": 1000, \"TPU\": 4}'"}),
        _group("s", resources={"student_pool": "1k", "CPU": "8"}),  # KubeRay >= 1.5 group field
        _group("cpu", rayStartParams={}),
    )
    assert pools_in_manifest(doc) == {TEACHER_POOL, STUDENT_POOL}

    head_pool = _raycluster(head={"rayStartParams": {"resources": "'{\"extra_pool\": 1}'"}})
    assert pools_in_manifest(head_pool) == {"extra_pool"}


def test_zero_amounts_and_non_pool_resources_do_not_count():
    doc = _raycluster(
        _group("t", rayStartParams={"resources": "'{\"teacher_pool\": 0, \"accelerator_x\": 2}'"}),
        _group("s", resources={"student_pool": "0"}),
    )
    assert pools_in_manifest(doc) == set()


def test_rayjob_reads_its_cluster_spec():
    cluster = _raycluster(_group("t", rayStartParams={"resources": "'{\"teacher_pool\": 1000}'"}))
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "spec": {"entrypoint": "x", "rayClusterSpec": cluster["spec"]}}
    assert pools_in_manifest(job) == {TEACHER_POOL}

    selector_job = {"kind": "RayJob", "spec": {"entrypoint": "x", "clusterSelector": {"ray.io/cluster": "c"}}}
    with pytest.raises(ValueError, match="clusterSelector"):
        pools_in_manifest(selector_job)


@pytest.mark.parametrize("kind", ["ConfigMap", "RayService", None])
def test_other_documents_are_refused(kind):
    with pytest.raises(ValueError, match="RayCluster or RayJob"):
        pools_in_manifest({"kind": kind, "spec": {}})


def test_pool_label_must_agree_with_the_resource():
    agreeing = _raycluster(
        _group(
            "t",
            rayStartParams={"resources": "'{\"teacher_pool\": 1000}'"},
            labels={POOL_LABEL_KEY: TEACHER_POOL, "other": "x"},
        )
    )
    assert pools_in_manifest(agreeing) == {TEACHER_POOL}

    disagreeing = copy.deepcopy(agreeing)
    disagreeing["spec"]["workerGroupSpecs"][0]["labels"][POOL_LABEL_KEY] = STUDENT_POOL
    with pytest.raises(ValueError, match=r"workerGroupSpecs\[t\].*student_pool"):
        pools_in_manifest(disagreeing)

    # A label without the resource would pass a name check and then leave actors unschedulable.
    label_only = _raycluster(_group("s", labels={POOL_LABEL_KEY: STUDENT_POOL}))
    with pytest.raises(ValueError, match="advertises pool resources none"):
        pools_in_manifest(label_only)


def test_unreadable_resources_name_the_group():
    doc = _raycluster(_group("teacher", rayStartParams={"resources": "teacher_pool:1000"}))
    with pytest.raises(ValueError, match=r"workerGroupSpecs\[teacher\]\.rayStartParams\.resources"):
        pools_in_manifest(doc)
