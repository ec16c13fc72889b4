"""What every stepsched callback shares: finding the optimizer's schedule and
planning ``epochs(...)``/``fraction(...)`` durations from ``fit()``'s own
parameters when training begins."""

from __future__ import annotations

import inspect
import math
import warnings

import keras

from .. import _keras
from ..durations import UnresolvedDurationError
from ..schedules.base import Schedule
from ..schedules.planned import Planned
from .distribute import check_strategy


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


def planned(rate, context: tuple[float | None, float | None]):
    """The optimizer's rate with its durations planned for ``context``.

    Returns ``rate`` itself when nothing changes; never modifies it. A rate
    that wraps another schedule (``Scaled``) is re-wrapped around the plan.
    """
    if hasattr(rate, "with_schedule"):
        inner = planned(rate.arg("schedule"), context)
        return rate if inner is rate.arg("schedule") else rate.with_schedule(inner)
    if isinstance(rate, Planned):
        if rate.context == context:
            return rate
        return Planned(rate.arg("schedule"), *context)
    if isinstance(rate, Schedule) and rate.is_symbolic:
        return Planned(rate, *context)
    return rate


def plan_for_fit(model, params: dict) -> None:
    """Give the optimizer its own plan of its schedule for this ``fit()``.

    The schedule the user built is left as it is; the optimizer gets a
    ``Planned`` copy. When the plan changes after the train function was
    traced, the function is rebuilt so the step does not keep old constants.
    """
    optimizer = inner_optimizer(model.optimizer)
    rate = _keras.rate_of(optimizer)
    context = fit_context(params)
    try:
        new = planned(rate, context)
    except UnresolvedDurationError as err:
        if params.get("steps"):
            raise
        raise UnresolvedDurationError(
            "fit() does not know how many steps an epoch has (the input is a generator, a "
            "tf.data.Dataset of unknown cardinality or another iterator without a length), so "
            f"the durations in {rate!r} cannot be turned into steps. Pass steps_per_epoch=N to "
            "fit(), or call schedule.resolve(steps_per_epoch=..., total_steps=...), which "
            "returns a resolved copy, and give that copy to the optimizer") from err
    if new is rate:
        return
    _keras.replace_schedule(optimizer, new)
    _warn_if_longer_than_run(new, context)
    _keras.retrace(model)


def _warn_if_longer_than_run(rate, context) -> None:
    total = context[1]
    if total is None or not rate.is_finite:
        return
    duration = rate.duration
    if duration is not None and duration > total + 0.5 and math.isfinite(duration):
        warnings.warn(
            f"the schedule {rate!r} lasts {duration:g} steps but this fit() runs {total:g}: "
            "fraction(p) is a fraction of the whole run, so pieces before it lengthen the "
            "schedule past the run's end (e.g. Warmup(w) >> Cosine(..., fraction(1.0)) lasts "
            "w steps longer). Give the last piece what remains, e.g. "
            "WarmupCosine(peak, warmup=w, total=fraction(1.0))", stacklevel=3)


def running_callback_list(callback) -> keras.callbacks.CallbackList | None:
    """The ``CallbackList`` that is calling ``callback`` right now, if any.

    Keras gives a callback no reference to its siblings; the list that
    dispatches a hook is the caller a few frames up the stack.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                    c is callback for c in owner.callbacks):
                return owner
            frame = frame.f_back
    finally:
        del frame
    return None


#: Keras callbacks that assign ``optimizer.learning_rate`` and so fail on a schedule,
#: with the stepsched counterpart to use instead
_ASSIGNING_CALLBACKS = {
    "ReduceLROnPlateau": "stepsched.callbacks.ReduceLROnPlateau (same arguments, works on top "
                         "of any schedule)",
    "LearningRateScheduler": "stepsched.callbacks.BatchLearningRateScheduler with a float "
                             "learning_rate, or put the schedule itself in the optimizer",
}


def check_siblings(callback) -> None:
    """Refuse, at train begin, Keras callbacks that would fail later on a schedule."""
    callbacks = running_callback_list(callback)
    if callbacks is None:
        return
    rate = _keras.rate_of(inner_optimizer(callback.model.optimizer))
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return
    for other in callbacks.callbacks:
        name = type(other).__name__
        if name in _ASSIGNING_CALLBACKS and isinstance(other, getattr(keras.callbacks, name)):
            raise TypeError(
                f"keras.callbacks.{name} assigns optimizer.learning_rate, which fails with "
                "Keras's TypeError when it first fires because this optimizer's rate is the "
                f"schedule {rate!r}; use {_ASSIGNING_CALLBACKS[name]}")


class StepschedCallback(keras.callbacks.Callback):
    """Base class: plans the optimizer's stepsched schedule at ``on_train_begin``.

    A second ``fit()`` of another length plans the schedule anew (from the
    schedule as written), and the train function is rebuilt so the traced
    step does not keep the old constants.
    """

    def on_train_begin(self, logs=None):
        check_strategy(self.model)
        plan_for_fit(self.model, self.params)
        check_siblings(self)

    @property
    def optimizer(self):
        return inner_optimizer(self.model.optimizer)


class StepCounter:
    """The global optimizer step on the host, without reading the device per batch.

    Batch hooks give epoch-relative indices (once per chunk under
    ``steps_per_execution``). The counter reads the optimizer's raw step
    once (at the first batch end, after any restore), then adds the batches
    each hook reports; it re-reads at epoch ends, where Keras has synced the
    state anyway (so steps a ``LossScaleOptimizer`` skipped are caught up).
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.step = None  # optimizer steps done, after the latest batch
        self._seen = 0

    def epoch_begin(self) -> None:
        self._seen = 0

    def batch_end(self, callback: keras.callbacks.Callback, batch: int) -> int:
        """Steps done after the batch hook for ``batch``; returns how many this hook covers."""
        n = batch + 1
        steps = (callback.params or {}).get("steps")
        if steps:  # the last chunk of an epoch reports a full chunk past the epoch's end
            n = min(n, int(steps))
        if n <= self._seen:  # a new epoch the hooks did not announce
            self._seen = 0
        done = n - self._seen
        self._seen = n
        if self.step is None:  # through callback.model: on JAX that syncs the state once
            self.step = read_step(callback.model.optimizer)
        else:
            self.step += done
        return done

    @property
    def batches(self) -> int:
        """Batches of the current epoch done after the latest hook."""
        return self._seen

    def epoch_end(self, callback: keras.callbacks.Callback) -> None:
        self.step = read_step(callback.model.optimizer)


def read_step(optimizer) -> int:
    """The optimizer's raw step counter (micro-batches under gradient accumulation)."""
    return int(keras.ops.convert_to_numpy(_keras.step_variable(inner_optimizer(optimizer)).value))
