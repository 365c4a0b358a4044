"""Build hook: a wheel carries the project's pipelines/ and configs/ inside the package
(tip_ray/_shipped/), so that an installed tip-ray finds its shipped pipelines and their includes
from any working directory (tip_ray.shipped). Everything else is declared in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROJECT = Path(__file__).resolve().parent
SHIPPED_FOLDERS = ("pipelines", "configs")
YAML_SUFFIXES = (".yaml", ".yml")


class BuildPyWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout itself
        target = Path(self.build_lib) / "tip_ray" / "_shipped"
        for name in SHIPPED_FOLDERS:
            for source in sorted((PROJECT / name).rglob("*")):
                if source.is_file() and source.suffix in YAML_SUFFIXES:
                    destination = target / source.relative_to(PROJECT)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, destination)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
