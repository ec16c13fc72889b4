"""The two evaluators behind every formula.

A schedule's formula is written once against the small namespace below. ``Host``
runs it with NumPy in float64 over an array of steps (``schedule.at``); ``Graph``
runs it with ``keras.ops`` inside the traced train step (``schedule(step)``).
Only operations that trace on TensorFlow (incl. XLA), JAX and torch are used:
no Python branching on values, and piece look-ups are ``searchsorted`` +
``take`` rather than chains of conditionals.

Precision: TensorFlow and torch compute in float64 in-graph. JAX (without x64)
has only float32, which cannot hold integer steps above 2**24 exactly; there the
step is carried as an exact int32 (``ExactStep``) through whole-number shifts,
clipping, floor division and cycle look-ups, so periodic schedules keep their
phase up to step 2**31 - 1. Smooth formulas see it as float32.
"""

from __future__ import annotations

import numpy as np

INT32_MAX = 2**31 - 1


def _whole(c) -> bool:
    return isinstance(c, (int, float)) and not isinstance(c, bool) and float(c).is_integer() \
        and abs(c) <= INT32_MAX


class Host:
    """NumPy, float64."""

    dtype = "float64"

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
    def bucket(boundaries, t):
        """Number of boundaries <= t (index of the piece that contains t)."""
        return np.searchsorted(np.asarray(boundaries, np.float64), t, side="right")

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
    def cycles(t, starts):
        """``(i, t - starts[i])`` where ``starts[i] <= t < starts[i + 1]`` (i an index)."""
        i = np.searchsorted(np.asarray(starts[1:], np.float64), t, side="right")
        return i, t - np.asarray(starts, np.float64)[i]


class ExactStep:
    """A step held exactly as an int32 tensor (JAX without x64).

    Whole-number shifts stay exact; any other arithmetic sees it as float32.
    """

    def __init__(self, n, graph: Graph):
        self.n = n
        self.graph = graph

    def as_float(self):
        return self.graph.ops.cast(self.n, self.graph.dtype)

    def __jax_array__(self):
        return self.as_float()

    @property
    def shape(self):
        return self.graph.ops.shape(self.n)

    def __sub__(self, c):
        if _whole(c):
            return ExactStep(self.n - int(c), self.graph)
        return self.as_float() - c

    def __add__(self, c):
        if _whole(c):
            return ExactStep(self.n + int(c), self.graph)
        return self.as_float() + c

    __radd__ = __add__

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

    def __lt__(self, c):
        return self.as_float() < c

    def __le__(self, c):
        return self.as_float() <= c

    def __gt__(self, c):
        return self.as_float() > c

    def __ge__(self, c):
        return self.as_float() >= c


class Graph:
    """``keras.ops`` on the active backend; float64 where the backend allows it."""

    def __init__(self, dtype: str):
        from keras import ops

        self.ops = ops
        self.dtype = dtype
        self.exact = dtype == "float32"
        self.scalar = False  # True when evaluating the optimizer's single step

    def _f(self, x):
        return x.as_float() if isinstance(x, ExactStep) else x

    def step(self, step):
        """The evaluator's view of an integer step tensor (flattened)."""
        ops = self.ops
        import keras

        step = ops.reshape(step, (-1,))
        if self.exact and "int" in keras.backend.standardize_dtype(step.dtype):
            return ExactStep(ops.cast(step, "int32"), self)
        return ops.cast(step, self.dtype)

    def float(self, t):
        return self._f(t)

    def const(self, x):
        return self.ops.convert_to_tensor(np.asarray(x, dtype=self.dtype))

    def where(self, c, a, b):
        return self.ops.where(c, self._t(a), self._t(b))

    # minimum, maximum and floor are written with where/mod: keras.ops.minimum,
    # maximum, floor and ceil return float32 for float64 inputs on torch.
    def _t(self, x):
        x = self._f(x)
        return x if hasattr(x, "shape") else self.const(x)

    def _is_int(self, x) -> bool:
        import keras

        return hasattr(x, "dtype") and "int" in keras.backend.standardize_dtype(x.dtype)

    def minimum(self, a, b):
        if isinstance(a, ExactStep) and _whole(b):
            return ExactStep(self.ops.minimum(a.n, int(b)), self)
        if self._is_int(a):  # an index
            return self.ops.minimum(a, b)
        a, b = self._t(a), self._t(b)
        return self.ops.where(a < b, a, b)

    def maximum(self, a, b):
        if isinstance(a, ExactStep) and _whole(b):
            return ExactStep(self.ops.maximum(a.n, int(b)), self)
        if self._is_int(a):  # an index
            return self.ops.maximum(a, b)
        a, b = self._t(a), self._t(b)
        return self.ops.where(a > b, a, b)

    def floor(self, x):
        if isinstance(x, ExactStep):
            return x
        x = self._t(x)
        return x - self.ops.mod(x, self.const(1.0))

    def ceil(self, x):
        return x if isinstance(x, ExactStep) else -self.floor(-self._f(x))

    def cos(self, x):
        return self.ops.cos(self._f(x))

    def sin(self, x):
        return self.ops.sin(self._f(x))

    def exp(self, x):
        return self.ops.exp(self._f(x))

    def log(self, x):
        return self.ops.log(self._f(x))

    def sqrt(self, x):
        return self.ops.sqrt(self._f(x))

    def abs(self, x):
        return self.ops.abs(self._f(x))

    def tanh(self, x):
        return self.ops.tanh(self._f(x))

    def expm1(self, x):
        return self.ops.expm1(self._t(x))

    def log1p(self, x):
        return self.ops.log1p(self._t(x))

    def power(self, x, y):
        x, y = self._f(x), self._f(y)
        return self.ops.power(x if hasattr(x, "shape") else self.const(x),
                              y if hasattr(y, "shape") else self.const(y))

    def bucket(self, boundaries, t):
        if isinstance(t, ExactStep):
            # for an integer n: b <= n  <=>  ceil(b) <= n
            edges = np.ceil(np.asarray(boundaries, np.float64))
            edges = edges[edges <= INT32_MAX]  # never reached by an int32 step
            if edges.size == 0:
                return self.ops.zeros_like(t.n)
            return self.ops.searchsorted(self.ops.convert_to_tensor(edges.astype("int32")),
                                         t.n, side="right")
        return self.ops.searchsorted(self.const(boundaries), t, side="right")

    def gather(self, values, index):
        return self.ops.take(self.const(values), index, axis=0)

    def select(self, columns, index):
        ops = self.ops
        stacked = ops.stack([ops.broadcast_to(ops.cast(self._f(c), self.dtype), ops.shape(index))
                             for c in columns])
        return ops.take_along_axis(stacked, ops.expand_dims(index, 0), axis=0)[0]

    def piecewise(self, t, index, branches):
        """``branches[index](t)``: for the optimizer's scalar step only the active branch
        runs (``switch``); for a vector of steps every branch runs and one is picked."""
        ops = self.ops
        if not self.scalar:
            return self.select([branch(t) for branch in branches], index)
        exact = isinstance(t, ExactStep)

        def run(branch):
            def call(x):
                value = branch(ExactStep(x, self) if exact else x)
                return ops.broadcast_to(ops.cast(self._f(value), self.dtype), (1,))
            return call

        return ops.switch(index[0],
                          [run(b) for b in branches], t.n if exact else t)

    def floordiv(self, t, d):
        if isinstance(t, ExactStep) and _whole(d) and d >= 1:
            i = t.n // int(d)
            return self.ops.cast(i, self.dtype), ExactStep(t.n - i * int(d), self)
        i = self.floor(self._f(t) / d)
        return i, self._f(t) - i * d

    def quotient(self, t, k):
        if isinstance(t, ExactStep) and _whole(k) and k >= 1:
            return ExactStep(t.n // int(k), self)
        return self.floor(self._f(t) / k)

    def cycles(self, t, starts):
        i = self.bucket(starts[1:], t)
        starts = np.asarray(starts, np.float64)
        if isinstance(t, ExactStep):
            whole = np.minimum(np.floor(starts), INT32_MAX).astype("int32")
            shift = self.ops.take(self.ops.convert_to_tensor(whole), i, axis=0)
            local = self.ops.cast(t.n - shift, self.dtype) - self.gather(starts - whole, i)
        else:
            local = t - self.gather(starts, i)
        return i, local


def graph_dtype() -> str:
    """float64 in-graph where the backend supports it, float32 on JAX without x64."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


def max_step(t) -> float:
    """Largest step the evaluator can be asked about (for sizing look-up tables)."""
    if isinstance(t, np.ndarray):
        return float(t.max()) if t.size else 0.0
    return float(INT32_MAX) if isinstance(t, ExactStep) else 2.0**53
