"""A simulated two-pool cluster: a head with no CPUs for work, one node advertising the teacher
pool and one the student pool. A pipeline mapped to the pools runs a few steps as a submitted
job, and Ray's state API shows each stage's actors on its own pool's node only."""

from __future__ import annotations

import pytest

from tests.pipeline_doc import tiny_pipeline_doc
from tests.jobs.conftest import REPO, client_env, run_cli
from tests.jobs.ray_processes import LocalRayCluster
from tip_ray.pools import NODE_POOL_CAPACITY, STUDENT_POOL, TEACHER_POOL

pytestmark = pytest.mark.cluster

EXPECTED_POOL = {
    "TeacherScorer": TEACHER_POOL,
    "Selector": TEACHER_POOL,
    "RolloutWorker": STUDENT_POOL,
    "LearnerRank": STUDENT_POOL,
}


@pytest.fixture(scope="module")
def two_pool_cluster():
    cluster = LocalRayCluster.start(head_cpus=0)
    try:
        cluster.add_worker("teacher", cpus=1, resources={TEACHER_POOL: NODE_POOL_CAPACITY})
        cluster.add_worker("student", cpus=1, resources={STUDENT_POOL: NODE_POOL_CAPACITY})
        yield cluster
    finally:
        cluster.stop()


def pools_by_node(cluster) -> dict[str, set[str]]:
    from ray.util.state import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    client = StateApiClient(address=cluster.dashboard_url, headers=cluster.auth_headers())
    nodes = client.list(StateResource.NODES, options=ListApiOptions(detail=True), raise_on_missing_output=True)
    return {node.node_id: {r for r in node.resources_total if r in EXPECTED_POOL.values()} for node in nodes}


def actors_of_run(cluster, submission_id: str):
    """The stage actors that the submitted run's driver created, with the node each ran on."""
    from ray.util.state import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    ray_job_id = cluster.get(f"/api/jobs/{submission_id}").json()["job_id"]
    client = StateApiClient(address=cluster.dashboard_url, headers=cluster.auth_headers())
    actors = client.list(StateResource.ACTORS, options=ListApiOptions(detail=True, limit=1000),
                         raise_on_missing_output=True)
    return [a for a in actors if a.class_name in EXPECTED_POOL and a.job_id == ray_job_id]


def test_stages_run_only_on_their_pools(two_pool_cluster, tiny_pair, demo_prompts, shipped_pipeline,
                                        client_home, tmp_path):
    pools = {
        "teacher": {"resource": TEACHER_POOL, "gpus_per_actor": 0, "cpus_per_actor": 0},
        "student": {"resource": STUDENT_POOL, "gpus_per_actor": 0, "cpus_per_actor": 0},
    }
    doc = tiny_pipeline_doc(
        tiny_pair, demo_prompts, tmp_path / "run",
        cluster={"address": "auto", "pools": pools},
        train={"steps": 2, "seed": 0, "stage_timeout_s": 120},
    )
    yaml_path = shipped_pipeline(doc)
    result = run_cli(
        ["submit", yaml_path.relative_to(REPO).as_posix(), "--address", two_pool_cluster.dashboard_url,
         "--token-file", str(two_pool_cluster.token_file), "--follow"],
        client_env(client_home),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "run 'tiny' finished: 2 steps" in result.stdout

    # Each node unpacked the job's project into its own temp dir: none removed another's files
    # (a shared runtime_resources folder made the driver's imports fail at random).
    unpacked = {path.relative_to(two_pool_cluster.temp_dir).parts[0] for path in
                two_pool_cluster.temp_dir.glob("*/session_*/runtime_resources/working_dir_files/_ray_pkg_*")}
    assert unpacked == {"head", "teacher", "student"}, unpacked

    node_pools = pools_by_node(two_pool_cluster)
    assert sorted(map(sorted, node_pools.values())) == [[], [STUDENT_POOL], [TEACHER_POOL]]
    actors = actors_of_run(two_pool_cluster, result.job_id)
    assert {a.class_name for a in actors} == set(EXPECTED_POOL), [a.class_name for a in actors]
    for actor in actors:
        assert node_pools[actor.node_id] == {EXPECTED_POOL[actor.class_name]}, (
            f"{actor.class_name} ran on a node with pools {node_pools[actor.node_id] or 'none'}"
        )
