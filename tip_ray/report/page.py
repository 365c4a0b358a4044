"""The report page: one self-contained HTML file (inline CSS, images as data: URIs, no script).

Every text that comes from the run (names, config, error messages) is HTML-escaped here, and
the page's Content-Security-Policy forbids scripts and any fetch, so even text that slipped
through could neither run nor call out.
"""

from __future__ import annotations

import base64
import datetime
from html import escape
from typing import Any, Sequence

from tip_ray.report.plots import Plot, number
from tip_ray.report.reading import RunData, SweepData

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# Plot cards have a border of this exact colour: the browser test finds the cards by it.
CARD_BORDER = "#b8c0cc"
STYLE = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1360px; padding: 0 16px; color: #1d2330; background: #fff; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
h2 {{ font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #e3e6eb; padding-bottom: 4px; }}
.sub {{ color: #5b6475; margin-top: 0; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }}
th, td {{ border: 1px solid #e3e6eb; padding: 4px 10px; text-align: left; }}
th {{ background: #f4f6f9; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 16px; }}
figure.plot {{ border: 1px solid {CARD_BORDER}; border-radius: 0; margin: 0; padding: 8px 10px 10px; }}
figure.plot.wide {{ grid-column: 1 / -1; }}
figure.plot figcaption {{ font-weight: 600; margin-bottom: 6px; }}
figure.plot img {{ width: 100%; height: auto; display: block; }}
p.missing {{ color: #7a8394; font-style: italic; min-height: 80px; }}
.notes {{ background: #fff8e6; border-left: 4px solid #e0a800; padding: 6px 12px; }}
pre {{ white-space: pre-wrap; background: #f7f8fa; border: 1px solid #e3e6eb; padding: 10px; overflow-x: auto; font-size: 0.85em; }}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure(plot: Plot, mime: str = "image/svg+xml") -> str:
    caption = f"<figcaption>{escape(plot.title)}</figcaption>"
    kind = "plot wide" if plot.wide else "plot"
    if plot.svg is None:
        return f'<figure class="{kind}">{caption}<p class="missing">{escape(plot.missing)}</p></figure>'
    return (f'<figure class="{kind}">{caption}<img alt="{escape(plot.title)}" '
            f'src="{data_uri(plot.svg, mime)}"></figure>')


def html_table(rows: Sequence[Sequence[str]], header: bool = True) -> str:
    out = ["<table>"]
    for index, row in enumerate(rows):
        cell = "th" if header and index == 0 else "td"
        out.append("<tr>" + "".join(f"<{cell}>{escape(str(value))}</{cell}>" for value in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def notes_block(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<div class="notes"><b>Read with gaps:</b><ul>{items}</ul></div>'


def document(title: str, subtitle: str, body: Sequence[str]) -> str:
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(subtitle)} · made by tip-ray report, {made}</p>',
        *body,
        "</body></html>",
    ])


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def run_summary(run: RunData) -> list[tuple[str, str]]:
    rows = run.metrics
    last: dict[str, Any] = rows[-1] if rows else {}
    trained = sum(number(r.get("selected_tokens")) or 0 for r in rows if r.get("skipped") is not True)
    sampled = sum(number(r.get("response_tokens")) or 0 for r in rows)
    wall = sum(number(r.get("step_seconds")) or 0 for r in rows)
    peaks = [p for p in (number(r.get("learner_peak_mib")) for r in rows) if p is not None]
    evals = [e for e in run.evals if number(e.get("accuracy")) is not None]
    items = [
        ("steps logged", f"{len(rows)} (last step {last.get('step', '—')})"),
        ("final loss", _fmt(number(last.get("loss")))),
        ("tokens trained / sampled", f"{trained:,.0f} / {sampled:,.0f}" + (f" ({trained / sampled:.0%})" if sampled else "")),
        ("teacher signal", str(last.get("teacher_signal", "—"))),
        ("weight sync", str(last.get("weight_sync", "—"))),
        ("wall time in steps", f"{wall:.1f} s" if rows else "—"),
        ("learner peak memory", f"{max(peaks):.0f} MiB" if peaks else "—"),
    ]
    if evals:
        e = evals[-1]
        n = e.get("n")
        stderr = number(e.get(f"mean@{n}_stderr"))
        items.append((f"last evaluation (step {e.get('step')}, {e.get('benchmark', '?')})",
                      f"{e['accuracy']:.3f}" + (f" ± {stderr:.3f}" if stderr is not None else "")))
    for key in ("actor_restarts", "resumes", "skipped_steps"):
        if key in last:
            items.append((key.replace("_", " "), str(last[key])))
    return items


def run_page(run: RunData, plots: Sequence[Plot]) -> str:
    body = [
        notes_block(run.notes),
        "<h2>Summary</h2>",
        html_table(run_summary(run), header=False),
        "<h2>Training</h2>",
        '<div class="grid">', *(figure(p) for p in plots), "</div>",
        "<h2>Resolved config</h2>",
        f"<pre>{escape(run.config_text)}</pre>" if run.config_text is not None
        else '<p class="missing">no data: config.resolved.yaml is missing</p>',
    ]
    return document(f"tip-ray run: {run.name}", str(run.folder), body)


def sweep_page(sweep: SweepData, tables: Sequence[tuple[str, list[list[str]]]], plots: Sequence[Plot]) -> str:
    images = [Plot(name.rsplit(".", 1)[0].replace("_", " "), data, wide=True) for name, data in sweep.images.items()]
    body = [notes_block(sweep.notes), "<h2>Comparison</h2>"]
    for caption, rows in tables:
        body += [f"<p>{escape(caption)}:</p>", html_table(rows)]
    body += ['<div class="grid">', *(figure(p) for p in plots), *(figure(p, "image/png") for p in images), "</div>"]
    if sweep.summary_text is not None:
        body += ["<h2>The sweep's README</h2>", f"<pre>{escape(sweep.summary_text)}</pre>"]
    return document(f"tip-ray sweep: {sweep.name}", f"{sweep.folder} · {len(sweep.records)} runs", body)
