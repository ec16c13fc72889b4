"""torch: the optimizer's step reads a table of the schedule's own host values.

Eager torch runs a formula one operation at a time; a look-up in a table made
once from ``schedule.at`` is one operation (and the formula runs only for an
open-ended tail past the table).
"""

from __future__ import annotations

import math

import numpy as np

from ._graph import Graph, _integer_dtype, graph_dtype
from ._host import Host
from ._readers import reads_variables

#: On torch (eager, one operation at a time) the optimizer's step reads a table of the
#: schedule's own host values instead of running the formula operation by operation.
TORCH_TABLES = True
TABLE_MAX = 2**20  # entries (4 MB of float32 per schedule on the device)


def _split_tail(schedule):
    """``(T, tail, offset, repeat)``: steps up to ``T`` come from a table; from ``T`` on the
    value is ``tail`` at local step ``step - offset`` (``tail`` None: the value at ``T``
    holds), or, where ``repeat`` is ``(start, period)``, the table's value at the step
    ``period`` steps back, as often as it takes to be below ``start + period``."""
    schedule = schedule._same_values()
    if schedule.is_finite:
        after = schedule.constant_after  # not duration: a changed plan goes on past its end
        if after is None or not math.isfinite(after):
            return None
        return math.ceil(after), None, 0.0, None
    period = _whole(schedule.period)
    if period is not None:
        return period - 1, None, 0.0, (0, period)
    last = schedule._last_piece()
    if last is not None:
        start, tail = last
        period = _whole(tail.period)
        if period is not None and _whole(start) is not None:
            return int(start) + period - 1, None, 0.0, (int(start), period)
        return math.ceil(start), tail, start, None
    return None


def _whole(x) -> int | None:
    return int(x) if x is not None and math.isfinite(x) and x == int(x) and x >= 1 else None


def _host_table(schedule, dtype=np.float32):
    """``(values, tail, offset, repeat)``: the values at the steps before the tail (float32,
    as ``at()`` gives them, or float64, the host's numbers before that rounding), or None."""
    if reads_variables(schedule):
        return None
    split = _split_tail(schedule)
    if split is None or split[0] + 1 > TABLE_MAX:
        return None
    n, tail, offset, repeat = split
    steps = np.arange(n + 1, dtype=np.float64)
    values = schedule.at(steps) if dtype == np.float32 else \
        np.broadcast_to(schedule._eval(steps, Host), steps.shape)
    return np.array(values, dtype), tail, offset, repeat


def _entry(schedule, dtype=np.float32):
    return schedule.cached(("torch-table", dtype), lambda: _host_table(schedule, dtype))


def final_table(schedule):
    """The schedule's host table (float32, the values at steps 0, 1, ...) where its value
    holds from the table's last step on (no formula beyond it), else None."""
    entry = _entry(schedule)
    return None if entry is None or entry[1] is not None or entry[3] is not None \
        else entry[0]


def torch_step(step):
    """``step`` (a ``keras.Variable`` or a tensor) as the 0-d integer torch tensor a table
    is read at, or None where it is not one."""
    step = getattr(step, "value", step)
    if len(step.shape) != 0 or not _integer_dtype(step.dtype):
        return None
    return step


class Stacked:
    """Several schedules' values at one step from one look-up: their ``final_table`` side
    by side (column ``i`` is ``tables[i]``), each padded with its last value, which its
    schedule holds from there on."""

    def __init__(self, tables: list):
        n = max(len(t) for t in tables)
        self.values = np.stack([np.pad(np.asarray(t, np.float32), (0, n - len(t)), mode="edge")
                                for t in tables], axis=1)
        self.on_device: dict = {}

    def __call__(self, step):
        """The values at the 0-d integer torch tensor ``step`` (``torch_step``): a 1-D
        float32 tensor on its device."""
        import torch

        table = self.on_device.get(step.device)
        if table is None:
            table = self.on_device[step.device] = torch.as_tensor(self.values,
                                                                   device=step.device)
        row = torch.clamp(step, 0, len(self.values) - 1).long().reshape(1)
        return torch.index_select(table, 0, row).reshape(-1)  # table[i] would sync


def tabulated(schedule, step):
    """The schedule at the integer ``step`` tensor from its table on the step's device, or
    None where the schedule has no table (open-ended without a finite prefix, or too long).

    A pointwise transform that reads a variable (``Scaled``: the plateau multiplier) of a
    schedule with a table is the transform, on the step's device, of the table's float64
    value: the host's own numbers, so the value is bit-equal to ``at()``."""
    if len(step.shape) != 0 or not _integer_dtype(step.dtype):
        return None
    if not reads_variables(schedule):
        return _look_up(schedule, np.float32, step)
    inner = schedule._pointwise_of()
    if inner is None:
        return None
    value = _look_up(inner, np.float64, step)
    if value is None:
        return None
    import torch

    return schedule.transform(value, Graph.eager("float64", step.device, True)).to(
        torch.float32)


def _look_up(schedule, dtype, step):
    entry = _entry(schedule, dtype)
    if entry is None:
        return None
    import torch

    values, tail, offset, repeat = entry
    device = step.device
    table = schedule.cached(("torch-table", dtype, device),
                            lambda: torch.as_tensor(values, device=device))
    last = len(values) - 1
    if repeat is not None:  # the step within the first period
        start, period = repeat
        index = torch.remainder(step, period) if start == 0 else \
            step - period * torch.div(torch.clamp(step - start, min=0), period,
                                      rounding_mode="floor")
        return torch.take(table, torch.clamp(index, min=0).long())  # table[i] would sync
    value = torch.take(table, torch.clamp(step, 0, last).long())  # table[i] would sync
    if tail is None:
        return value
    xp = Graph.eager(graph_dtype(), device, True)
    # the tail's local step; before the tail (where the table answers) it sees step 0 of it
    later = tail._eval(torch.clamp(step, min=last).to(torch.float64) - offset, xp)
    later = later.to(table.dtype)
    return torch.where(step < last, value, later.reshape(()) if later.dim() else later)
