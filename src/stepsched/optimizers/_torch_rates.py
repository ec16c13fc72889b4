"""torch: every group's rate at one step from one table look-up and one product.

Eager torch runs one operation at a time, so evaluating 16 groups' multipliers
one by one (a look-up each, a product each with the base rate) costs 16 times
the operations of one. The groups whose rate is the base rate or a schedule of
their own, times a multiplier or none, where each of those schedules is a
``Constant`` or has a table that holds its last value
(``schedules._torch_tables.final_table``), get their rates together: one
look-up of the schedules' tables side by side, then the sources times the
multipliers as one vector. Each product is the one float32 product a group's
own evaluation makes, so the rates are bit-equal to it.
"""

from __future__ import annotations

import numpy as np

from ..schedules._torch_tables import Stacked, final_table
from ..schedules.primitives import Constant


def column(schedule) -> np.ndarray | None:
    """The values ``Stacked`` reads ``schedule`` from, or None where it has none."""
    if type(schedule) is Constant:
        return np.asarray([schedule.arg("value")], np.float32)
    return final_table(schedule)


class GroupRates:
    """The rates of groups given as ``(source, multiplier)`` pairs (source None: the base
    rate; multiplier None: 1), each schedule with a ``column``. Made once for a set of
    schedules (``same``), then called once a step."""

    def __init__(self, pairs: list):
        self.pairs = pairs  # kept: identity of the schedules is the key
        tables = [np.ones(1, np.float32)]
        where: dict[int, int] = {}

        def index(schedule, none: int) -> int:
            # in the vector [base, 1, schedules...]: 0 the base rate, 1 the number one
            if schedule is None:
                return none
            if id(schedule) not in where:
                where[id(schedule)] = len(tables) + 1
                tables.append(column(schedule))
            return where[id(schedule)]

        distinct: dict[tuple, int] = {}
        self.index, self.multiplier_index = [], []
        for source, multiplier in pairs:
            key = (index(source, 0), index(multiplier, 1))
            self.index.append(distinct.setdefault(key, len(distinct)))
            self.multiplier_index.append(key[1])
        self.uses_base = any(source is None for source, _ in pairs)
        self.stacked = Stacked(tables)
        self.sources = np.asarray([k[0] for k in distinct], np.int64)
        self.multipliers = np.asarray([k[1] for k in distinct], np.int64)
        self.on_device: dict = {}

    def same(self, pairs: list) -> bool:
        return len(pairs) == len(self.pairs) and all(
            a is c and b is d for (a, b), (c, d) in zip(pairs, self.pairs, strict=True))

    def __call__(self, base, step):
        """``(values, rates)`` at the 0-d integer torch ``step``, the base rate ``base``
        (a 0-d float32 tensor; unused, may be None, where no group takes it): ``values``
        the vector ``[base, 1, schedules...]`` (``multiplier_index`` points in it),
        ``rates`` the distinct rates (``index`` points in it)."""
        import torch

        indices = self.on_device.get(step.device)
        if indices is None:
            indices = self.on_device[step.device] = (
                torch.as_tensor(self.sources, device=step.device),
                torch.as_tensor(self.multipliers, device=step.device))
        looked_up = self.stacked(step)
        head = base.reshape(1) if self.uses_base else looked_up[:1]
        values = torch.cat([head, looked_up])
        rates = torch.index_select(values, 0, indices[0]) * torch.index_select(
            values, 0, indices[1])
        return values, rates
