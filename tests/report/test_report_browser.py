"""The report in a real headless browser (Debian's chromium): it loads from file:// with no
console message, the browser's own DOM holds no script, and every plot card of the screenshot
is drawn (not blank). Skips, saying why, where no chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.report.run_folders import write_run
from tip_ray.report.build import write_report
from tip_ray.report.page import CARD_BORDER

BROWSER = shutil.which("chromium") or shutil.which("chromium-headless-shell")
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser: install Debian's chromium (apt-get install chromium) to run this check")
WIDTH, HEIGHT = 1400, 3400
HOSTILE_NAME = '<script>console.error("injected")</script>'


def browse(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """(stdout, console lines) of one headless load of `page`; without --screenshot the DOM is
    dumped (either makes the browser quit once the page has loaded)."""
    action = extra if any(a.startswith("--screenshot") for a in extra) else (*extra, "--dump-dom")
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *action, page.resolve().as_uri()]
    # Its own process group: on a timeout the browser's helper processes go too.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-2000:]
    # Chromium logs every console message (errors, CSP violations, failed loads) as INFO:CONSOLE.
    return stdout, [line for line in stderr.splitlines() if ":CONSOLE" in line]


def screenshot(page: Path, profile: Path, out: Path) -> np.ndarray:
    browse(page, profile, "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={out}")
    return np.asarray(Image.open(out).convert("RGB")).astype(np.int16)


def plot_cards(pixels: np.ndarray, min_width: int = 300) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each plot card, found by its 1-pixel border colour."""
    colour = np.array([int(CARD_BORDER[i:i + 2], 16) for i in (1, 3, 5)])
    border = (pixels == colour).all(axis=2)
    steps = np.diff(np.pad(border, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, ends = np.nonzero(steps == 1), np.nonzero(steps == -1)  # row-major: runs pair up in order
    edges: dict[tuple[int, int], list[int]] = {}
    for y, left, right in zip(starts[0], starts[1], ends[1]):
        if right - left >= min_width:
            edges.setdefault((int(left), int(right)), []).append(int(y))
    cards = []
    for (left, right), ys in edges.items():
        for top, bottom in zip(ys[0::2], ys[1::2]):  # top and bottom edges alternate
            cards.append((top, bottom, left, right))
    return sorted(cards)


def drawn(pixels: np.ndarray, card: tuple[int, int, int, int]) -> bool:
    """A plot is drawn when its card holds coloured pixels (lines, areas), not only text."""
    top, bottom, left, right = card
    inside = pixels[top + 1:bottom, left + 1:right]
    coloured = (inside.max(axis=2) - inside.min(axis=2)) > 60
    return int(coloured.sum()) > 300


def test_console_messages_are_seen(tmp_path):
    """The check below can fail: a page that logs an error is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>')
    _, console = browse(page, tmp_path / "profile")
    assert any('"boom"' in line for line in console), console


def test_report_loads_cleanly_and_every_plot_is_drawn(tmp_path):
    run = write_run(tmp_path / "run", name=HOSTILE_NAME)
    page = write_report(run)
    dom, console = browse(page, tmp_path / "profile")
    assert console == []
    assert "<script" not in dom and "&lt;script&gt;" in dom and dom.count("<img") == 9
    pixels = screenshot(page, tmp_path / "profile", tmp_path / "report.png")
    cards = plot_cards(pixels)
    assert len(cards) == 9, cards
    blank = [card for card in cards if not drawn(pixels, card)]
    assert blank == [], f"blank plot cards at {blank} in {tmp_path / 'report.png'}"


def test_a_plot_without_data_is_seen_as_not_drawn(tmp_path):
    """The blank check can fail: a run with the loss only has one drawn card of nine."""
    run = tmp_path / "old"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\n{"step": 2, "loss": 1.2}\n')
    pixels = screenshot(write_report(run), tmp_path / "profile", tmp_path / "old.png")
    cards = plot_cards(pixels)
    assert len(cards) == 9 and sum(drawn(pixels, card) for card in cards) == 1
