"""Ray resource pools: the one place that names them.

A pool is a set of Ray nodes that advertise one custom Ray resource, e.g. ``teacher_pool``.
An actor that must run on a pool asks for a sliver of that resource (see `pool_resource`), so
Ray can only place it on the pool's nodes: the teacher never lands on a student GPU.

Three things must agree, and all of them read the names from here:
- the pipeline YAML (``cluster.pools.<name>.resource``), checked by the config schema;
- the placement code, which turns a pool into actor options with `pool_resource`;
- the KubeRay manifests under deploy/kuberay/, whose worker groups advertise the resource in
  ``rayStartParams.resources``; `pools_in_manifest` reads them back, and a test checks every
  pool a pipeline asks for against the manifest it is paired with.

No torch or ray import here: the config module imports this file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TEACHER_POOL = "teacher_pool"
"""Custom Ray resource advertised by the teacher-pool nodes (teacher scorers, selector)."""

STUDENT_POOL = "student_pool"
"""Custom Ray resource advertised by the student-pool nodes (rollout workers, learner ranks)."""

KNOWN_POOLS: tuple[str, ...] = (TEACHER_POOL, STUDENT_POOL)

POOL_SUFFIX = "_pool"
"""Every pool resource name ends with this, which tells pools apart from other custom resources."""

RESOURCE_PER_ACTOR = 0.01
"""What one actor asks of its pool's resource. The resource is a marker, not a capacity
(GPUs and CPUs limit how many actors fit), so the request is tiny."""

NODE_POOL_CAPACITY = 1000
"""What a pool node advertises: room for 100,000 actors at `RESOURCE_PER_ACTOR` each."""

POOL_LABEL_KEY = "tip-ray.io/pool"
"""Optional Ray node label (a KubeRay group's ``labels``) naming the node's pool; when present
it must agree with the advertised resource, so dashboards and label selectors see the same pool."""

_RAY_KINDS = ("RayCluster", "RayJob")


def pool_resource(pool: str) -> dict[str, float]:
    """The custom resource an actor of `pool` requests, e.g. ``{"teacher_pool": 0.01}``."""
    if pool not in KNOWN_POOLS:
        raise ValueError(
            f"unknown pool {pool!r}; known pools: {', '.join(KNOWN_POOLS)} "
            "(a new pool is added to KNOWN_POOLS in tip_ray/pools.py and to the KubeRay "
            "manifests under deploy/kuberay/)"
        )
    return {pool: RESOURCE_PER_ACTOR}


def is_pool_resource(name: str) -> bool:
    """Whether a custom Ray resource name names a pool (as opposed to, e.g., ``TPU``)."""
    return name.endswith(POOL_SUFFIX) and len(name) > len(POOL_SUFFIX)


def parse_resources_param(value: str, where: str = "rayStartParams.resources") -> dict[str, float]:
    """Parse a KubeRay ``rayStartParams.resources`` string into ``{resource: amount}``.

    KubeRay passes the string to ``ray start --resources=<value>`` through a shell, so it is
    shell-quoted JSON. Two spellings are in use: ``'{"teacher_pool": 1000}'`` (what KubeRay itself
    generates, and the one it can parse back) and ``"{\\"teacher_pool\\": 1000}"`` (older docs).
    Both are accepted; anything else raises ValueError naming `where`.
    """
    text = value.strip().strip("'\"` ")
    for candidate in (text, text.replace('\\"', '"')):
        try:
            parsed = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in parsed.items()
        ):
            return {k: float(v) for k, v in parsed.items()}
    raise ValueError(
        f"{where}: {value!r} is not a JSON object of resource amounts; "
        """write it as '{"teacher_pool": 1000}' (single quotes around the JSON)"""
    )


def _cluster_spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = doc.get("kind")
    spec = doc.get("spec")
    if kind not in _RAY_KINDS or not isinstance(spec, Mapping):
        raise ValueError(
            f"expected a KubeRay {' or '.join(_RAY_KINDS)} document with a spec, "
            f"got kind {kind!r}"
        )
    if kind == "RayCluster":
        return spec
    cluster = spec.get("rayClusterSpec")
    if not isinstance(cluster, Mapping):
        raise ValueError(
            "RayJob has no spec.rayClusterSpec (it runs on an existing cluster through "
            "clusterSelector); pair the pipeline with that cluster's RayCluster manifest instead"
        )
    return cluster


def _positive_quantity(quantity: Any, where: str) -> bool:
    number = str(quantity).strip().rstrip("kKMGTPEimun")  # drop a unit suffix: "1k", "500m"
    try:
        return float(number) > 0
    except ValueError:
        raise ValueError(f"{where}: {quantity!r} is not a resource quantity") from None


def _group_pools(group: Mapping[str, Any], where: str) -> set[str]:
    positive: set[str] = set()
    start_params = group.get("rayStartParams") or {}
    if "resources" in start_params:
        amounts = parse_resources_param(
            str(start_params["resources"]), f"{where}.rayStartParams.resources"
        )
        positive |= {name for name, amount in amounts.items() if amount > 0}
    # KubeRay >= 1.5 also takes a group-level `resources` map of Kubernetes quantities.
    for name, quantity in (group.get("resources") or {}).items():
        if _positive_quantity(quantity, f"{where}.resources[{name!r}]"):
            positive.add(str(name))
    pools = {name for name in positive if is_pool_resource(name)}

    label = (group.get("labels") or {}).get(POOL_LABEL_KEY)
    if label is not None and label not in pools:
        raise ValueError(
            f"{where}.labels[{POOL_LABEL_KEY!r}] says pool {label!r}, but the group advertises "
            f"pool resources {sorted(pools) or 'none'}; add {label!r} to its rayStartParams.resources "
            "or fix the label"
        )
    return pools


def pools_in_manifest(doc: Mapping[str, Any]) -> set[str]:
    """Pool resource names that a RayCluster or RayJob manifest advertises, over all its groups.

    Reads each group's ``rayStartParams.resources`` (and the KubeRay group field ``resources``).
    A group's `POOL_LABEL_KEY` label only counts together with the resource: a label alone would
    let a pipeline pass this check and then wait forever for a resource no node has.
    """
    spec = _cluster_spec(doc)
    pools: set[str] = set()
    head = spec.get("headGroupSpec") or {}
    pools |= _group_pools(head, "headGroupSpec")
    for index, group in enumerate(spec.get("workerGroupSpecs") or []):
        name = group.get("groupName", index)
        pools |= _group_pools(group, f"workerGroupSpecs[{name}]")
    return pools
