"""The ``Schedule`` base: one formula, two evaluators, Keras serialization.

A subclass validates its arguments, hands them to ``Schedule.__init__`` (which
keeps them for ``get_config``, ``__repr__`` and duration resolution) and writes
its formula once in ``_formula(t, xp)``, where ``t`` is the piece's local step
as a float array and ``xp`` is either the NumPy or the ``keras.ops`` evaluator.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np

from .. import _validate
from ..durations import Duration
from . import _graph, _host, _readers, _tf_trace, _torch_tables
from .preview import Previewable

_MISSING = object()

#: steps whose host values ``Schedule.value_at`` computes in one ``at()`` call
HOST_BLOCK = 256


def _resolve(value: Any, spe: float | None, total: float | None, deep: bool = False) -> Any:
    """Durations to numbers of steps; child schedules resolved into copies if ``deep``."""
    if isinstance(value, Duration):
        return value.to_steps(spe, total)
    if isinstance(value, Schedule):
        return value.resolve(spe, total) if deep else value
    if isinstance(value, (list, tuple)):
        return [_resolve(v, spe, total, deep) for v in value]
    return value


def _is_symbolic(value: Any) -> bool:
    if isinstance(value, Duration):
        return value.unit != "steps"
    if isinstance(value, Schedule):
        return value.is_symbolic
    if isinstance(value, (list, tuple)):
        return any(_is_symbolic(v) for v in value)
    return False


def _serialize(value: Any) -> Any:
    if isinstance(value, (Schedule, Duration)):
        return keras.saving.serialize_keras_object(value)
    if isinstance(value, (list, tuple)):
        return [_serialize(v) for v in value]
    return value


def _deserialize(value: Any) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        try:
            return keras.saving.deserialize_keras_object(value)
        except (AttributeError, KeyError, IndexError) as err:
            raise TypeError(f"cannot load the nested object {str(value.get('class_name'))[:80]!r}: "
                            f"{type(err).__name__}: {err}") from None
    if isinstance(value, list):
        return [_deserialize(v) for v in value]
    return value


#: The classes that a number and the operators make: ``Constant`` (a number where a
#: schedule is wanted), ``Sequence`` (``a >> b``), ``Affine`` (``s * k``, ``s + k``),
#: ``Clip`` (``s.clip()``) and ``PerUpdate`` (``s.per_update()``). They are schedules, so
#: their modules import this one; each class puts itself here when it is defined
#: (``@made_by_operators``), and this module never imports the modules above it.
_MADE_BY_OPERATORS: dict[str, type] = {}


def made_by_operators(cls: type) -> type:
    """Class decorator: ``cls`` is what a number or an operator becomes (see above)."""
    _MADE_BY_OPERATORS[cls.__name__] = cls
    return cls


def _made(name: str) -> type:
    return _MADE_BY_OPERATORS[name]


def as_schedule(value: Any, name: str = "schedule") -> Schedule:
    """A number becomes ``Constant(value)``; a Schedule passes through."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _made("Constant")(_validate.number(name, value))
    raise TypeError(f"{name} must be a stepsched Schedule or a number, got {value!r}")


class Schedule(Previewable, keras.optimizers.schedules.LearningRateSchedule):
    """Base class of every stepsched schedule.

    ``schedule(step)`` is the in-graph value (``keras.ops``, float32) at optimizer
    step ``step``; ``schedule.at(steps)`` evaluates the same formula with NumPy.
    """

    def __init__(self, **args: Any):
        self._args = dict(args)

    #: True for structural pieces (sequences, restarts, knots) whose ``_formula``
    #: takes the step as the evaluator holds it (exact on JAX); every other
    #: formula receives a plain float array.
    exact_step = False

    # ----------------------------------------------------------- arguments
    def arg(self, name: str) -> Any:
        """The argument ``name``, a duration in steps as a number.

        Raises ``UnresolvedDurationError`` for ``epochs(...)``/``fraction(...)``
        until the schedule is resolved (``resolve()`` returns a resolved copy).
        """
        memo = self.__dict__.get("_memo")
        if memo is not None:  # the common case first: evaluation reads arguments every step
            hit = memo.get(("arg", name), _MISSING)
            if hit is not _MISSING:
                return hit
        return self.cached(("arg", name), lambda: _resolve(self._args[name], None, None))

    def cached(self, key: Any, compute):
        """``compute()``, worked out once: a schedule is an immutable value.

        Evaluation runs on every step in eager mode (torch), so anything
        derived from the arguments is computed once per object.
        """
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def _children(self) -> list[Schedule]:
        out = []
        for v in self._args.values():
            if isinstance(v, Schedule):
                out.append(v)
            elif isinstance(v, (list, tuple)):
                out.extend(x for x in v if isinstance(x, Schedule))
        return out

    # What the evaluators (``_readers``, ``_torch_tables``, below this module) ask of a
    # schedule's structure; the subclasses that have one say so by overriding these.
    def _parts(self) -> list[Schedule]:
        """The schedules whose values make this one's: its arguments that are schedules
        (and, for a recipe or a plan, what it stands for)."""
        return self._children()

    def _same_values(self) -> Schedule:
        """The simplest schedule known to have this one's value at every step: itself (a
        plan that never changed: its resolved copy)."""
        return self

    def _last_piece(self) -> tuple[float, Schedule] | None:
        """``(start, piece)``: from step ``start`` on, the value is ``piece``'s at
        ``step - start`` (a relative sequence of several pieces: its last); None."""
        return None

    def _pointwise_of(self) -> Schedule | None:
        """The schedule whose value this one's ``transform(value, xp)`` maps, step by step
        (a wrapper's), or None."""
        return None

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """Where the formula changes piece, up to step ``horizon``: ``(step, label)``.
        A composite lists its joins (``stepsched.key_steps``); a formula has none."""
        return []

    @property
    def duration(self) -> float | None:
        """Length of this piece in steps (None = open-ended), durations resolved."""
        if "duration" not in self._args:
            return None
        return self.arg("duration")

    @property
    def is_finite(self) -> bool:
        """Whether the piece has a duration (known without resolving it)."""
        return self._args.get("duration") is not None

    @property
    def constant_after(self) -> float | None:
        """The step from which the value stays what it is there (None: it may change at
        any step). For most schedules the piece's ``duration``; not for a plan that
        changed during training (``Planned``), whose length is its run's while its values
        go on past the run's end."""
        return self.duration if self.is_finite else None

    @property
    def period(self) -> float | None:
        """The number of steps after which the values repeat exactly, for ever (None: they
        do not, or it is not known). Read by torch's tables, which then keep one period."""
        return None

    @property
    def is_symbolic(self) -> bool:
        """True if any duration is in epochs or as a fraction of the run (worked out once:
        the optimizer asks at every update)."""
        return self.cached("is_symbolic",
                           lambda: any(_is_symbolic(v) for v in self._args.values()))

    # ----------------------------------------------------------- resolution
    def resolve(self, steps_per_epoch: float | None = None,
                total_steps: float | None = None) -> Schedule:
        """A copy with ``epochs(...)``/``fraction(...)`` turned into steps.

        The schedule itself never changes: hand the returned copy to the
        optimizer (stepsched callbacks do this at ``fit()`` time, from fit's
        own parameters). A schedule without such durations returns itself.
        """
        if not self.is_symbolic:
            return self
        args = {k: _resolve(v, steps_per_epoch, total_steps, deep=True)
                for k, v in self._args.items()}
        return type(self)(**args)

    # ----------------------------------------------------------- evaluation
    def _formula(self, t, xp):
        raise NotImplementedError

    def _eval(self, t, xp, clip: bool = True):
        """Value at local step ``t``; finite pieces hold their end value."""
        duration = self.duration
        if clip and duration is not None:
            t = xp.minimum(t, duration)
        return self._formula(t if self.exact_step else xp.float(t), xp)

    def __call__(self, step):
        if _tf_trace.TRACE_REUSE and keras.backend.backend() == "tensorflow" and \
                isinstance(step, keras.Variable):
            return _tf_trace.once_per_trace(self, step, self._value)
        return self._value(step)

    def _value(self, step):
        if keras.backend.backend() == "torch":  # eager: every call runs, keep it short
            step = step.value if isinstance(step, keras.Variable) else \
                keras.ops.convert_to_tensor(step)
            if _torch_tables.TORCH_TABLES:
                value = _torch_tables.tabulated(self, step)
                if value is not None:
                    return value
            xp = _graph.Graph.eager(_graph.graph_dtype(), step.device, len(step.shape) == 0)
        else:
            step = keras.ops.convert_to_tensor(step)
            xp = _graph.Graph(_graph.graph_dtype(), getattr(step, "device", None),
                             len(step.shape) == 0)
        ops = xp.ops
        shape = tuple(step.shape)
        t = xp.step(step)
        value = xp.float(self._eval(t, xp))
        if not hasattr(value, "shape"):
            value = xp.const(value)
        if xp.scalar:  # one value, of shape () or (1,)
            return ops.cast(ops.squeeze(value, 0) if len(value.shape) else value, "float32")
        value = ops.cast(value, xp.dtype)
        flat = tuple(xp.float(t).shape)
        if tuple(value.shape) != flat:
            value = ops.broadcast_to(value, flat)
        return ops.cast(ops.reshape(value, shape), "float32")

    def at(self, steps: Any) -> np.ndarray | np.float32:
        """Values at ``steps`` (a step, a range or an array), computed with NumPy.

        Returns float32, the same numbers the optimizer uses. A scalar step
        gives a ``np.float32``.

        >>> import stepsched as ss
        >>> ss.Linear(0.0, 1.0, 10).at([0, 5, 10, 20]).tolist()
        [0.0, 0.5, 1.0, 1.0]
        """
        if isinstance(steps, range):
            arr = np.arange(steps.start, steps.stop, steps.step, dtype=np.float64)
        else:
            arr = np.asarray(steps)
            if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
                raise TypeError(f"steps must be numbers, got dtype {arr.dtype}")
            arr = arr.astype(np.float64)
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
            raise ValueError("steps must be finite and >= 0")
        t = arr.reshape(-1)
        value = np.broadcast_to(self._eval(t, _host.Host), t.shape).astype(np.float32)
        if arr.ndim == 0:
            return value[0]
        return value.reshape(arr.shape)

    def value_at(self, step: int) -> float:
        """``float(self.at(step))`` for one step, for a reader that asks at every batch.

        One ``at()`` call costs about the same for one step as for a few
        hundred (it is NumPy's per-call overhead), so the values of the next
        ``HOST_BLOCK`` steps are computed together and kept on the schedule:
        a logger or a callback pays one evaluation per block instead of one
        per batch. A schedule is an immutable value except for the variables
        a plateau multiplier or a cooldown's start keep; the block is kept with
        the host copies of their values (``PlateauState.set`` and
        ``CooldownState.set_start`` keep them) and computed anew when one has
        changed.
        """
        state = _readers.host_state(self)
        block = self.__dict__.get("_host_block")
        if block is not None:
            start, held, values = block
            i = step - start
            if held == state and 0 <= i < len(values):
                return values[i]
        values = self.at(np.arange(step, step + HOST_BLOCK, dtype=np.float64)).tolist()
        self.__dict__["_host_block"] = (step, state, values)  # one tuple: a whole block
        return values[0]

    # ----------------------------------------------------------- composition
    def __rshift__(self, other: Any) -> Schedule:
        return _made("Sequence")._join(self, as_schedule(other, "right operand of >>"))

    def __rrshift__(self, other: Any) -> Schedule:
        return _made("Sequence")._join(as_schedule(other, "left operand of >>"), self)

    def __mul__(self, k: Any) -> Schedule:
        return _made("Affine").of(self, scale=k)

    __rmul__ = __mul__

    def __add__(self, k: Any) -> Schedule:
        return _made("Affine").of(self, offset=k)

    __radd__ = __add__

    def __sub__(self, k: Any) -> Schedule:
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise TypeError(f"can only subtract a number from a schedule, got {k!r}")
        return _made("Affine").of(self, offset=-k)

    def __truediv__(self, k: Any) -> Schedule:
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k == 0:
            raise ValueError(f"can only divide a schedule by a non-zero number, got {k!r}")
        return _made("Affine").of(self, scale=1.0 / k)

    def clip(self, min: float | None = None, max: float | None = None) -> Schedule:  # noqa: A002
        """Bound the values to ``[min, max]`` (either may be None)."""
        return _made("Clip")(self, min=min, max=max)

    def per_update(self, accumulation_steps: int) -> Schedule:
        """Count optimizer updates instead of micro-batches under gradient accumulation.

        With ``gradient_accumulation_steps=k`` Keras feeds the schedule the
        micro-batch counter ``c``; ``s.per_update(k)`` evaluates ``s`` at
        ``c // k``, the number of completed updates.
        """
        return _made("PerUpdate")(self, accumulation_steps)

    # ----------------------------------------------------------- Keras API
    def get_config(self) -> dict:
        return {k: _serialize(v) for k, v in self._args.items()}

    @classmethod
    def from_config(cls, config: dict) -> Schedule:
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__} config must be a dict, got {type(config).__name__}")
        depth = _depth(config)
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"{cls.__name__} config is nested {depth} levels deep; at most "
                             f"{MAX_CONFIG_DEPTH} are accepted")
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(k for k in config if k not in params or k == "self")
        if unknown:
            raise TypeError(f"{cls.__name__} config has unknown keys {unknown}; accepted: "
                            f"{[p for p in params if p != 'self']}")
        return cls(**{k: _deserialize(v) for k, v in config.items()})

    def __repr__(self) -> str:
        try:
            params = inspect.signature(type(self).__init__).parameters
        except (TypeError, ValueError):  # pragma: no cover
            params = {}
        parts = []
        for k, v in self._args.items():
            p = params.get(k)
            if p is not None and p.default is not inspect.Parameter.empty and _same(p.default, v):
                continue
            parts.append(f"{k}={_fmt(v)}")
        return f"{type(self).__name__}({', '.join(parts)})"


MAX_CONFIG_DEPTH = 200


def _depth(value: Any) -> int:
    """Nesting depth of dicts/lists, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, (list, tuple)):
            items = item
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_CONFIG_DEPTH:
            return deepest
        stack.extend((x, d + 1) for x in items)
    return deepest


def _same(a: Any, b: Any) -> bool:
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numeric) and isinstance(b, numeric):
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    return type(a) is type(b) and a == b


def number_text(v: float) -> str:
    """A number as short as it reads back exactly: ``1``, ``0.5``, ``1e-05``, ``0.123456789``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(int(v))
    short = f"{v:g}"
    return short if float(short) == v else repr(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return number_text(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)


class Recipe(Schedule):
    """A schedule defined as a composition of other pieces.

    Subclasses implement ``build()`` from their (resolved) arguments; the
    recipe's config is its own arguments, its values those of the composition.
    """

    def __init__(self, **args: Any):
        super().__init__(**args)
        if not self.is_symbolic:
            self._built()  # derived values are checked now, not at the first step

    def build(self) -> Schedule:
        raise NotImplementedError

    def _built(self) -> Schedule:
        return self.cached("built", self.build)

    @property
    def duration(self) -> float | None:
        return self._built().duration

    #: recipes that run forever set this to True (known without resolving durations)
    open_ended = False

    @property
    def is_finite(self) -> bool:
        return not self.open_ended

    def _eval(self, t, xp, clip: bool = True):
        return self._built()._eval(t, xp, clip)

    def explain(self) -> Schedule:
        """The composition this recipe stands for (durations resolved)."""
        return self._built()

    def _parts(self) -> list[Schedule]:
        return self._children() + ([] if self.is_symbolic else [self._built()])

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """Those of the composition it stands for."""
        return self.explain().key_steps(horizon)


def check_finite_piece(name: str, schedule: Schedule) -> None:
    if not schedule.is_finite:
        raise ValueError(f"{name} must have a finite duration, got the open-ended {schedule!r}")

