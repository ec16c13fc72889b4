"""The formula namespace, and its NumPy evaluator ``Host``.

A schedule's formula is written once against a small namespace of operations
(``xp``). ``Host`` runs it with NumPy in float64 over an array of steps
(``schedule.at``); ``Graph`` (``_graph``) runs it with ``keras.ops`` inside the
traced train step (``schedule(step)``). Only operations that trace on
TensorFlow (incl. XLA), JAX and torch are used: no Python branching on values,
and piece look-ups are ``searchsorted`` + ``take`` rather than chains of
conditionals. The constants and helpers here are both evaluators'.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MAX = 2**31 - 1


#: relative distance below a boundary within which a step counts as past it
JOIN_TOLERANCE = 1e-9


def past(boundaries) -> np.ndarray:
    """Boundaries moved down by ``JOIN_TOLERANCE`` (relative, at least absolute).

    Joins computed from sums of durations that are not whole numbers (0.3 of
    a run, 3.2 + 6.4 steps) land a rounding error before or after the step
    they stand for; for the joins a composition computes (sequence joins,
    restart cycle starts) both evaluators count a step within this tolerance
    of the join as past it, so the piece after a join begins at the join's
    step whichever way the sum rounded, on every CPU and backend. Boundaries
    given by the user (``Piecewise``, ``Interpolate``) are taken as given.
    """
    b = np.asarray(boundaries, np.float64)
    return b - JOIN_TOLERANCE * np.maximum(np.abs(b), 1.0)


def half_cosine(remaining, xp, per: float = 1.0):
    """The half-cosine factor ``(1 + cos(pi u)) / 2`` from the remaining fraction
    ``r = 1 - u`` (``remaining / per``), written ``sin(pi r / 2) ** 2``: 1 at the start and
    exactly 0 at the end. The one cosine every schedule uses."""
    half = xp.sin(remaining * (0.5 * math.pi / per))
    return half * half


def _float64(values) -> np.ndarray:
    return np.asarray(values, np.float64)


def _whole(c) -> bool:
    return isinstance(c, (int, float)) and not isinstance(c, bool) and float(c).is_integer() \
        and abs(c) <= INT32_MAX


class Host:
    """NumPy, float64."""

    dtype = "float64"
    #: floating-point warnings NumPy would give where a formula means inf (Graph: none)
    errstate = staticmethod(np.errstate)

    @staticmethod
    def const(x):
        return np.asarray(x, dtype=np.float64)

    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    abs = staticmethod(np.abs)
    tanh = staticmethod(np.tanh)
    power = staticmethod(np.power)
    expm1 = staticmethod(np.expm1)
    log1p = staticmethod(np.log1p)

    @staticmethod
    def float(t):
        return t

    @staticmethod
    def bucket(boundaries, t, snap: bool = False):
        """Number of boundaries <= t (index of the piece that contains t); ``snap``: computed
        joins, see ``past``."""
        edges = past(boundaries) if snap else np.asarray(boundaries, np.float64)
        return np.searchsorted(edges, t, side="right")

    @staticmethod
    def gather(values, index):
        return np.asarray(values, np.float64)[index]

    @staticmethod
    def select(columns, index):
        """``columns[index[j]][j]`` for every j (pick one piece's value per step)."""
        stacked = np.stack([np.broadcast_to(c, index.shape) for c in columns])
        return np.take_along_axis(stacked, index[None, :], axis=0)[0]

    @staticmethod
    def piecewise(t, index, branches):
        """``branches[index[j]](t)[j]`` for every j, each branch run on its own steps only."""
        out = np.empty(t.shape, np.float64)
        if t.size > 1 and np.all(index[1:] >= index[:-1]):  # sorted steps: contiguous runs
            edges = np.searchsorted(index, np.arange(len(branches) + 1))
            for i, branch in enumerate(branches):
                a, b = edges[i], edges[i + 1]
                if b > a:
                    out[a:b] = branch(t[a:b])
            return out
        for i, branch in enumerate(branches):
            mask = index == i
            if mask.any():
                out[mask] = np.broadcast_to(branch(t[mask]), (int(mask.sum()),))
        return out

    @classmethod
    def pieces(cls, t, boundaries, branches, snap: bool = False):
        """``branches[bucket(boundaries, t)](t)``: the piece each step falls in."""
        return cls.piecewise(t, cls.bucket(boundaries, t, snap), branches)

    @staticmethod
    def floordiv(t, d):
        """``(i, t - i * d)`` with ``i = floor(t / d)`` (i as float)."""
        i = np.floor(t / d)
        return i, t - i * d

    @staticmethod
    def quotient(t, k):
        """``floor(t / k)`` as a step."""
        return np.floor(t / k)

    @staticmethod
    def offset(t, table, index):
        """``t - table[index]``."""
        return t - np.asarray(table, np.float64)[index]

    @staticmethod
    def cycles(t, starts):
        """``(i, t - starts[i])`` where ``starts[i] <= t < starts[i + 1]`` (i an index)."""
        i = np.searchsorted(np.asarray(starts[1:], np.float64), t, side="right")
        return i, t - np.asarray(starts, np.float64)[i]


def _number(c) -> bool:
    return isinstance(c, (int, float, np.floating, np.integer)) and not isinstance(c, bool)
