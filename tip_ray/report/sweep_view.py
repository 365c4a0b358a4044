"""A sweep folder's comparison for the HTML report, made by the sweep report's own functions
(tip_ray.sweep.report): the same tables and the same accuracy-vs-tokens plot as its README."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tip_ray.report.plots import Plot
from tip_ray.report.reading import SweepData


def markdown_rows(lines: list[str]) -> list[list[str]]:
    """The cells of a Markdown table's rows (header first), without the |---| rule."""
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and all(set(cell) <= set("-: ") for cell in cells):
            continue
        rows.append(cells)
    return rows


def sweep_tables(sweep: SweepData) -> list[tuple[str, list[list[str]]]]:
    """(caption, rows) of the sweep report's tables."""
    from tip_ray.sweep.report import group, paired_table, table

    groups = group(sweep.records, sweep.order)
    tables = [("Every variant: mean over seeds", markdown_rows(table(groups)))]
    paired = paired_table(groups, sweep.order[0], None) if sweep.order else []
    if paired:
        tables.append((f"Paired by seed against {sweep.order[0]} (the first variant)", markdown_rows(paired)))
    return tables


def sweep_plots(sweep: SweepData) -> list[Plot]:
    from tip_ray.sweep.report import group, plot_accuracy_vs_tokens

    title = "Accuracy against tokens trained"
    plots = []
    if any(r.final_accuracy is not None for r in sweep.records):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "accuracy_vs_tokens.svg"  # the suffix picks the format
            plot_accuracy_vs_tokens(group(sweep.records, sweep.order), out)
            plots.append(Plot(title, out.read_bytes(), wide=True))
    else:
        plots.append(Plot(title, None, "no data: no run in results.jsonl has a final accuracy"))
    return plots
