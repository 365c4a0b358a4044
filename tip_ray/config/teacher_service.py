"""Where a shared teacher service is found: a named scorer group that `tip-ray teacher serve`
started on the Ray cluster the run joins (tip_ray/teacher/service.py).

    teacher:
      signal: {type: hidden}                  # must equal the service's signal form
      backend: {type: service, name: demo-teacher, on_missing: wait, wait_s: 300}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tip_ray.config.base import Strict

SERVICE_NAMESPACE = "tip-ray-teachers"
"""The Ray namespace every teacher service's actors are named in (one place to find them all)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_service_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"a teacher service name is 1-63 letters, digits, '_', '.' or '-' starting with a letter or "
            f"digit, got {value!r}")
    return value


class ServiceTeacher(Strict):
    """A teacher service on the run's Ray cluster (`tip-ray teacher serve`): every signal form the
    service was started with; the run checks the service's teacher, vocabulary and signal form."""

    type: Literal["service"]
    name: str = Field(description="The service's name (`tip-ray teacher serve ... --name NAME`).")
    on_missing: Literal["fail", "wait"] = Field(
        default="fail",
        description="When the service is not there (not started, stopped, its head actor gone): fail at "
                    "once, or wait up to wait_s seconds for it to come back.",
    )
    wait_s: float = Field(default=300.0, gt=0.0, description="How long on_missing: wait waits for the service.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_service_name(value)
