"""Further primitive pieces used by the recipes and the peers' catalogues.

Each is one formula, written once for both evaluators. ``t`` is the piece's
local step, already held at ``duration`` for finite pieces; ``u = t / d`` is
the progress through the piece.
"""

from __future__ import annotations

import keras

from .. import _validate
from ..durations import Duration, duration_arg
from . import _host
from .base import Schedule

_register = keras.saving.register_keras_serializable(package="stepsched")


@_register
class InversePower(Schedule):
    r"""Open-ended inverse-power decay: ``start * (1 + t / timescale) ** -power``.

    .. math:: \eta(t) = \text{start}\,\left(1 + t/\tau\right)^{-p}

    ``power=0.5`` is the inverse square root of transformers
    ``get_inverse_sqrt_schedule`` and of the Noam schedule; ``power=1`` is
    Keras's ``InverseTimeDecay`` with ``decay_rate=1``.

    >>> float(InversePower(1.0, timescale=100).at(300))
    0.5
    """

    def __init__(self, start: float, timescale: int | Duration, power: float = 0.5):
        super().__init__(start=_validate.number("start", start),
                         timescale=duration_arg("timescale", timescale),
                         power=_validate.number("power", power, positive=True))

    def _formula(self, t, xp):
        start, power = self.arg("start"), self.arg("power")
        return start * xp.exp(-power * xp.log(1.0 + t / self.arg("timescale")))


@_register
class SqrtDecay(Schedule):
    r"""The "1-sqrt" cooldown: from ``start`` to ``end`` over ``duration`` steps.

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})\left(1 - \sqrt{u}\right)

    (Hägele et al. 2024; transformers ``get_wsd_schedule(decay_type="1-sqrt")``).

    >>> float(SqrtDecay(1.0, 0.0, 100).at(25))
    0.5
    """

    def __init__(self, start: float, end: float, duration: int | Duration):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration))

    def _formula(self, t, xp):
        start, end = self.arg("start"), self.arg("end")
        return end + (start - end) * (1.0 - xp.sqrt(t / self.duration))


@_register
class KDecay(Schedule):
    r"""k-decay (Zhang & Li 2020): a cosine or linear decay with progress ``u**k``.

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})\, g(u^{k})

    with ``g(v) = (1 + cos(pi v)) / 2`` for ``shape="cosine"`` (timm
    ``CosineLRScheduler(k_decay=k)``) and ``g(v) = 1 - v`` for ``"linear"``.
    ``k > 1`` keeps the rate high for longer; ``k = 1`` is the plain decay.

    >>> float(KDecay(1.0, 0.0, 100, k=2.0, shape="linear").at(50))
    0.75
    """

    SHAPES = ("cosine", "linear")

    def __init__(self, start: float, end: float, duration: int | Duration, k: float = 1.0,
                 shape: str = "cosine"):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration),
                         k=_validate.number("k", k, positive=True),
                         shape=_validate.choice("shape", shape, self.SHAPES))

    def _formula(self, t, xp):
        start, end, k = self.arg("start"), self.arg("end"), self.arg("k")
        v = xp.power(t / self.duration, k)
        g = _host.half_cosine(1.0 - v, xp) if self.arg("shape") == "cosine" else 1.0 - v
        return end + (start - end) * g


@_register
class TanhDecay(Schedule):
    r"""Hyperbolic-tangent decay (Hsueh et al. 2019, "HTD").

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})\,
              \tfrac12\left(1 - \tanh\left(L + (U - L)\,u\right)\right)

    with ``L = lower`` (default -6) and ``U = upper`` (default 3), as in the
    paper. The curve starts at ``start`` up to ``(1 - tanh(-L))/2`` (6e-6 for
    L=-6) and ends near, not at, ``end`` (``(1 - tanh U)/2``, 2.5e-3 for U=3).

    >>> round(float(TanhDecay(1.0, 0.0, 90).at(60)), 4)
    0.5
    """

    def __init__(self, start: float, end: float, duration: int | Duration,
                 lower: float = -6.0, upper: float = 3.0):
        lower = _validate.number("lower", lower)
        upper = _validate.number("upper", upper)
        if not upper > lower:
            raise ValueError(f"upper must be > lower, got lower={lower!r}, upper={upper!r}")
        if upper - lower > _validate.FLOAT32_MAX:
            raise ValueError(f"upper - lower must be within float32 range, got lower={lower!r}, "
                             f"upper={upper!r}")
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration), lower=lower, upper=upper)

    def _formula(self, t, xp):
        start, end = self.arg("start"), self.arg("end")
        lo, hi = self.arg("lower"), self.arg("upper")
        return end + (start - end) * (0.5 * (1.0 - xp.tanh(lo + (hi - lo) * (t / self.duration))))


@_register
class Rex(Schedule):
    r"""REX decay (Chen et al. 2022, "REX: Revisiting Budgeted Training").

    .. math:: \eta(t) = \text{end} + (\text{start} - \text{end})\,
              \frac{1 - u}{\tfrac12 + \tfrac12 (1 - u)}

    Stays higher than linear for most of the run and drops to ``end`` at the end.

    >>> round(float(Rex(1.0, 0.0, 100).at(50)), 6)
    0.666667
    """

    def __init__(self, start: float, end: float, duration: int | Duration):
        super().__init__(start=_validate.number("start", start), end=_validate.number("end", end),
                         duration=duration_arg("duration", duration))

    def _formula(self, t, xp):
        start, end = self.arg("start"), self.arg("end")
        r = 1.0 - t / self.duration
        return end + (start - end) * (r / (0.5 + 0.5 * r))


__all__ = ["InversePower", "SqrtDecay", "KDecay", "TanhDecay", "Rex"]
