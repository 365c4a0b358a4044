"""The check's results as a Markdown table and its targets (met, not met, or not measured)."""

from __future__ import annotations

from typing import Any

MEMORY_TARGET = 0.5  # selective at rho = 0.5 peaks at most half the plain all-token step
TIME_TARGET = 1.15  # selective at rho = 1 takes at most 1.15 x the plain all-token step


def _find(cases: list[dict], **want: Any) -> dict | None:
    for case in cases:
        if all(case.get(k) == v for k, v in want.items()):
            return case
    return None


def targets(result: dict) -> list[dict]:
    """The memory and time targets, judged on the largest loss-step shape where ``plain`` fit the device."""
    sections = result.get("sections", {})
    loss = sections.get("loss_step", {})
    cases = loss.get("cases", [])
    shapes = list(dict.fromkeys((c["sequences"], c["tokens_per_sequence"]) for c in cases))
    out: list[dict] = []
    for sequences, tokens in shapes:
        plain = _find(cases, path="plain", sequences=sequences, tokens_per_sequence=tokens)
        if plain is not None and plain.get("status") == "oom":
            half = _find(cases, path="selective", ratio=0.5, sequences=sequences, tokens_per_sequence=tokens) or {}
            out.append({"name": f"plain all-token loss at {sequences} x {tokens}", "met": None,
                        "text": f"out of memory on this device; selective rho=0.5 peaked at {half.get('peak_gib', '?')} GiB"})
    measured = [s for s in shapes if (_find(cases, path="plain", sequences=s[0], tokens_per_sequence=s[1]) or {})
                .get("status") == "ok"]
    shape = max(measured, key=lambda s: s[0] * s[1]) if measured else None
    if shape is None:
        out.append({"name": "selective rho=0.5 peak <= 0.5 x plain", "met": None, "text": "plain not measured"})
        out.append({"name": "selective rho=1 time <= 1.15 x plain", "met": None, "text": "plain not measured"})
    else:
        at = {"sequences": shape[0], "tokens_per_sequence": shape[1]}
        plain = _find(cases, path="plain", **at)
        for name, case, key, limit in (
            ("selective rho=0.5 peak <= 0.5 x plain", _find(cases, path="selective", ratio=0.5, **at), "peak_gib", MEMORY_TARGET),
            ("selective rho=1 time <= 1.15 x plain", _find(cases, path="selective", ratio=1.0, **at), "seconds", TIME_TARGET),
        ):
            if case is None or case.get("status") != "ok":
                out.append({"name": name, "met": None, "text": f"selective not measured at {shape[0]} x {shape[1]}"})
                continue
            ratio = case[key] / plain[key]
            unit = "GiB" if key == "peak_gib" else "s"
            out.append({"name": f"{name} (at {shape[0]} x {shape[1]})", "met": ratio <= limit,
                        "text": f"{case[key]} vs {plain[key]} {unit}: x{ratio:.2f}"})
    checks = sections.get("numerics", {}).get("checks", [])
    failed = [c["name"] for c in checks if not c["passed"]]
    out.append({"name": "bf16 method core agrees with float64", "met": bool(checks) and not failed if checks else None,
                "text": f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else "")})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(result: dict) -> str:
    env = result.get("environment", {})
    sections = result.get("sections", {})
    memory = env.get("device_memory_gib")
    lines = [
        f"### Tier-1 GPU check, {env.get('date', '?')}",
        "",
        f"Device: {env.get('device_name', '?')}{f' ({memory} GiB)' if memory is not None else ''}; torch {env.get('torch', '?')} "
        f"(CUDA {env.get('cuda', '-')}), transformers {env.get('transformers', '?')}, Python {env.get('python', '?')}; "
        f"{'toy sizes' if env.get('toy') else 'full sizes'}; {result.get('seconds', '?')} s in all. "
        f"Overall: **{'PASS' if result.get('passed') else 'FAIL'}**.",
        "",
    ]
    lines += _table(["section", "status", "seconds", "budget (s)"],
                    [[name, s.get("status"), s.get("seconds"), s.get("budget_s")] for name, s in sections.items()])
    for name, s in sections.items():
        if s.get("error"):
            lines += ["", f"{name} error: `{s['error'].strip().splitlines()[-1][:300]}`"]
        if s.get("skipped_for_time"):
            lines += ["", f"{name}: left out for time: {', '.join(s['skipped_for_time'])}"]
    loss = sections.get("loss_step", {})
    if loss.get("cases"):
        info = loss.get("info", {})
        lines += ["", f"Loss step (forward + backward, reverse KL, V={info.get('vocab')}, d={info.get('hidden')}, "
                  f"teacher d={info.get('teacher_hidden')}, {info.get('dtype')} inputs; peak = allocator peak during the step, "
                  "inputs included; time = fastest of the timed repeats):", ""]
        lines += _table(
            ["shape", "path", "rho", "loss tokens", "peak (GiB)", "added (GiB)", "time (s)", "status"],
            [[f"{c['sequences']} x {c['tokens_per_sequence']}", c["path"], c["ratio"], c.get("loss_tokens"),
              c.get("peak_gib"), c.get("added_gib"), c.get("seconds"), c.get("status")] for c in loss["cases"]],
        )
    step = sections.get("learner_step", {})
    if step.get("cases") or step.get("info"):
        info = step.get("info", {})
        lines += ["", f"Whole learner step (LearnerRank, FSDP2 {info.get('backend')}, {info.get('mixed_precision')}, "
                  f"{_cell(info.get('parameters'))} parameters, {info.get('sequences')} x ({info.get('prompt_tokens')} + "
                  f"{info.get('response_tokens')}) tokens, AdamW; the second update measured):", ""]
        lines += _table(["rho", "loss tokens", "peak (GiB)", "time (s)", "loss", "status"],
                        [[c["ratio"], c.get("loss_tokens"), c.get("peak_gib"), c.get("seconds"), c.get("loss"), c.get("status")]
                         for c in step.get("cases", [])])
    gen = sections.get("generate", {})
    if gen.get("cases"):
        lines += ["", "Hugging Face generate (bf16, temperature 1):", ""]
        lines += _table(["batch", "max new tokens", "tokens", "seconds", "tokens/s", "peak (GiB)", "status"],
                        [[c["batch"], c["max_new_tokens"], c.get("tokens"), c.get("seconds"), c.get("tokens_per_s"),
                          c.get("peak_gib"), c.get("status")] for c in gen["cases"]])
    numerics = sections.get("numerics", {})
    if numerics.get("checks"):
        lines += ["", "Method core, bf16 on the device vs float64 on the CPU:", ""]
        lines += _table(["check", "error", "tolerance", "result"],
                        [[c["name"], c.get("error"), c.get("tolerance"), "pass" if c["passed"] else "FAIL"]
                         for c in numerics["checks"]])
    lines += ["", "Targets:", ""]
    for target in result.get("targets", []):
        verdict = "not measured" if target["met"] is None else ("met" if target["met"] else "NOT met")
        lines.append(f"- {target['name']}: {verdict} ({target['text']})")
    return "\n".join(lines) + "\n"
