"""What every stepsched callback shares: finding the optimizer's schedule and
planning ``epochs(...)``/``fraction(...)`` durations from ``fit()``'s own
parameters when training begins."""

from __future__ import annotations

import math
import warnings

import keras

from .. import _keras, _validate
from .._keras import inner_optimizer, read_step, running_callback_list
from ..durations import UnresolvedDurationError
from ..schedules.modifiers import core
from ..schedules.planned import Planned, plan, units
from .distribute import check_strategy
from .plan_state import adopt_saved_plans, attach


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


def plan_for_fit(model, params: dict, on_change: str = DEFAULT_ON_CHANGE,
                 first_epoch: int = 0) -> None:
    """Give the optimizer its own plan of its schedule for this ``fit()``.

    The schedule the user built is left as it is; the optimizer gets a
    ``Planned`` copy. When the plan changes after the train function was
    traced, the function is rebuilt so the step does not keep old constants.
    """
    optimizer = inner_optimizer(model.optimizer)
    adopted = adopt_saved_plans(optimizer)  # plans a weights file brought (BackupAndRestore)
    rate = _keras.rate_of(optimizer)
    step, context = run_context(optimizer, params, first_epoch, rate)
    batch = _Once(lambda: _keras.fit_batch_size(model))  # read only if a value counts samples
    try:
        new = plan(rate, context, step, on_change, batch_size=batch)
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
    others = bool(getattr(optimizer, "plan", None)) and optimizer.plan(
        *context, step=step, on_change=on_change, batch_size=batch)
    if new is rate:
        if others or adopted:
            _keras.retrace(model)
        return
    _keras.replace_schedule(optimizer, new)
    _warn_if_longer_than_run(new, context)
    _keras.retrace(model)


class _Once:
    """A value computed on the first call, then kept."""

    def __init__(self, compute):
        self._compute, self._done, self._value = compute, False, None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._compute(), True
        return self._value


def run_context(optimizer, params: dict, first_epoch: int, rate
                ) -> tuple[int, tuple[float | None, float | None]]:
    """``(step, (steps_per_epoch, end))`` for this ``fit()``: the optimizer's step now and
    the step at which this run ends.

    A resumed run (``BackupAndRestore``, ``load_model`` with ``initial_epoch``:
    the step is within the epoch the fit starts at, with the same
    ``steps_per_epoch`` as the plans so far) ends where the whole run ends;
    any other ``fit()`` on a trained optimizer is more training, ending
    ``epochs * steps_per_epoch`` steps from now.
    """
    spe, total = fit_context(params)
    step = read_step(optimizer)
    if not step or spe is None or total is None:
        return step, (spe, total)
    earlier = {p.arg("steps_per_epoch") for p in _plans(optimizer, rate)}
    if earlier <= {spe} and step < (first_epoch + 1) * spe:
        return step, (spe, total)
    return step, (spe, step + total - first_epoch * spe)


def _plans(optimizer, rate) -> list[Planned]:
    """The plans the optimizer holds: its rate's and those of its other schedules."""
    schedules = [core(rate)]
    schedules += list(getattr(optimizer, "hyperparameter_schedules", {}).values())
    for group in getattr(optimizer, "groups", None) or ():
        schedules += [core(s) for s in group.schedules().values()]
    return [s for s in schedules if isinstance(s, Planned)]


def _warn_if_longer_than_run(rate, context) -> None:
    total, rate = context[1], core(rate)
    if total is None or not isinstance(rate, Planned) or not rate.is_finite or \
            "fraction" not in units(rate.arg("schedule")):
        return  # a schedule in steps or epochs may well outlast one fit()
    duration = rate.duration
    if duration is not None and duration > total + 0.5 and math.isfinite(duration):
        warnings.warn(
            f"the schedule {rate!r} lasts {duration:g} steps but this fit() runs {total:g}: "
            "fraction(p) is a fraction of the whole run, so pieces before it lengthen the "
            "schedule past the run's end (e.g. Warmup(w) >> Cosine(..., fraction(1.0)) lasts "
            "w steps longer). Give the last piece what remains, e.g. "
            "WarmupCosine(peak, warmup=w, total=fraction(1.0))", stacklevel=3)


_BATCH_END_HOOKS = ("on_train_batch_end", "on_batch_end")
_BATCH_HOOKS = (*_BATCH_END_HOOKS, "on_train_batch_begin", "on_batch_begin")


def has_batch_end_hook(callback: keras.callbacks.Callback,
                       hooks: tuple[str, ...] = _BATCH_END_HOOKS) -> bool:
    """Whether ``callback`` does anything at a training batch end (Keras's defaults do not),
    or in any of ``hooks``."""
    for name in hooks:
        method = getattr(callback, name)
        if getattr(method, "__func__", method) is not getattr(keras.callbacks.Callback, name):
            return True
    return False


#: Keras callbacks whose batch hooks never assign the optimizer's rate
_RATE_READERS = (keras.callbacks.ProgbarLogger, keras.callbacks.TensorBoard,
                 keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore,
                 keras.callbacks.TerminateOnNaN, keras.callbacks.CSVLogger,
                 keras.callbacks.History, keras.callbacks.EarlyStopping)


def may_assign_rate_in_batches(callback: keras.callbacks.Callback) -> bool:
    """Whether ``callback`` may assign a float rate between two steps of an epoch: it has a
    batch hook and is not one of the Keras callbacks known to only read (a user's callback,
    ``LambdaCallback``, stepsched's plateau or batch scheduler may assign)."""
    return has_batch_end_hook(callback, _BATCH_HOOKS) and not isinstance(
        callback, _RATE_READERS) and not getattr(callback, "reads_only", False)


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

    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "optimizer", None) is not None:  # before any weights are restored
            attach(inner_optimizer(model.optimizer))

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
    changes once training has started: a later ``fit()`` with another
    ``epochs`` for a schedule with ``fraction(...)`` durations, another
    ``steps_per_epoch`` (batch size) for one with ``epochs(...)``. The
    optimizer's other schedules (``stepsched.optimizers``) follow it too:

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
    ``steps_per_execution``, with the chunk's last index). The counter reads
    the optimizer's raw step at each epoch begin (after any restore, where
    Keras has the state on the host anyway) and adds the batches done:
    ``step_after(batch)`` depends on nothing but the batch index, so hooks
    may run in any order, on any thread (Keras's asynchronous dispatch). It
    re-reads at epoch ends, so steps a ``LossScaleOptimizer`` skipped are
    caught up there (none to catch up where stepsched's ``LossScaleOptimizer``
    counts batches: the step read is the schedules', ``_keras.read_step``).
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.step = None  # optimizer steps done, after the latest batch
        self._base = None  # optimizer steps done when the epoch began
        self._seen = 0

    def epoch_begin(self, callback: keras.callbacks.Callback) -> None:
        self._base = read_step(callback.model.optimizer)
        self._seen = 0

    def _done(self, callback: keras.callbacks.Callback, batch: int) -> int:
        """Batches of the epoch done after the hook for ``batch``."""
        n = batch + 1
        steps = (callback.params or {}).get("steps")
        if steps:  # the last chunk of an epoch reports a full chunk past the epoch's end
            n = min(n, int(steps))
        return n

    def step_after(self, callback: keras.callbacks.Callback, batch: int) -> int:
        """Optimizer steps done after the batch hook for ``batch``."""
        if self._base is None:  # batch hooks with no epoch begin (a hand-written loop)
            self._base = read_step(callback.model.optimizer) - self._done(callback, batch)
        return self._base + self._done(callback, batch)

    def batch_end(self, callback: keras.callbacks.Callback, batch: int) -> int:
        """Record the hook for ``batch`` (hooks in order); returns how many steps it covers."""
        n = self._done(callback, batch)
        if n <= self._seen and self.step is not None:  # a new epoch the hooks did not announce
            self._base, self._seen = self.step, 0
        done = n - self._seen
        self._seen = n
        self.step = self.step_after(callback, batch)
        return done

    @property
    def batches(self) -> int:
        """Batches of the current epoch done after the latest hook."""
        return self._seen

    def epoch_end(self, callback: keras.callbacks.Callback) -> None:
        self.step = read_step(callback.model.optimizer)
