"""loss: the distillation loss on the selected tokens, a discriminated union on ``type``; each loss
carries only its own options. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from tip_ray.config.base import Strict
from tip_ray.config.numbers import FieldValueError


class _LossCommon(Strict):
    chunk_size: int = Field(default=512, gt=0, description="Selected tokens per LM-head chunk.")


class ReverseKLLoss(_LossCommon):
    """KL(student || teacher) per selected token: the paper's loss."""

    type: Literal["reverse_kl"] = "reverse_kl"


class ForwardKLLoss(_LossCommon):
    """KL(teacher || student) per selected token."""

    type: Literal["forward_kl"]


class JSDLoss(_LossCommon):
    """Generalized Jensen-Shannon divergence (GKD): beta 0 is forward KL, 1 is reverse KL."""

    type: Literal["jsd"]
    beta: float = Field(default=0.5, ge=0.0, le=1.0, description="JSD mixing weight.")


class K1Loss(_LossCommon):
    """Sampled-token estimator k1 = log p_S(y) - log p_T(y) of the reverse KL, as a policy-gradient
    reward (needs the teacher's log-prob of every sampled token)."""

    type: Literal["k1"]


class K3Loss(_LossCommon):
    """Sampled-token estimator k3 = r - 1 - log r, r = p_T(y) / p_S(y), of the reverse KL (needs the
    teacher's log-prob of every sampled token)."""

    type: Literal["k3"]


Loss = Annotated[Union[ReverseKLLoss, ForwardKLLoss, JSDLoss, K1Loss, K3Loss], Field(discriminator="type")]


def refuse_stray_beta(value):
    """`beta` beside another loss than jsd was accepted (and ignored) by the old flat loss section;
    say where it belongs instead of only calling it an unknown key."""
    if isinstance(value, dict) and "beta" in value and value.get("type", "reverse_kl") != "jsd":
        raise FieldValueError(
            f"beta is an option of the jsd loss only: write `loss: {{type: jsd, beta: {value['beta']}}}`, "
            f"or drop beta for loss type {value.get('type', 'reverse_kl')!r}", field="beta")
    return value
