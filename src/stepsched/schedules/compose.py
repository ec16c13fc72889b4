"""Composition: sequences, warmups, restarts, arithmetic, clipping, update counting."""

from __future__ import annotations

import math

import keras
import numpy as np

from .. import _validate
from ..durations import Duration, duration_arg
from . import _graph, _host
from .base import Schedule, as_schedule, check_finite_piece, made_by_operators, number_text
from .keys import key_steps

_register = keras.saving.register_keras_serializable(package="stepsched")


@_register
class Warmup(Schedule):
    r"""A ramp from ``start`` to wherever the next piece begins.

    Only meaningful inside a sequence (``Warmup(...) >> schedule``): the target
    is the next piece's value at the join, so the join is continuous by
    construction. Shapes (``u = t / duration``, ``T`` = target):

    - ``"linear"``: :math:`\text{start} + (T - \text{start})\,u`
    - ``"cosine"``: :math:`T + (\text{start} - T)\tfrac12(1 + \cos \pi u)`
    - ``"exponential"``: :math:`\text{start}\,(T/\text{start})^{u}` (``start`` > 0)

    >>> (Warmup(4) >> Constant(1.0)).at([0, 1, 2, 4]).tolist()
    [0.0, 0.25, 0.5, 1.0]
    """

    SHAPES = ("linear", "cosine", "exponential")

    def __init__(self, duration: int | Duration, start: float = 0.0, shape: str = "linear"):
        shape = _validate.choice("shape", shape, self.SHAPES)
        start = _validate.number("start", start)
        if shape == "exponential" and start < 1.1754943508222875e-38:
            raise ValueError("start must be > 0 (and a normal float32, >= 1.2e-38) for "
                             f"shape='exponential', got {start!r}")
        super().__init__(duration=duration_arg("duration", duration), start=start, shape=shape)

    def _formula(self, t, xp):
        raise ValueError(f"{self!r} has no piece after it to ramp to: "
                         "write Warmup(...) >> schedule")

    def ramp(self, t, xp, target: float):
        start, shape = self.arg("start"), self.arg("shape")
        u = xp.minimum(xp.float(t) / self.duration, 1.0)
        if shape == "linear":
            return target * u if start == 0 else start + (target - start) * u
        if shape == "cosine":
            return target + (start - target) * _host.half_cosine(1.0 - u, xp)
        if target <= 0:
            raise ValueError(f"Warmup(shape='exponential') needs a positive target, but the "
                             f"next piece begins at {target!r}")
        return start * xp.exp(u * (math.log(target) - math.log(start)))


@_register
@made_by_operators
class Sequence(Schedule):
    """Pieces one after another: each runs for its duration, then the next begins.

    ``relative=True``: each piece sees its own local step starting at 0 (optax
    ``join_schedules``, torch ``SequentialLR``). ``relative=False``: every piece
    sees the global step (the hand-written Keras / tf-models convention). Only
    the last piece may be open-ended; a finite last piece holds its end value.
    ``a >> b`` is ``Sequence([a, b])``. The active piece is found with one
    ``searchsorted`` over the joins.

    >>> (Constant(1.0, 2) >> Linear(1.0, 0.0, 2)).at(range(5)).tolist()
    [1.0, 1.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, pieces, relative: bool = True):
        if isinstance(pieces, (Schedule, str, bytes)) or not hasattr(pieces, "__iter__"):
            raise TypeError(f"pieces must be a list of schedules, got {pieces!r}")
        pieces = [as_schedule(p, f"pieces[{i}]") for i, p in enumerate(pieces)]
        if not pieces:
            raise ValueError("pieces must not be empty")
        for i, p in enumerate(pieces[:-1]):
            if not p.is_finite:
                raise ValueError(f"pieces[{i}] is open-ended ({p!r}); only the last piece "
                                 "may run forever")
        # A Warmup may end a sequence for now: ``a >> Warmup(n) >> b`` is built left to
        # right, and the sequence is complete once something follows the warmup.
        super().__init__(pieces=pieces, relative=_validate.boolean("relative", relative))

    exact_step = True

    @classmethod
    def _join(cls, a: Schedule, b: Schedule) -> Sequence:
        def parts(s):
            if isinstance(s, Sequence) and s._args["relative"]:
                return list(s._args["pieces"])
            return [s]
        return cls(parts(a) + parts(b))

    @property
    def duration(self) -> float | None:
        pieces = self.arg("pieces")
        if not pieces[-1].is_finite:
            return None
        return float(sum(p.duration for p in pieces))

    @property
    def is_finite(self) -> bool:
        return self.arg("pieces")[-1].is_finite

    def _last_piece(self) -> tuple[float, Schedule] | None:
        pieces = self.arg("pieces")
        if not self.arg("relative") or len(pieces) < 2:
            return None
        return self._starts()[-1], pieces[-1]

    def _starts(self) -> list[float]:
        def compute():
            starts = [0.0]
            for p in self.arg("pieces")[:-1]:
                starts.append(starts[-1] + p.duration)
            return starts
        return self.cached("starts", compute)

    def _start_value(self, i: int) -> float:
        piece = self.arg("pieces")[i]
        if isinstance(piece, Warmup):
            return piece.arg("start")
        local = 0.0 if self.arg("relative") else self._starts()[i]
        return float(piece._eval(np.array([local]), _host.Host, clip=self.arg("relative"))[0])

    def _targets(self) -> list[float | None]:
        """Per piece: the value a Warmup ramps to (the next piece's start), else None."""
        def compute():
            pieces = self.arg("pieces")
            if isinstance(pieces[-1], Warmup):
                raise ValueError(f"{self!r} ends with a Warmup, which has no piece after it to "
                                 "ramp to: write Warmup(...) >> schedule")
            return [self._start_value(i + 1) if isinstance(p, Warmup) else None
                    for i, p in enumerate(pieces)]
        return self.cached("targets", compute)

    def _formula(self, t, xp):
        pieces, relative = self.arg("pieces"), self.arg("relative")
        starts, targets = self._starts(), self._targets()
        last = pieces[-1].duration
        ends = starts[1:] + [math.inf if last is None else starts[-1] + last]
        def branch(i):
            piece, lo, hi, target = pieces[i], starts[i], ends[i], targets[i]

            def value(t):
                ti = t if lo == 0 else xp.maximum(t, lo)  # steps are >= 0
                if target is not None:  # the ramp holds its end itself
                    return piece.ramp(ti if lo == 0 else ti - lo, xp, target)
                if not math.isinf(hi):
                    ti = xp.minimum(ti, hi)
                if relative:  # held at hi already: no second clip at the piece's duration
                    return piece._eval(ti if lo == 0 else ti - lo, xp, clip=False)
                return piece._eval(ti, xp, clip=False)
            return value

        branches = [branch(i) for i in range(len(pieces))]
        if len(branches) == 1:
            return branches[0](t)
        joins = self.cached("joins", lambda: np.asarray(starts[1:], np.float64))
        return xp.pieces(t, joins, branches, snap=True)

    def __repr__(self) -> str:
        pieces = self.arg("pieces")
        # ``a >> b`` joins into one flat sequence: a single piece, or a relative sequence
        # as a piece, reads back only as ``Sequence(pieces=[...])``
        if self.arg("relative") and len(pieces) > 1 and not any(
                isinstance(p, Sequence) and p.arg("relative") for p in pieces):
            return " >> ".join(_paren(p) for p in pieces)
        return super().__repr__()

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The joins up to ``horizon``, and the key steps inside each piece, shifted to its start."""
        pieces, relative = self.arg("pieces"), self.arg("relative")
        starts = self._starts()
        ends = starts[1:] + [math.inf]
        out = []
        for i, piece in enumerate(pieces):
            lo, hi = starts[i], ends[i]
            if lo > horizon:
                break
            if i:
                out.append((lo, f"{type(pieces[i - 1]).__name__} -> {type(piece).__name__}"))
            if isinstance(piece, Warmup):
                continue
            if relative:  # the piece sees t - lo, held at its duration
                inner = _key_steps(piece, min(hi, horizon) - lo)
                out.extend((lo + s, label) for s, label in inner if 0 < s < hi - lo)
            else:  # the piece sees the global step while it is active
                inner = _key_steps(piece, min(hi, horizon))
                out.extend((s, label) for s, label in inner if lo < s < hi)
        return sorted(out)


def _paren(s: Schedule) -> str:
    r = repr(s)
    return f"({r})" if any(op in r for op in (" >> ", " * ", " + ", " - ")) else r


def _key_steps(schedule: Schedule, horizon: float) -> list[tuple[float, str]]:
    """``schedule.key_steps(horizon)``, or the default for pieces without joins."""
    return key_steps(schedule, horizon)


@_register
class Restarts(Schedule):
    r"""Repeat a finite piece (SGDR, torch ``CosineAnnealingWarmRestarts``).

    Cycle ``i`` lasts ``d * period_mult**i`` steps (the piece stretched to fit)
    and is scaled by ``scale**i``; after ``limit`` cycles the final value holds.

    .. math:: \eta(t) = \text{scale}^{i}\; p\!\left(\frac{t - S_i}{m^{i}}\right),\quad
              S_i = d\,\frac{m^{i} - 1}{m - 1}\;(= d\,i \text{ if } m = 1)

    >>> Restarts(Linear(1.0, 0.0, 2)).at(range(5)).tolist()
    [1.0, 0.5, 1.0, 0.5, 1.0]
    """

    exact_step = True

    def __init__(self, piece: Schedule, period_mult: float = 1.0, scale: float = 1.0,
                 limit: int | None = None):
        piece = as_schedule(piece, "piece")
        check_finite_piece("piece", piece)
        super().__init__(piece=piece,
                         period_mult=_validate.number("period_mult", period_mult, positive=True),
                         scale=_validate.number("scale", scale, nonnegative=True),
                         limit=_validate.integer("limit", limit, minimum=1, allow_none=True))
        if self.arg("period_mult") < 1.0:
            raise ValueError(f"period_mult must be >= 1, got {period_mult!r}")
        if self.arg("scale") > 1.0 and limit is None:
            raise ValueError(f"scale={scale!r} > 1 grows without bound: give limit (a number of "
                             "cycles) or a scale <= 1")

    def _cycle_start(self, i, xp):
        d, m = self.arg("piece").duration, self.arg("period_mult")
        if m == 1.0:
            return d * i
        return d * xp.expm1(i * math.log1p(m - 1.0)) / (m - 1.0)

    def _start_table(self, horizon: float) -> list[float] | None:
        """Cycle starts S_0 = 0, S_1, ... past ``horizon`` (None if too many to tabulate)."""
        return self.cached(("table", horizon), lambda: self._make_table(horizon))

    def _make_table(self, horizon: float) -> list[float] | None:
        d, m, limit = self.arg("piece").duration, self.arg("period_mult"), self.arg("limit")
        if limit is None:  # cycles needed to pass the horizon, plus a margin for rounding
            count = math.log1p(horizon * (m - 1.0) / d) / math.log1p(m - 1.0) + 3
        else:
            count = limit
        if count > self.MAX_TABLE:
            return None
        lengths = d * np.power(m, np.arange(int(count) - 1, dtype=np.float64))
        return np.concatenate([[0.0], np.cumsum(lengths)])

    MAX_TABLE = 2**17

    def _columns(self, horizon: float) -> tuple | None:
        """``(starts, later starts, stretch m**i, scale**i)`` per cycle (None: no table)."""
        table = self._start_table(horizon)
        if table is None:
            return None
        m, decay = self.arg("period_mult"), self.arg("scale")
        i = np.arange(len(table), dtype=np.float64)
        return table, table[1:], np.power(m, i), np.power(decay, i)

    @property
    def duration(self) -> float | None:
        limit = self.arg("limit")
        if limit is None:
            return None
        return float(self._cycle_start(float(limit), _host.Host))

    @property
    def is_finite(self) -> bool:
        return self._args["limit"] is not None

    @property
    def period(self):
        """The piece's duration where every cycle is the piece itself (``period_mult`` and
        ``scale`` 1, no ``limit``)."""
        if self.arg("period_mult") == 1.0 and self.arg("scale") == 1.0 and \
                self.arg("limit") is None:
            return self.arg("piece").duration
        return None

    def _constants(self) -> tuple:
        piece = self.arg("piece")
        return (piece, piece.duration, self.arg("period_mult"), self.arg("scale"),
                self.arg("limit"))

    def _formula(self, t, xp):
        piece, d, m, decay, limit = self.cached("constants", self._constants)
        if m == 1.0:
            i, local = xp.floordiv(t, d)
            if limit is not None:
                last = float(limit - 1)
                local = xp.where(i > last, xp.float(t - last * d), local)
                i = xp.minimum(i, last)
        else:
            horizon = _graph.max_step(t)
            columns = self.cached(("columns", horizon), lambda: self._columns(horizon))
            if columns is not None:
                table, later, stretch, scale = columns
                index = xp.bucket(later, t, snap=True)
                local = xp.float(xp.offset(t, table, index)) / xp.gather(stretch, index)
                # within a cycle the local step is below the piece's duration (to rounding):
                # only past the last of ``limit`` cycles does the piece need holding
                value = piece._eval(local, xp, clip=limit is not None)
                if decay != 1.0:
                    value = value * xp.gather(scale, index)
                return value
            else:  # very many short cycles: closed form, cycle index fixed up after rounding
                t = xp.float(t)
                i = xp.floor(xp.log1p(t * (m - 1.0) / d) / math.log1p(m - 1.0))
                i = xp.where(t < self._cycle_start(i, xp), i - 1.0, i)
                i = xp.where(t >= self._cycle_start(i + 1.0, xp), i + 1.0, i)
                i = xp.maximum(i, 0.0)
                if limit is not None:
                    i = xp.minimum(i, float(limit - 1))
                local = t - self._cycle_start(i, xp)
            local = local / xp.exp(i * math.log1p(m - 1.0))
        value = piece._eval(local, xp)
        if decay != 1.0:
            factor = xp.exp(i * math.log(decay)) if decay > 0 else xp.where(i > 0, 0.0, 1.0)
            value = value * factor
        return value

    #: the most restarts ``key_steps`` lists
    MAX_KEY_STEPS = 1000

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The cycle starts in ``(0, horizon]``, from the arithmetic ``_formula`` uses.

        At each listed step the new cycle has begun (its value is the cycle's
        first value, not the previous cycle's end).
        """
        d, m, limit = self.arg("piece").duration, self.arg("period_mult"), self.arg("limit")
        count = self.MAX_KEY_STEPS + 1 if limit is None else min(limit, self.MAX_KEY_STEPS + 1)
        if m == 1.0:  # _formula: i = floor(t / d)
            starts = periodic_starts(d, count, horizon)
        else:
            table = self._start_table(horizon)
            if table is not None:  # _formula: the tabulated starts
                starts = [s for s in table[1:count] if s <= horizon]
            else:  # _formula: t >= _cycle_start(i) after the fix-ups
                starts = []
                for i in range(1, count):
                    s = float(self._cycle_start(float(i), _host.Host))
                    if s > horizon:
                        break
                    starts.append(s)
        return [(float(s), "restart") for s in starts]


def periodic_starts(d: float, count: int, horizon: float) -> list[float]:
    """Starts of cycles 1, 2, ... (fewer than ``count``) in ``(0, horizon]`` for cycles of
    length ``d`` found with ``floor(t / d)``: the first step at which the index is ``i``."""
    starts = []
    for i in range(1, count):
        s = d * i
        while math.floor(s / d) < i:
            s = float(np.nextafter(s, math.inf))
        if s > horizon:
            break
        starts.append(s)
    return starts


class Wrapper(Schedule):
    """A pointwise transform of the schedule in argument ``schedule``.

    Same duration as the wrapped schedule; subclasses implement ``transform``.
    """

    @property
    def duration(self):
        return self.arg("schedule").duration

    @property
    def constant_after(self):
        return self.arg("schedule").constant_after

    @property
    def is_finite(self) -> bool:
        return self.arg("schedule").is_finite

    @property
    def period(self):
        return self.arg("schedule").period

    def transform(self, value, xp):
        raise NotImplementedError

    def _pointwise_of(self) -> Schedule:
        return self.arg("schedule")

    def _eval(self, t, xp, clip: bool = True):
        return self.transform(self.arg("schedule")._eval(t, xp, clip), xp)

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """Those of the wrapped schedule: a pointwise transform moves no join."""
        return _key_steps(self.arg("schedule"), horizon)


@_register
@made_by_operators
class Affine(Wrapper):
    """``scale * schedule + offset`` (what ``s * k`` and ``s + k`` build)."""

    def __init__(self, schedule: Schedule, scale: float = 1.0, offset: float = 0.0):
        super().__init__(schedule=as_schedule(schedule),
                         scale=_validate.number("scale", scale),
                         offset=_validate.number("offset", offset))

    @classmethod
    def of(cls, schedule: Schedule, scale: float = 1.0, offset: float = 0.0) -> Affine:
        """``scale * schedule + offset``, folding into ``schedule`` if it is already affine."""
        scale = _validate.number("scale", scale)
        offset = _validate.number("offset", offset)
        if isinstance(schedule, Affine):
            return cls(schedule.arg("schedule"), scale=schedule.arg("scale") * scale,
                       offset=schedule.arg("offset") * scale + offset)
        return cls(schedule, scale=scale, offset=offset)

    def transform(self, value, xp):
        return value * self.arg("scale") + self.arg("offset")

    def __repr__(self) -> str:
        inner, scale, offset = self.arg("schedule"), self.arg("scale"), self.arg("offset")
        if isinstance(inner, Affine) or (scale == 1.0 and offset == 0.0):
            return super().__repr__()  # ``s * k`` would fold into one Affine, or vanish
        r = _paren(inner)
        if scale != 1.0:
            r = f"{r} * {number_text(scale)}"
        if offset != 0.0:
            r = f"{r} {'-' if offset < 0 else '+'} {number_text(abs(offset))}"
        return r


@_register
@made_by_operators
class Clip(Wrapper):
    """The schedule bounded to ``[min, max]`` (what ``s.clip(min, max)`` builds)."""

    def __init__(self, schedule: Schedule, min: float | None = None,  # noqa: A002
                 max: float | None = None):  # noqa: A002
        lo = _validate.number("min", min, allow_none=True)
        hi = _validate.number("max", max, allow_none=True)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min must be <= max, got min={lo!r}, max={hi!r}")
        super().__init__(schedule=as_schedule(schedule), min=lo, max=hi)

    def transform(self, value, xp):
        if self.arg("min") is not None:
            value = xp.maximum(value, self.arg("min"))
        if self.arg("max") is not None:
            value = xp.minimum(value, self.arg("max"))
        return value


@_register
@made_by_operators
class PerUpdate(Schedule):
    """Evaluate ``schedule`` at ``step // accumulation_steps`` (optimizer updates).

    Under ``gradient_accumulation_steps=k`` Keras passes the micro-batch count;
    the update with index ``u`` is applied at micro-batch ``(u + 1) k - 1``,
    where this gives ``schedule(u)``. Durations inside ``schedule`` count
    updates; epochs and fractions are resolved accordingly.
    """

    def __init__(self, schedule: Schedule, accumulation_steps: int):
        super().__init__(schedule=as_schedule(schedule),
                         accumulation_steps=_validate.integer("accumulation_steps",
                                                              accumulation_steps, minimum=1))

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Schedule:
        if not self.is_symbolic:
            return self
        k = self.arg("accumulation_steps")
        inner = self.arg("schedule").resolve(
            None if steps_per_epoch is None else steps_per_epoch / k,
            None if total_steps is None else total_steps / k)
        return PerUpdate(inner, k)

    @property
    def duration(self):
        d = self.arg("schedule").duration
        return None if d is None else d * self.arg("accumulation_steps")

    @property
    def is_finite(self) -> bool:
        return self.arg("schedule").is_finite

    def _eval(self, t, xp, clip: bool = True):
        return self.arg("schedule")._eval(xp.quotient(t, self.arg("accumulation_steps")), xp, clip)

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The wrapped schedule's, in micro-batches: update ``u`` is seen from ``ceil(u) * k`` on."""
        k = self.arg("accumulation_steps")
        inner = _key_steps(self.arg("schedule"), horizon / k)
        out = [(float(math.ceil(s) * k), label) for s, label in inner]
        return [(s, label) for s, label in out if s <= horizon]
