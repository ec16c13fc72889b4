"""The two evaluators behind every formula.

A schedule's formula is written once against the small namespace below. ``Host``
runs it with NumPy in float64 over an array of steps (``schedule.at``); ``Graph``
runs it with ``keras.ops`` inside the traced train step (``schedule(step)``).
Only operations that trace on TensorFlow (incl. XLA), JAX and torch are used:
no Python branching on values, and piece look-ups are ``searchsorted`` +
``take`` rather than chains of conditionals.

Precision: TensorFlow and torch compute in float64 in-graph. JAX (without x64)
has only float32, which cannot hold integer steps above 2**24 exactly; there the
step is carried as an ``ExactStep`` (an int32 plus a float32 fraction) through
shifts, clipping, floor division and table look-ups, so every piece's *local*
step is exact wherever the piece starts (joins, knots, cycle starts past 2**24).
Formulas never see it: ``Schedule._eval`` hands them ``xp.float(t)``.
"""

from __future__ import annotations

import math
import weakref

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


class ExactStep:
    """A step held exactly as ``n + f``: an int32 ``n`` and a float32 ``f`` in [0, 1).

    Used on JAX without x64, where float32 cannot hold integer steps above
    2**24. Shifts by any constant (``t - c``), clipping against constants,
    floor division by whole numbers and offsets looked up in tables stay
    exact, so a piece's local step is exact wherever its start lies. Only
    structural pieces (sequences, restarts, knots) handle it; a formula
    receives ``xp.float(t)``, which the base class does for every formula.
    """

    def __init__(self, n, f, graph: Graph):
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


def _number(c) -> bool:
    return isinstance(c, (int, float, np.floating, np.integer)) and not isinstance(c, bool)


def _split(values) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values as (int32 whole part, float32 fraction in [0, 1))."""
    values = np.minimum(np.asarray(values, np.float64), INT32_MAX)
    whole = np.floor(values)
    return whole.astype("int32"), (values - whole).astype("float32")


_TORCH_CONSTANTS: dict = {}
_EAGER: dict = {}


def _torch_constant(array: np.ndarray, dtype: str, device, transform=None):
    """A torch tensor of ``array`` (a table a schedule keeps) or of ``transform(array)``,
    made once per dtype and device."""
    import torch

    key = (id(array), dtype, device, transform)
    hit = _TORCH_CONSTANTS.get(key)
    if hit is not None and hit[0]() is array:
        return hit[1]
    if len(_TORCH_CONSTANTS) > 4096:  # forget tables of schedules that are gone
        for k in [k for k, (ref, _) in _TORCH_CONSTANTS.items() if ref() is None]:
            del _TORCH_CONSTANTS[k]
    values = array if transform is None else transform(array)
    tensor = torch.as_tensor(np.asarray(values, dtype=dtype), device=device)
    _TORCH_CONSTANTS[key] = (weakref.ref(array), tensor)
    return tensor


class _TorchOps:
    """The few ``keras.ops`` the evaluator uses, as plain torch calls.

    On torch every operation runs eagerly and ``keras.ops`` adds its own
    conversion and dtype handling around each; the evaluator's inputs are
    already tensors of the right dtype, so it calls torch directly (several
    times cheaper per operation, and float64 stays float64 throughout).
    """

    #: looked up once (``__getattr__`` finds the others on every call)
    DIRECT = ("where", "sin", "cos", "exp", "log", "sqrt", "abs", "tanh", "expm1", "log1p",
              "reshape", "squeeze", "broadcast_to", "stack", "zeros_like")

    def __init__(self, device):
        import torch

        self.t = torch
        self.device = device
        for name in self.DIRECT:
            setattr(self, name, getattr(torch, name))

    def _dtype(self, dtype):
        return getattr(self.t, dtype)

    def convert_to_tensor(self, x, dtype=None):
        if self.t.is_tensor(x):
            if dtype is None:
                return x
            dtype = self._dtype(dtype)
            return x if x.dtype == dtype else x.to(dtype)
        return self.t.as_tensor(np.asarray(x), device=self.device,
                                dtype=None if dtype is None else self._dtype(dtype))

    def cast(self, x, dtype):
        return self.convert_to_tensor(x, dtype)

    def mod(self, a, b):
        return self.t.remainder(a, b)

    def power(self, a, b):
        return self.t.pow(a, b)

    def searchsorted(self, seq, values, side="left"):
        return self.t.searchsorted(seq, values, right=side == "right")

    def take(self, x, index, axis=0):
        # x[index] with a 0-d index tensor reads the index on the host (.item()): a sync
        index = index.long()
        if axis == 0 and len(x.shape) == 1:
            return self.t.take(x, index)  # one operation, any index shape
        return self.t.index_select(x, axis, index.reshape(-1)).reshape(
            x.shape[:axis] + index.shape + x.shape[axis + 1:])

    def take_along_axis(self, x, index, axis=0):
        return self.t.take_along_dim(x, index.long(), dim=axis)

    def expand_dims(self, x, axis):
        return self.t.unsqueeze(x, axis)

    def shape(self, x):
        return tuple(x.shape)

    def sum(self, x, axis=None):
        return self.t.sum(x, dim=axis)

    def full_like(self, x, value, dtype=None):
        return self.t.full_like(x, value, dtype=None if dtype is None else self._dtype(dtype))

    def clip(self, x, lo, hi):
        return self.t.clamp(x, lo, hi)

    def minimum(self, a, b):
        return self.t.clamp(a, max=b) if _number(b) else self.t.minimum(a, b)

    def maximum(self, a, b):
        return self.t.clamp(a, min=b) if _number(b) else self.t.maximum(a, b)

    def __getattr__(self, name):  # where, cos, sin, exp, stack, reshape, minimum, ...
        return getattr(self.t, name)


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
            return self._upper_bound(moved(boundaries), t)
        else:
            edges = self.const(moved(boundaries))
        return self.ops.searchsorted(edges, t, side="right")

    def _upper_bound(self, edges: np.ndarray, t):
        """TensorFlow: the number of ``edges`` <= ``t`` (int32), in as few graph operations
        as it takes: one comparison for one edge, else the bare ``UpperBound`` kernel
        (``tf.searchsorted`` adds a dozen shape operations around it)."""
        import tensorflow as tf

        if edges.size == 1:
            return self.ops.cast(t >= float(edges[0]), "int32")
        found = tf.raw_ops.UpperBound(sorted_inputs=tf.constant(edges[None, :], t.dtype),
                                      values=tf.expand_dims(t, 0), out_type=tf.int32)
        return tf.squeeze(found, 0)

    def gather(self, values, index):
        if self.backend == "torch" and isinstance(values, np.ndarray) and values.ndim == 1:
            return self.ops.t.take(_torch_constant(values, self.dtype, self.ops.device),
                                   index.long())
        if self.backend == "tensorflow":  # indices are in range: none of take's wrapping
            import tensorflow as tf

            return tf.gather(self.const(values), index)
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


def variable_readers(schedule) -> list:
    """The pieces of ``schedule`` whose value reads a variable (a plateau multiplier, a
    cooldown's start), each with ``host_state()``: what their values depend on besides
    the step. Worked out once per schedule."""
    def find():
        from .base import Recipe
        from .planned import Planned

        out, todo = [], [schedule]
        while todo:
            s = todo.pop()
            if getattr(s, "reads_variables", False):
                out.append(s)
            todo.extend(s._children())
            if isinstance(s, Planned):
                todo.append(s.resolved)
            elif isinstance(s, Recipe) and not s.is_symbolic:
                todo.append(s._built())
        return out

    return schedule.cached("variable readers", find)


def reads_variables(schedule) -> bool:
    """Whether the schedule's value depends on a variable: its values cannot be tabulated
    ahead of time for good."""
    return bool(variable_readers(schedule))


def host_state(schedule) -> tuple:
    """The values, read now, of the variables ``schedule`` reads (``()`` for most):
    host values computed earlier hold while this is unchanged."""
    return tuple(s.host_state() for s in variable_readers(schedule))


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


#: On TensorFlow (graph mode) the schedule's value at the optimizer's step counter is
#: built once per traced graph: Keras evaluates the rate once more per variable for weight
#: decay, and a graph does not merge the copies.
TRACE_REUSE = True


def once_per_trace(schedule, counter, compute):
    """``compute(counter)``, reused within the graph being traced (TensorFlow).

    Within one graph the counter's value does not change between the rate's
    evaluations of one optimizer step (Keras increments it after the update),
    so the first value built in the graph is the value of every later call in
    it. Eager calls, other graphs and cond/while branch graphs compute anew.
    The values are kept on the graph itself, so they go with it.
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return compute(counter)
    graph = tf.compat.v1.get_default_graph()
    built = getattr(graph, "_stepsched_rates", None)
    if built is None:
        built = {}
        try:
            graph._stepsched_rates = built
        except AttributeError:  # a graph that takes no attributes: no reuse
            return compute(counter)
    key = (id(schedule), id(counter))
    hit = built.get(key)
    if hit is not None and hit[0] is schedule and hit[1] is counter:
        return hit[2]
    value = compute(counter)
    built[key] = (schedule, counter, value)
    return value
