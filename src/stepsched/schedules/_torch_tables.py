"""torch: the optimizer's step reads a table of the schedule's own host values.

Eager torch runs a formula one operation at a time; a look-up in a table made
once from ``schedule.at`` is one operation (and the formula runs only for an
open-ended tail past the table).
"""

from __future__ import annotations

import math

import numpy as np

from ._graph import Graph, _integer_dtype, graph_dtype
from ._readers import reads_variables

#: On torch (eager, one operation at a time) the optimizer's step reads a table of the
#: schedule's own host values instead of running the formula operation by operation.
TORCH_TABLES = True
TABLE_MAX = 2**20  # entries (4 MB of float32 per schedule on the device)


def _split_tail(schedule):
    """``(T, tail, offset)``: steps below ``T`` come from a table; from ``T`` on the value is
    ``tail`` at local step ``step - offset`` (``tail`` None: the value at ``T`` holds)."""
    from .compose import Sequence
    from .planned import Planned

    if isinstance(schedule, Planned) and schedule.arg("previous") is None:
        return _split_tail(schedule.resolved)
    if schedule.is_finite:
        after = schedule.constant_after  # not duration: a changed plan goes on past its end
        if after is None or not math.isfinite(after):
            return None
        return math.ceil(after), None, 0.0
    if isinstance(schedule, Sequence) and schedule.arg("relative") and \
            len(schedule.arg("pieces")) > 1:
        start = schedule._starts()[-1]
        return math.ceil(start), schedule.arg("pieces")[-1], start
    return None


def _host_table(schedule):
    if reads_variables(schedule):
        return None
    split = _split_tail(schedule)
    if split is None or split[0] + 1 > TABLE_MAX:
        return None
    n, tail, offset = split
    return np.asarray(schedule.at(np.arange(n + 1, dtype=np.float64)), np.float32), tail, offset


def tabulated(schedule, step):
    """The schedule at the integer ``step`` tensor from its table on the step's device, or
    None where the schedule has no table (open-ended without a finite prefix, or too long)."""
    if len(step.shape) != 0 or not _integer_dtype(step.dtype):
        return None
    entry = schedule.cached("torch-table", lambda: _host_table(schedule))
    if entry is None:
        return None
    import torch

    values, tail, offset = entry
    device = step.device
    table = schedule.cached(("torch-table", device), lambda: torch.as_tensor(values, device=device))
    last = len(values) - 1
    value = torch.take(table, torch.clamp(step, 0, last).long())  # table[i] would sync
    if tail is None:
        return value
    xp = Graph.eager(graph_dtype(), device, True)
    # the tail's local step; before the tail (where the table answers) it sees step 0 of it
    later = tail._eval(torch.clamp(step, min=last).to(torch.float64) - offset, xp)
    later = later.to(torch.float32)
    return torch.where(step < last, value, later.reshape(()) if later.dim() else later)
