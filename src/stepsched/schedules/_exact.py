"""``ExactStep``: the optimizer's step, held exactly on JAX without x64.

Precision: TensorFlow and torch compute in float64 in-graph. JAX (without x64)
has only float32, which cannot hold integer steps above 2**24 exactly; there the
step is carried as an ``ExactStep`` (an int32 plus a float32 fraction) through
shifts, clipping, floor division and table look-ups, so every piece's *local*
step is exact wherever the piece starts (joins, knots, cycle starts past 2**24).
Formulas never see it: ``Schedule._eval`` hands them ``xp.float(t)``.
"""

from __future__ import annotations

import math

import numpy as np

from ._host import INT32_MAX, _number


class ExactStep:
    """A step held exactly as ``n + f``: an int32 ``n`` and a float32 ``f`` in [0, 1).

    Used on JAX without x64, where float32 cannot hold integer steps above
    2**24. Shifts by any constant (``t - c``), clipping against constants,
    floor division by whole numbers and offsets looked up in tables stay
    exact, so a piece's local step is exact wherever its start lies. Only
    structural pieces (sequences, restarts, knots) handle it; a formula
    receives ``xp.float(t)``, which the base class does for every formula.
    """

    def __init__(self, n, f, graph):  # graph: the ``_graph.Graph`` evaluator
        self.n = n
        self.f = f  # None means 0
        self.graph = graph

    def as_float(self):
        ops, dtype = self.graph.ops, self.graph.dtype
        value = ops.cast(self.n, dtype)
        return value if self.f is None else value + self.f

    @property
    def shape(self):
        return self.graph.ops.shape(self.n)

    def shift(self, c: float):
        """``self + c`` for a Python number ``c``, exactly."""
        if not abs(c) <= INT32_MAX:
            return self.as_float() + c
        whole = math.floor(c)
        frac = c - whole
        n = self.n + whole if whole else self.n
        if frac == 0.0:
            return ExactStep(n, self.f, self.graph)
        return self.graph._normalized(n, frac if self.f is None else self.f + frac)

    def __add__(self, c):
        if _number(c):
            return self.shift(float(c))
        return self.as_float() + c

    __radd__ = __add__

    def __sub__(self, c):
        if _number(c):
            return self.shift(-float(c))
        return self.as_float() - c

    def __rsub__(self, c):
        return c - self.as_float()

    def __mul__(self, c):
        return self.as_float() * c

    __rmul__ = __mul__

    def __truediv__(self, c):
        return self.as_float() / c

    def __rtruediv__(self, c):
        return c / self.as_float()

    def __neg__(self):
        return -self.as_float()

    def less(self, c: float):
        """``self < c`` for a Python number ``c``, exactly."""
        if not abs(c) <= INT32_MAX:
            return self.graph.ops.full_like(self.n, c > 0, dtype="bool")
        whole = math.floor(c)
        frac = c - whole
        if self.f is None:
            return self.n < whole if frac == 0.0 else self.n <= whole
        return (self.n < whole) | ((self.n == whole) & (self.f < frac))

    def __lt__(self, c):
        return self.less(float(c)) if _number(c) else self.as_float() < c

    def __ge__(self, c):
        return ~self.less(float(c)) if _number(c) else self.as_float() >= c

    def __gt__(self, c):
        return self.as_float() > c

    def __le__(self, c):
        return self.as_float() <= c


def _split(values) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values as (int32 whole part, float32 fraction in [0, 1))."""
    values = np.minimum(np.asarray(values, np.float64), INT32_MAX)
    whole = np.floor(values)
    return whole.astype("int32"), (values - whole).astype("float32")
