"""Experiment trackers: a real offline W&B run and a real MLflow file store receive every row;
an unreachable or missing tracker costs a warning, never the run."""

from __future__ import annotations

import glob
import logging
import socket
import struct
import time

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tests.report.run_folders import metrics_rows
from tip_ray.config import ConfigError, load_pipeline
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline import trackers
from tip_ray.pipeline.metrics import MetricsLog

ROWS = metrics_rows(6)


def tracked_config(tiny_pair, demo_prompts, run_dir, tracking: dict) -> PipelineConfig:
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir)
    doc["logging"] = {**doc["logging"], "tracking": tracking}
    return PipelineConfig.model_validate(doc)


def log_rows(config: PipelineConfig, run_dir) -> list:
    run_dir.mkdir(parents=True, exist_ok=True)
    opened = trackers.open_trackers(config, run_dir)
    metrics = MetricsLog(run_dir, trackers=opened, tracker_timeout_s=300)
    for row in ROWS:
        metrics.write(row)
    metrics.close()
    return opened


def expected_losses() -> dict[int, float]:
    return {row["step"]: row["loss"] for row in ROWS if row["loss"] == row["loss"]}  # the NaN is not sent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wandb_history(path: str) -> list[dict[str, float]]:
    """The history rows of an offline W&B run file (its LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, index, pending, rows = 32768, 7, b"", []
    while index < len(data):
        left = block - index % block
        if left < 7:
            index += left
            continue
        _, length, kind = struct.unpack("<IHB", data[index:index + 7])
        if length == 0 and kind == 0:  # the block's zero padding
            index += left
            continue
        pending += data[index + 7:index + 7 + length]
        index += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({"/".join(item.nested_key) or item.key: float(item.value_json)
                             for item in record.history.item if item.value_json not in ("null", "NaN")})
    return rows


def test_an_offline_wandb_run_receives_every_row(tiny_pair, demo_prompts, tmp_path):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install -e '.[wandb]')")
    run_dir = tmp_path / "run"
    config = tracked_config(tiny_pair, demo_prompts, run_dir, {"wandb": {"project": "tip-ray-test", "mode": "offline"}})
    [tracker] = log_rows(config, run_dir)
    assert tracker.failed is None and tracker.rows_logged == len(ROWS)
    # W&B's own service process writes the file; on a loaded machine its last records can land
    # a moment after finish() returns, so read until they are there (bounded).
    deadline, losses = time.monotonic() + 120, {}
    while True:
        paths = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
        if len(paths) == 1:
            losses = {int(row["step"]): row["loss"] for row in wandb_history(paths[0]) if "loss" in row}
        if losses == expected_losses() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(paths) == 1, paths
    assert losses == expected_losses()
    assert (run_dir / "tracking.json").is_file()


def test_an_mlflow_file_store_receives_every_row(tiny_pair, demo_prompts, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install -e '.[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's opt-in for a plain folder store
    store, run_dir = tmp_path / "mlruns", tmp_path / "run"
    config = tracked_config(tiny_pair, demo_prompts, run_dir,
                            {"mlflow": {"tracking_uri": str(store), "experiment": "tip-ray-test"}})
    [tracker] = log_rows(config, run_dir)
    assert tracker.failed is None and tracker.rows_logged == len(ROWS)
    client = MlflowClient(tracking_uri=str(store))
    run_id = trackers._saved_ids(run_dir)["mlflow"]
    history = client.get_metric_history(run_id, "loss")
    assert {m.step: m.value for m in history} == expected_losses()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_experiment_by_name("tip-ray-test").experiment_id == client.get_run(run_id).info.experiment_id
    # A resumed run (same folder) continues the same MLflow run.
    [again] = trackers.open_trackers(config, run_dir)
    again.log({**ROWS[-1], "step": 7, "loss": 0.125})
    again.close(300)
    assert again.failed is None and trackers._saved_ids(run_dir)["mlflow"] == run_id
    assert {m.step: m.value for m in client.get_metric_history(run_id, "loss")} == {**expected_losses(), 7: 0.125}
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_a_tracker_that_is_not_installed_is_a_warning(tiny_pair, demo_prompts, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(trackers.PACKAGES, "wandb", ("tip_ray_no_such_package", "wandb"))
    config = tracked_config(tiny_pair, demo_prompts, tmp_path / "run", {"wandb": {"project": "p"}})
    with caplog.at_level(logging.WARNING, logger="tip_ray"):
        assert trackers.open_trackers(config, tmp_path) == []
    assert "logging.tracking.wandb is configured but the tip_ray_no_such_package package is not installed" in caplog.text


def test_tracking_keys_are_checked(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    doc["logging"]["tracking"] = {"mlflow": {"tracking_uri": "x", "experimnt": "e"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="logging.tracking.mlflow.experimnt"):
        load_pipeline(tmp_path / "p.yaml")


@pytest.mark.slow  # a whole Ray run; the fast tests above cover the warning path
def test_an_unreachable_mlflow_server_does_not_stop_the_run(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.pipeline.supervisor import run_pipeline

    uri = f"http://tracker:hunter2-secret@127.0.0.1:{closed_port()}"
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run", train={"steps": 2, "seed": 0, "stage_timeout_s": 120})
    doc["logging"]["tracking"] = {"mlflow": {"tracking_uri": uri}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    summary = run_pipeline(load_pipeline(tmp_path / "p.yaml"))
    assert summary.steps == 2 and len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    run_log = (tmp_path / "run" / "run.log").read_text()
    assert "logging.tracking.mlflow" in run_log and "the run goes on without" in run_log
    assert "hunter2-secret" not in run_log
    # The report reads this real run folder: every plot but the evaluation (none was configured).
    from tip_ray.report.build import build_report

    html = build_report(tmp_path / "run")
    assert html.count("<img") == 8 and html.count("no data:") == 1
    assert "no data: evals.jsonl has no evaluations with an &#x27;accuracy&#x27;" in html
