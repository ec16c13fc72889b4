"""``BatchLearningRateScheduler``: a Python function of the step, applied before every batch."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import keras

from .. import _keras, _validate
from ..schedules.base import Schedule
from ..schedules.planned import plan
from .base import StepschedCallback, _policy, inner_optimizer, run_context
from .plan_state import attach

__all__ = ["BatchLearningRateScheduler"]


def _takes_rate(fn: Callable, name: str) -> bool:
    """Whether ``fn`` is called as ``fn(step, lr)`` (True) or ``fn(step)`` (False).

    Decided from the signature: two or more positional parameters (or
    ``*args``) receive the current rate too. A signature Python cannot read
    (some builtins) is called with the step only.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    required = [p for p in positional if p.default is p.empty]
    if not positional:
        raise TypeError(f"{name} must accept the step as its first positional argument, "
                        f"got {fn!r} with signature {inspect.signature(fn)}")
    if len(required) > 2:
        raise TypeError(f"{name} must be called as {name}(step) or {name}(step, lr), got "
                        f"{fn!r} which requires {len(required)} arguments")
    return len(positional) >= 2


class BatchLearningRateScheduler(StepschedCallback):
    """Set the learning rate before every batch from a function of the global step.

    The per-batch counterpart of ``keras.callbacks.LearningRateScheduler``.
    Before each batch, ``schedule(step, lr)`` (or ``schedule(step)``; the
    arity is read from the signature) is called with ``step`` =
    ``optimizer.iterations`` -- the global optimizer step, so a second
    ``fit()`` and a resumed run continue where they were -- and the current
    rate ``lr``; the result is assigned to ``optimizer.learning_rate`` and
    written into ``logs["learning_rate"]`` at the batch end. A stepsched
    ``Schedule`` (evaluated with ``.at``) or a Keras ``LearningRateSchedule``
    is accepted as well.

    Prefer passing a stepsched schedule as the optimizer's ``learning_rate``:
    it is evaluated inside the compiled step, costs nothing per batch and is
    exact under ``steps_per_execution > 1``. A callback only runs once per
    chunk of ``steps_per_execution`` steps, so every step in a chunk would use
    the rate of the chunk's first step; this raises at train begin unless
    ``allow_coarse=True``.

    The optimizer must have been built with a float learning rate (a
    ``LearningRateSchedule`` there cannot be overwritten: ``ValueError``).

    Args:
        schedule: ``schedule(step) -> lr``, ``schedule(step, lr) -> lr`` or a
            schedule object.
        verbose: ``0`` quiet, ``1`` print the rate whenever it changes.
        allow_coarse: accept ``steps_per_execution > 1`` (rate updated once
            per chunk).

    Example:

    >>> import stepsched as ss
    >>> cb = ss.callbacks.BatchLearningRateScheduler(lambda step, lr: 1e-3 * 0.99 ** step)
    >>> cb.takes_rate
    True
    """

    def __init__(self, schedule: Callable | Schedule, verbose: int = 0,
                 allow_coarse: bool = False):
        super().__init__()
        if isinstance(schedule, Schedule):
            self._fn, self.takes_rate = schedule.value_at, False
        elif isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            self._fn, self.takes_rate = schedule, False
        elif callable(schedule):
            self._fn, self.takes_rate = schedule, _takes_rate(schedule, "schedule")
        else:
            raise TypeError("schedule must be a callable schedule(step) or schedule(step, lr), "
                            f"or a schedule object; got {schedule!r} ({type(schedule).__name__})")
        self.schedule = schedule
        if isinstance(verbose, bool):
            verbose = int(verbose)
        self.verbose = _validate.integer("verbose", verbose, minimum=0)
        self.allow_coarse = _validate.boolean("allow_coarse", allow_coarse)
        self._last: float | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        model = self.model
        optimizer = inner_optimizer(model.optimizer)
        rate = _keras.rate_of(optimizer)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "BatchLearningRateScheduler needs an optimizer built with a float learning_rate, "
                f"but this one uses the schedule {rate!r}, which cannot be "
                "overwritten; build the optimizer with learning_rate=<float> or drop the callback "
                "and keep the schedule"
            )
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        if spe > 1 and not self.allow_coarse:
            raise ValueError(
                f"BatchLearningRateScheduler runs once per steps_per_execution={spe} steps, so "
                f"{spe - 1} of every {spe} steps would reuse a stale rate; pass a stepsched "
                "schedule as the optimizer's learning_rate instead (exact at any "
                "steps_per_execution), or BatchLearningRateScheduler(..., allow_coarse=True) to "
                "accept one rate per chunk"
            )
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        first = not getattr(self, "_planned", True)
        super().on_epoch_begin(epoch, logs)
        if first and isinstance(self.schedule, Schedule):
            # the callback's own schedule is planned as the optimizer's values are: from
            # this fit's parameters, by the same policy, kept across fits with the
            # optimizer's other plans (a callback made anew for the next fit goes on)
            state = attach(self.optimizer)
            own = state.callback_plan(self.schedule)
            step, context = run_context(self.optimizer, self.params, epoch, own)
            state.by_callback = plan(own, context, step, _policy(self),
                                     "BatchLearningRateScheduler's schedule",
                                     lambda: _keras.fit_batch_size(self.model))
            self._fn = state.by_callback.value_at

    def on_train_batch_begin(self, batch, logs=None):
        # Going through self.model matters on JAX: it syncs the jitted state
        # back to the variables and makes the trainer re-read them before the
        # next step, so the assignment below is what that step uses.
        optimizer = inner_optimizer(self.model.optimizer)
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        if self.takes_rate:
            current = float(keras.ops.convert_to_numpy(_keras.rate_of(optimizer).value))
            value = self._fn(step, current)
        else:
            value = self._fn(step)
        try:
            lr = float(keras.ops.convert_to_numpy(value))
        except (TypeError, ValueError) as err:
            raise TypeError(f"schedule({step}) must return a number, got {value!r}") from err
        if not math.isfinite(lr):
            raise ValueError(f"schedule({step}) returned {lr!r}; the learning rate must be finite")
        _keras.rate_of(optimizer).assign(lr)
        if self.verbose and lr != self._last:
            print(f"\nStep {step}: BatchLearningRateScheduler setting learning rate to {lr:.6g}.")
        self._last = lr

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and self._last is not None:
            logs["learning_rate"] = self._last

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._last is not None:
            logs["learning_rate"] = self._last
