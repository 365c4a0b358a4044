"""Where Ray runs: the forms of a Ray address the pipeline accepts, checked before anything starts."""

from __future__ import annotations

import re

# local: an embedded Ray; auto: the cluster this machine belongs to; ray://HOST[:PORT]: the Ray
# client server; HOST:PORT: the cluster's GCS.
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_RAY_CLIENT = re.compile(r"^ray://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?/?$")
FORMS = "local, auto, ray://HOST:PORT (the Ray client server) or HOST:PORT (the cluster's GCS)"


def ray_address_problem(address: str) -> str | None:
    """Why `address` is not a Ray address this tool can use, or None when it is."""
    if address in ("local", "auto") or _HOST_PORT.match(address) or _RAY_CLIENT.match(address):
        return None
    if address.startswith(("http://", "https://")):
        return (f"{address!r} is a dashboard URL, which `tip-ray submit` uses; a run needs {FORMS}")
    return f"{address!r} is not a Ray address: use {FORMS}"
