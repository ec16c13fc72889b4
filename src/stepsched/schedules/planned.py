"""``Planned``: a schedule resolved for one training run, remembering its plan.

The one way durations in epochs or fractions become steps is
``schedule.resolve(steps_per_epoch, total_steps)``, which returns a copy. At
``fit()`` time stepsched callbacks give the optimizer ``Planned(schedule,
steps_per_epoch, total_steps)``: its values are those of the resolved copy,
its config keeps the schedule as written and the numbers it was resolved
with, so ``model.save``/``load_model`` bring back the same plan and the
schedule the user holds is never changed.
"""

from __future__ import annotations

import keras

from .. import _validate
from .base import Schedule, as_schedule

__all__ = ["Planned"]


@keras.saving.register_keras_serializable(package="stepsched")
class Planned(Schedule):
    """``schedule`` with its durations resolved from ``steps_per_epoch`` and ``total_steps``.

    >>> import stepsched as ss
    >>> p = Planned(ss.Linear(1.0, 0.0, ss.fraction(0.5)), total_steps=10)
    >>> p.at([0, 5, 9]).tolist()
    [1.0, 0.0, 0.0]
    """

    def __init__(self, schedule: Schedule, steps_per_epoch: float | None = None,
                 total_steps: float | None = None):
        schedule = as_schedule(schedule, "schedule")
        if isinstance(schedule, Planned):
            schedule = schedule.arg("schedule")
        super().__init__(
            schedule=schedule,
            steps_per_epoch=_validate.number("steps_per_epoch", steps_per_epoch, positive=True,
                                             allow_none=True),
            total_steps=_validate.number("total_steps", total_steps, positive=True,
                                         allow_none=True))
        self.resolved = schedule.resolve(steps_per_epoch, total_steps)

    @property
    def context(self) -> tuple[float | None, float | None]:
        """``(steps_per_epoch, total_steps)`` the plan was resolved with."""
        return self.arg("steps_per_epoch"), self.arg("total_steps")

    @property
    def is_symbolic(self) -> bool:
        return False

    @property
    def duration(self):
        return self.resolved.duration

    @property
    def is_finite(self) -> bool:
        return self.resolved.is_finite

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Schedule:
        return self

    def _eval(self, t, xp, clip: bool = True):
        return self.resolved._eval(t, xp, clip)

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """Those of the resolved schedule."""
        from ..plotting import key_steps

        return key_steps(self.resolved, horizon)

    def __repr__(self) -> str:
        spe, total = self.context
        parts = [repr(self.arg("schedule"))]
        if spe is not None:
            parts.append(f"steps_per_epoch={spe:g}")
        if total is not None:
            parts.append(f"total_steps={total:g}")
        return f"Planned({', '.join(parts)})"
