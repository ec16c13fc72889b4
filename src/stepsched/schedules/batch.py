"""Units from the batch size of ``fit()``: durations in samples or tokens, and the
batch-size scaling rule for the rate.

Keras gives callbacks no batch size, and ``schedule.resolve`` takes only
``steps_per_epoch`` and ``total_steps``; so a stepsched callback, when it plans
the optimizer's schedule, first turns ``samples(n)`` / ``tokens(n, per)`` into
steps and fills in ``BatchScaled``'s batch size (``resolve_batch``), with the
global batch size read from the running ``fit()`` (``stepsched._keras.fit_batch_size``;
all replicas together, which is what Keras's ``batch_size`` is under
``tf.distribute`` and ``keras.distribution``). The optimizer's copy then holds
plain steps; the schedule you wrote is unchanged.
"""

from __future__ import annotations

import math

import keras

from .. import _validate
from ..durations import Duration, UnresolvedDurationError
from .base import Schedule, as_schedule
from .compose import PerUpdate, Wrapper
from .modifiers import is_modifier

__all__ = ["BatchScaled", "resolve_batch", "has_batch_units"]


@keras.saving.register_keras_serializable(package="stepsched")
class BatchScaled(Wrapper):
    r"""``schedule`` scaled for the global batch size ``B`` of ``fit()``.

    .. math:: \eta(t) = s(t)\,k, \qquad k = \begin{cases} B / B_0 & \text{rule="linear"}
              \\ \sqrt{B / B_0} & \text{rule="sqrt"} \end{cases}

    with :math:`B_0` = ``base_batch_size``, the batch size the rates of
    ``schedule`` were tuned for (Goyal et al. 2017 for the linear rule; the
    square-root rule is the usual one for Adam). ``batch_size`` is filled in by
    any stepsched callback at ``fit()`` (or give it); until then evaluating
    raises.

    >>> import stepsched as ss
    >>> s = BatchScaled(ss.Constant(0.1), base_batch_size=256, rule="sqrt", batch_size=1024)
    >>> round(float(s.at(0)), 6)
    0.2
    """

    RULES = ("linear", "sqrt")

    def __init__(self, schedule: Schedule | float, base_batch_size: int, rule: str = "linear",
                 batch_size: int | None = None):
        super().__init__(schedule=as_schedule(schedule, "schedule"),
                         base_batch_size=_validate.integer("base_batch_size", base_batch_size,
                                                           minimum=1),
                         rule=_validate.choice("rule", rule, self.RULES),
                         batch_size=_validate.integer("batch_size", batch_size, minimum=1,
                                                      allow_none=True))

    @property
    def factor(self) -> float:
        """The multiplier ``k`` (raises before the batch size is known)."""
        batch = self.arg("batch_size")
        if batch is None:
            raise UnresolvedDurationError(
                f"{self!r} needs the batch size of fit(): any stepsched callback fills it in, "
                "or give batch_size=N")
        ratio = batch / self.arg("base_batch_size")
        return ratio if self.arg("rule") == "linear" else math.sqrt(ratio)

    def with_batch_size(self, batch_size: int) -> BatchScaled:
        return BatchScaled(self.arg("schedule"), self.arg("base_batch_size"), self.arg("rule"),
                           batch_size)

    def transform(self, value, xp):
        return value * self.factor


def _has(value, planned: tuple = ()) -> bool:
    if isinstance(value, Duration):
        return value.unit in Duration.BATCH_UNITS
    if isinstance(value, planned):
        return False
    if isinstance(value, BatchScaled) and value._args["batch_size"] is None:
        return True
    if isinstance(value, Schedule):
        return any(_has(v, planned) for v in value._args.values())
    if isinstance(value, (list, tuple)):
        return any(_has(v, planned) for v in value)
    return False


def has_batch_units(schedule, planned: tuple = ()) -> bool:
    """Whether ``schedule`` holds ``samples``/``tokens`` durations or an unfilled
    ``BatchScaled``, as written (``planned``: the types of schedules not to look inside,
    whose batch size is settled)."""
    return isinstance(schedule, Schedule) and _has(schedule, planned)


def resolve_batch(schedule: Schedule, batch_size: int) -> Schedule:
    """A copy of ``schedule`` with ``samples``/``tokens`` durations in steps of ``batch_size``
    samples and every unfilled ``BatchScaled`` given ``batch_size``; itself if it has none.

    Inside ``PerUpdate(s, k)`` a step is an update of ``k * batch_size`` samples.

    >>> import stepsched as ss
    >>> s = ss.Linear(1.0, 0.0, ss.samples(6400))
    >>> resolve_batch(s, 64).duration
    100.0
    """
    batch_size = _validate.number("batch_size", batch_size, positive=True)
    return _rewrite(schedule, batch_size)


def _value(value, batch):
    if isinstance(value, Duration) and value.unit in Duration.BATCH_UNITS:
        return value.to_steps(batch_size=batch)
    if isinstance(value, Schedule):
        return _rewrite(value, batch)
    if isinstance(value, (list, tuple)):
        return [_value(v, batch) for v in value]
    return value


def _rewrite(schedule, batch):
    if not _has(schedule):
        return schedule
    if isinstance(schedule, BatchScaled):
        inner = _rewrite(schedule.arg("schedule"), batch)
        out = schedule.with_batch_size(int(batch)) if schedule._args["batch_size"] is None \
            else schedule
        return out if inner is schedule.arg("schedule") else BatchScaled(
            inner, out.arg("base_batch_size"), out.arg("rule"), out.arg("batch_size"))
    if isinstance(schedule, PerUpdate):
        k = schedule.arg("accumulation_steps")
        return PerUpdate(_rewrite(schedule.arg("schedule"), batch * k), k)
    if is_modifier(schedule):  # Scaled, Cooldown: their state is kept
        return schedule.with_schedule(_rewrite(schedule.arg("schedule"), batch))
    return type(schedule)(**{k: _value(v, batch) for k, v in schedule._args.items()})

