"""Drop-in counterparts of ``keras.optimizers.schedules``.

Same constructor arguments, defaults and values at every step as Keras's own
classes (tests compare against Keras itself), but composable with ``>>``,
previewable with ``.at()`` and accepting ``epochs(...)``/``fraction(...)``.
Migrating is changing the import.
"""

from __future__ import annotations

import math

import keras

from .. import _validate
from ..durations import Duration, duration_arg, optional_duration_arg
from .base import Recipe, Schedule
from .compose import Restarts
from .primitives import Cosine, Exponential, Linear, Piecewise, Polynomial

_register = keras.saving.register_keras_serializable(package="stepsched")


def _decay_args(initial_learning_rate, decay_steps, decay_rate, staircase, name, *,
                positive_rate: bool) -> dict:
    """The arguments Keras's ExponentialDecay and InverseTimeDecay share, validated."""
    return dict(
        initial_learning_rate=_validate.number("initial_learning_rate", initial_learning_rate),
        decay_steps=duration_arg("decay_steps", decay_steps),
        decay_rate=_validate.number("decay_rate", decay_rate, positive=positive_rate,
                                    nonnegative=not positive_rate),
        staircase=_validate.boolean("staircase", staircase),
        name=_validate.text("name", name))


@_register
class ExponentialDecay(Recipe):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (Keras)."""

    open_ended = True

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 decay_rate: float, staircase: bool = False, name: str = "ExponentialDecay"):
        super().__init__(**_decay_args(initial_learning_rate, decay_steps, decay_rate, staircase,
                                       name, positive_rate=True))

    def build(self) -> Schedule:
        return Exponential(self.arg("initial_learning_rate"), self.arg("decay_rate"),
                           every=self.arg("decay_steps"), staircase=self.arg("staircase"))


@_register
class PiecewiseConstantDecay(Recipe):
    """Keras convention: ``values[0]`` while ``step <= boundaries[0]``, and so on.

    The value switches one step *after* each boundary (for integer steps), unlike
    ``Piecewise`` which switches at it.
    """

    open_ended = True

    def __init__(self, boundaries, values, name: str = "PiecewiseConstantDecay"):
        Piecewise(boundaries, values)  # validates
        super().__init__(boundaries=list(boundaries), values=[float(v) for v in values],
                         name=_validate.text("name", name))

    def build(self) -> Schedule:
        # Keras uses step > boundary, i.e. the first integer step past it.
        return Piecewise([math.floor(b) + 1 for b in self.arg("boundaries")], self.arg("values"))


@_register
class PolynomialDecay(Schedule):
    r"""Keras ``PolynomialDecay``, including ``cycle=True``.

    .. math:: \eta = (\eta_0 - \eta_{end})(1 - s/D)^{p} + \eta_{end}

    with ``s = min(step, D)``; with ``cycle`` the horizon ``D`` grows to the next
    multiple of ``decay_steps`` instead.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay"):
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         decay_steps=duration_arg("decay_steps", decay_steps),
                         end_learning_rate=_validate.number("end_learning_rate",
                                                            end_learning_rate),
                         power=_validate.number("power", power, positive=True),
                         cycle=_validate.boolean("cycle", cycle),
                         name=_validate.text("name", name))

    def _formula(self, t, xp):
        start, end = self.arg("initial_learning_rate"), self.arg("end_learning_rate")
        d = self.arg("decay_steps")
        if self.arg("cycle"):
            horizon = d * xp.maximum(xp.ceil(t / d), 1.0)
            frac = (horizon - t) / horizon
        else:
            return Polynomial(start, end, d, self.arg("power"))._eval(t, xp)
        return (start - end) * xp.power(xp.maximum(frac, 0.0), self.arg("power")) + end


@_register
class InverseTimeDecay(Schedule):
    r"""Keras ``InverseTimeDecay``: :math:`\eta_0 / (1 + r\, s / D)` (``s/D`` floored if staircase)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 decay_rate: float, staircase: bool = False, name: str = "InverseTimeDecay"):
        super().__init__(**_decay_args(initial_learning_rate, decay_steps, decay_rate, staircase,
                                       name, positive_rate=False))

    def _formula(self, t, xp):
        p = t / self.arg("decay_steps")
        if self.arg("staircase"):
            p = xp.floor(p)
        return self.arg("initial_learning_rate") / (1.0 + self.arg("decay_rate") * p)


@_register
class CosineDecay(Recipe):
    """Keras ``CosineDecay``, with its optional linear warmup to ``warmup_target``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int | Duration,
                 alpha: float = 0.0, name: str = "CosineDecay",
                 warmup_target: float | None = None, warmup_steps: int | Duration = 0):
        warmup_steps = optional_duration_arg("warmup_steps", warmup_steps)
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         decay_steps=duration_arg("decay_steps", decay_steps),
                         alpha=_validate.number("alpha", alpha), name=_validate.text("name", name),
                         warmup_target=_validate.number("warmup_target", warmup_target,
                                                        allow_none=True),
                         warmup_steps=warmup_steps)

    def build(self) -> Schedule:
        init, alpha = self.arg("initial_learning_rate"), self.arg("alpha")
        target, warmup = self.arg("warmup_target"), self.arg("warmup_steps")
        if target is None:
            return Cosine(init, init * alpha, self.arg("decay_steps"))
        decay = Cosine(target, target * alpha, self.arg("decay_steps"))
        if not warmup:
            return decay
        return Linear(init, target, warmup) >> decay


@_register
class CosineDecayRestarts(Recipe):
    """Keras ``CosineDecayRestarts`` (SGDR): restarts stretched by ``t_mul``, scaled by ``m_mul``."""

    open_ended = True

    def __init__(self, initial_learning_rate: float, first_decay_steps: int | Duration,
                 t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0,
                 name: str = "SGDRDecay"):
        if _validate.number("t_mul", t_mul, positive=True) < 1.0:
            raise ValueError(f"t_mul must be >= 1, got {t_mul!r}")
        if _validate.number("m_mul", m_mul, nonnegative=True) > 1.0:
            raise ValueError(f"m_mul must be <= 1 (each restart scaled by m_mul**i would grow "
                             f"without bound), got {m_mul!r}")
        super().__init__(initial_learning_rate=_validate.number("initial_learning_rate",
                                                                initial_learning_rate),
                         first_decay_steps=duration_arg("first_decay_steps", first_decay_steps),
                         t_mul=float(t_mul), m_mul=float(m_mul),
                         alpha=_validate.number("alpha", alpha),
                         name=_validate.text("name", name))

    def build(self) -> Schedule:
        init, alpha = self.arg("initial_learning_rate"), self.arg("alpha")
        cycle = Cosine(init * (1.0 - alpha), 0.0, self.arg("first_decay_steps"))
        restarts = Restarts(cycle, period_mult=self.arg("t_mul"), decay=self.arg("m_mul"))
        return restarts + init * alpha if alpha else restarts


__all__ = ["ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
           "CosineDecay", "CosineDecayRestarts"]
