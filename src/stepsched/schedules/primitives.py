"""Primitive pieces. ``t`` is the piece's local step, already held at ``duration``."""

from __future__ import annotations

import math

import keras
import numpy as np

from .. import _validate
from ..durations import Duration, duration_arg
from . import _host
from .base import Schedule, made_by_operators

_register = keras.saving.register_keras_serializable(package="stepsched")


@_register
@made_by_operators
class Constant(Schedule):
    r"""A constant value.

    .. math:: \eta(t) = \text{value}

    >>> Constant(0.1).at(5)
    np.float32(0.1)
    """

    def __init__(self, value: float, duration: int | Duration | None = None):
        super().__init__(value=_validate.number("value", value),
                         duration=duration_arg("duration", duration, allow_none=True))

    def _formula(self, t, xp):
        return t * 0.0 + self.arg("value")


@_register
class Linear(Schedule):
    r"""Straight line from ``start`` to ``end`` over ``duration`` steps, then ``end``.

    .. math:: \eta(t) = \text{start} + (\text{end} - \text{start})\,\min(t, d)/d

    >>> Linear(1.0, 0.0, 4).at([0, 1, 4, 9]).tolist()
    [1.0, 0.75, 0.0, 0.0]
    """

    def __init__(self, start: float, end: float, duration: int | Duration):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration))

    def _formula(self, t, xp):
        start, end = self.arg("start"), self.arg("end")
        u = t / self.duration
        value = start * (1.0 - u) + end * u  # no end - start, which can overflow float32
        # compilers may turn /d into *(1/d): keep both ends exact (no -1e-8 for a decay to 0)
        return xp.minimum(xp.maximum(value, min(start, end)), max(start, end))


@_register
class Cosine(Schedule):
    r"""Half cosine from ``start`` to ``end`` over ``duration`` steps, then ``end``.

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})
              \left[\tfrac12\left(1 + \cos\tfrac{\pi \min(t, d)}{d}\right)\right]^{p}

    with ``p = exponent`` (as in optax ``cosine_decay_schedule``).

    >>> float(Cosine(1.0, 0.0, 10).at(5))
    0.5
    """

    def __init__(self, start: float, end: float, duration: int | Duration, exponent: float = 1.0):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration),
                         exponent=_validate.number("exponent", exponent, positive=True))

    def _constants(self) -> tuple:
        return self.arg("start"), self.arg("end"), self.arg("exponent"), self.duration

    def _formula(self, t, xp):
        start, end, p, d = self.cached("constants", self._constants)
        # (t - d) / -d is (d - t) / d to the bit (eager torch subtracts faster in this order);
        # exactly 0 at t = d (a power keeps it 0)
        c = _host.half_cosine(t - d, xp, -d)
        if p != 1.0:
            c = xp.power(c, p)
        return (start - end) * c if end == 0 else end + (start - end) * c


@_register
class Exponential(Schedule):
    r"""Exponential change: ``start * rate ** (t / every)``.

    .. math:: \eta(t) = \text{start}\cdot\text{rate}^{\,e(t)}, \quad
              e(t) = t/\text{every} \;\; (\lfloor t/\text{every} \rfloor \text{ if staircase})

    ``limit`` bounds the value (a floor when ``rate < 1``, a ceiling when
    ``rate > 1``); with a ``duration`` the value holds after it.

    >>> float(Exponential(1.0, 0.5, every=10).at(20))
    0.25
    """

    def __init__(self, start: float, rate: float, every: int | Duration = 1,
                 staircase: bool = False, limit: float | None = None,
                 duration: int | Duration | None = None):
        start = _validate.number("start", start)
        rate = _validate.number("rate", rate, positive=True)
        limit = _validate.number("limit", limit, allow_none=True)
        if limit is not None:
            if rate < 1 and limit > start:
                raise ValueError(f"limit is a floor when rate < 1, so it must be <= "
                                 f"start={start}; got limit={limit}")
            if rate > 1 and limit < start:
                raise ValueError(f"limit is a ceiling when rate > 1, so it must be >= "
                                 f"start={start}; got limit={limit}")
        elif rate > 1 and duration is None:
            raise ValueError(f"rate={rate} > 1 grows without bound: give limit (a ceiling) or "
                             "duration (after which the value holds)")
        elif (rate > 1 and not isinstance(duration, Duration) and not isinstance(every, Duration)
              and abs(start) > 0):
            growth = math.log(abs(start)) + math.log(rate) * (duration / every)
            if growth > math.log(_validate.FLOAT32_MAX):
                raise ValueError(f"rate={rate} over duration={duration} grows start={start} past "
                                 "float32 range; give limit (a ceiling) or a shorter duration")
        super().__init__(start=start, rate=rate, every=duration_arg("every", every),
                         staircase=_validate.boolean("staircase", staircase), limit=limit,
                         duration=duration_arg("duration", duration, allow_none=True))

    def _formula(self, t, xp):
        start, rate, end = self.arg("start"), self.arg("rate"), self.arg("limit")
        if end is None and not self.arg("staircase"):  # log(rate) / every folded into one
            return start * xp.exp(t * (math.log(rate) / self.arg("every")))
        e = t / self.arg("every")
        if self.arg("staircase"):
            e = xp.floor(e)
        if rate > 1 and end is not None and start > 0:
            e = xp.minimum(e, math.log(end / start) / math.log(rate))  # no overflow past the cap
        value = start * xp.exp(e * math.log(rate))
        if end is not None:
            value = xp.maximum(value, end) if rate < 1 else xp.minimum(value, end)
        return value


@_register
class Polynomial(Schedule):
    r"""Polynomial decay from ``start`` to ``end`` over ``duration`` steps, then ``end``.

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})(1 - \min(t, d)/d)^{\text{power}}

    >>> float(Polynomial(1.0, 0.0, 10, power=2.0).at(5))
    0.25
    """

    def __init__(self, start: float, end: float, duration: int | Duration, power: float = 1.0):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration),
                         power=_validate.number("power", power, positive=True))

    def _formula(self, t, xp):
        start, end, power = self.arg("start"), self.arg("end"), self.arg("power")
        frac = xp.maximum((self.duration - t) / self.duration, 0.0)  # exactly 0 at the end
        return end + (start - end) * (xp.power(frac, power) if power != 1.0 else frac)


def _knots(boundaries, values, n_values_extra: int):
    boundaries = _validate.number_list("boundaries", boundaries, keep=Duration)
    values = _validate.number_list("values", values)
    for i, b in enumerate(boundaries):
        if not isinstance(b, Duration) and b < 0:
            raise ValueError(f"boundaries[{i}] must be >= 0, got {b!r}")
    _validate.increasing("boundaries", boundaries)
    if len(values) != len(boundaries) + n_values_extra:
        want = "len(boundaries) + 1" if n_values_extra else "len(boundaries)"
        raise ValueError(f"values must have {want} = {len(boundaries) + n_values_extra} "
                         f"entries, got {len(values)}")
    return boundaries, values


def _resolved_knots(schedule: Schedule) -> np.ndarray:
    def check():
        b = schedule.arg("boundaries")
        _validate.increasing("boundaries (resolved)", b)
        return np.asarray(b, np.float64)
    return schedule.cached("knots", check)


def _values(schedule: Schedule) -> np.ndarray:
    return schedule.cached("values", lambda: np.asarray(schedule.arg("values"), np.float64))


@_register
class Piecewise(Schedule):
    r"""Constant pieces: ``values[i]`` for ``boundaries[i-1] <= t < boundaries[i]``.

    The value switches *at* the boundary step (torch ``MultiStepLR`` and optax
    convention). Keras's ``PiecewiseConstantDecay`` switches one step later;
    ``stepsched.PiecewiseConstantDecay`` reproduces that.
    The piece is found with one vectorised ``searchsorted``, so thousands of
    boundaries cost no more than a few.

    >>> Piecewise([10, 20], [1.0, 0.1, 0.01]).at([0, 9, 10, 25]).tolist()
    [1.0, 1.0, 0.10000000149011612, 0.009999999776482582]
    """

    exact_step = True

    def __init__(self, boundaries, values, duration: int | Duration | None = None):
        boundaries, values = _knots(boundaries, values, 1)
        super().__init__(boundaries=boundaries, values=values,
                         duration=duration_arg("duration", duration, allow_none=True))

    def _formula(self, t, xp):
        return xp.gather(_values(self), xp.bucket(_resolved_knots(self), t))

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The boundaries in ``(0, horizon]`` reached before the duration ends."""
        end = horizon if self.duration is None else min(horizon, self.duration)
        return [(float(b), "boundary") for b in _resolved_knots(self) if 0 < b <= end]


@_register
class Interpolate(Schedule):
    r"""Interpolation through knots ``(boundaries[i], values[i])``.

    ``kind="linear"`` joins knots with straight lines, ``kind="cosine"`` with half
    cosines; before the first knot and after the last the end values hold. The
    piece lasts until the last knot.

    >>> Interpolate([0, 10, 20], [0.0, 1.0, 0.5]).at([5, 15, 30]).tolist()
    [0.5, 0.75, 0.5]
    """

    KINDS = ("linear", "cosine")
    exact_step = True

    def __init__(self, boundaries, values, kind: str = "linear"):
        boundaries, values = _knots(boundaries, values, 0)
        super().__init__(boundaries=boundaries, values=values,
                         kind=_validate.choice("kind", kind, self.KINDS))

    @property
    def duration(self) -> float:
        return float(self.arg("boundaries")[-1])

    @property
    def is_finite(self) -> bool:
        return True

    def _formula(self, t, xp):
        b, v = _resolved_knots(self), _values(self)
        n = len(b)
        if n == 1:
            return xp.float(t) * 0.0 + float(v[0])
        j = xp.minimum(xp.maximum(xp.bucket(b, t), 1), n - 1)
        starts, widths = self.cached("widths", lambda: (b[:-1], np.diff(b, prepend=0.0)))
        local = xp.float(xp.offset(t, starts, j - 1))  # t - x0, exact wherever the knots lie
        y0, y1 = xp.gather(v, j - 1), xp.gather(v, j)
        frac = xp.minimum(xp.maximum(local / xp.gather(widths, j), 0.0), 1.0)
        if self.arg("kind") == "cosine":
            return y1 + (y0 - y1) * _host.half_cosine(1.0 - frac, xp)
        return y0 + (y1 - y0) * frac

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The inner knots in ``(0, horizon]``."""
        return [(float(b), "knot") for b in _resolved_knots(self)[1:-1] if 0 < b <= horizon]
