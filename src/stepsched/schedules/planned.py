"""``Planned``: a schedule resolved for one training run, remembering its plan.

The one way durations in epochs or fractions become steps is
``schedule.resolve(steps_per_epoch, total_steps)``, and samples, tokens and
``BatchScaled`` take the batch size (``batch.resolve_batch``); both return a
copy. At ``fit()`` time stepsched callbacks give the optimizer
``Planned(schedule, steps_per_epoch, total_steps, batch_size=...)``: its
values are those of the resolved copy, its config keeps the schedule as
written and the numbers it was resolved with (the run context), so
``model.save``/``load_model`` bring back the same plan, a later ``fit()``
with another length or batch size plans it again, and the schedule the user
holds is never changed.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from .. import _validate
from ..durations import Duration, UnresolvedDurationError
from .base import Schedule, as_schedule, number_text
from .batch import has_batch_units, resolve_batch
from .keys import key_steps
from .modifiers import core, modifiers, with_modifiers

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

    A schedule that counts samples (``samples``, ``tokens``, ``BatchScaled``)
    is planned for a ``batch_size`` too. When only the batch size changes,
    ``"continue"`` follows the samples seen: the schedule planned for the new
    batch size, :math:`p'(t + s_0 (B_{old}/B_{new} - 1))`, so a warmup of
    ``samples(n)`` ends after ``n`` samples whatever the batch sizes were, and
    ``BatchScaled`` scales for the new batch size from :math:`s_0` on.

    >>> import stepsched as ss
    >>> p = Planned(ss.Linear(1.0, 0.0, ss.fraction(0.5)), total_steps=10)
    >>> p.at([0, 5, 9]).tolist()
    [1.0, 0.0, 0.0]
    """

    exact_step = True

    def __init__(self, schedule: Schedule, steps_per_epoch: float | None = None,
                 total_steps: float | None = None, previous: Planned | None = None,
                 since: int | None = None, policy: str | None = None,
                 batch_size: float | None = None):
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
            previous=previous, since=since, policy=policy,
            batch_size=_validate.number("batch_size", batch_size, positive=True,
                                        allow_none=True))

        written = schedule if batch_size is None else resolve_batch(schedule, batch_size)
        self.resolved = written.resolve(steps_per_epoch, total_steps)
        self.offset = None  # "continue" over a change of batch size: a shift in steps
        if policy == "continue":
            old_batch = previous.arg("batch_size")
            if batch_size is not None and old_batch is not None and old_batch != batch_size:
                self.offset = since * old_batch / batch_size - since
            else:
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
    def constant_after(self) -> float | None:
        """After a change of plan: ``since`` plus the steps the later part takes to reach
        its end (a restarted schedule's own, or the rest of the earlier plan at the
        ``continue`` ratio), which may be past the run's end (``duration``)."""
        previous = self.arg("previous")
        if previous is None:
            return self.resolved.constant_after
        since = self.arg("since")
        if self.arg("policy") == "restart":
            after = self.resolved.constant_after
            return None if after is None else since + after
        if self.offset is not None:
            after = self.resolved.constant_after
            return None if after is None else float(max(since, after - self.offset))
        after = previous.constant_after
        if after is None:
            return None
        if after <= since or self.ratio == 0:
            return float(since)
        return since + (after - since) / self.ratio

    @property
    def is_finite(self) -> bool:
        if self.arg("previous") is not None:
            return self.end is not None and self.resolved.is_finite
        return self.resolved.is_finite

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Schedule:
        return self

    def _parts(self) -> list[Schedule]:
        return self._children() + [self.resolved]

    def _same_values(self) -> Schedule:
        return self.resolved._same_values() if self.arg("previous") is None else self

    def _eval(self, t, xp, clip: bool = True):
        previous = self.arg("previous")
        if previous is None:
            return self.resolved._eval(t, xp, clip)
        since = self.arg("since")
        if self.arg("policy") == "restart":
            later = lambda u: self.resolved._eval(xp.maximum(u, since) - since, xp)  # noqa: E731
        elif self.offset is not None:
            offset = self.offset
            later = lambda u: self.resolved._eval(  # noqa: E731
                xp.float(xp.maximum(u, since)) + offset, xp)
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
        elif self.offset is not None:  # the new batch size's plan, shifted to the samples seen
            later = [(s - self.offset, label)
                     for s, label in key_steps(self.resolved, horizon + self.offset)]
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
            parts.append(f"steps_per_epoch={number_text(spe)}")
        if total is not None:
            parts.append(f"total_steps={number_text(total)}")
        if self.arg("previous") is not None:  # the earlier plan, then how this one follows it
            parts += [f"previous={self.arg('previous')!r}", f"since={self.arg('since')}",
                      f"policy={self.arg('policy')!r}"]
        if self.arg("batch_size") is not None:
            parts.append(f"batch_size={number_text(self.arg('batch_size'))}")
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


def units(value) -> set[str]:
    """The units of the durations in ``value`` (a schedule, duration or list of them)."""
    if isinstance(value, Duration):
        return {value.unit}
    if isinstance(value, Schedule):
        value = list(value._args.values())
    if isinstance(value, (list, tuple)):
        return set().union(*(units(v) for v in value))
    return set()


def relevant(schedule: Schedule, context) -> tuple[float | None, float | None, float | None]:
    """The part of the run context ``(steps_per_epoch, end, batch_size)`` that ``schedule``
    depends on.

    ``end`` only matters to a schedule with ``fraction(...)`` durations,
    ``steps_per_epoch`` only to one with ``epochs(...)`` and ``batch_size`` only to one
    that counts samples: a later ``fit()`` that only extends the run changes nothing for
    a schedule in epochs. The ``steps_per_epoch`` is kept either way (it tells a resumed
    run apart).
    """

    spe, end, batch = context
    return (spe, (end if "fraction" in units(schedule) else None),
            (batch if has_batch_units(schedule) else None))


def replanned(rate, context: tuple, step: int = 0, on_change: str = "auto",
              what: str = "the learning-rate schedule"):
    """``rate`` with its durations planned for ``context``; ``rate`` itself when nothing
    it depends on changes. Never modifies it.

    ``context`` is ``(steps_per_epoch, end, batch_size)``: ``end`` the step at which
    this run ends, the whole run's steps for a first plan. A rate with modifiers
    (``Scaled``, ``Cooldown``) keeps them around the plan. ``step`` is the
    optimizer's step now: a plan that changes after training has started
    follows ``on_change`` (see ``stepsched.callbacks.Plan``).
    """

    chain = modifiers(rate)
    if chain:
        inner = replanned(core(rate), context, step, on_change, what)
        return rate if inner is core(rate) else with_modifiers(chain, inner)
    if not isinstance(rate, Schedule):
        return rate
    if not isinstance(rate, Planned):
        if needs_plan(rate):
            spe, end, batch = relevant(rate, context)
            return Planned(rate, spe, end, batch_size=batch)
        return rate
    schedule = rate.arg("schedule")
    context = relevant(schedule, context)
    old = (rate.arg("steps_per_epoch"), rate.end, rate.arg("batch_size"))
    used = units(schedule)
    counts_samples = has_batch_units(schedule)
    key = lambda c: (c[0] if "epochs" in used else None,  # noqa: E731
                     c[1] if "fraction" in used else None,
                     c[2] if counts_samples else None)
    if key(old) == key(context) or on_change == "keep":
        return rate
    spe, end, batch = context
    if step == 0:  # nothing trained on the old plan yet
        return Planned(schedule, spe, end, batch_size=batch)
    if on_change == "refuse":
        raise ValueError(
            f"this fit() plans {schedule!r} for {_pair(context)}, but the optimizer has "
            f"trained {step} steps on the plan for {_pair(old)}. Choose what happens with "
            "stepsched.callbacks.Plan(on_change=...): 'continue' (the rest of the plan over "
            "the new length, or at the samples seen for a new batch size), 'restart' (start "
            "the schedule again now) or 'keep' (keep the old plan)")
    if on_change == "auto":  # continue a plan with steps left; a finished one restarts
        on_change = "restart" if rate.end is not None and rate.end <= step else "continue"
    total = end - step if on_change == "restart" and end is not None else end
    new = Planned(schedule, spe, total, previous=rate, since=step, policy=on_change,
                  batch_size=batch)
    note = ""
    if on_change == "continue" and rate.end is not None and rate.end <= step:
        note = (f"; the plan had ended at step {rate.end:g}, so continuing it holds its final "
                "value: for a new phase use stepsched.callbacks.Plan(on_change='restart')")
    warnings.warn(f"the plan of {what} changed at step {step} ({_pair(old)} -> "
                  f"{_pair(context)}): on_change={on_change!r}{note}; see "
                  "stepsched.callbacks.Plan", stacklevel=5)
    return new


def _pair(context) -> str:
    """``context`` as text: ``steps_per_epoch, end`` and the batch size where there is one."""
    names = ("steps_per_epoch", "end", "batch_size")
    return ", ".join(f"{n}={'None' if v is None else format(v, 'g')}"
                     for n, v in zip(names, context, strict=True) if n != "batch_size" or v is not None)


def needs_plan(schedule) -> bool:
    """Whether ``schedule`` cannot be evaluated before ``fit()`` plans it: durations in
    epochs or a fraction of the run (``is_symbolic``), or in samples or tokens, or a
    ``BatchScaled`` without its batch size, outside any ``Planned`` (worked out once: the
    optimizer asks at every update)."""
    return isinstance(schedule, Schedule) and schedule.cached(
        "needs a plan", lambda: schedule.is_symbolic or has_batch_units(schedule, Planned))


def plan(schedule, context: tuple[float | None, float | None], step: int = 0,
         on_change: str = "auto", what: str = "the learning-rate schedule", batch_size=None):
    """The one way a scheduled value is planned for a ``fit()``: the optimizer's rate, each
    hyperparameter, each group's rate, multiplier and weight decay.

    ``context`` is ``(steps_per_epoch, end)``; ``batch_size`` (the global batch size of
    the fit, or a function returning it, called only when a value counts samples:
    ``samples``/``tokens`` durations or an unfilled ``BatchScaled``) completes the run
    context, and ``replanned`` plans the value for it.
    """

    batch = None
    if has_batch_units(schedule):
        batch = batch_size() if callable(batch_size) else batch_size
        if batch is None:
            raise UnresolvedDurationError(
                f"{what} {schedule!r} counts samples (samples(...), tokens(...) or "
                "BatchScaled), but the batch size of this fit() cannot be read (a generator, "
                "or a dataset of unknown batch size): resolve it by hand with "
                "stepsched.schedules.batch.resolve_batch(schedule, batch_size) and give the "
                "copy to the optimizer")
    return replanned(schedule, (*context, batch), step, on_change, what)
