"""deploy/kuberay/teacher-service.yaml: a cluster whose teacher service has a worker group of its
own, apart from the student pool, valid against the KubeRay CRD schema (the other checks of
test_kuberay_manifests.py run on it too: every file under deploy/kuberay/)."""

from __future__ import annotations

import shlex

import yaml

from tests.deploy.test_kuberay_manifests import KUBERAY, REPO, _errors, _load_docs
from tip_ray.pools import STUDENT_POOL, TEACHER_POOL, pools_in_manifest

MANIFEST = KUBERAY / "teacher-service.yaml"


def _docs() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in _load_docs(MANIFEST)}


def _group_pools(group: dict) -> set[str]:
    return pools_in_manifest({"kind": "RayCluster", "spec": {"headGroupSpec": {}, "workerGroupSpecs": [group]}})


def test_the_teacher_service_has_its_own_group_apart_from_the_student_pool():
    cluster = _docs()["RayCluster"]
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"teacher-service", "student"}
    assert _group_pools(groups["teacher-service"]) == {TEACHER_POOL}
    assert _group_pools(groups["student"]) == {STUDENT_POOL}
    assert not _errors(cluster), "\n".join(_errors(cluster))


def test_the_service_job_starts_the_service_on_this_cluster():
    docs = _docs()
    cluster_name = docs["RayCluster"]["metadata"]["name"]
    container = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"]
    assert argv[:3] == ["tip-ray", "teacher", "serve"]
    address = argv[argv.index("--address") + 1]
    assert address == f"{cluster_name}-head-svc:6379", "KubeRay's head service is <cluster>-head-svc"
    pipeline = REPO / argv[3].removeprefix("/app/")
    assert pipeline.is_file(), f"{pipeline} (the served pipeline) is not in the repository"
    token = {e["name"]: e for e in container["env"]}["RAY_AUTH_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == cluster_name, "KubeRay's token Secret is named after the cluster"
    # The command line parses as the CLI would get it.
    from tip_ray.cli import build_parser

    args = build_parser().parse_args(shlex.split(shlex.join(argv))[1:])
    assert args.action == "serve" and args.name == "shared-teacher" and args.replicas >= 1


def test_a_broken_copy_fails_the_schema():
    cluster = yaml.safe_load(yaml.safe_dump(_docs()["RayCluster"]))
    cluster["spec"]["workerGroupSpecs"][0]["replicas"] = "four"
    assert _errors(cluster)
