"""Replace one `## ` section of a Markdown file (docs/benchmarks.md), or append it when absent;
write a benchmark's figures and its section together."""

from __future__ import annotations

import json
from pathlib import Path


def write_section(doc: Path, title: str, body: str) -> None:
    """`body` starts with the `title` line; the section runs up to the next `## ` heading."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start = text.find(title + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        following = text.find("\n## ", start + len(title))
        rest = text[following + 1:] if following >= 0 else ""
        text = text[:start] + body.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def write_figures(results: Path, figures, doc: Path, title: str, body: str) -> None:
    """A benchmark's output: its figures as JSON at `results`, and its section (`body`, starting
    with `title`) in `doc`."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=2) + "\n")
    write_section(doc, title, body)
