"""Where the project's own pipelines/ and configs/ are, installed or not.

A wheel carries them inside the package (tip_ray/_shipped/, written by setup.py's build step);
a source checkout (an editable install, or tip_ray on sys.path) has them beside the package.
Nothing else is read relative to the package: runs go under the working directory.
"""

from __future__ import annotations

from pathlib import Path

from tip_ray.config.yaml_read import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the tip_ray folder
INSTALLED_ROOT = PACKAGE_DIR / "_shipped"
PIPELINE_SUFFIXES = (".yaml", ".yml")


def shipped_root() -> Path:
    """The folder holding the shipped pipelines/ and configs/."""
    if INSTALLED_ROOT.is_dir():
        return INSTALLED_ROOT
    return PACKAGE_DIR.parent


def shipped_configs() -> Path:
    """The shipped configs/ folder: pieces any pipeline may include as ``configs/<piece>.yaml``."""
    return shipped_root() / "configs"


def shipped_pipelines() -> list[str]:
    """Names of the shipped pipelines, relative to pipelines/ without the suffix (e.g. ``demo``)."""
    folder = shipped_root() / "pipelines"
    return sorted(
        str(path.relative_to(folder).with_suffix(""))
        for path in folder.rglob("*")
        if path.suffix in PIPELINE_SUFFIXES and path.is_file()
    )


def locate_pipeline(given: str) -> Path:
    """A pipeline file: ``given`` itself when it exists (relative to the working directory), else
    the shipped pipeline of that name (``demo``, ``demo.yaml`` or ``pipelines/demo.yaml``)."""
    path = Path(given).expanduser()
    if path.exists():
        return path  # a folder or an unreadable file: the loader says which
    if not path.is_absolute():
        root = shipped_root()
        for candidate in (root / path, root / "pipelines" / path,
                          *(root / "pipelines" / f"{given}{suffix}" for suffix in PIPELINE_SUFFIXES)):
            if candidate.suffix in PIPELINE_SUFFIXES and candidate.is_file():
                return candidate
    raise ConfigError(
        f"{path}: file not found (in {Path.cwd()}), nor a shipped pipeline of that name; give a YAML "
        f"file's path or the name of a shipped pipeline: {', '.join(shipped_pipelines()) or 'none shipped'}"
    )
