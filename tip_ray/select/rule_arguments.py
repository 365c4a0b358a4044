"""The configured selection rule as the method core's arguments: tip.select_tokens takes plain
values (the core knows no config), so the rule's own options are handed on by name, with the
quadrant rule's cut lines spelled as the core names them."""

from __future__ import annotations

from typing import Any

from tip_ray.config.selection import SelectionRule


def rule_arguments(rule: SelectionRule) -> dict[str, Any]:
    """Keyword arguments of select_tokens for `rule`, beside its name and ratio."""
    options = {name: getattr(rule, name) for name in type(rule).model_fields if name not in ("type", "ratio")}
    cuts = options.pop("cuts", None)
    if cuts is not None:
        options.update(entropy_cut=cuts.entropy, divergence_cut=cuts.divergence, cut_mode=cuts.mode,
                       entropy_clip_quantile=cuts.entropy_clip_quantile,
                       divergence_clip_quantile=cuts.divergence_clip_quantile)
    if "keep" in options:
        # Per-quadrant weights replace keep (the config documents them as "instead of keep").
        if options["weights"] is None:
            del options["weights"]
            options["keep"] = tuple(options["keep"])
        else:
            del options["keep"]
    return options
