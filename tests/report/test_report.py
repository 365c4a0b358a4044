"""`tip-ray report`: a run or sweep folder as one self-contained HTML page."""

from __future__ import annotations

import math
import re
import shutil
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.report.run_folders import SKIPPED_STEP, STEPS, metrics_rows, write_run
from tip_ray.cli import main
from tip_ray.report.build import build_report
from tip_ray.report.plots import stage_seconds
from tip_ray.report.reading import ReportError, read_folder

REPO = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """Tags, image sources, figure captions, and the text of the page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def summary_value(html: str, label: str) -> str:
    match = re.search(rf"<td>{re.escape(label)}</td><td>([^<]*)</td>", html)
    assert match, f"no summary row {label!r}"
    return match.group(1)


def test_a_complete_run_gets_every_plot_and_its_numbers(tmp_path):
    folder = write_run(tmp_path / "run")
    html = build_report(folder)
    page = Page(html)
    assert len(page.images) == 9 and "no data" not in html
    assert all(src.startswith("data:image/svg+xml;base64,") for src in page.images)
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", html) and "script" not in page.tags
    rows = metrics_rows()
    trained = sum(r["selected_tokens"] for r in rows if not r["skipped"])
    sampled = sum(r["response_tokens"] for r in rows)
    assert summary_value(html, "tokens trained / sampled") == f"{trained:,} / {sampled:,} ({trained / sampled:.0%})"
    assert summary_value(html, "steps logged") == f"{STEPS} (last step {STEPS})"
    assert summary_value(html, "actor restarts") == "1" and summary_value(html, "skipped steps") == "1"
    # Last evaluation: correct fractions 1, .5, 1, .5 -> mean .75, stderr sqrt(var/n) in float64.
    values = [1.0, 0.5, 1.0, 0.5]
    stderr = statistics.stdev(values) / math.sqrt(len(values))
    assert summary_value(html, "last evaluation (step 12, demo)") == f"0.750 ± {stderr:.3f}"
    assert "train:\n  steps: 12" in page.all_text  # the resolved config, as written


def test_stage_seconds_come_from_the_logged_rates():
    rows = metrics_rows()
    stages = stage_seconds(rows)
    for stage in ("rollout", "teacher", "selector"):
        xs, ys = stages[stage]
        expected = [float(r["response_tokens"]) / float(r[f"{stage}_tokens_per_s"]) for r in rows]
        assert xs == [float(r["step"]) for r in rows]
        assert all(abs(a - b) <= 1e-9 * b for a, b in zip(ys, expected))
    assert stages["learner"][1] == [r["learner_seconds"] for r in rows]
    # The skipped step's NaN loss is left out of the loss series, not plotted as a gap-filler.
    assert math.isnan(rows[SKIPPED_STEP - 1]["loss"])


def test_an_old_or_partial_run_still_gets_a_report(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    # An older tip-ray's columns only, and a last line cut off by a kill.
    (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\n{"step": 2, "loss": 1.2}\n{"step": 3, "lo')
    html = build_report(folder)
    page = Page(html)
    assert len(page.images) == 1  # the loss
    assert "no data: metrics.jsonl has no &#x27;quadrant_share_q1..q4&#x27; columns" in html
    assert "no data: evals.jsonl is missing" not in html  # said once, in the notes
    assert "evals.jsonl is missing" in page.all_text and "config.resolved.yaml is missing" in page.all_text
    assert "metrics.jsonl: 1 line(s) that are not a JSON object were skipped (line 3)" in page.all_text


def test_run_text_is_escaped_and_secrets_masked(tmp_path, monkeypatch):
    secret = "hf_Secret123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    name = '</title><script>alert("x")</script>'
    folder = write_run(tmp_path / "run", name=name, config_extra={"note": f"token {secret}"})
    with (folder / "evals.jsonl").open("a") as handle:
        handle.write(f'{{"step": 13, "benchmark": "demo", "error": "timed out at {secret} <img src=x>"}}\n')
    html = build_report(folder)
    page = Page(html)
    assert secret not in html and "***" in page.all_text
    assert "script" not in page.tags and page.tags.count("title") == 1 and page.tags.count("img") == 9
    assert f"tip-ray run: {name}" in page.all_text  # shown, as text
    assert "default-src 'none'" in html  # and a policy that would block any script anyway


def test_a_sweep_folder_gets_the_sweep_comparison(tmp_path):
    source = REPO / "docs" / "sweeps" / "demo_rules"
    folder = tmp_path / "sweep"
    folder.mkdir()
    for name in ("results.jsonl", "token_map.png", "README.md"):
        shutil.copy(source / name, folder / name)
    html = build_report(folder)
    page = Page(html)
    assert [src.split(";")[0] for src in page.images] == ["data:image/svg+xml", "data:image/png"]
    records = [r for r in read_folder(folder).records]
    by_label: dict[str, list[float]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r.final_accuracy)
    for label, accs in by_label.items():
        mean, sd = statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        assert f"<td>{label}</td><td>{len(accs)}</td><td>—</td><td>{mean:.3f} ± {sd:.3f}</td>" in html


def test_cli_writes_the_file_and_refuses_a_folder_without_a_run(tmp_path, capsys):
    folder = write_run(tmp_path / "run")
    out = tmp_path / "out" / "r.html"
    assert main(["report", str(folder), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    small = tmp_path / "small"  # the default output place (a one-plot run: quick to draw)
    small.mkdir()
    (small / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\n')
    assert main(["report", str(small)]) == 0 and (small / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tip-ray: error: report: ") and "holds none of metrics.jsonl" in err
    with pytest.raises(ReportError, match="is not a folder"):
        read_folder(tmp_path / "nowhere")
    with pytest.raises(ReportError, match=r"holds run folders \(run, small\): give one of them"):
        read_folder(tmp_path)
