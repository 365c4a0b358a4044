"""Weight broadcast (rollout.weight_sync: broadcast) through a whole run: bit-identical to the
object-store sync, and a rollout worker restarted by Ray rejoins a group formed again."""

from __future__ import annotations

import pytest
import ray

from tests.conftest import live_actor
from tests.reliability.conftest import comparable, read_rows, reliability_doc, write_pipeline


@pytest.mark.timeout(900)
def test_broadcast_run_equals_the_object_store_run_and_survives_a_rollout_restart(
        reference_run, tiny_pair, demo_prompts, tmp_path, caplog):
    """The reliability reference run (8 steps, policy lag 1, object-store sync) again with
    broadcast: bit-identical metrics, the rollout worker loads no state dict while its group
    holds, and after Ray restarts it the group is formed again and the run still matches."""
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    _, reference_rows = reference_run
    run_dir = tmp_path / "run"
    config = load_pipeline(write_pipeline(tmp_path, reliability_doc(
        tiny_pair, demo_prompts, run_dir, name="bcast",
        rollout={"weight_sync": "broadcast"}, train={"max_actor_restarts": 1})))
    counts_before_kill: list[dict] = []

    def inject(row: dict) -> None:
        if row["step"] == 3:
            rollout = live_actor("tip-ray/bcast/", "rollout-0")
            counts_before_kill.append(ray.get(rollout.sync_counts.remote()))
            ray.kill(rollout, no_restart=False)

    caplog.set_level("INFO", logger="tip_ray")
    summary = run_pipeline(config, on_step=inject)
    rows = read_rows(run_dir)
    assert comparable(rows) == comparable(reference_rows)
    assert all(r["weight_sync"] == "broadcast" and r["weight_sync_seconds"] > 0 for r in rows)
    # Versions 1..3 were broadcast (published after steps 0..2); batches 0..4 needed 0..3.
    assert counts_before_kill == [{"loads": 0, "broadcasts": 3}]
    assert summary.actor_restarts == 1
    assert "weight broadcast group formed again" in caplog.text
