"""``Extended``: a new phase after a schedule, from a step (``stepsched.extend`` puts one in
a compiled model's optimizer, see ``stepsched.phases``).

``Plan(on_change="restart")`` starts the *same* schedule again when a later
``fit()`` changes the plan; a run continued past its planned end with a
*different* phase (re-warm to another peak and decay again, or a cooldown
branched from a stable checkpoint) needs the new phase put after the steps
already trained, without rebuilding the model: ``stepsched.extend(model,
schedule)``. The optimizer's schedule becomes ``Extended(old, schedule, at)``,
saved with the model like any schedule; the train function is rebuilt so the
compiled step evaluates it.
"""

from __future__ import annotations

import keras
import numpy as np

from .. import _validate
from .base import Schedule, as_schedule

__all__ = ["Extended"]


@keras.saving.register_keras_serializable(package="stepsched")
class Extended(Schedule):
    r"""``schedule`` before step ``at``, then ``then`` from its own step 0.

    .. math:: \eta(t) = \begin{cases} s(t) & t < a \\ n(t - a) & t \ge a \end{cases}

    ``then``'s durations in ``epochs(...)``/``fraction(...)`` are planned by the
    next ``fit()``; a fraction is of the run from ``at`` on (the steps of the fit
    that trains the new phase). Past ``then``'s end its final value holds.

    >>> import stepsched as ss
    >>> e = Extended(ss.Linear(1.0, 0.0, 4), ss.Linear(0.5, 0.0, 2), at=6)
    >>> e.at([0, 4, 5, 6, 7, 8, 20]).tolist()
    [1.0, 0.0, 0.0, 0.5, 0.25, 0.0, 0.0]
    """

    exact_step = True

    def __init__(self, schedule: Schedule | float, then: Schedule | float, at: int):
        at = _validate.integer("at", at, minimum=0)
        if at > 2**31 - 1:
            raise ValueError(f"at must be <= 2**31 - 1 (the optimizer's int32 step), got {at!r}")
        super().__init__(schedule=as_schedule(schedule, "schedule"),
                         then=as_schedule(then, "then"), at=at)

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Schedule:
        """``then``'s durations are its own: a ``fraction(p)`` of the run is of the steps
        from ``at`` to the run's end (the fit that trains the new phase), not of the
        steps before it."""
        if not self.is_symbolic:
            return self
        at = self.arg("at")
        rest = None if total_steps is None else total_steps - at
        if rest is not None and rest <= 0:
            raise ValueError(f"the run ends at step {total_steps:g}, at or before the new "
                             f"phase's start {at}: nothing is left for {self.arg('then')!r}")
        return Extended(self.arg("schedule").resolve(steps_per_epoch, total_steps),
                        self.arg("then").resolve(steps_per_epoch, rest), at)

    @property
    def duration(self) -> float | None:
        d = self.arg("then").duration
        return None if d is None else self.arg("at") + d

    @property
    def is_finite(self) -> bool:
        return self.arg("then").is_finite

    def _eval(self, t, xp, clip: bool = True):
        before, then, at = self.arg("schedule"), self.arg("then"), self.arg("at")
        if at == 0:
            return then._eval(t, xp)
        later = lambda u: then._eval(xp.maximum(u, at) - at, xp)  # noqa: E731
        edges = self.cached("edges", lambda: np.asarray([at], np.float64))
        return xp.piecewise(t, xp.bucket(edges, t), [lambda u: before._eval(u, xp), later])

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The earlier schedule's before ``at``, the new phase, then its own, shifted."""
        from .keys import key_steps

        at = float(self.arg("at"))
        out = [(s, label) for s, label in key_steps(self.arg("schedule"), min(horizon, at))
               if s < at]
        if at > horizon:
            return out
        if at > 0:
            out.append((at, "new phase"))
        out += [(at + s, label) for s, label in key_steps(self.arg("then"), horizon - at)
                if 0 < s and at + s <= horizon]
        return sorted(out)

    def __repr__(self) -> str:
        return f"Extended({self.arg('schedule')!r}, {self.arg('then')!r}, at={self.arg('at')})"
