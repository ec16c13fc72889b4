"""``Graph``: the formula namespace on ``keras.ops``, for the traced train step.

``schedule(step)`` evaluates the formula with it, in float64 where the backend
allows it (on JAX without x64 the step is an ``ExactStep``, see ``_exact``).
On torch it calls torch directly (``_torch_ops``), on TensorFlow a few bare
graph operations (``_tf_ops``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _tf_ops
from ._exact import ExactStep, _split
from ._host import INT32_MAX, _float64, _number, _whole, past
from ._torch_ops import _torch_constant, _TorchOps

_EAGER: dict = {}


_INTEGER_DTYPES: dict = {}


def _integer_dtype(dtype) -> bool:
    hit = _INTEGER_DTYPES.get(dtype)
    if hit is None:
        import keras

        hit = _INTEGER_DTYPES[dtype] = "int" in keras.backend.standardize_dtype(dtype)
    return hit


class Graph:
    """``keras.ops`` on the active backend; float64 where the backend allows it."""

    @classmethod
    def eager(cls, dtype: str, device, scalar: bool) -> Graph:
        """An evaluator for torch's eager calls, made once per dtype, device and kind of
        step (an evaluator is never changed after it is made: threads may share it)."""
        key = (dtype, device, scalar)
        xp = _EAGER.get(key)
        if xp is None:
            xp = _EAGER[key] = cls(dtype, device, scalar)
        return xp

    def __init__(self, dtype: str, device=None, scalar: bool = False):
        import keras
        from keras import ops

        self.backend = keras.backend.backend()
        self.ops = _TorchOps(device) if self.backend == "torch" else ops
        self.dtype = dtype
        self.exact = dtype == "float32"
        self.scalar = scalar  # True when evaluating the optimizer's single step

    @staticmethod
    def errstate(**kwargs):
        import contextlib

        return contextlib.nullcontext()  # tensors do not warn (nor trace np.errstate)

    def step(self, step):
        """The evaluator's view of an integer step tensor: flattened, except torch's scalar
        step (eager: one operation fewer before and after)."""
        ops = self.ops
        if not (self.backend == "torch" and len(step.shape) == 0):
            step = ops.reshape(step, (-1,))
        if self.exact and self._is_int(step):
            return ExactStep(ops.cast(step, "int32"), None, self)
        return ops.cast(step, self.dtype)

    def _normalized(self, n, f):
        """``ExactStep(n, f)`` with ``f`` brought back into [0, 1)."""
        ops = self.ops
        carry = ops.floor(f)
        return ExactStep(n + ops.cast(carry, "int32"), f - carry, self)

    def float(self, t):
        return t.as_float() if isinstance(t, ExactStep) else t

    _f = float

    def const(self, x):
        if self.backend == "torch" and isinstance(x, np.ndarray) and x.size > 1:
            return _torch_constant(x, self.dtype, self.ops.device)
        return self.ops.convert_to_tensor(np.asarray(x, dtype=self.dtype))

    def _t(self, x):
        x = self._f(x)
        return x if hasattr(x, "shape") else self.const(x)

    def where(self, c, a, b):
        return self.ops.where(c, self._t(a), self._t(b))

    def _is_int(self, x) -> bool:
        return hasattr(x, "dtype") and _integer_dtype(x.dtype)

    def _pick(self, cond, a: ExactStep, c: float) -> ExactStep:
        """``where(cond, a, c)`` for an exact step ``a`` and a number ``c`` (|c| <= INT32_MAX)."""
        ops = self.ops
        whole = math.floor(c)
        n = ops.where(cond, a.n, whole)
        frac = c - whole
        if a.f is None and frac == 0.0:
            return ExactStep(n, None, self)
        f = ops.where(cond, a.f if a.f is not None else 0.0, frac)
        return ExactStep(n, ops.cast(f, "float32"), self)

    # floor is written with mod: keras.ops.floor and ceil return float32 for float64
    # inputs on torch (minimum and maximum keep float64; on torch they are clamps).
    def _bound(self, a, b):
        a, b = self._f(a), self._f(b)
        if not hasattr(a, "shape"):
            a, b = b, a  # a number and a tensor: min and max are symmetric
            if not hasattr(a, "shape"):
                a = self.const(a)
        if _number(b):
            return a, float(b)
        return a, (b if hasattr(b, "shape") else self.const(b))

    def minimum(self, a, b):
        if isinstance(a, ExactStep) and _number(b) and abs(b) <= INT32_MAX:
            return self._pick(a.less(float(b)), a, float(b))
        if self._is_int(a):  # an index
            return self.ops.minimum(a, b)
        return self.ops.minimum(*self._bound(a, b))

    def maximum(self, a, b):
        if isinstance(a, ExactStep) and _number(b) and abs(b) <= INT32_MAX:
            return self._pick(~a.less(float(b)), a, float(b))
        if self._is_int(a):  # an index
            return self.ops.maximum(a, b)
        return self.ops.maximum(*self._bound(a, b))

    def floor(self, x):
        if isinstance(x, ExactStep):
            return ExactStep(x.n, None, self)
        x = self._t(x)
        return x - self.ops.mod(x, self.const(1.0))

    def ceil(self, x):
        if isinstance(x, ExactStep):
            if x.f is None:
                return x
            return ExactStep(x.n + self.ops.cast(x.f > 0, "int32"), None, self)
        return -self.floor(-self._f(x))

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
        return self.ops.power(self._t(x), self._t(y))

    def bucket(self, boundaries, t, snap: bool = False):
        moved = past if snap else _float64
        if isinstance(t, ExactStep) and t.f is None:
            # for an integer n: b <= n  <=>  ceil(b) <= n
            edges = np.ceil(moved(boundaries))
            edges = edges[edges <= INT32_MAX]  # never reached by an int32 step
            if edges.size == 0:
                return self.ops.zeros_like(t.n)
            return self.ops.searchsorted(self.ops.convert_to_tensor(edges.astype("int32")),
                                         t.n, side="right")
        if isinstance(t, ExactStep):
            # n + f against every boundary bi + bf: the sign of (bi - n) + (bf - f) is exact
            # where it matters (bi near n), so the count is exact at any distance
            ops = self.ops
            whole, frac = _split(moved(boundaries))
            gap = ops.cast(ops.convert_to_tensor(whole)[None, :] - t.n[:, None], "float32")
            gap = gap + (ops.convert_to_tensor(frac)[None, :] - t.f[:, None])
            return ops.sum(ops.cast(gap <= 0.0, "int32"), axis=1)
        if self.backend == "torch" and isinstance(boundaries, np.ndarray):
            edges = _torch_constant(boundaries, self.dtype, self.ops.device,
                                    past if snap else None)
        elif self.backend == "tensorflow":
            return _tf_ops.upper_bound(moved(boundaries), t, self.ops)
        else:
            edges = self.const(moved(boundaries))
        return self.ops.searchsorted(edges, t, side="right")

    def gather(self, values, index):
        if self.backend == "torch" and isinstance(values, np.ndarray) and values.ndim == 1:
            return self.ops.t.take(_torch_constant(values, self.dtype, self.ops.device),
                                   index.long())
        if self.backend == "tensorflow":  # indices are in range: none of take's wrapping
            return _tf_ops.gather(self.const(values), index)
        return self.ops.take(self.const(values), index, axis=0)

    def offset(self, t, table, index):
        """``t - table[index]`` (a step), exact for an exact step."""
        if not isinstance(t, ExactStep):
            return t - self.gather(table, index)
        ops = self.ops
        whole, frac = _split(table)
        n = t.n - ops.take(ops.convert_to_tensor(whole), index, axis=0)
        f = -ops.take(ops.convert_to_tensor(frac), index, axis=0)
        if t.f is not None:
            f = f + t.f
        return self._normalized(n, f)

    #: pieces up to which ``select`` is a chain of ``where`` on TensorFlow and torch (fewer
    #: graph operations, or eager calls, than a stack and a gather), and TensorFlow's scalar
    #: ``piecewise`` runs every piece (cheaper than a ``switch``, whose branch functions
    #: cost more than small pieces)
    FEW_PIECES = 8

    def select(self, columns, index):
        ops = self.ops
        if self.backend in ("tensorflow", "torch") and len(columns) <= self.FEW_PIECES:
            out = ops.cast(self._t(columns[0]), self.dtype)
            if len(columns) == 1:
                return ops.where(index >= 0, out, out)  # the shape of index (broadcast)
            for i in range(1, len(columns)):  # where broadcasts the values to index's shape
                out = ops.where(index >= i, ops.cast(self._t(columns[i]), self.dtype), out)
            return out
        stacked = ops.stack([ops.broadcast_to(ops.cast(self._f(c), self.dtype), ops.shape(index))
                             for c in columns])
        return ops.take_along_axis(stacked, ops.expand_dims(index, 0), axis=0)[0]

    def piecewise(self, t, index, branches):
        """``branches[index](t)``: for the optimizer's scalar step only the active branch
        runs (``switch``); for a vector of steps every branch runs and one is picked."""
        ops = self.ops
        if not self.scalar or self.backend == "torch" or (
                self.backend == "tensorflow" and len(branches) <= self.FEW_PIECES):
            # torch's switch is branches[index]: a device-to-host sync on every call
            return self.select([branch(t) for branch in branches], index)
        exact = isinstance(t, ExactStep)
        with_f = exact and t.f is not None

        def run(branch):
            def call(*operands):
                if exact:
                    x = ExactStep(operands[0], operands[1] if with_f else None, self)
                else:
                    x = operands[0]
                value = branch(x)
                return ops.broadcast_to(ops.cast(self._f(value), self.dtype), (1,))
            return call

        operands = ((t.n, t.f) if with_f else (t.n,)) if exact else (t,)
        return ops.switch(index[0], [run(b) for b in branches], *operands)

    def pieces(self, t, boundaries, branches, snap: bool = False):
        """``branches[bucket(boundaries, t)](t)``. TensorFlow, few pieces: every branch runs
        and ``where(t >= boundary, ...)`` picks, with no piece index built."""
        if self.backend == "tensorflow" and not isinstance(t, ExactStep) and \
                len(branches) <= self.FEW_PIECES:
            edges = past(boundaries) if snap else _float64(boundaries)
            ops = self.ops
            out = ops.cast(self._t(branches[0](t)), self.dtype)
            for edge, branch in zip(edges, branches[1:], strict=True):
                out = ops.where(t >= float(edge), ops.cast(self._t(branch(t)), self.dtype), out)
            return out
        return self.piecewise(t, self.bucket(boundaries, t, snap), branches)

    def floordiv(self, t, d):
        """``(i, t - i * d)`` with ``i = floor(t / d)`` (i as float, the rest a step)."""
        if isinstance(t, ExactStep) and _whole(d) and d >= 1:
            i = t.n // int(d)
            return self.ops.cast(i, self.dtype), ExactStep(t.n - i * int(d), t.f, self)
        i = self.floor(self._f(t) / d)
        return i, self._f(t) - i * d

    def quotient(self, t, k):
        if isinstance(t, ExactStep) and _whole(k) and k >= 1:
            return ExactStep(t.n // int(k), None, self)
        return self.floor(self._f(t) / k)

    def cycles(self, t, starts):
        i = self.bucket(starts[1:], t)
        return i, self.offset(t, starts, i)


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
