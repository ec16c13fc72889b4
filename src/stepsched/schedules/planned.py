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
import numpy as np

from .. import _validate
from .base import Schedule, as_schedule

__all__ = ["Planned"]


POLICIES = ("auto", "continue", "restart", "keep", "refuse")


@keras.saving.register_keras_serializable(package="stepsched")
class Planned(Schedule):
    r"""``schedule`` with its durations resolved from ``steps_per_epoch`` and ``total_steps``.

    A plan that replaced an earlier one during training (a later ``fit()`` of
    another length) keeps the earlier plan, ``previous``, for the steps before
    ``since`` (the step at which it changed), and from there follows
    ``policy``:

    - ``"continue"``: the rest of the earlier plan, stretched over the new
      remaining length, :math:`p(s_0 + (t - s_0)\,r)` with
      :math:`r = (T_{old} - s_0)/(T_{new} - s_0)` (``T`` the total steps; the
      ratio of ``steps_per_epoch`` when the plans have no total): continuous
      at :math:`s_0`, ending where the earlier plan ended, at the new end;
    - ``"restart"``: the schedule as written starts again at local step 0.

    >>> import stepsched as ss
    >>> p = Planned(ss.Linear(1.0, 0.0, ss.fraction(0.5)), total_steps=10)
    >>> p.at([0, 5, 9]).tolist()
    [1.0, 0.0, 0.0]
    """

    exact_step = True

    def __init__(self, schedule: Schedule, steps_per_epoch: float | None = None,
                 total_steps: float | None = None, previous: Planned | None = None,
                 since: int | None = None, policy: str | None = None):
        schedule = as_schedule(schedule, "schedule")
        if isinstance(schedule, Planned):
            schedule = schedule.arg("schedule")
        if previous is not None:
            if not isinstance(previous, Planned):
                raise TypeError(f"previous must be a Planned schedule, got {previous!r}")
            since = _validate.integer("since", since, minimum=0)
            policy = _validate.choice("policy", policy, ("continue", "restart"))
        elif since is not None or policy is not None:
            raise ValueError("since and policy describe a change of plan: give previous too")
        super().__init__(
            schedule=schedule,
            steps_per_epoch=_validate.number("steps_per_epoch", steps_per_epoch, positive=True,
                                             allow_none=True),
            total_steps=_validate.number("total_steps", total_steps, positive=True,
                                         allow_none=True),
            previous=previous, since=since, policy=policy)
        self.resolved = schedule.resolve(steps_per_epoch, total_steps)
        if policy == "continue":
            self.ratio = continue_ratio((previous.arg("steps_per_epoch"), previous.end),
                                        self.context, since)

    @property
    def context(self) -> tuple[float | None, float | None]:
        """``(steps_per_epoch, total_steps)`` the plan was resolved with."""
        return self.arg("steps_per_epoch"), self.arg("total_steps")

    @property
    def end(self) -> float | None:
        """The step at which the run this plan is for ends (None if unknown)."""
        total = self.arg("total_steps")
        if total is None or self.arg("policy") != "restart":
            return total
        return self.arg("since") + total

    @property
    def is_symbolic(self) -> bool:
        return False

    @property
    def duration(self):
        if self.arg("previous") is not None:
            return self.end if self.resolved.is_finite else None
        return self.resolved.duration

    @property
    def is_finite(self) -> bool:
        if self.arg("previous") is not None:
            return self.end is not None and self.resolved.is_finite
        return self.resolved.is_finite

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Schedule:
        return self

    def _eval(self, t, xp, clip: bool = True):
        previous = self.arg("previous")
        if previous is None:
            return self.resolved._eval(t, xp, clip)
        since = self.arg("since")
        if self.arg("policy") == "restart":
            later = lambda u: self.resolved._eval(xp.maximum(u, since) - since, xp)  # noqa: E731
        else:
            ratio = self.ratio
            later = lambda u: previous._eval(  # noqa: E731
                since + (xp.float(xp.maximum(u, since) - since)) * ratio, xp)
        return xp.piecewise(t, xp.bucket(self.cached("since", lambda: np.asarray([since],
                                                                                 np.float64)), t),
                            [lambda u: previous._eval(u, xp), later])

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """Those of the resolved schedule; after a change of plan, the earlier plan's before
        ``since``, the change itself, then the later part's, on the run's own steps."""
        from ..plotting import key_steps

        previous = self.arg("previous")
        if previous is None:
            return key_steps(self.resolved, horizon)
        since = float(self.arg("since"))
        out = [(s, label) for s, label in key_steps(previous, min(horizon, since)) if s < since]
        if since > horizon:
            return out
        if since > 0:
            out.append((since, "change of plan"))
        if self.arg("policy") == "restart":  # the schedule again from local step 0
            later = [(since + s, label) for s, label in key_steps(self.resolved, horizon - since)]
        elif self.ratio > 0:  # the earlier plan at since + (t - since) * ratio
            r, later = self.ratio, []
            for s, label in key_steps(previous, since + (horizon - since) * r):
                if s > since:
                    t = since + (s - since) / r
                    for _ in range(64):  # the first step where _eval's argument reaches s
                        if since + (t - since) * r >= s:
                            break
                        t = float(np.nextafter(t, np.inf))
                    later.append((t, label))
        else:
            later = []
        out.extend((s, label) for s, label in later if since < s <= horizon)
        return sorted(out)

    def __repr__(self) -> str:
        spe, total = self.context
        parts = [repr(self.arg("schedule"))]
        if spe is not None:
            parts.append(f"steps_per_epoch={spe:g}")
        if total is not None:
            parts.append(f"total_steps={total:g}")
        if self.arg("previous") is not None:
            parts.append(f"{self.arg('policy')} from step {self.arg('since')}")
        return f"Planned({', '.join(parts)})"


def continue_ratio(old, new, since: int) -> float:
    """How much of the earlier plan one step of the new plan covers, for ``"continue"``."""
    (old_spe, old_total), (new_spe, new_total) = old, new
    if old_total is not None and new_total is not None:
        if not new_total > since:
            raise ValueError(
                f"the new run ends at step {new_total:g}, but {since} steps are done already: "
                "nothing is left to continue the plan over; choose on_change='restart' or "
                "'keep', or train for longer")
        return max(old_total - since, 0.0) / (new_total - since)
    if old_spe is not None and new_spe is not None:
        return old_spe / new_spe
    return 1.0
