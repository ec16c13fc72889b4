"""What every stepsched callback shares: finding the optimizer's schedule and
planning ``epochs(...)``/``fraction(...)`` durations from ``fit()``'s own
parameters when training begins."""

from __future__ import annotations

import inspect
import math
import warnings

import keras

from .. import _keras, _validate
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


#: what happens when a later fit() plans a schedule that is already training
#: differently (another length, another steps_per_epoch); see ``Plan``
DEFAULT_ON_CHANGE = "auto"


def planned(rate, context: tuple[float | None, float | None], step: int = 0,
            on_change: str = DEFAULT_ON_CHANGE):
    """The optimizer's rate with its durations planned for ``context``.

    ``context`` is ``(steps_per_epoch, end)``: ``end`` the step at which this
    run ends, the whole run's steps for a first plan. Returns ``rate`` itself
    when nothing changes; never modifies it. A rate that wraps another
    schedule (``Scaled``) is re-wrapped around the plan. ``step`` is the
    optimizer's step now: a plan that changes after training has started
    follows ``on_change``.
    """
    if hasattr(rate, "with_schedule"):
        inner = planned(rate.arg("schedule"), context, step, on_change)
        return rate if inner is rate.arg("schedule") else rate.with_schedule(inner)
    if isinstance(rate, Planned):
        spe, end = context
        if (rate.arg("steps_per_epoch"), rate.end) == context or on_change == "keep":
            return rate
        if step == 0:  # nothing trained on the old plan yet
            return Planned(rate.arg("schedule"), *context)
        old = _pair((rate.arg("steps_per_epoch"), rate.end))
        if on_change == "refuse":
            raise ValueError(
                f"this fit() plans {rate.arg('schedule')!r} for steps_per_epoch, end = "
                f"{_pair(context)}, but the optimizer has trained {step} steps on the plan for "
                f"{old}. Choose what happens with stepsched.callbacks.Plan(on_change=...): "
                "'continue' (stretch the rest of the plan over the new length), 'restart' "
                "(start the schedule again now) or 'keep' (keep the old plan)")
        if on_change == "auto":  # continue a plan with steps left; a finished one restarts
            on_change = "restart" if rate.end is not None and rate.end <= step else "continue"
        total = end
        if on_change == "restart" and end is not None:
            total = end - step  # a new phase, as long as the rest of this run
        new = Planned(rate.arg("schedule"), spe, total, previous=rate, since=step,
                      policy=on_change)
        note = ""
        if on_change == "continue" and rate.end is not None and rate.end <= step:
            note = (f"; the plan had ended at step {rate.end:g}, so continuing it holds its "
                    "final value: for a new phase use "
                    "stepsched.callbacks.Plan(on_change='restart')")
        warnings.warn(f"the plan of the learning-rate schedule changed at step {step} "
                      f"(steps_per_epoch, end: {old} -> {_pair(context)}): "
                      f"on_change={on_change!r}{note}; see stepsched.callbacks.Plan",
                      stacklevel=4)
        return new
    if isinstance(rate, Schedule) and rate.is_symbolic:
        return Planned(rate, *context)
    return rate


def _pair(context) -> str:
    return ", ".join("None" if v is None else f"{v:g}" for v in context)


def plan_for_fit(model, params: dict, on_change: str = DEFAULT_ON_CHANGE,
                 first_epoch: int = 0) -> None:
    """Give the optimizer its own plan of its schedule for this ``fit()``.

    The schedule the user built is left as it is; the optimizer gets a
    ``Planned`` copy. When the plan changes after the train function was
    traced, the function is rebuilt so the step does not keep old constants.
    """
    optimizer = inner_optimizer(model.optimizer)
    rate = _keras.rate_of(optimizer)
    from ..schedules.batch import resolve_for_fit  # samples, tokens, BatchScaled

    rate = resolve_for_fit(model, optimizer, rate)
    context = fit_context(params)
    step = 0
    previous = _unwrapped(rate)
    if isinstance(previous, Planned):
        step = read_step(optimizer)
        spe, total = context
        resumed = spe == previous.arg("steps_per_epoch") and step < (first_epoch + 1) * spe
        if spe is not None and total is not None and not resumed:
            # not a resumed run (BackupAndRestore, load_model + initial_epoch, whose step
            # counter is within the epoch the fit starts at) but more training
            context = (spe, step + total - first_epoch * spe)
    try:
        new = planned(rate, context, step, on_change)
    except UnresolvedDurationError as err:
        if params.get("steps"):
            raise
        raise UnresolvedDurationError(
            "fit() does not know how many steps an epoch has (the input is a generator, a "
            "tf.data.Dataset of unknown cardinality or another iterator without a length), so "
            f"the durations in {rate!r} cannot be turned into steps. Pass steps_per_epoch=N to "
            "fit(), or call schedule.resolve(steps_per_epoch=..., total_steps=...), which "
            "returns a resolved copy, and give that copy to the optimizer") from err
    # stepsched.optimizers: the schedules of the other hyperparameters and of the groups
    replanned = bool(getattr(optimizer, "plan", None)) and optimizer.plan(*fit_context(params))
    if new is rate:
        if replanned:
            _keras.retrace(model)
        return
    _keras.replace_schedule(optimizer, new)
    _warn_if_longer_than_run(new, context)
    _keras.retrace(model)


def _unwrapped(rate):
    while hasattr(rate, "with_schedule"):
        rate = rate.arg("schedule")
    return rate


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

    A later ``fit()`` of another length plans the schedule anew and, once
    training has started, follows ``on_change`` (see ``Plan``); the train
    function is rebuilt so the traced step does not keep the old constants.
    """

    #: the policy this callback asks for when the plan changes (None: the default)
    on_change: str | None = None

    def on_train_begin(self, logs=None):
        check_strategy(self.model)
        check_siblings(self)
        self._planned = False

    def on_epoch_begin(self, epoch, logs=None):
        # planned here, after every on_train_begin (BackupAndRestore restores there) and
        # with the epoch this fit starts at (initial_epoch)
        if not getattr(self, "_planned", True):
            self._planned = True
            plan_for_fit(self.model, self.params, _policy(self), epoch)

    @property
    def optimizer(self):
        return inner_optimizer(self.model.optimizer)


def _policy(callback) -> str:
    callbacks = running_callback_list(callback)
    asked = {c.on_change for c in (callbacks.callbacks if callbacks else [callback])
             if isinstance(c, StepschedCallback) and c.on_change is not None}
    if len(asked) > 1:
        raise ValueError(f"stepsched callbacks ask for different on_change policies: "
                         f"{sorted(asked)}; give one")
    return asked.pop() if asked else DEFAULT_ON_CHANGE


class Plan(StepschedCallback):
    """Plan the schedule for this ``fit()``, and say what happens when the plan changes.

    Any stepsched callback plans the optimizer's schedule from ``fit()``'s own
    parameters; this one does only that, with the policy for a plan that
    changes once training has started (a later ``fit()`` with another
    ``epochs``, ``steps_per_epoch`` or batch size):

    - ``"auto"`` (default): ``"continue"`` while the current plan has steps
      left, ``"restart"`` once it has ended;
    - ``"continue"``: the rest of the current plan is stretched over the new
      remaining length: no jump, and the schedule still ends at the run's new
      end (a longer run gets a longer decay instead of extra steps at the
      final rate);
    - ``"restart"``: the schedule as written starts again at the current step
      (a new phase: re-warm and decay again);
    - ``"keep"``: the original plan stays (steps past its end hold its final
      value);
    - ``"refuse"``: raise, naming the two plans.

    A resumed run of the same length (``BackupAndRestore``, ``load_model``)
    keeps its plan under every policy. The plan history is part of the
    optimizer's schedule, so ``model.save`` / ``load_model`` keep it.

    >>> import stepsched as ss
    >>> ss.callbacks.Plan(on_change="keep").on_change
    'keep'
    """

    def __init__(self, on_change: str = DEFAULT_ON_CHANGE):
        super().__init__()
        from ..schedules.planned import POLICIES

        self.on_change = _validate.choice("on_change", on_change, POLICIES)


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
