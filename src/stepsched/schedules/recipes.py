"""Ready-made recipes: the schedules people ask for by name.

Each recipe is a composition of primitives (``explain()`` shows it), except
``Cyclic``, whose ``exp_range`` mode multiplies a triangle by ``gamma**step``
and is written as one formula. Durations may be numbers of steps,
``epochs(...)`` or ``fraction(...)``; relations between them (a warmup shorter
than the run, ...) are checked at construction when they are plain numbers and
when the recipe is first evaluated otherwise. Steps are 0-based optimizer
steps.
"""

from __future__ import annotations

import math

import keras

from .. import _validate
from ..durations import Duration, duration_arg, optional_duration_arg
from .base import Recipe, Schedule
from .compose import Sequence, Warmup
from .extra import InversePower, SqrtDecay
from .primitives import Constant, Cosine, Exponential, Linear

_register = keras.saving.register_keras_serializable(package="stepsched")


def _plain(*values) -> bool:
    return not any(isinstance(v, Duration) for v in values)


def _warmed(warmup: float, start: float, schedule: Schedule) -> Schedule:
    return Warmup(warmup, start=start) >> schedule if warmup else schedule


# --------------------------------------------------------------------- one-cycle
def _one_cycle_phases(total: float, pct_start: float, three_phase: bool) -> list[float]:
    """Phase lengths in steps, with torch ``OneCycleLR``'s float phase ends.

    torch ends phase 1 at step ``pct_start * T - 1`` (and phase 2 of three at
    ``2 pct_start T - 2``) and the last phase at ``T - 1``.
    """
    end1 = pct_start * total - 1.0
    ends = [end1, 2.0 * end1, total - 1.0] if three_phase else [end1, total - 1.0]
    lengths = [ends[0]] + [ends[i] - ends[i - 1] for i in range(1, len(ends))]
    if any(n <= 0 for n in lengths):
        need = ("0 < pct_start * total_steps - 1 < (total_steps - 1) / 2" if three_phase
                else "pct_start * total_steps > 1")
        raise ValueError(f"pct_start={pct_start!r} with total_steps={total!r} leaves an empty "
                         f"phase; need {need}")
    return lengths


def _one_cycle(total, pct_start, anneal, three_phase, values) -> Schedule:
    """Anneal through ``values`` (one more than the phases), then hold the last."""
    piece = Cosine if anneal == "cos" else Linear
    lengths = _one_cycle_phases(total, pct_start, three_phase)
    pieces = [piece(values[i], values[i + 1], n) for i, n in enumerate(lengths)]
    # torch reaches the final value at step T - 1; one more step rounds the run to T.
    pieces.append(Constant(values[-1], 1))
    return Sequence(pieces)


def _one_cycle_args(total_steps, pct_start, anneal_strategy, three_phase) -> dict:
    pct_start = _validate.number("pct_start", pct_start)
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"pct_start must be in (0, 1), got {pct_start!r}")
    total_steps = duration_arg("total_steps", total_steps)
    args = dict(total_steps=total_steps, pct_start=pct_start,
                anneal_strategy=_validate.choice("anneal_strategy", anneal_strategy,
                                                 OneCycle.ANNEAL),
                three_phase=_validate.boolean("three_phase", three_phase))
    if _plain(total_steps):
        _one_cycle_phases(total_steps, pct_start, three_phase)
    return args


@_register
class OneCycle(Recipe):
    r"""The 1cycle policy, value for value torch ``OneCycleLR``.

    Rates ``initial = max_lr / div_factor`` and ``min = initial /
    final_div_factor``; with ``T = total_steps`` and ``e = pct_start T - 1``:

    - two phases: ``initial -> max_lr`` over steps ``[0, e]``, then
      ``max_lr -> min`` over ``[e, T - 1]``;
    - ``three_phase``: ``initial -> max_lr`` over ``[0, e]``,
      ``max_lr -> initial`` over ``[e, 2e]``, ``initial -> min`` over ``[2e, T - 1]``.

    Each phase is a half cosine (``anneal_strategy="cos"``) or a line
    (``"linear"``). Phase ends need not be integers. The value reaches ``min`` at
    step ``T - 1``, the last of ``T`` steps, and **holds it from then on**:
    torch raises once stepped past ``total_steps``; the recipe's duration is
    ``T``, so ``OneCycle(...) >> next_piece`` starts ``next_piece`` at step ``T``.

    The matching momentum / Adam ``beta_1`` cycle is ``one_cycle.momentum()``.

    >>> s = OneCycle(max_lr=1.0, total_steps=12, pct_start=0.5, anneal_strategy="linear",
    ...              div_factor=10.0, final_div_factor=10.0)
    >>> [round(float(v), 3) for v in s.at([0, 2, 5, 11, 50])]
    [0.1, 0.46, 1.0, 0.01, 0.01]
    """

    ANNEAL = ("cos", "linear")

    def __init__(self, max_lr: float, total_steps: int | Duration, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False):
        max_lr = _validate.number("max_lr", max_lr, positive=True)
        div_factor = _validate.number("div_factor", div_factor, positive=True)
        final_div_factor = _validate.number("final_div_factor", final_div_factor, positive=True)
        args = _one_cycle_args(total_steps, pct_start, anneal_strategy, three_phase)
        super().__init__(max_lr=max_lr, total_steps=args["total_steps"],
                         pct_start=args["pct_start"], anneal_strategy=args["anneal_strategy"],
                         div_factor=div_factor, final_div_factor=final_div_factor,
                         three_phase=args["three_phase"])

    def build(self) -> Schedule:
        peak = self.arg("max_lr")
        initial = peak / self.arg("div_factor")
        final = initial / self.arg("final_div_factor")
        values = ([initial, peak, initial, final] if self.arg("three_phase")
                  else [initial, peak, final])
        return _one_cycle(self.arg("total_steps"), self.arg("pct_start"),
                          self.arg("anneal_strategy"), self.arg("three_phase"), values)

    def momentum(self, base_momentum: float = 0.85, max_momentum: float = 0.95
                 ) -> OneCycleMomentum:
        """The momentum (or Adam ``beta_1``) cycle that goes with this rate cycle."""
        return OneCycleMomentum(self._args["total_steps"], pct_start=self.arg("pct_start"),
                                anneal_strategy=self.arg("anneal_strategy"),
                                base_momentum=base_momentum, max_momentum=max_momentum,
                                three_phase=self.arg("three_phase"))


@_register
class OneCycleMomentum(Recipe):
    r"""The momentum / ``beta_1`` cycle of torch ``OneCycleLR(cycle_momentum=True)``.

    The inverse of the rate's shape, over the same phases as ``OneCycle``:
    ``max_momentum -> base_momentum -> max_momentum`` (three phases: then held
    at ``max_momentum``). Keras's own optimizers read ``momentum`` / ``beta_1``
    as Python floats that a compiled train step bakes in; the optimizers of
    ``stepsched.optimizers`` take this schedule for either and evaluate it in
    the compiled step, e.g. ``stepsched.optimizers.SGD(lr, momentum=lr.momentum())``
    or ``stepsched.optimizers.Adam(lr, beta_1=lr.momentum())``.

    >>> m = OneCycleMomentum(12, pct_start=0.5, anneal_strategy="linear")
    >>> [round(float(v), 3) for v in m.at([0, 5, 11])]
    [0.95, 0.85, 0.95]
    """

    def __init__(self, total_steps: int | Duration, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", base_momentum: float = 0.85,
                 max_momentum: float = 0.95, three_phase: bool = False):
        base = _validate.number("base_momentum", base_momentum)
        top = _validate.number("max_momentum", max_momentum)
        args = _one_cycle_args(total_steps, pct_start, anneal_strategy, three_phase)
        super().__init__(total_steps=args["total_steps"], pct_start=args["pct_start"],
                         anneal_strategy=args["anneal_strategy"], base_momentum=base,
                         max_momentum=top, three_phase=args["three_phase"])

    def build(self) -> Schedule:
        base, top = self.arg("base_momentum"), self.arg("max_momentum")
        values = [top, base, top, top] if self.arg("three_phase") else [top, base, top]
        return _one_cycle(self.arg("total_steps"), self.arg("pct_start"),
                          self.arg("anneal_strategy"), self.arg("three_phase"), values)


# --------------------------------------------------------------------- cyclic
@_register
class Cyclic(Schedule):
    r"""Cyclical learning rate (Smith 2017), value for value torch ``CyclicLR``.

    A cycle rises from ``low`` to ``high`` over ``up`` steps and falls back over
    ``down`` (default ``up``). With ``c = up + down``, cycle number
    ``k = floor(1 + t/c)`` and position ``x = 1 + t/c - k``:

    .. math:: \eta(t) = \text{low} + (\text{high} - \text{low})\, h(x)\, s(t),\quad
              h(x) = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases}

    with ``r = up / c`` and ``s = 1`` (``"triangular"``), ``2^{1-k}``
    (``"triangular2"``, the height halves each cycle) or ``gamma^t``
    (``"exp_range"``: note ``t`` is the global step, not the cycle).
    ``low > high`` gives the inverse cycle (``Cyclic.momentum``).

    >>> [round(float(v), 3) for v in Cyclic(0.1, 1.0, up=2).at(range(5))]
    [0.1, 0.55, 1.0, 0.55, 0.1]
    """

    MODES = ("triangular", "triangular2", "exp_range")
    exact_step = True

    def __init__(self, low: float, high: float, up: int | Duration,
                 down: int | Duration | None = None, mode: str = "triangular",
                 gamma: float = 1.0):
        gamma = _validate.number("gamma", gamma, positive=True)
        if gamma > 1.0:
            raise ValueError(f"gamma must be in (0, 1] (gamma ** step grows without bound "
                             f"otherwise), got {gamma!r}")
        super().__init__(low=_validate.number("low", low), high=_validate.number("high", high),
                         up=duration_arg("up", up),
                         down=duration_arg("down", down, allow_none=True),
                         mode=_validate.choice("mode", mode, self.MODES), gamma=gamma)

    @property
    def period(self):
        """``up + down`` where every cycle is the first (``triangular``, or ``exp_range``
        with ``gamma`` 1)."""
        if self.arg("mode") == "triangular" or self.arg("gamma") == 1.0 and \
                self.arg("mode") == "exp_range":
            return self.arg("up") + (self.arg("up") if self.arg("down") is None
                                     else self.arg("down"))
        return None

    def _formula(self, t, xp):
        low, high, mode = self.arg("low"), self.arg("high"), self.arg("mode")
        up = self.arg("up")
        down = up if self.arg("down") is None else self.arg("down")
        # cycles completed (k - 1 in the formula above) and the step within the cycle (x c)
        done, pos = xp.floordiv(t, up + down)
        pos = xp.float(pos)
        h = xp.where(pos <= up, pos / up, (up + down - pos) / down)
        if mode == "triangular2":
            h = h * xp.exp(-done * math.log(2.0))
        elif mode == "exp_range" and self.arg("gamma") != 1.0:
            h = h * xp.exp(xp.float(t) * math.log(self.arg("gamma")))
        return low + (high - low) * h

    def momentum(self, base_momentum: float = 0.8, max_momentum: float = 0.9) -> Cyclic:
        """torch ``CyclicLR``'s momentum cycle: ``max_momentum`` when the rate is low."""
        return Cyclic(max_momentum, base_momentum, self._args["up"], self._args["down"],
                      mode=self.arg("mode"), gamma=self.arg("gamma"))


# --------------------------------------------------------------------- transformer-style
@_register
class WarmupCosine(Recipe):
    r"""Linear warmup from ``start`` to ``peak``, then a cosine to ``end``.

    ``total`` includes the warmup (optax ``warmup_cosine_decay_schedule``,
    where it is ``decay_steps``); ``exponent`` raises the cosine factor to a
    power. After ``total`` the value holds at ``end``.

    .. math:: \eta(t) = \begin{cases}
              \text{start} + (\text{peak} - \text{start})\, t / w & t < w \\
              \text{end} + (\text{peak} - \text{end})
              \left[\tfrac12\left(1 + \cos\frac{\pi (t - w)}{T - w}\right)\right]^{p} & t \ge w
              \end{cases}

    ``explain()``: ``Warmup(w, start) >> Cosine(peak, end, T - w, exponent)``.

    >>> s = WarmupCosine(peak=1.0, warmup=10, total=30)
    >>> [round(float(v), 6) for v in s.at([0, 5, 10, 20, 30, 99])]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, peak: float, warmup: int | Duration, total: int | Duration,
                 start: float = 0.0, end: float = 0.0, exponent: float = 1.0):
        warmup = optional_duration_arg("warmup", warmup)
        total = duration_arg("total", total)
        if _plain(warmup, total) and not total > warmup:
            raise ValueError(f"total must be > warmup (total includes the warmup); got "
                             f"warmup={warmup!r}, total={total!r}")
        super().__init__(peak=_validate.number("peak", peak), warmup=warmup, total=total,
                         start=_validate.number("start", start), end=_validate.number("end", end),
                         exponent=_validate.number("exponent", exponent, positive=True))

    def build(self) -> Schedule:
        warmup, total = self.arg("warmup"), self.arg("total")
        if not total > warmup:
            raise ValueError(f"total must be > warmup; resolved to warmup={warmup!r}, "
                             f"total={total!r}")
        decay = Cosine(self.arg("peak"), self.arg("end"), total - warmup, self.arg("exponent"))
        return _warmed(warmup, self.arg("start"), decay)


@_register
class WarmupStableDecay(Recipe):
    r"""Warmup, a stable plateau at ``peak``, then a decay to ``end`` ("WSD").

    Give exactly one of ``stable`` (the plateau's length) or ``total`` (the whole
    run, warmup included; the plateau is what remains). ``decay_shape``:

    - ``"linear"``: ``end + (peak - end)(1 - u)``
    - ``"cosine"``: ``end + (peak - end)(1 + cos(pi u))/2``
    - ``"1-sqrt"``: ``end + (peak - end)(1 - sqrt(u))`` (Hägele et al. 2024)
    - ``"exponential"``: ``peak (end/peak)^u`` (needs ``0 < end``)

    with ``u`` the progress through the decay. After it the value holds at ``end``.

    ``explain()``: ``Warmup(warmup, start) >> Constant(peak, stable) >> decay``.

    >>> s = WarmupStableDecay(peak=1.0, warmup=10, decay=10, total=40)
    >>> s.at([0, 5, 10, 29, 30, 35, 40, 99]).tolist()
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """

    SHAPES = ("linear", "cosine", "1-sqrt", "exponential")

    def __init__(self, peak: float, warmup: int | Duration, decay: int | Duration,
                 stable: int | Duration | None = None, total: int | Duration | None = None,
                 start: float = 0.0, end: float = 0.0, decay_shape: str = "linear"):
        if (stable is None) == (total is None):
            raise ValueError(f"give exactly one of stable or total; got stable={stable!r}, "
                             f"total={total!r}")
        peak = _validate.number("peak", peak)
        end = _validate.number("end", end)
        decay_shape = _validate.choice("decay_shape", decay_shape, self.SHAPES)
        if decay_shape == "exponential" and not (end > 0 and peak > 0):
            raise ValueError(f"decay_shape='exponential' needs peak > 0 and end > 0; got "
                             f"peak={peak!r}, end={end!r}")
        warmup = optional_duration_arg("warmup", warmup)
        decay = duration_arg("decay", decay)
        stable = None if stable is None else optional_duration_arg("stable", stable)
        total = duration_arg("total", total, allow_none=True)
        if total is not None and _plain(warmup, decay, total):
            self._check_total(warmup, decay, total)
        super().__init__(peak=peak, warmup=warmup, decay=decay, stable=stable, total=total,
                         start=_validate.number("start", start), end=end,
                         decay_shape=decay_shape)

    @staticmethod
    def _check_total(warmup, decay, total) -> float:
        stable = total - warmup - decay
        if stable < 0:
            raise ValueError(f"total must be >= warmup + decay; got warmup={warmup!r}, "
                             f"decay={decay!r}, total={total!r}")
        return stable

    def build(self) -> Schedule:
        peak, end, decay = self.arg("peak"), self.arg("end"), self.arg("decay")
        stable = self.arg("stable")
        if stable is None:
            stable = self._check_total(self.arg("warmup"), decay, self.arg("total"))
        shape = self.arg("decay_shape")
        if shape == "linear":
            tail = Linear(peak, end, decay)
        elif shape == "cosine":
            tail = Cosine(peak, end, decay)
        elif shape == "1-sqrt":
            tail = SqrtDecay(peak, end, decay)
        else:
            tail = Exponential(peak, end / peak, every=decay, duration=decay)
        if stable:
            tail = Constant(peak, stable) >> tail
        return _warmed(self.arg("warmup"), self.arg("start"), tail)


@_register
class InverseSqrt(Recipe):
    r"""Linear warmup to ``peak``, then inverse-square-root decay.

    transformers ``get_inverse_sqrt_schedule``: with ``w = warmup`` and
    ``tau = timescale`` (default ``w``),

    .. math:: \eta(t) = \begin{cases} \text{peak}\; t / w & t < w \\
              \text{peak}\,\sqrt{\tau / (t - w + \tau)} & t \ge w \end{cases}

    ``explain()``: ``Warmup(w) >> InversePower(peak, timescale=tau, power=0.5)``.
    With ``warmup=0`` give ``timescale``.

    >>> InverseSqrt(peak=1.0, warmup=100).at([0, 50, 100, 400]).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """

    open_ended = True

    def __init__(self, peak: float, warmup: int | Duration,
                 timescale: int | Duration | None = None):
        warmup = optional_duration_arg("warmup", warmup)
        if timescale is None and not warmup:
            raise ValueError("timescale is required when warmup=0 (it defaults to warmup)")
        super().__init__(peak=_validate.number("peak", peak), warmup=warmup,
                         timescale=duration_arg("timescale", timescale, allow_none=True))

    def build(self) -> Schedule:
        warmup, timescale = self.arg("warmup"), self.arg("timescale")
        decay = InversePower(self.arg("peak"), warmup if timescale is None else timescale, 0.5)
        return _warmed(warmup, 0.0, decay)


@_register
class Noam(Recipe):
    r"""The Transformer schedule of Vaswani et al. (2017), "Noam".

    .. math:: \eta(t) = \text{scale}\; d^{-1/2}\,
              \min\!\left((t+1)^{-1/2},\; (t+1)\, w^{-3/2}\right)

    ``t`` is the 0-based optimizer step, so the paper's 1-based step number is
    ``t + 1`` (as in tensor2tensor and fairseq): the first update uses
    ``scale d^-1/2 w^-3/2`` and the peak ``scale (d w)^-1/2`` is reached at
    ``t = w - 1``. For the other convention (``t`` in place of ``t + 1``, value 0
    at step 0), write ``Warmup(w) >> InversePower(scale * (d * w) ** -0.5, w)``.

    ``explain()``: ``Linear(c w^-3/2, c w^-1/2, w - 1) >> InversePower(c w^-1/2, w)``
    with ``c = scale d^-1/2``.

    >>> s = Noam(d_model=512, warmup=4000)
    >>> round(float(s.at(3999)) * (512 * 4000) ** 0.5, 6)
    1.0
    """

    open_ended = True

    def __init__(self, d_model: float, warmup: int | Duration, scale: float = 1.0):
        warmup = duration_arg("warmup", warmup)
        if _plain(warmup) and warmup < 1:
            raise ValueError(f"warmup must be >= 1 step, got {warmup!r}")
        super().__init__(d_model=_validate.number("d_model", d_model, positive=True),
                         warmup=warmup, scale=_validate.number("scale", scale, positive=True))

    def build(self) -> Schedule:
        w = self.arg("warmup")
        if w < 1:
            raise ValueError(f"warmup must be >= 1 step, resolved to {w!r}")
        c = self.arg("scale") / math.sqrt(self.arg("d_model"))
        peak = c / math.sqrt(w)
        decay = InversePower(peak, w, 0.5)
        if w == 1:
            return decay
        return Linear(c * w ** -1.5, peak, w - 1) >> decay


__all__ = ["OneCycle", "OneCycleMomentum", "Cyclic", "WarmupCosine", "WarmupStableDecay",
           "InverseSqrt", "Noam"]
