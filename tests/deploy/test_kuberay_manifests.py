"""deploy/kuberay: the manifests parse, validate against the KubeRay CRD schemas, advertise exactly
the pools in tip_ray/pools.py, and every pipeline paired with a manifest finds its pools there."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tip_ray.pools import KNOWN_POOLS, NODE_POOL_CAPACITY, POOL_LABEL_KEY, pools_in_manifest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERAY = DEPLOY / "kuberay"
SCHEMA_DIR = REPO.parent / "shared" / "schemas" / "kuberay"
SCHEMA_FILES = {"RayCluster": "raycluster.schema.json", "RayJob": "rayjob.schema.json"}
MANIFEST_FILES = sorted(KUBERAY.glob("*.yaml"))
DEPLOY_YAML = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


def _load_docs(path: Path) -> list:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _ray_docs(path: Path) -> list[dict]:
    return [d for d in _load_docs(path) if isinstance(d, dict) and d.get("kind") in SCHEMA_FILES]


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def _only(path: Path, kind: str) -> dict:
    docs = [d for d in _ray_docs(path) if d["kind"] == kind]
    assert len(docs) == 1, f"{path}: expected one {kind} document, found {len(docs)}"
    return docs[0]


def _pods(spec: dict) -> list[tuple[str, dict]]:
    """(group name, pod spec) for the head and every worker group."""
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return pods


def _gpus(pod: dict) -> int:
    limits = pod["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


@pytest.fixture(scope="module")
def raycluster() -> dict:
    return _only(KUBERAY / "raycluster.yaml", "RayCluster")


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return _only(KUBERAY / "rayjob.yaml", "RayJob")


@pytest.fixture(scope="module", params=["raycluster", "rayjob"])
def manifest(request) -> dict:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- every YAML parses


def test_deploy_has_the_manifests():
    assert {p.name for p in MANIFEST_FILES} >= {"raycluster.yaml", "rayjob.yaml"}


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_deploy_yaml_parses(path):
    docs = _load_docs(path)
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), (
            f"{path}: every document is a Kubernetes object with apiVersion and kind"
        )


# --------------------------------------------------------------------------- pools


def test_manifests_advertise_exactly_the_known_pools(manifest):
    assert pools_in_manifest(manifest) == set(KNOWN_POOLS)


def test_each_gpu_group_serves_one_pool_and_the_head_none(manifest):
    spec = _cluster_spec(manifest)
    head_only = dict(manifest, spec={"headGroupSpec": spec["headGroupSpec"], "workerGroupSpecs": []})
    if manifest["kind"] == "RayJob":
        head_only = dict(manifest, spec={"rayClusterSpec": head_only["spec"]})
    assert pools_in_manifest(head_only) == set()

    seen = set()
    for group in spec["workerGroupSpecs"]:
        one = {"kind": "RayCluster", "spec": {"headGroupSpec": {}, "workerGroupSpecs": [group]}}
        group_pools = pools_in_manifest(one)
        assert len(group_pools) == 1, f"group {group['groupName']} advertises {group_pools}: one pool per group"
        (pool,) = group_pools
        seen.add(pool)
        assert group["labels"][POOL_LABEL_KEY] == pool
        assert _gpus(group["template"]["spec"]) >= 1, f"group {group['groupName']} has no nvidia.com/gpu limit"
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert seen == set(KNOWN_POOLS), "every pool on at least one GPU group"


def test_resources_param_survives_kuberay_and_the_shell(manifest):
    """KubeRay strips the quotes and parses the JSON (to add accelerator resources), then runs
    `ray start --resources=<value>` through bash; both must yield the pool's resource."""
    for group in _cluster_spec(manifest)["workerGroupSpecs"]:
        value = group["rayStartParams"]["resources"]
        (pool,) = [p for p in KNOWN_POOLS if p in value]
        expected = {pool: NODE_POOL_CAPACITY}

        # KubeRay's own parse: trim quotes and spaces, strict JSON, no unescaping.
        assert json.loads(value.strip("'\"` ")) == expected, (
            f"group {group['groupName']}: KubeRay cannot parse {value!r}; write it as '{{\"{pool}\": 1000}}'"
        )
        # The shell: KubeRay writes ` --resources=<value> ` into a bash command line.
        argv = subprocess.run(
            ["bash", "-c", f"printf '%s\\n' --resources={value}"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert len(argv) == 1 and argv[0].startswith("--resources=")
        assert json.loads(argv[0].removeprefix("--resources=")) == expected


def test_head_does_no_work_and_has_no_gpu(manifest):
    head = _cluster_spec(manifest)["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    pod = head["template"]["spec"]
    assert _gpus(pod) == 0
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265


def test_gpu_requests_match_limits(manifest):
    for name, pod in _pods(_cluster_spec(manifest)):
        resources = pod["containers"][0]["resources"]
        limit = resources["limits"].get("nvidia.com/gpu")
        request = resources.get("requests", {}).get("nvidia.com/gpu", limit)
        assert request == limit, f"{name}: nvidia.com/gpu request {request} != limit {limit}"


def test_cluster_runs_one_image_the_installed_ray_and_token_auth(manifest):
    spec = _cluster_spec(manifest)
    images = {pod["containers"][0]["image"] for _, pod in _pods(spec)}
    if manifest["kind"] == "RayJob":
        images |= {c["image"] for c in manifest["spec"]["submitterPodTemplate"]["spec"]["containers"]}
    assert len(images) == 1, f"one image for head, workers and submitter (same ray everywhere): {images}"

    installed = metadata.version("ray").split(".")[:2]
    assert spec["rayVersion"].split(".")[:2] == installed, "rayVersion must match the ray the project pins"
    assert spec["authOptions"]["mode"] == "token", "token authentication stays on"


def test_pods_run_as_non_root(manifest):
    pods = [pod for _, pod in _pods(_cluster_spec(manifest))]
    if manifest["kind"] == "RayJob":
        pods.append(manifest["spec"]["submitterPodTemplate"]["spec"])
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_rayjob_lifecycle(rayjob, raycluster):
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["submitterConfig"]["backoffLimit"] >= 1
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    assert re.fullmatch(r"tip-ray run /app/pipelines/[\w./-]+\.ya?ml --address auto", spec["entrypoint"])
    # One cluster definition: the RayJob's cluster is the RayCluster's spec, field for field.
    assert spec["rayClusterSpec"] == raycluster["spec"], (
        "deploy/kuberay/rayjob.yaml rayClusterSpec differs from raycluster.yaml spec; change both"
    )


def test_rayjob_entrypoint_pipeline_fits_the_rayjob(rayjob):
    name = rayjob["spec"]["entrypoint"].split()[2].removeprefix("/app/")
    path = REPO / name
    if not path.exists():
        pytest.skip(f"{name} (the RayJob entrypoint's pipeline) is not in the repository yet")
    missing = _missing_pools(_load_pipeline(path), {KUBERAY / "rayjob.yaml"})
    assert not missing, f"{name} asks for pools the RayJob does not advertise: {missing}"


# --------------------------------------------------------------------------- no secrets


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_no_secret_values_in_deploy_yaml(path):
    text = path.read_text()
    assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", text), f"{path}: looks like a Hugging Face token"
    for doc in _load_docs(path):
        assert doc.get("kind") != "Secret", f"{path}: create Secrets with kubectl, never commit one"

    def walk(node, where):
        if isinstance(node, dict):
            if "name" in node and ("value" in node or "valueFrom" in node) and SECRET_NAME.search(str(node["name"])):
                assert "value" not in node, f"{path} {where}: {node['name']} must come from a Secret (valueFrom)"
                assert "secretKeyRef" in node["valueFrom"], f"{path} {where}: {node['name']} not from a Secret"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for doc in _load_docs(path):
        walk(doc, doc.get("kind", "?"))


# --------------------------------------------------------------------------- CRD schemas


def _validator(kind: str):
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {SCHEMA_DIR} (the shared/ folder beside the repository)")
    return _load_validator(kind)


@functools.cache
def _load_validator(kind: str):
    from jsonschema import Draft7Validator

    schema = json.loads((SCHEMA_DIR / SCHEMA_FILES[kind]).read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(doc["kind"]).iter_errors(doc)]


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_manifests_validate_against_kuberay_crd_schemas(path):
    docs = _ray_docs(path)
    assert docs, f"{path}: no RayCluster or RayJob document"
    for doc in docs:
        errors = _errors(doc)
        assert not errors, f"{path} ({doc['kind']}):\n" + "\n".join(errors)


def _rename(node: dict, old: str, new: str) -> None:
    node[new] = node.pop(old)


# Each mutation breaks the RayCluster spec (in both manifests) in a way the API server rejects.
MUTATIONS = {
    "misspelled headGroupSpec": lambda s: _rename(s, "headGroupSpec", "headGroupSpecc"),
    "worker group without groupName": lambda s: s["workerGroupSpecs"][0].pop("groupName"),
    "replicas not an integer": lambda s: s["workerGroupSpecs"][1].__setitem__("replicas", "two"),
    "rayStartParams value not a string": lambda s: s["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0),
    "misspelled container image key": lambda s: _rename(
        s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0], "image", "imagee"
    ),
    "memory quantity with a space": lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ].__setitem__("memory", "32 Gi"),
    "cpu as a float": lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"][
        "requests"
    ].__setitem__("cpu", 0.5),
    "unknown auth mode": lambda s: s["authOptions"].__setitem__("mode", "password"),
    "toleration as a string": lambda s: s["workerGroupSpecs"][0]["template"]["spec"].__setitem__(
        "tolerations", "nvidia.com/gpu"
    ),
}

JOB_MUTATIONS = {
    "shutdownAfterJobFinishes not a boolean": lambda j: j["spec"].__setitem__("shutdownAfterJobFinishes", "yes"),
    "ttl not an integer": lambda j: j["spec"].__setitem__("ttlSecondsAfterFinished", "10m"),
    "unknown RayJob field": lambda j: j["spec"].__setitem__("shutdownAfterFinish", True),
    "wrong apiVersion": lambda j: j.__setitem__("apiVersion", "ray.io/v1alpha1"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_broken_cluster_spec_fails_validation(path, name):
    for doc in _ray_docs(path):
        broken = copy.deepcopy(doc)
        MUTATIONS[name](_cluster_spec(broken))
        assert _errors(broken), f"{path}: schema accepted a copy with {name}"


@pytest.mark.parametrize("name", sorted(JOB_MUTATIONS))
def test_broken_rayjob_fails_validation(rayjob, name):
    assert not _errors(rayjob)
    broken = copy.deepcopy(rayjob)
    JOB_MUTATIONS[name](broken)
    assert _errors(broken), f"schema accepted a RayJob with {name}"


# --------------------------------------------------------------------------- pipeline <-> manifest


def _load_pipeline(path: Path) -> dict:
    """The pipeline as a plain mapping, includes expanded when the project's loader is there."""
    try:
        from tip_ray.config.loader import load_yaml_tree
    except ImportError:
        with path.open() as f:
            return yaml.safe_load(f) or {}
    return load_yaml_tree(path)


def _asked_pools(pipeline: dict) -> set[str]:
    """Pool resources the pipeline's roles use (all declared pools when no roles are given)."""
    cluster = pipeline.get("cluster") or {}
    declared = cluster.get("pools") or {}
    roles = cluster.get("roles") or {}
    names = set(roles.values()) if roles else set(declared)
    asked = set()
    for name in names:
        assert name in declared, f"roles name pool {name!r}, not declared under cluster.pools"
        asked.add(declared[name]["resource"])
    return asked


def _missing_pools(pipeline: dict, manifest_paths: set[Path]) -> set[str]:
    advertised = set()
    for path in manifest_paths:
        for doc in _ray_docs(path):
            advertised |= pools_in_manifest(doc)
    return _asked_pools(pipeline) - advertised


def _as_pipeline(doc) -> dict | None:
    """The document as {"cluster": {...}} when it pairs a cluster section with a manifest: a
    pipeline (`cluster.manifest`) or a cluster piece under configs/clusters/ (top-level `manifest`)."""
    if not isinstance(doc, dict):
        return None
    cluster = doc.get("cluster")
    if isinstance(cluster, dict) and cluster.get("manifest"):
        return doc
    if doc.get("manifest") and "pools" in doc:
        return {"cluster": doc}
    return None


def _paired_pipelines() -> list:
    found = []
    for folder in ("pipelines", "configs"):
        for path in sorted((REPO / folder).rglob("*.y*ml")):
            try:
                doc = _load_pipeline(path)
            except Exception:  # an unreadable pipeline is the config tests' finding, not this one's
                continue
            if _as_pipeline(doc) is not None:
                found.append(pytest.param(path, id=str(path.relative_to(REPO))))
    return found or [pytest.param(None, id="no-paired-pipeline")]


@pytest.mark.parametrize("path", _paired_pipelines())
def test_paired_pipeline_pools_exist_in_its_manifest(path):
    if path is None:
        pytest.skip("no YAML under pipelines/ or configs/ sets a cluster manifest yet")
    pipeline = _as_pipeline(_load_pipeline(path))
    manifest = REPO / pipeline["cluster"]["manifest"]
    assert manifest.is_file(), f"{path}: cluster.manifest {manifest} does not exist"
    assert _ray_docs(manifest), f"{path}: cluster.manifest {manifest} holds no RayCluster or RayJob"
    missing = _missing_pools(pipeline, {manifest})
    assert not missing, f"{path} asks for pools {sorted(missing)} that {manifest.name} does not advertise"


def test_pairing_check_catches_a_missing_pool():
    """The check above can fail: a pipeline asking for a pool the manifest lacks is reported."""
    pipeline = {
        "cluster": {
            "pools": {"teacher": {"resource": "teacher_pool"}, "reward": {"resource": "reward_pool"}},
            "roles": {"rollout": "teacher", "teacher": "reward"},
            "manifest": "deploy/kuberay/rayjob.yaml",
        }
    }
    assert _missing_pools(pipeline, {KUBERAY / "rayjob.yaml"}) == {"reward_pool"}
    pipeline["cluster"]["roles"] = {"rollout": "teacher"}
    assert _missing_pools(pipeline, {KUBERAY / "rayjob.yaml"}) == set()
