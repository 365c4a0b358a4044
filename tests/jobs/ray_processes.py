"""A real Ray cluster on loopback for the tests, started with `ray start --block` and stopped by
the process ids it started (never `ray stop`, which would end every Ray on the machine).

Each node is one `ray start --block` process; Ray's daemons and workers are its descendants.
The cluster has its own temp dir (so no other Ray finds it through /tmp/ray) and free ports for
every service, and runs with token authentication on.

Each node has its own temp dir inside the cluster's, as separate machines would. Nodes that
share one would share its session folder and thus `runtime_resources/`, where every node's
runtime-env agent unpacks a job's working_dir: Ray removes and unpacks it afresh the first time
a node needs it (`overwrite=True`), so a worker node starting its first actor would delete the
files the head's job driver is importing from (a random `ModuleNotFoundError` in the job).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

RAY_BIN = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 180.0  # a node can take over 90 s to come up on a shared, overloaded machine


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_ports() -> list[str]:
    """Every port a node opens, chosen free, so nothing collides with another Ray here."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={free_port()}" for name in names]


@dataclass
class LocalRayCluster:
    """Head plus optional worker nodes on 127.0.0.1, token auth on."""

    temp_dir: Path
    token: str
    token_file: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    node_processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    # ------------------------------------------------------------------ start

    @classmethod
    def start(cls, head_cpus: int = 2, head_resources: dict[str, float] | None = None) -> "LocalRayCluster":
        # Short path: Ray's unix sockets live under it and socket paths are limited to 107 bytes.
        temp_dir = Path(tempfile.mkdtemp(prefix="trj-", dir="/tmp"))
        token = secrets.token_hex(32)
        token_file = temp_dir / "cluster.token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token_file),
            RAY_USAGE_STATS_ENABLED="0",
            PATH=f"{RAY_BIN.parent}{os.pathsep}{env.get('PATH', '')}",
            TOKENIZERS_PARALLELISM="false",
        )
        cluster = cls(temp_dir, token, token_file, free_port(), free_port(), env)
        try:
            cluster._start_node(
                "head",
                [
                    "--head",
                    f"--port={cluster.gcs_port}",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={cluster.dashboard_port}",
                    f"--ray-client-server-port={free_port()}",
                    "--include-dashboard=true",
                    f"--num-cpus={head_cpus}",
                ],
                head_resources,
            )
            cluster.wait_for_jobs_api()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def node_temp_dir(self, name: str) -> Path:
        """The node's own temp dir (see the module docstring for why nodes never share one)."""
        return self.temp_dir / name

    def _start_node(self, name: str, args: list[str], resources: dict[str, float] | None) -> None:
        log = self.temp_dir / f"{name}.log"
        command = [
            str(RAY_BIN), "start", "--block", "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.node_temp_dir(name)}", "--num-gpus=0", "--object-store-memory=150000000",
            "--disable-usage-stats", *_node_ports(), *args,
        ]
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.node_processes.append(process)
        self.logs.append(log)

    def add_worker(self, name: str, cpus: int, resources: dict[str, float]) -> None:
        """Join a worker node advertising `resources`; waits until the cluster lists it."""
        before = self.alive_node_count()
        self._start_node(name, [f"--address={self.gcs_address}", f"--num-cpus={cpus}"], resources)
        self._wait(lambda: self.alive_node_count() > before, f"worker node {name} to join")

    # ------------------------------------------------------------------ state

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.dashboard_url + path, headers=self.auth_headers(), params=params, timeout=10)

    def alive_node_count(self) -> int:
        try:
            nodes = self.get("/api/v0/nodes", detail="true").json()["data"]["result"]["result"]
        except (requests.RequestException, KeyError, ValueError):
            return 0
        return sum(1 for node in nodes if node.get("state") == "ALIVE")

    def wait_for_jobs_api(self) -> None:
        def ready() -> bool:
            try:
                return self.get("/api/jobs/").status_code == 200 and self.alive_node_count() >= 1
            except requests.RequestException:
                return False

        self._wait(ready, "the head's Jobs API")

    def _wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not condition():
            for process, log in zip(self.node_processes, self.logs):
                if process.poll() is not None:
                    raise RuntimeError(f"ray start exited with {process.returncode} while waiting for "
                                       f"{what}; its log:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-1500:]}" for log in self.logs)
                raise TimeoutError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}; node logs:\n{tails}")
            time.sleep(0.5)

    # ------------------------------------------------------------------ stop

    def own_processes(self) -> list[psutil.Process]:
        """Every process this cluster started: the `ray start` processes, their descendants,
        and any process that runs inside this cluster's temp dir (a job driver whose parent
        already exited). Nothing else on the machine matches."""
        found: dict[int, psutil.Process] = {}
        for popen in self.node_processes:
            try:
                root = psutil.Process(popen.pid)
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                continue
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
                cwd = proc.info["cwd"] or ""
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if marker in cmdline or cwd.startswith(marker):
                found[proc.pid] = proc
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> None:
        procs = self.own_processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for popen in self.node_processes:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        left = [p.pid for p in self.own_processes()]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes still alive after stop: {left}")
