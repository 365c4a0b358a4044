"""TIP core in plain torch: teacher signals, token statistics, the quadrant taxonomy, selection
rules, distillation losses and the selective learner loss. No Ray here; see docs/method.md."""

from .losses import (
    LOSSES,
    divergence_from_logprobs,
    global_token_mean,
    per_token_divergence,
    sampled_token_estimator,
)
from .selection import (
    RULES,
    Selection,
    keep_counts,
    select_tokens,
    selected_weights,
    selection_positions,
)
from .selective import selective_distill_loss
from .signal import (
    FullLogProbs,
    TeacherHidden,
    TeacherSignal,
    TopKLogProbs,
    index_signal,
    is_exact,
    num_rows,
    signal_form,
    topk_from_logprobs,
    vocab_size_of,
)
from .stats import TokenStats, approximation_error, token_stats, token_stats_from_hidden
from .taxonomy import CutLines, quadrant_labels, quadrant_summary, resolve_cut_lines

__all__ = [
    "LOSSES",
    "RULES",
    "CutLines",
    "FullLogProbs",
    "Selection",
    "TeacherHidden",
    "TeacherSignal",
    "TokenStats",
    "TopKLogProbs",
    "approximation_error",
    "divergence_from_logprobs",
    "global_token_mean",
    "index_signal",
    "is_exact",
    "keep_counts",
    "num_rows",
    "per_token_divergence",
    "quadrant_labels",
    "quadrant_summary",
    "resolve_cut_lines",
    "sampled_token_estimator",
    "select_tokens",
    "selected_weights",
    "selection_positions",
    "selective_distill_loss",
    "signal_form",
    "token_stats",
    "token_stats_from_hidden",
    "topk_from_logprobs",
    "vocab_size_of",
]
