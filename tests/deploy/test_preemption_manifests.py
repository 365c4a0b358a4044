"""The KubeRay manifests agree with how a run stops on SIGTERM (docs/reliability.md): every pod
outlives the driver's checkpoint-on-SIGTERM budget, and `ray job stop` gives the driver that
budget too (Ray's own default is 3 s)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tip_ray.config.preemption import SigtermCheckpoint
from tip_ray.pipeline.signals import SHUTDOWN_MARGIN_S

KUBERAY = Path(__file__).resolve().parents[2] / "deploy" / "kuberay"
GRACE_S = SigtermCheckpoint().grace_s


def cluster_specs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return [d["spec"] if d["kind"] == "RayCluster" else d["spec"]["rayClusterSpec"]
            for d in docs if d.get("kind") in ("RayCluster", "RayJob")]


@pytest.mark.parametrize("path", sorted(KUBERAY.glob("*.yaml")), ids=lambda p: p.name)
def test_pods_outlive_the_sigterm_checkpoint(path):
    specs = cluster_specs(path)
    assert specs, path
    for spec in specs:
        head = spec["headGroupSpec"]["template"]["spec"]
        pods = [head] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            assert pod.get("terminationGracePeriodSeconds", 30) >= GRACE_S + SHUTDOWN_MARGIN_S, path
        env = {e["name"]: e.get("value") for e in head["containers"][0].get("env", [])}
        assert float(env.get("RAY_JOB_STOP_WAIT_TIME_S", 3)) >= GRACE_S, path
