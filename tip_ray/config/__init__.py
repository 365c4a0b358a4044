"""Pipeline configuration: pydantic schema and the YAML loader (no torch, no ray)."""

from tip_ray.config.loader import ConfigError, load_pipeline, load_yaml_tree, parse_override
from tip_ray.config.pipeline import PipelineConfig

__all__ = ["ConfigError", "PipelineConfig", "load_pipeline", "load_yaml_tree", "parse_override"]
