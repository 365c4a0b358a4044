"""selection: the token-selection rule (a discriminated union on ``type``) and the quadrant cut
lines. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from tip_ray.config.base import Strict


class CutLinesConfig(Strict):
    """Where the quadrant lines sit on the entropy and divergence axes."""

    mode: Literal["fixed", "quantile", "minmax"] = Field(
        default="quantile",
        description="fixed: values are cut lines; quantile: batch quantiles; minmax: levels on "
        "each axis's batch range (0.5 = mid-range, the paper's mid line on a normalised axis).",
    )
    entropy: float = Field(default=0.5, ge=0.0, description="Entropy line (value or quantile).")
    divergence: float = Field(default=0.5, ge=0.0, description="Divergence line.")
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0,
        description="minmax mode: the entropy axis ends at this batch quantile (the paper's p98 clip); 1 = the maximum.",
    )
    divergence_clip_quantile: float = Field(
        default=1.0, gt=0.0, le=1.0,
        description="minmax mode: the divergence axis ends at this batch quantile; 1 = the maximum (the paper's: "
        "no clip). Below 1, a few tokens far from the teacher no longer push every other token under the line.",
    )


class _RuleCommon(Strict):
    ratio: float = Field(default=1.0, description="Retention ratio rho in (0, 1].")

    @field_validator("ratio")
    @classmethod
    def _ratio_in_range(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {value}")
        return value


class AllRule(_RuleCommon):
    type: Literal["all"]


class RandomRule(_RuleCommon):
    type: Literal["random"]


class EntropyTopKRule(_RuleCommon):
    type: Literal["entropy_topk"]


class EntropySampleRule(_RuleCommon):
    type: Literal["entropy_sample"]
    importance_weights: bool = Field(
        default=False, description="Weight kept tokens by 1/p (unbiased); the paper is silent."
    )


class SoftOrRule(_RuleCommon):
    type: Literal["soft_or"]
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0, description="Entropy is clipped at this batch quantile before min-max scaling."
    )
    divergence_clip_quantile: float = Field(
        default=1.0, gt=0.0, le=1.0,
        description="Divergence is clipped at this batch quantile before min-max scaling; 1 = no clip (the paper's).",
    )


class Q3OnlyRule(_RuleCommon):
    type: Literal["q3_only"]
    entropy_clip_quantile: float = Field(
        default=0.98, gt=0.0, le=1.0, description="Entropy is clipped at this batch quantile before min-max scaling."
    )


class DivergenceTopKRule(_RuleCommon):
    type: Literal["divergence_topk"]


class QuadrantRule(_RuleCommon):
    type: Literal["quadrant"]
    keep: list[Literal[1, 2, 3, 4]] = Field(default=[1, 2, 3], description="Quadrants kept.")
    weights: dict[Literal[1, 2, 3, 4], float] | None = Field(
        default=None, description="Per-quadrant loss weights (instead of keep)."
    )
    cuts: CutLinesConfig = Field(default_factory=CutLinesConfig, description="Where the quadrant lines sit.")


SelectionRule = Annotated[
    Union[
        AllRule,
        RandomRule,
        EntropyTopKRule,
        EntropySampleRule,
        SoftOrRule,
        Q3OnlyRule,
        DivergenceTopKRule,
        QuadrantRule,
    ],
    Field(discriminator="type"),
]


class SelectionConfig(Strict):
    rule: SelectionRule = Field(default_factory=lambda: AllRule(type="all"))
    stats_chunk_size: int = Field(default=512, gt=0, description="Positions per stats chunk.")
    metrics_cuts: CutLinesConfig = Field(
        default_factory=lambda: CutLinesConfig(mode="minmax"),
        description="Quadrant lines used for the metrics; default the paper's: mid-range of the p98-clipped, "
        "min-max normalised axes (mode quantile at 0.5 gives batch medians, which force Q2 = Q3).",
    )
