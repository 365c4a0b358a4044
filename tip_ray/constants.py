"""Timeouts fixed in code rather than in the config, named in one place.

Both bound a collective that waits for every member of a process group: a member that died
without leaving would otherwise block the others forever. Ten minutes is above the longest
step or weight broadcast seen at the model sizes the project targets; a stage that hangs for
less is caught sooner by `train.stage_timeout_s` on the driver's side.
"""

from __future__ import annotations

LEARNER_GROUP_TIMEOUT_S = 600.0  # torch.distributed group of the FSDP learner ranks
WEIGHT_GROUP_TIMEOUT_S = 600.0  # the group learner rank 0 broadcasts new weights over
