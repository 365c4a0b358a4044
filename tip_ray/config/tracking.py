"""Experiment trackers beside TensorBoard: Weights & Biases and MLflow, each off unless its
section is present under `logging.tracking`. Credentials stay in the environment
(WANDB_API_KEY, MLFLOW_TRACKING_TOKEN / _PASSWORD): no field here holds one.

    logging:
      tracking:
        wandb: {project: tip-ray, mode: offline}
        mlflow: {tracking_uri: http://mlflow.internal:5000, experiment: tip-ray}

This module imports neither torch nor ray.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tip_ray.config.base import Strict as _Strict


class WandbConfig(_Strict):
    project: str = Field(description="W&B project the run is logged to.")
    entity: str | None = Field(default=None, description="W&B team or user (default: the key's own).")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        default=None, description="online, offline (files under <run_dir>/wandb, `wandb sync` later) or "
        "disabled; default: WANDB_MODE, else online.")
    name: str | None = Field(default=None, description="Display name (default: the run's name).")
    tags: list[str] = Field(default_factory=list, description="Tags of the W&B run.")


class MlflowConfig(_Strict):
    tracking_uri: str = Field(description="MLflow tracking URI: http(s)://host:port, or a local folder "
                              "(file store), relative to the working directory.")
    experiment: str = Field(default="tip-ray", description="Experiment name (created if missing).")
    run_name: str | None = Field(default=None, description="Run name (default: the run's name).")


class TrackingConfig(_Strict):
    wandb: WandbConfig | None = Field(default=None, description="Weights & Biases (pip install 'tip-ray[wandb]').")
    mlflow: MlflowConfig | None = Field(default=None, description="MLflow (pip install 'tip-ray[mlflow]').")
    close_timeout_s: float = Field(
        default=60.0, gt=0.0, description="How long the run's end waits for a tracker to flush before "
        "going on without it.")


class LoggingConfig(_Strict):
    run_dir: str = Field(default="runs/{name}", description="Run folder; {name} is the run name.")
    tensorboard: bool = Field(default=False, description="Also write TensorBoard scalars.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Weights & Biases / MLflow, off unless configured.")
    progress: bool = Field(default=True, description="Show a progress bar.")
