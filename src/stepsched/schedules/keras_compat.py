"""Drop-in counterparts of ``keras.optimizers.schedules``.

Same constructor arguments, defaults and values at every step as Keras's own
classes (tests compare against Keras itself), but composable with ``>>``,
previewable with ``.at()`` and accepting ``epochs(...)``/``fraction(...)``.
Migrating is changing the import.

Domain: whatever Keras accepts and keeps finite is accepted and gives Keras's
values (a property test draws arguments from Keras's own domain). Each class
writes Keras's formula once, in Keras's factorisation, so that no intermediate
overflows where Keras's does not. An argument is refused only where Keras
raises, or where its formula is undefined at some optimizer step (NaN, or inf at
a pole); the message uses Keras's argument names. A schedule that grows
(``decay_rate > 1``, ``m_mul > 1``) is accepted as in Keras: once its value
passes float32's range it is ``inf``, as Keras's is.

Keras evaluates in float32, so at a step that falls exactly on a boundary (a
cycle start of ``CosineDecayRestarts``, a multiple of ``decay_steps`` with
``staircase``) its value may land on either side depending on the CPU's
rounding; stepsched takes the side the exact arithmetic gives (the new cycle,
the next stair). See docs/migration.md.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from .. import _validate
from ..durations import Duration, duration_arg
from . import _graph
from .base import Recipe, Schedule
from .compose import periodic_starts
from .primitives import Constant, Cosine, Linear, Piecewise

_register = keras.saving.register_keras_serializable(package="stepsched")

#: the largest optimizer step on any backend (TensorFlow counts in int64)
MAX_STEP = 2.0**63
_F32 = _validate.FLOAT32_MAX


# ----------------------------------------------------------------------------- arguments
def _steps(name: str, value, *, signed: bool = False):
    """A number of steps as Keras takes it: > 0 (any real if ``signed``), or a Duration.

    Keras casts steps to float32, so a float beyond float32's range acts as its
    largest value (the schedule gets nowhere in either case): it is kept as that.
    """
    if isinstance(value, float) and math.isfinite(value) and abs(value) > _F32:
        value = math.copysign(_F32, value)
    if signed and not isinstance(value, Duration):
        return _validate.number(name, value)
    return duration_arg(name, value)


def _flag(name: str, value) -> bool:
    """Keras reads ``staircase``/``cycle`` by truth value; True/False (or NumPy's) here."""
    if isinstance(value, np.bool_):
        return bool(value)
    return _validate.boolean(name, value)


def _plain(value) -> bool:
    return not isinstance(value, Duration)


def _inverse_power_of_two(x: float) -> bool:
    """``x == 2**-k`` for a whole ``k >= 0``: then ``step / x`` is whole for every step."""
    return x <= 1.0 and math.frexp(x)[0] == 0.5


def _cosine_shape(duration) -> Schedule:
    """``(1 + cos(pi t / d)) / 2`` from 1 to 0 over ``d`` steps: the one cosine of stepsched."""
    return Cosine(1.0, 0.0, duration)


# ----------------------------------------------------------------------------- classes
@_register
class ExponentialDecay(Schedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (Keras).

    ``decay_rate > 1`` grows, as in Keras, and is ``inf`` past float32's range. A
    negative ``decay_rate`` (alternating sign) needs ``staircase=True`` (or
    ``decay_steps = 2**-k``), else Keras's value is NaN (a negative base to a
    fractional power).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 decay_rate: float, staircase: bool = False, name: str = "ExponentialDecay"):
        decay_steps = _steps("decay_steps", decay_steps)
        decay_rate = _validate.number("decay_rate", decay_rate)
        staircase = _flag("staircase", staircase)
        if decay_rate < 0 and not staircase and not (_plain(decay_steps)
                                                     and _inverse_power_of_two(decay_steps)):
            raise ValueError(
                f"decay_rate={decay_rate!r} < 0 without staircase: Keras computes decay_rate ** "
                f"(step / decay_steps), NaN wherever step / decay_steps={decay_steps!r} is not "
                "whole (a negative number to a fractional power); use staircase=True")
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase,
                         name=_validate.text("name", name))

    def _formula(self, t, xp):
        init = self.arg("initial_learning_rate")
        if init == 0.0:  # Keras: 0 * inf = NaN once decay_rate ** p overflows; it is 0
            return xp.float(t) * 0.0
        d = self.arg("decay_steps")
        p = xp.float(xp.quotient(t, d)) if self.arg("staircase") else xp.float(t) / d
        with xp.errstate(over="ignore"):
            return init * xp.power(self.arg("decay_rate"), p)


def _keras_piecewise_table(boundaries: list, values: list) -> tuple[list, list]:
    """Keras's ``PiecewiseConstantDecay`` at integer steps, as ``(edges, table)``.

    Keras casts each boundary to the step's integer type (toward zero) and sums
    ``values[0] * (step <= b0) + values[-1] * (step > b_last) + values[i] * (b_{i-1}
    < step <= b_i)``. This is piecewise constant and changes only at ``b_i + 1``:
    ``table[0]`` holds from step 0, ``table[j + 1]`` from ``edges[j]`` on.
    """
    c = [math.trunc(b) for b in boundaries]
    if all(c[i] < c[i + 1] for i in range(len(c) - 1)):  # the documented case: one term at a time
        first = sum(1 for x in c if x + 1 <= 0)  # boundaries already passed at step 0
        return [float(x + 1) for x in c[first:]], list(values[first:])

    def at(s: int) -> float:  # boundaries not increasing: Keras's sum, term by term
        out = values[0] if s <= c[0] else 0.0
        if s > c[-1]:
            out += values[-1]
        for lo, hi, v in zip(c[:-1], c[1:], values[1:-1], strict=True):
            if lo < s <= hi:
                out += v
        return out

    edges = sorted({x + 1 for x in c if x + 1 > 0})
    return [float(e) for e in edges], [at(0)] + [at(e) for e in edges]


@_register
class PiecewiseConstantDecay(Recipe):
    """Keras convention: ``values[0]`` while ``step <= boundaries[0]``, and so on.

    The value switches one step *after* each boundary (for integer steps), unlike
    ``Piecewise`` which switches at it. Any boundaries Keras takes are taken:
    negative ones, fractional ones (cast toward zero, as Keras casts them to the
    step's integer type), even unsorted ones (Keras then sums the values whose
    ranges contain the step).
    """

    open_ended = True

    def __init__(self, boundaries, values, name: str = "PiecewiseConstant"):
        boundaries = _validate.number_list("boundaries", boundaries, keep=Duration)
        values = _validate.number_list("values", values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of "
                             f"values; got boundaries of length {len(boundaries)} and values of "
                             f"length {len(values)}")
        super().__init__(boundaries=boundaries, values=values, name=_validate.text("name", name))

    def build(self) -> Schedule:
        edges, table = _keras_piecewise_table(self.arg("boundaries"), self.arg("values"))
        if not edges:
            return Constant(table[0])
        return Piecewise(edges, table)


@_register
class PolynomialDecay(Schedule):
    r"""Keras ``PolynomialDecay``, including ``cycle=True``.

    .. math:: \eta = (\eta_0 - \eta_{end})(1 - s/D)^{p} + \eta_{end}

    with ``s = min(step, D)``; with ``cycle`` the horizon ``D`` grows to the next
    multiple of ``decay_steps`` instead. ``power`` may be 0 (a constant, as in
    Keras); a negative one is refused (Keras's value is inf at the end of the
    decay) unless that end is past any step.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay"):
        init = _validate.number("initial_learning_rate", initial_learning_rate)
        end = _validate.number("end_learning_rate", end_learning_rate)
        if abs(init - end) > _F32:
            raise ValueError(f"initial_learning_rate - end_learning_rate = {init - end:g} is "
                             "beyond float32 range (Keras's value is inf or NaN)")
        power = _validate.number("power", power)
        decay_steps = _steps("decay_steps", decay_steps)
        if power < 0 and not (_plain(decay_steps) and decay_steps >= MAX_STEP):
            raise ValueError(f"power={power!r} < 0: Keras's value is (1 - p) ** power = inf "
                             f"where p reaches 1, at step decay_steps={decay_steps!r} (and its "
                             "multiples, with cycle)")
        super().__init__(initial_learning_rate=init, decay_steps=decay_steps,
                         end_learning_rate=end, power=power, cycle=_flag("cycle", cycle),
                         name=_validate.text("name", name))

    def _formula(self, t, xp):
        start, end = self.arg("initial_learning_rate"), self.arg("end_learning_rate")
        d, power = self.arg("decay_steps"), self.arg("power")
        if self.arg("cycle"):
            horizon = d * xp.maximum(xp.ceil(t / d), 1.0)
            frac = (horizon - t) / horizon
        else:
            frac = (d - xp.minimum(t, d)) / d
        frac = xp.maximum(frac, 0.0)  # exactly 0 at the end
        return (start - end) * (xp.power(frac, power) if power != 1.0 else frac) + end


def _inverse_time_pole(d: float, r: float, staircase: bool) -> float | None:
    """A step where Keras's ``1 + decay_rate * p`` is 0 (its value inf), in float64 or float32
    arithmetic, or None."""
    if r >= 0:
        return None
    f32 = np.float32
    if staircase:  # p = floor(step / d) takes every whole value
        k = round(-1.0 / r)
        for p in (k - 1, k, k + 1):
            if p >= 0 and p * d < MAX_STEP and (1.0 + r * p == 0.0
                                                 or f32(1) + f32(r) * f32(p) == 0):
                return math.ceil(p * d)
        return None
    pole = -d / r
    for s in {math.floor(pole), math.ceil(pole)}:
        if 0 <= s < MAX_STEP and (1.0 + r * (s / d) == 0.0
                                  or f32(1) + f32(r) * (f32(s) / f32(d)) == 0):
            return s
    return None


@_register
class InverseTimeDecay(Schedule):
    r"""Keras ``InverseTimeDecay``: :math:`\eta_0 / (1 + r\, s / D)` (``s/D`` floored if staircase).

    A negative ``decay_rate`` is taken as Keras takes it (the rate grows toward
    the step where ``1 + r s / D`` crosses 0, then turns negative), except when
    that crossing falls on a step, where Keras's value is inf.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 decay_rate: float, staircase: bool = False, name: str = "InverseTimeDecay"):
        decay_steps = _steps("decay_steps", decay_steps)
        decay_rate = _validate.number("decay_rate", decay_rate)
        staircase = _flag("staircase", staircase)
        if decay_rate < 0:
            if not _plain(decay_steps):
                raise ValueError(f"decay_rate={decay_rate!r} < 0 needs decay_steps in steps (the "
                                 f"step where 1 + decay_rate * step / decay_steps is 0 is checked "
                                 f"at construction), got decay_steps={decay_steps!r}")
            pole = _inverse_time_pole(decay_steps, decay_rate, staircase)
            if pole is not None:
                raise ValueError(f"decay_rate={decay_rate!r} with decay_steps={decay_steps!r}: at "
                                 f"step {pole} Keras divides by 1 + decay_rate * p = 0 (inf)")
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase,
                         name=_validate.text("name", name))

    def _formula(self, t, xp):
        d = self.arg("decay_steps")
        p = xp.float(xp.quotient(t, d)) if self.arg("staircase") else xp.float(t) / d
        return self.arg("initial_learning_rate") / (1.0 + self.arg("decay_rate") * p)


class _KerasCosine(Schedule):
    """Keras's decay ``scale * ((1 - alpha) * c + alpha)``, ``c`` the cosine shape over
    ``duration``, entered ``skip`` steps in (Keras's ``CosineDecay`` with a negative
    ``warmup_steps``). Keras's factorisation: nothing overflows where Keras's does not."""

    def __init__(self, scale: float, alpha: float, length: float, skip: float = 0.0):
        super().__init__(scale=scale, alpha=alpha, length=length, skip=skip)

    @property
    def duration(self) -> float:
        return max(self.arg("length") - self.arg("skip"), 0.0)

    @property
    def is_finite(self) -> bool:
        return True

    def _formula(self, t, xp):
        alpha = self.arg("alpha")
        c = _cosine_shape(self.arg("length"))._eval(t + self.arg("skip"), xp)
        return self.arg("scale") * ((1.0 - alpha) * c + alpha)


@_register
class CosineDecay(Recipe):
    """Keras ``CosineDecay``, with its optional linear warmup to ``warmup_target``.

    As in Keras, ``warmup_steps`` only counts with a ``warmup_target``; a
    negative one starts the decay that many steps in.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 alpha: float = 0.0, name: str = "CosineDecay",
                 warmup_target: float | None = None, warmup_steps: int | Duration = 0):
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         decay_steps=_steps("decay_steps", decay_steps),
                         alpha=_validate.number("alpha", alpha), name=_validate.text("name", name),
                         warmup_target=_validate.number("warmup_target", warmup_target,
                                                        allow_none=True),
                         warmup_steps=_steps("warmup_steps", warmup_steps, signed=True))

    def build(self) -> Schedule:
        init, alpha = self.arg("initial_learning_rate"), self.arg("alpha")
        target, warmup = self.arg("warmup_target"), self.arg("warmup_steps")
        decay = self.arg("decay_steps")
        if target is None:
            return _KerasCosine(init, alpha, decay)
        if warmup <= 0:
            return _KerasCosine(target, alpha, decay, skip=-warmup)
        return Linear(init, target, warmup) >> _KerasCosine(target, alpha, decay)


def _restarts_end(first: float, t_mul: float) -> float | None:
    """The step where Keras's cycles, shrinking by ``t_mul < 1``, run out (NaN after)."""
    return first / (1.0 - t_mul) if t_mul < 1.0 else None


@_register
class CosineDecayRestarts(Schedule):
    """Keras ``CosineDecayRestarts`` (SGDR): restarts stretched by ``t_mul``, scaled by ``m_mul``.

    Cycle ``i`` starts at step ``S_i = first_decay_steps * (t_mul**i - 1) / (t_mul - 1)``
    and lasts ``first_decay_steps * t_mul**i`` steps; its value is
    ``initial_learning_rate * ((1 - alpha) * m_mul**i * c + alpha)``, ``c`` the
    cosine from 1 to 0 over the cycle. At ``S_i`` itself the new cycle has begun.
    Any ``m_mul`` Keras takes is taken (> 1 grows, < 0 alternates sign); a
    ``t_mul < 1`` is refused when its cycles run out at a reachable step (Keras's
    value is NaN from there on).
    """

    exact_step = True  # the cycle index comes from the exact step (JAX)

    def __init__(self, initial_learning_rate: float, first_decay_steps: int | Duration,
                 t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0,
                 name: str = "SGDRDecay"):
        first = _steps("first_decay_steps", first_decay_steps)
        t_mul = _validate.number("t_mul", t_mul)
        if t_mul <= 0:
            raise ValueError(f"t_mul must be > 0 (Keras divides by log(t_mul): NaN), got {t_mul!r}")
        if t_mul < 1.0:
            end = _restarts_end(first, t_mul) if _plain(first) else None
            if end is None or end < MAX_STEP:
                where = f"step {end:g}" if end is not None else "a step set at fit() time"
                raise ValueError(f"t_mul={t_mul!r} < 1 shrinks the cycles: they run out at "
                                 f"first_decay_steps / (1 - t_mul), {where}, after which Keras's "
                                 "value is NaN (the log of a negative number); use t_mul >= 1")
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         first_decay_steps=first, t_mul=t_mul,
                         m_mul=_validate.number("m_mul", m_mul),
                         alpha=_validate.number("alpha", alpha), name=_validate.text("name", name))

    MAX_TABLE = 2**17

    def _cycle(self, t, xp):
        """``(factor, u)``: ``m_mul**i`` and the step within cycle ``i`` in first-cycle units."""
        d, tm, mm = self.arg("first_decay_steps"), self.arg("t_mul"), self.arg("m_mul")
        if tm == 1.0:
            i, local = xp.floordiv(t, d)  # exact integer arithmetic for integer steps
            return xp.power(mm, i), local
        log_t = math.log1p(tm - 1.0)
        count = math.log1p(_graph.max_step(t) * (tm - 1.0) / d) / log_t + 3
        if count <= self.MAX_TABLE:  # cycle starts tabulated: exact where the starts are
            starts, factors, lengths = self.cached(("cycles", int(count)),
                                                   lambda: self._cycle_table(int(count)))
            index, local = xp.cycles(t, starts)
            return xp.gather(factors, index), local / xp.gather(lengths, index)
        # very many short cycles: closed form, the index fixed up after rounding
        t = xp.float(t)

        def start(i):
            return d * xp.expm1(i * log_t) / (tm - 1.0)

        i = xp.floor(xp.log1p(t * (tm - 1.0) / d) / log_t)
        i = xp.where(t < start(i), i - 1.0, i)
        i = xp.maximum(xp.where(t >= start(i + 1.0), i + 1.0, i), 0.0)
        return xp.power(mm, i), (t - start(i)) / xp.exp(i * log_t)

    def _cycle_table(self, count: int) -> tuple[list, list, list]:
        """Starts, factors ``m_mul**k`` and length scales ``t_mul**k`` of ``count`` cycles."""
        d, tm, mm = self.arg("first_decay_steps"), self.arg("t_mul"), self.arg("m_mul")
        k = np.arange(count, dtype=np.float64)
        with np.errstate(over="ignore"):
            starts = np.concatenate([[0.0], np.cumsum(d * np.power(tm, k[:-1]))])
            return starts.tolist(), np.power(mm, k).tolist(), np.power(tm, k).tolist()

    def _formula(self, t, xp):
        init, alpha = self.arg("initial_learning_rate"), self.arg("alpha")
        if init * (1.0 - alpha) == 0.0:  # Keras: NaN (0 * inf) once m_mul**i overflows
            return xp.float(t) * 0.0 + init * alpha
        factor, u = self._cycle(t, xp)
        c = _cosine_shape(self.arg("first_decay_steps"))._eval(u, xp)
        with xp.errstate(over="ignore", invalid="ignore"):
            return init * ((1.0 - alpha) * (factor * c) + alpha)

    #: the most restarts ``key_steps`` lists
    MAX_KEY_STEPS = 1000

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The cycle starts in ``(0, horizon]``, from the arithmetic of ``_cycle``.

        At each listed step the new cycle has begun (``_cycle``'s index is the
        new one), so its value is the cycle's first value.
        """
        d, tm = self.arg("first_decay_steps"), self.arg("t_mul")
        n = self.MAX_KEY_STEPS + 1
        if tm == 1.0:  # _cycle: i = floor(t / d)
            starts = periodic_starts(d, n, horizon)
        else:
            log_t = math.log1p(tm - 1.0)
            count = math.log1p(horizon * (tm - 1.0) / d) / log_t + 3
            if count <= self.MAX_TABLE:  # _cycle: the tabulated starts
                starts = self._cycle_table(int(count))[0][1:n]
            else:  # _cycle: t >= start(i) after the fix-ups
                starts = [float(d * np.expm1(i * log_t) / (tm - 1.0)) for i in range(1, n)]
        return [(float(s), "restart") for s in starts if s <= horizon]


__all__ = ["ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
           "CosineDecay", "CosineDecayRestarts"]
