"""loss: the distillation loss on the selected tokens. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tip_ray.config.base import Strict


class LossConfig(Strict):
    type: Literal["reverse_kl", "forward_kl", "jsd", "k1", "k3"] = Field(
        default="reverse_kl",
        description="reverse_kl is the paper's; k1/k3 are sampled-token policy-gradient rewards.",
    )
    beta: float = Field(default=0.5, ge=0.0, le=1.0, description="JSD mixing weight.")
    chunk_size: int = Field(default=512, gt=0, description="Selected tokens per LM-head chunk.")
