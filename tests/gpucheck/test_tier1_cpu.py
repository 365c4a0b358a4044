"""The tier-1 GPU check runs on the CPU at toy sizes, so it cannot rot between GPU leases; and
nothing it imports needs a package a bare GPU machine lacks (Ray, vLLM, ...). pydantic travels
as carried wheels (scripts/gpu_wheels.sh), so it is allowed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

# Not installed on a bare GPU machine with torch and transformers (torch, transformers, psutil, safetensors, pyyaml are).
MISSING_THERE = ("ray", "vllm", "trl", "math_verify", "jsonschema")

BLOCKER = f'''
import sys

class RefuseMissing:
    """Acts as if these packages were not installed, as on a bare GPU machine."""

    names = {MISSING_THERE!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"blocked for the GPU check: {{name}} is not installed on the GPU machine")
        return None

sys.meta_path.insert(0, RefuseMissing())
'''


def _env_without_missing_packages(tmp_path: Path) -> dict:
    """An environment whose Python refuses the packages the GPU machine lacks, in every process
    it starts (sitecustomize runs at interpreter start-up, children included)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    pythonpath = os.pathsep.join([str(blocker), str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return dict(os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1")


def test_the_blocker_refuses_ray_and_vllm(tmp_path):
    env = _env_without_missing_packages(tmp_path)
    for name in ("ray", "vllm"):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "blocked for the GPU check" in done.stderr, done.stderr[-500:]


def test_toy_run_on_cpu_writes_every_section_without_ray_or_vllm(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tip_ray.gpucheck", "--device", "cpu", "--toy", "--in-process", "--out", str(out)],
        env=_env_without_missing_packages(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "tier1.json").read_text())
    sections = result["sections"]
    assert list(sections) == ["numerics", "loss_step", "learner_step", "generate"]
    assert all(s["status"] == "ok" for s in sections.values()), {n: s.get("error") for n, s in sections.items()}
    assert result["passed"] is True

    checks = sections["numerics"]["checks"]
    assert len(checks) >= 40 and all(c["passed"] for c in checks)
    names = " ".join(c["name"] for c in checks)
    for rule in ("all", "random", "entropy_topk", "entropy_sample", "soft_or", "q3_only", "divergence_topk", "quadrant"):
        assert f"rule {rule} " in names
    for loss in ("reverse_kl", "forward_kl", "jsd", "k1", "k3"):
        assert f"selective {loss} (hidden): d/d head" in names

    loss_cases = sections["loss_step"]["cases"]
    assert {(c["path"], c["ratio"]) for c in loss_cases} == {
        ("selective", 1.0), ("selective", 0.5), ("selective", 0.2), ("chunked", 1.0), ("plain", 1.0)}
    for case in loss_cases:
        assert case["status"] == "ok" and case["peak_gib"] > 0 and case["seconds"] > 0
    by = {(c["path"], c["ratio"]): c for c in loss_cases}
    assert by[("selective", 0.5)]["loss_tokens"] == by[("plain", 1.0)]["loss_tokens"] // 2

    steps = sections["learner_step"]["cases"]
    assert [c["ratio"] for c in steps] == [1.0, 0.5, 0.2]
    assert all(c["status"] == "ok" and math.isfinite(c["loss"]) and math.isfinite(c["grad_norm"]) for c in steps)
    assert steps[0]["loss_tokens"] > steps[1]["loss_tokens"] > steps[2]["loss_tokens"] > 0
    assert sections["learner_step"]["info"]["backend"] == "gloo"

    (gen,) = sections["generate"]["cases"]
    assert gen["status"] == "ok" and gen["tokens"] > 0 and gen["tokens_per_s"] > 0

    table = (out / "tier1.md").read_text()
    assert "| 2 x 128 | plain |" in table and "Targets:" in table and "PASS" in table
    assert "None GiB" not in table  # a CPU has no device memory to report
    assert {p.name for p in (out / "parts").iterdir()} == {f"{n}.json" for n in sections}
    # The table script rebuilds the same table from the JSON alone (no torch needed).
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_tier1_table.py"), str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == table, again.stderr


def test_a_section_out_of_time_is_recorded_and_the_check_fails(tmp_path):
    """Each section in its own process (the GPU mode): with no time left it records every case as
    left out for time instead of silently dropping them, and the exit status says so."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tip_ray.gpucheck", "--device", "cpu", "--toy", "--sections", "loss_step",
         "--budget-scale", "0", "--out", str(out)],
        env=_env_without_missing_packages(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    section = json.loads((out / "tier1.json").read_text())["sections"]["loss_step"]
    assert section["status"] == "out_of_time"
    assert section["cases"] == [] and len(section["skipped_for_time"]) == 5
    assert "left out for time" in (out / "tier1.md").read_text()


def test_chunked_all_token_loss_has_the_plain_gradients():
    from tip_ray.gpucheck import loss_step
    from tip_ray.gpucheck.sizes import TOY

    case = loss_step._Case(TOY.with_overrides(loss_chunk=48), 2, 64, torch.device("cpu"))
    grads = {}
    for path in ("plain", "chunked"):
        step, _ = getattr(case, path)()
        step()
        grads[path] = (case.hidden.grad.clone(), case.head.grad.clone())
    for plain, chunked in zip(grads["plain"], grads["chunked"]):
        torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-7)


def test_targets_are_judged_where_plain_fit_and_an_oom_is_reported():
    from tip_ray.gpucheck.report import markdown, targets

    def case(path, ratio, sequences, peak=None, seconds=None, status="ok"):
        return {"path": path, "ratio": ratio, "sequences": sequences, "tokens_per_sequence": 8192, "status": status,
                "peak_gib": peak, "seconds": seconds}

    result = {"sections": {
        "loss_step": {"cases": [
            case("selective", 0.5, 8, 7.0, 3.0), case("plain", 1.0, 8, status="oom"),
            case("selective", 1.0, 1, 6.5, 0.60), case("selective", 0.5, 1, 6.4, 0.31), case("plain", 1.0, 1, 24.0, 0.5),
        ]},
        "numerics": {"checks": [{"name": "a", "passed": True}, {"name": "b", "passed": False}]},
    }}
    found = {t["name"]: t for t in targets(result)}
    assert found["plain all-token loss at 8 x 8192"]["met"] is None
    assert "out of memory" in found["plain all-token loss at 8 x 8192"]["text"]
    assert found["selective rho=0.5 peak <= 0.5 x plain (at 1 x 8192)"]["met"] is True  # 6.4 / 24
    assert found["selective rho=1 time <= 1.15 x plain (at 1 x 8192)"]["met"] is False  # 0.60 / 0.5 = 1.2
    assert found["bf16 method core agrees with float64"]["met"] is False
    result["targets"] = targets(result)
    assert "NOT met" in markdown(result)
    result["environment"] = {"device_name": "NVIDIA H200", "device_memory_gib": 139.8}
    assert "Device: NVIDIA H200 (139.8 GiB);" in markdown(result)

    # Where plain fits at both shapes, the larger one decides.
    result["sections"]["loss_step"]["cases"][1] = case("plain", 1.0, 8, 100.0, 4.0)
    result["sections"]["loss_step"]["cases"].append(case("selective", 1.0, 8, 9.0, 4.4))
    found = {t["name"]: t for t in targets(result)}
    assert found["selective rho=0.5 peak <= 0.5 x plain (at 8 x 8192)"]["met"] is True  # 7 / 100
    assert found["selective rho=1 time <= 1.15 x plain (at 8 x 8192)"]["met"] is True  # 4.4 / 4.0


def test_gpu_tier1_refuses_clearly_without_pydantic_or_its_wheels(tmp_path):
    """Where pydantic is missing and no wheels were carried, the script says what to run."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER.replace(repr(MISSING_THERE), repr(MISSING_THERE + ("pydantic",))))
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "gpu_tier1.sh").write_text((REPO / "scripts" / "gpu_tier1.sh").read_text())
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(blocker), OUT=str(tmp_path / "out"))
    done = subprocess.run(["bash", str(checkout / "scripts" / "gpu_tier1.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "make gpu-wheels" in done.stderr and "gpucheck-wheels" in done.stderr
