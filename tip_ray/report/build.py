"""From a folder to the report's HTML text."""

from __future__ import annotations

from pathlib import Path

from tip_ray.report.page import run_page, sweep_page
from tip_ray.report.plots import run_plots
from tip_ray.report.reading import SweepData, read_folder

REPORT_FILE = "report.html"


def build_report(folder: str | Path) -> str:
    data = read_folder(folder)
    if isinstance(data, SweepData):
        from tip_ray.report.sweep_view import sweep_plots, sweep_tables

        return sweep_page(data, sweep_tables(data), sweep_plots(data))
    return run_page(data, run_plots(data))


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default: <folder>/report.html) and return its path."""
    html = build_report(folder)
    target = Path(out) if out is not None else Path(folder) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
