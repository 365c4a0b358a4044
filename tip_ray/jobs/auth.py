"""Which token a Jobs API request carries, and what to tell the user when the cluster refuses it.

A Ray 2.60 cluster with token authentication (``RAY_AUTH_MODE=token`` on its nodes) answers
401 to a request without a token and 403 to one with the wrong token. The token is looked up
in this order, the first hit wins:

1. ``--token-file FILE`` on the command line;
2. ``RAY_AUTH_TOKEN`` (the token itself);
3. ``RAY_AUTH_TOKEN_PATH`` (a file holding it);
4. ``~/.ray/auth_token``, only with ``RAY_AUTH_MODE=token``: this file usually holds the token
   of a local Ray, so it is not sent to a cluster unless the user says token auth is on.

``RAY_AUTH_MODE=disabled`` means: send no token from the environment (an explicit
``--token-file`` still counts). Nothing here reads a token into a job's runtime environment:
the cluster's own processes already hold it, and job metadata is readable on the dashboard.
No ray import here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tip_ray.jobs.errors import JobsAuthError

AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path(".ray") / "auth_token"  # under the home folder, as Ray has it

KUBERAY_HINT = (
    "For a KubeRay cluster the token is in the Secret named after the cluster, key auth_token: "
    "kubectl get secret CLUSTER -o jsonpath='{.data.auth_token}' | base64 --decode > FILE"
)


@dataclass(frozen=True)
class ClusterToken:
    """A bearer token for the cluster and where it came from (the value never shows in repr)."""

    value: str = field(repr=False)
    source: str
    """Human-readable origin, e.g. ``RAY_AUTH_TOKEN_PATH=/home/me/.ray/prod.token``."""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def _read_token_file(path: Path, source: str) -> ClusterToken:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobsAuthError(f"{source}: no such file; write the cluster's token there. {KUBERAY_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsAuthError(f"{source}: cannot read the token file: {exc}") from None
    value = text.strip()
    if not value:
        raise JobsAuthError(f"{source}: the token file is empty; write the cluster's token there. {KUBERAY_HINT}")
    return ClusterToken(value=value, source=source)


def find_token(
    token_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> ClusterToken | None:
    """The token to send (see the module docstring for the order), or None to send none.

    Raises JobsAuthError when a named source is unusable (missing or empty file), or when
    ``RAY_AUTH_MODE=token`` is set and no source holds a token.
    """
    env = os.environ if environ is None else environ
    if token_file is not None:
        return _read_token_file(Path(token_file), f"--token-file {token_file}")
    mode = env.get(AUTH_MODE_VAR, "").strip().lower()
    if mode == "disabled":
        return None
    if env.get(TOKEN_VAR, "").strip():
        return ClusterToken(value=env[TOKEN_VAR].strip(), source=TOKEN_VAR)
    if env.get(TOKEN_PATH_VAR, "").strip():
        path = env[TOKEN_PATH_VAR].strip()
        return _read_token_file(Path(path), f"{TOKEN_PATH_VAR}={path}")
    if mode == "token":
        default = (home or Path.home()) / DEFAULT_TOKEN_FILE
        if default.is_file():
            return _read_token_file(default, f"{default} (the default token file)")
        raise JobsAuthError(
            f"{AUTH_MODE_VAR}=token is set but no token was found: {TOKEN_VAR} and "
            f"{TOKEN_PATH_VAR} are unset and {default} does not exist. Give the cluster's token "
            f"with --token-file FILE or {TOKEN_PATH_VAR}=FILE. {KUBERAY_HINT}"
        )
    return None


def _why_no_token(environ: Mapping[str, str], home: Path) -> str:
    mode = environ.get(AUTH_MODE_VAR, "").strip().lower()
    if mode == "disabled":
        return (
            f"{AUTH_MODE_VAR}=disabled in this shell keeps the client from sending one; "
            f"set {AUTH_MODE_VAR}=token"
        )
    why = f"no --token-file was given and {TOKEN_VAR} and {TOKEN_PATH_VAR} are unset"
    default = home / DEFAULT_TOKEN_FILE
    if default.is_file():
        why += (
            f"; {default} exists but is sent only with {AUTH_MODE_VAR}=token or "
            f"--token-file {default}, since it usually holds a local Ray's token"
        )
    return why


def explain_rejection(
    status: int,
    address: str,
    token: ClusterToken | None,
    server_says: str = "",
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> str:
    """The message for a 401 (no token) or 403 (wrong token) answer from the cluster at `address`."""
    env = os.environ if environ is None else environ
    said = f": {server_says.strip()}" if server_says.strip() else ""
    fix = (
        f"Give the cluster's token with --token-file FILE, or export {TOKEN_PATH_VAR}=FILE "
        f"(or {TOKEN_VAR}). {KUBERAY_HINT}"
    )
    if token is None:
        return (
            f"the Ray cluster at {address} requires an authentication token (HTTP {status}{said}) "
            f"and none was sent: {_why_no_token(env, home or Path.home())}. {fix}"
        )
    return (
        f"the Ray cluster at {address} rejected the token from {token.source} (HTTP {status}{said}). "
        "That token is not this cluster's: it may be stale (KubeRay makes a new one when the "
        f"RayCluster is recreated) or belong to another cluster. {fix}"
    )


def is_loopback(address: str) -> bool:
    """Whether an http(s) address points at this machine (e.g. a kubectl port-forward)."""
    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cleartext_warning(address: str, token: ClusterToken | None) -> str | None:
    """A warning when a token would travel unencrypted to another machine, else None."""
    if token is None or address.startswith("https://") or is_loopback(address):
        return None
    return (
        f"warning: sending the token from {token.source} over plain HTTP to {address}; anyone on "
        "the path can read it. Reach the dashboard through kubectl port-forward or HTTPS."
    )
