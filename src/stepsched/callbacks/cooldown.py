"""Start the cooldown of a warmup-stable schedule when a budget is reached, or on demand.

The callback wraps the optimizer's schedule in a ``Cooldown`` (made per
optimizer: the schedule you wrote is never changed) whose start step lives in
a variable read in the compiled step; see ``stepsched.schedules.cooldown``
for where that variable lives and how it is saved.
"""

from __future__ import annotations

import math
import os
import signal as _signal
import time

import keras

from .. import _keras, _stats, _validate
from ..durations import Duration, duration_arg
from ..schedules import modifiers
from ..schedules.base import Schedule
from ..schedules.cooldown import Cooldown, CooldownState
from ..schedules.scaled import Scaled
from .base import StepCounter, StepschedCallback, inner_optimizer, read_step

__all__ = ["CooldownOnDemand"]


class CooldownOnDemand(StepschedCallback):
    """Decide during training when the cooldown starts; it then decays over ``duration``.

    Give the optimizer a warmup-stable schedule (e.g. ``Warmup(epochs(1)) >>
    Constant(3e-4)``, or any stepsched schedule: the decay starts from the value
    it has at the start step). The cooldown starts at the first of:

    - ``at_step=N``: at optimizer step ``N``;
    - ``budget_steps=N``: so that it ends at step ``N`` (starts at ``N - duration``);
    - ``budget_samples=N``: so that it ends once ``N`` samples are seen (the
      batch size read from ``fit()``, or given as ``batch_size``);
    - ``budget_seconds=S``: when the time since this ``fit()`` began plus the
      cooldown's estimated time (``duration`` times the measured seconds per
      step) reaches ``S``;
    - ``monitor``: a plateau of a monitored value (``patience`` checks without
      an improvement of ``min_delta``, relative, in ``mode``), checked at epoch
      ends (``every=None``) or every ``every`` optimizer steps on the per-batch
      value;
    - ``file``: the path exists (``touch`` it to cool down a running job);
    - ``signal``: the process receives it (e.g. ``signal.SIGUSR1``; installed
      while ``fit()`` runs, in the main thread);
    - a call to ``start_cooldown()``.

    Budgets in steps and samples are known in advance, so their start is
    exact at any ``steps_per_execution``. Every other condition is checked in
    the batch hooks (once per chunk of ``steps_per_execution`` steps), and the
    cooldown starts at the next optimizer step: in-graph, exactly there.

    ``duration`` is a number of steps, ``epochs(x)`` or ``samples(n)``; with
    ``stop=True`` training stops once the cooldown has reached ``end`` (at
    the end of the chunk where it does). The start is saved with the model
    (``model.save``, weights files, ``BackupAndRestore``); the plateau counters
    of ``monitor`` are not (a resumed run watches afresh).

    >>> import stepsched as ss
    >>> cb = ss.callbacks.CooldownOnDemand(duration=1000, budget_steps=20_000)
    """

    def __init__(self, duration, shape: str = "1-sqrt", end: float = 0.0,
                 at_step: int | None = None, budget_steps: int | None = None,
                 budget_samples: int | None = None, budget_seconds: float | None = None,
                 monitor: str | None = None, patience: int = 5, min_delta: float = 1e-3,
                 mode: str = "min", every: int | None = None, file=None, signal=None,
                 batch_size: int | None = None, stop: bool = True, verbose: int = 0):
        super().__init__()
        self.duration = duration_arg("duration", duration)
        if isinstance(self.duration, Duration) and self.duration.unit == "fraction":
            raise ValueError(f"duration must be steps, epochs(...) or samples(...), got "
                             f"{self.duration!r}: the run's length is what is being decided")
        self.shape = _validate.choice("shape", shape, Cooldown.SHAPES)
        self.end = _validate.number("end", end)
        self.at_step = _validate.integer("at_step", at_step, minimum=0, allow_none=True)
        self.budget_steps = _validate.integer("budget_steps", budget_steps, minimum=1,
                                              allow_none=True)
        self.budget_samples = _validate.integer("budget_samples", budget_samples, minimum=1,
                                                allow_none=True)
        self.budget_seconds = _validate.number("budget_seconds", budget_seconds, positive=True,
                                               allow_none=True)
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a metric name or None, got {monitor!r}")
        self.monitor = monitor
        self.patience = _validate.integer("patience", patience, minimum=0)
        self.min_delta = _validate.number("min_delta", min_delta, nonnegative=True)
        self.mode = _validate.choice("mode", mode, ("min", "max"))
        self.every = _validate.integer("every", every, minimum=1, allow_none=True)
        if self.every is not None and monitor is None:
            raise ValueError("every sets how often monitor is checked: give monitor too")
        if self.every is not None and monitor.startswith("val_"):
            raise ValueError(f"monitor={monitor!r} is only known at epoch end; use every=None "
                             "to monitor a validation metric")
        if file is not None and not isinstance(file, (str, os.PathLike)):
            raise TypeError(f"file must be a path (str or os.PathLike) or None, got {file!r}")
        if file is not None and not os.fspath(file):
            raise ValueError("file must be a non-empty path")
        self.file = None if file is None else os.fspath(file)
        if signal is not None:
            if isinstance(signal, bool) or not isinstance(signal, int) or \
                    signal not in _signal.valid_signals():
                raise ValueError(f"signal must be a signal number such as signal.SIGUSR1, "
                                 f"got {signal!r}")
            if signal in (_signal.SIGKILL, getattr(_signal, "SIGSTOP", None)):
                raise ValueError(f"signal={signal!r} cannot be caught")
        self.signal = signal
        self.batch_size = _validate.integer("batch_size", batch_size, minimum=1, allow_none=True)
        self.stop = _validate.boolean("stop", stop)
        self.verbose = _validate.integer("verbose", verbose, minimum=0)
        self.cooldown: Cooldown | None = None
        self._counter = StepCounter()
        self._requested = False
        self._steps = None  # the duration in steps, once fit() is known
        self._reset_watch()

    # ----------------------------------------------------------- installing
    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "optimizer", None) is not None:
            self._install(model, self._steps or self._guess_steps())

    def _guess_steps(self) -> float:
        """The duration in steps before fit()'s parameters are known (re-made at train begin)."""
        return self.duration if not isinstance(self.duration, Duration) else 1.0

    def _install(self, model, steps: float) -> None:
        opt = inner_optimizer(model.optimizer)
        rate = _keras.rate_of(opt)
        found = modifiers.find(rate, Cooldown)
        if found is not None:
            new_cooldown = found
            if (found.arg("duration"), found.arg("shape"), found.arg("end")) != (
                    steps, self.shape, self.end):
                new_cooldown = Cooldown(found.arg("schedule"), steps, self.shape, self.end)
                new_cooldown.state = found.state
            new = rate if new_cooldown is found else modifiers.replace(rate, found, new_cooldown)
        elif isinstance(rate, Schedule):
            new = modifiers.inside(rate, Scaled, lambda inner: Cooldown(
                inner, steps, self.shape, self.end))
        elif isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(f"CooldownOnDemand needs a stepsched schedule, got the Keras "
                            f"schedule {type(rate).__name__}: use its stepsched counterpart "
                            "(same arguments) or e.g. stepsched.Warmup(w) >> "
                            "stepsched.Constant(peak)")
        else:
            raise TypeError("CooldownOnDemand needs a stepsched schedule as the optimizer's "
                            f"learning_rate (e.g. Warmup(w) >> Constant(peak)), got {rate!r}")
        self.cooldown = modifiers.find(new, Cooldown)
        opt.stepsched_cooldown = self.cooldown.state
        if new is not rate:
            _keras.replace_schedule(opt, new)
            _keras.retrace(model)

    @property
    def state(self) -> CooldownState:
        return self.cooldown.state

    @property
    def start_step(self) -> int | None:
        """The step the cooldown starts at (None: not decided)."""
        return None if self.cooldown is None else self.cooldown.start_step

    # ----------------------------------------------------------- the call
    def start_cooldown(self, step: int | None = None) -> int:
        """Start the cooldown at ``step`` (default: the optimizer's next step); returns the
        start. A cooldown already decided keeps its start."""
        if self.cooldown is None:
            raise RuntimeError("start_cooldown() needs the callback's model: pass the callback "
                               "to fit() first, or call set_model(model)")
        if self.start_step is not None:
            return self.start_step
        step = read_step(self.model.optimizer) if step is None else _validate.integer(
            "step", step, minimum=0)
        self.state.set_start(step)
        if keras.backend.backend() == "jax":  # a trace-time constant on JAX
            _keras.retrace(self.model)
        if self.verbose:
            keras.utils.io_utils.print_msg(f"\nCooldownOnDemand: cooldown from step {step} for "
                                           f"{self.cooldown.arg('duration'):g} steps")
        return step

    # ----------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._counter.reset()
        self._reset_watch()
        self._t0 = time.monotonic()
        self._timing = None  # (time, step) at the first batch end of this fit
        self._previous_handler = None
        if self.signal is not None:
            try:
                self._previous_handler = _signal.signal(self.signal, self._on_signal)
            except ValueError as err:  # not the main thread
                raise RuntimeError(f"CooldownOnDemand(signal={self.signal!r}) can only listen "
                                   f"in the main thread: {err}") from None

    def on_epoch_begin(self, epoch, logs=None):
        first = not getattr(self, "_planned", True)
        if first:  # after every on_train_begin (BackupAndRestore restores there)
            self._steps = self._duration_steps()
            self._install(self.model, self._steps)
        super().on_epoch_begin(epoch, logs)
        self._counter.epoch_begin(self)
        self._reader.reset()
        if first:
            budget = self._budget_start()
            if budget is not None and self.start_step is None:
                self.start_cooldown(max(budget, read_step(self.model.optimizer)))

    def on_train_batch_end(self, batch, logs=None):
        done = self._counter.batch_end(self, batch)
        step = self._counter.step
        if self._timing is None:
            self._timing = (time.monotonic(), step)
        if self.start_step is None:
            if self._wants_cooldown(step, done, logs or {}):
                self.start_cooldown(step)
        elif self.stop and step >= self.cooldown.end_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None and self.every is None and self.start_step is None:
            logs = logs or {}
            if self.monitor not in logs:
                import warnings

                warnings.warn(f"CooldownOnDemand: monitor={self.monitor!r} is not in the epoch "
                              f"logs (available: {sorted(logs)})", stacklevel=2)
            elif self._plateau(float(logs[self.monitor])):
                self.start_cooldown(read_step(self.model.optimizer))

    def on_train_end(self, logs=None):
        if self.signal is not None and self._previous_handler is not None:
            _signal.signal(self.signal, self._previous_handler)
            self._previous_handler = None

    def _on_signal(self, signum, frame):
        self._requested = True

    # ----------------------------------------------------------- conditions
    def _reset_watch(self):
        self._best = math.inf if self.mode == "min" else -math.inf
        self._wait = 0
        self._reader = _stats.RunningMeanReader()

    def _duration_steps(self) -> float:
        if not isinstance(self.duration, Duration):
            return self.duration
        if self.duration.unit == "samples":
            return self.duration.to_steps(batch_size=self._batch_size())
        steps = (self.params or {}).get("steps")
        return self.duration.to_steps(float(steps) if steps else None)

    def _batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        size = _keras.fit_batch_size(self.model)
        if size is None:
            raise ValueError("CooldownOnDemand: the batch size of this fit() cannot be read "
                             "(a generator or a dataset of unknown batch size): pass "
                             "batch_size=N to the callback")
        return size

    def _budget_start(self) -> int | None:
        starts = []
        if self.at_step is not None:
            starts.append(self.at_step)
        if self.budget_steps is not None:
            starts.append(self.budget_steps - self._steps)
        if self.budget_samples is not None:
            starts.append(self.budget_samples / self._batch_size() - self._steps)
        if not starts:
            return None
        return max(int(math.ceil(min(starts))), 0)

    def _wants_cooldown(self, step: int, done: int, logs: dict) -> bool:
        if self._requested:
            return True
        if self.file is not None and os.path.exists(self.file):
            return True
        if self.budget_seconds is not None:
            now = time.monotonic()
            t1, s1 = self._timing
            per_step = (now - t1) / (step - s1) if step > s1 else 0.0
            if now - self._t0 + per_step * self._steps >= self.budget_seconds:
                return True
        if self.monitor is not None and self.every is not None:
            if self.monitor not in logs:
                raise KeyError(f"CooldownOnDemand(monitor={self.monitor!r}): no such per-batch "
                               f"value; available: {sorted(logs)}")
            value = self._reader.read(float(logs[self.monitor]), self._counter.batches)
            if step // self.every > (step - done) // self.every and self._plateau(value):
                return True
        return False

    def _plateau(self, value: float) -> bool:
        """One check: True after more than ``patience`` checks without improvement."""
        if self.mode == "min":
            better = value < self._best - self.min_delta * abs(self._best) \
                if math.isfinite(self._best) else True
        else:
            better = value > self._best + self.min_delta * abs(self._best) \
                if math.isfinite(self._best) else True
        if better:
            self._best, self._wait = value, 0
            return False
        self._wait += 1
        return self._wait > self.patience
