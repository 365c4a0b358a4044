"""Experiment trackers (Weights & Biases, MLflow) fed with the run's per-step metrics.

A tracker is a convenience, never a reason for a run to fail or stall: each one runs in its own
thread (its start, every log call and its end), so an unreachable server or a slow upload never
holds the step loop up; a tracker that is not installed, cannot start or fails later is
reported once as a warning and dropped, and the run goes on.

Each tracker's run id is kept in <run_dir>/tracking.json, so a resumed run continues the same
tracker run instead of opening a new one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import queue
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from tip_ray.checkpoint.redact import redact
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.tracking import MlflowConfig, WandbConfig

log = logging.getLogger("tip_ray")

IDS_FILE = "tracking.json"
CREDENTIALS_IN_URI = re.compile(r"//[^/@\s]+:[^/@\s]+@")  # scheme://user:password@host
PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}  # tracker -> (module, extra)
PROBE_TIMEOUT_S = 5.0
_STOP = object()


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (bools, text, lists and NaN are not tracked)."""
    return {key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def without_password(uri: str) -> str:
    """A URI fit for a log line: user:password@ removed."""
    return CREDENTIALS_IN_URI.sub("//", uri)


def probe_server(uri: str) -> None:
    """Fail fast on an http(s) server nobody answers at (a client would retry for minutes)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {without_password(uri)} ({exc})") from None


class TrackerThread:
    """One tracker in its own thread, which opens the tracker's run, logs the rows `log()` queues
    and ends the run at `close()`. A failure is logged once (secrets masked) and the tracker
    stops taking rows."""

    def __init__(self, name: str, open_run: Callable[[], Any], log_row: Callable[[Any, dict[str, Any]], None],
                 finish: Callable[[Any], None]):
        self.name = name
        self._open_run, self._log_row, self._finish = open_run, log_row, finish
        self._queue: queue.Queue = queue.Queue()
        self.failed: str | None = None
        self.rows_logged = 0
        self._thread = threading.Thread(target=self._work, name=f"tracker-{name}", daemon=True)
        self._thread.start()

    def _fail(self, stage: str, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        message = f"logging.tracking.{self.name}: {stage} failed ({self.failed}); the run goes on without {self.name}"
        log.warning("%s", redact(CREDENTIALS_IN_URI.sub("//", message)))

    def _work(self) -> None:
        try:
            run = self._open_run()
        except BaseException as exc:  # noqa: BLE001 - whatever the tracker raises, the run goes on
            self._fail("start", exc)
            self._drain()
            return
        stopped = False
        while True:
            row = self._queue.get()
            if row is _STOP:
                stopped = True
                break
            try:
                self._log_row(run, row)
                self.rows_logged += 1
            except BaseException as exc:  # noqa: BLE001
                self._fail("logging", exc)
                break
        try:
            self._finish(run)
        except BaseException as exc:  # noqa: BLE001
            self._fail("closing", exc)
        if not stopped:
            self._drain()

    def _drain(self) -> None:
        """Rows queued after a failure are dropped, up to the stop marker."""
        while self._queue.get() is not _STOP:
            pass

    def log(self, row: dict[str, Any]) -> None:
        if self.failed is None:
            self._queue.put(row)

    def close(self, timeout_s: float) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("logging.tracking.%s: still sending after %.0f s (logging.tracking.close_timeout_s); "
                        "the run ends without waiting for it", self.name, timeout_s)


def _saved_ids(run_dir: Path) -> dict[str, str]:
    try:
        return json.loads((run_dir / IDS_FILE).read_text())
    except (OSError, ValueError):
        return {}


_IDS_LOCK = threading.Lock()  # the trackers' threads share the file


def _save_id(run_dir: Path, tracker: str, run_id: str) -> None:
    with _IDS_LOCK:
        ids = _saved_ids(run_dir)
        ids[tracker] = run_id
        (run_dir / IDS_FILE).write_text(json.dumps(ids, indent=1) + "\n")


def wandb_tracker(cfg: WandbConfig, config: PipelineConfig, run_dir: Path) -> TrackerThread:
    def open_run():
        import wandb  # pip install 'tip-ray[wandb]'

        run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, name=cfg.name or config.name,
                         tags=cfg.tags or None, dir=str(run_dir), id=_saved_ids(run_dir).get("wandb"),
                         resume="allow", config=config.model_dump(mode="json"), reinit="create_new",
                         # No console capture: the run's own log and progress bar stay as they are.
                         settings=wandb.Settings(console="off", quiet=True))
        _save_id(run_dir, "wandb", run.id)
        return run

    def log_row(run, row):
        run.log(scalars(row), step=int(row.get("step", 0)))

    return TrackerThread("wandb", open_run, log_row, lambda run: run.finish())


MLFLOW_KEY = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a metric name


def mlflow_tracker(cfg: MlflowConfig, config: PipelineConfig, run_dir: Path) -> TrackerThread:
    def open_run():
        from mlflow.tracking import MlflowClient  # pip install 'tip-ray[mlflow]'

        probe_server(cfg.tracking_uri)
        client = MlflowClient(tracking_uri=cfg.tracking_uri)
        run_id = _saved_ids(run_dir).get("mlflow")
        if run_id is None:
            experiment = client.get_experiment_by_name(cfg.experiment)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.experiment)
            run_id = client.create_run(experiment_id, run_name=cfg.run_name or config.name).info.run_id
            _save_id(run_dir, "mlflow", run_id)
            resolved = run_dir / "config.resolved.yaml"
            if resolved.is_file():
                client.log_artifact(run_id, str(resolved))
        else:
            client.update_run(run_id, status="RUNNING")
        return client, run_id

    def log_row(handle, row):
        from mlflow.entities import Metric

        client, run_id = handle
        step, now_ms = int(row.get("step", 0)), int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(MLFLOW_KEY.sub("_", key), value, now_ms, step)
                                          for key, value in scalars(row).items()])

    def finish(handle):
        client, run_id = handle
        client.set_terminated(run_id)

    return TrackerThread("mlflow", open_run, log_row, finish)


def open_trackers(config: PipelineConfig, run_dir: Path) -> list[TrackerThread]:
    """The configured trackers, each starting in its own thread (none when none is configured)."""
    tracking = config.logging.tracking
    wanted = {"wandb": (tracking.wandb, wandb_tracker), "mlflow": (tracking.mlflow, mlflow_tracker)}
    trackers = []
    for name, (cfg, make) in wanted.items():
        if cfg is None:
            continue
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            log.warning("logging.tracking.%s is configured but the %s package is not installed "
                        "(pip install 'tip-ray[%s]'); the run goes on without it", name, module, extra)
            continue
        trackers.append(make(cfg, config, run_dir))
    return trackers
