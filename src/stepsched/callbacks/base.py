"""What every stepsched callback shares: finding the optimizer's schedule and
resolving ``epochs(...)``/``fraction(...)`` durations from ``fit()``'s own
parameters when training begins."""

from __future__ import annotations

import keras

from ..schedules.base import Schedule


def inner_optimizer(optimizer):
    """The optimizer that owns the rate (unwraps ``LossScaleOptimizer``)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def fit_context(params: dict) -> tuple[float | None, float | None]:
    """``(steps_per_epoch, total_steps)`` from a callback's ``params``.

    ``total_steps`` is the whole run, ``epochs * steps_per_epoch``: with
    ``initial_epoch`` (a resumed run) the already-done epochs count too, so a
    fraction of the run means the same on resume.
    """
    steps = params.get("steps")
    epochs = params.get("epochs")
    if not steps:
        return None, None
    return float(steps), (float(steps) * epochs if epochs else None)


class StepschedCallback(keras.callbacks.Callback):
    """Base class: resolves the optimizer's stepsched schedule at ``on_train_begin``.

    A second ``fit()`` with a different length re-resolves, and the train
    function is rebuilt so the traced step does not keep the old constants.
    """

    def on_train_begin(self, logs=None):
        bind_schedule_to_fit(self.model, self.params)

    @property
    def optimizer(self):
        return inner_optimizer(self.model.optimizer)


def bind_schedule_to_fit(model, params: dict) -> None:
    optimizer = inner_optimizer(model.optimizer)
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, Schedule) or not schedule.is_symbolic:
        return
    ctx = fit_context(params)
    if ctx == schedule._ctx:
        return
    was_bound = schedule._ctx is not None
    schedule.bind(*ctx)
    if was_bound and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
