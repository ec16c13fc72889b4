"""Reduce the learning rate on a plateau, per epoch or every N batches, on top of any schedule.

How the reduction reaches the optimizer, and why:

- **A stepsched schedule**: the optimizer's rate becomes ``Scaled(schedule)``,
  a registered schedule whose value at step ``t`` is ``schedule(t) *
  multiplier``, so the schedule keeps its shape and a reduction takes effect
  at exactly the next optimizer step whatever ``steps_per_execution`` is. The
  multiplier is a ``keras.Variable`` that is *not* one of the optimizer's
  variables (that would change their count, and ``load_weights`` /
  ``load_model`` then skip all optimizer state). It is read live in-graph on
  TensorFlow and PyTorch; on JAX a non-optimizer variable is a trace-time
  constant, so the callback rebuilds the train function after each reduction
  (reductions are rare; nothing else is retraced).
- **A float rate**: the rate stays the optimizer's own variable, which the
  callback assigns at each reduction (``max(m * base, min(base, min_lr))``).
  The optimizer keeps exactly the variables of a plainly compiled one, so
  weights load both ways with ``iterations`` and slots intact.

The plateau state (multiplier, base rate, best value, bad-check count,
cooldown, EMA) is a ``PlateauState``, attached to the optimizer as
``optimizer.stepsched_plateau``: Keras's weights files (``save_weights``,
``ModelCheckpoint(save_weights_only=True)``, ``BackupAndRestore``,
``model.save``) store it through its public ``save_own_variables`` /
``load_own_variables`` hooks, beside, not inside, the optimizer's variables.
A file without it (from a plain run) loads into a plateau run, and the other
way round. With a schedule the state is also in ``Scaled``'s config, so
``load_model`` brings it back; with a float rate ``load_model`` restores the
reduced rate (an optimizer variable) and the counters start afresh.
"""

from __future__ import annotations

import math

import keras

from .. import _keras, _stats, _validate
from ..schedules.base import Schedule
from ..schedules.scaled import (  # noqa: F401  (Scaled and its state live in schedules/)
    STATE_KEYS,
    PlateauState,
    Scaled,
    _from_config,
)
from .base import StepCounter, StepschedCallback, inner_optimizer, running_callback_list

_KERAS_COUNTERPARTS = ("ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
                       "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts")


class ReduceLROnPlateau(StepschedCallback):
    """Multiply the rate by ``factor`` when a monitored value stops improving.

    ``every=None`` checks at the end of each epoch on ``logs[monitor]`` (Keras
    behaviour; ``val_*`` allowed). ``every=N`` checks every ``N`` optimizer
    steps (global: multiples of ``N`` of the optimizer's step counter, so a
    resumed run checks at the same steps) on the true per-batch value of
    ``monitor``, recovered from Keras's running epoch mean; with
    ``steps_per_execution=k`` the value is the mean over each chunk of ``k``
    batches (exact when the batches have equal size), and ``every`` should
    be a multiple of ``k``. ``smoothing`` (batch checks only) replaces the value
    by its bias-corrected EMA ``a = s a + (1 - s) v``, ``a / (1 - s**n)``.

    The decision rule is ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s, check
    for check: with ``threshold_mode="rel"`` a value improves on ``best`` if
    ``v < best * (1 - min_delta)`` (``mode="min"``) or
    ``v > best * (1 + min_delta)`` (``"max"``); with ``"abs"``, if
    ``v < best - min_delta`` / ``v > best + min_delta``. After more than
    ``patience`` checks without improvement the multiplier is multiplied by
    ``factor`` and ``cooldown`` checks are ignored. The rate never goes below
    ``min_lr``. (Torch also skips a reduction smaller than its ``eps=1e-8``;
    here a reduction always applies to the multiplier.)

    Works with a float rate and with any stepsched schedule (the rate becomes
    ``Scaled(schedule)``: the optimizer's rate is then a schedule, so assign
    ``optimizer.learning_rate`` no longer). Keras's built-in schedules cannot
    be scaled in-graph: use their stepsched counterparts (same arguments).

    The state persists with the optimizer across ``fit()`` calls,
    ``model.save``/``load_model`` and ``BackupAndRestore``; ``reset()`` starts
    afresh.

    >>> import stepsched as ss
    >>> cb = ss.callbacks.ReduceLROnPlateau(monitor="loss", every=200, patience=5)
    """

    def __init__(self, monitor: str = "loss", every: int | None = None, factor: float = 0.1,
                 patience: int = 10, mode: str = "min", min_delta: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                 smoothing: float | None = None, verbose: int = 0):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty metric name, got {monitor!r}")
        self.monitor = monitor
        self.every = _validate.integer("every", every, minimum=1, allow_none=True)
        if self.every is not None and monitor.startswith("val_"):
            raise ValueError(f"monitor={monitor!r} is only known at epoch end; use every=None "
                             "to monitor a validation metric")
        self.factor = _validate.number("factor", factor)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.patience = _validate.integer("patience", patience, minimum=0)
        self.mode = _validate.choice("mode", mode, ("min", "max"))
        self.min_delta = _validate.number("min_delta", min_delta, nonnegative=True)
        self.threshold_mode = _validate.choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _validate.integer("cooldown", cooldown, minimum=0)
        self.min_lr = _validate.number("min_lr", min_lr, nonnegative=True)
        self.smoothing = _validate.number("smoothing", smoothing, allow_none=True)
        if self.smoothing is not None:
            if self.every is None:
                raise ValueError("smoothing applies to batch checks: set every=N with it")
            if not 0.0 <= self.smoothing < 1.0:
                raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.verbose = _validate.integer("verbose", verbose, minimum=0)
        self.plateau: PlateauState | None = None
        #: ``(step, multiplier after)`` for every reduction made by this callback
        self.reductions: list[tuple[int, float]] = []
        self._counter = StepCounter()
        if self.every is None:
            # no batch hook: Keras keeps asynchronous dispatch for epoch-level checks
            self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

    # ----------------------------------------------------------- installing
    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "optimizer", None) is not None:
            self._install(model)

    def _install(self, model) -> None:
        opt = inner_optimizer(model.optimizer)
        rate = _keras.rate_of(opt)
        new = rate
        if isinstance(rate, Scaled):
            if rate.arg("min_lr") != self.min_lr:
                new = rate.with_schedule(rate.arg("schedule"), min_lr=self.min_lr)
            self.plateau = rate.plateau
        elif isinstance(rate, Schedule):
            new = Scaled(rate, min_lr=self.min_lr)
            self.plateau = new.plateau
        elif isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            name = type(rate).__name__
            hint = (f"use stepsched.{name} (same arguments) instead of keras' {name}"
                    if name in _KERAS_COUNTERPARTS else
                    "express it as a stepsched schedule (see stepsched.Schedule)")
            raise TypeError(f"ReduceLROnPlateau cannot scale the Keras schedule {name} in-graph: "
                            f"{hint}")
        elif isinstance(rate, keras.Variable):
            own = [g.name for g in getattr(opt, "groups", None) or ()
                   if g.learning_rate is not None]
            if own:
                raise TypeError(
                    f"group {own[0]!r} has its own learning_rate, which a reduction of this "
                    "optimizer's float rate (an assigned variable) does not reach: give the "
                    "optimizer a schedule, e.g. stepsched.Constant(lr), and the reduction "
                    "scales every group's rate in the compiled step")
            plateau = getattr(opt, "stepsched_plateau", None)
            if not isinstance(plateau, PlateauState):
                plateau = PlateauState()
            plateau.values.setdefault("base",
                                      float(keras.ops.convert_to_numpy(rate.value)))
            self.plateau = plateau
        else:
            raise TypeError(f"ReduceLROnPlateau needs a float rate or a stepsched schedule, "
                            f"got the optimizer's learning_rate {rate!r}")
        opt.stepsched_plateau = self.plateau
        if new is not rate:
            _keras.replace_schedule(opt, new)  # a schedule for a schedule: no variable changes
            _keras.retrace(model)  # the traced step holds the old rate object

    @property
    def scaled(self) -> Scaled | None:
        """The optimizer's ``Scaled`` rate (None with a float rate)."""
        rate = _keras.rate_of(inner_optimizer(self.model.optimizer)) if self.model else None
        return rate if isinstance(rate, Scaled) else None

    def reset(self) -> None:
        """Forget the plateau state (the multiplier returns to 1)."""
        if getattr(self, "plateau", None) is not None:
            base = self.plateau.values.get("base")
            self.plateau.values = {} if base is None else {"base": base}
            self._set_multiplier(1.0)

    # ----------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        callbacks = running_callback_list(self)
        if callbacks is not None:
            others = [c for c in callbacks.callbacks
                      if isinstance(c, ReduceLROnPlateau) and c is not self]
            if others:
                raise ValueError(
                    "two stepsched ReduceLROnPlateau callbacks drive the same optimizer "
                    f"(monitor={self.monitor!r} and monitor={others[0].monitor!r}): they would "
                    "share one multiplier and one state; use one callback per optimizer")
        self._counter.reset()
        self._reader = _stats.RunningMeanReader()
        self._ema = None  # read from the state at the first batch, after any restore
        self._warn_if_backed_up_before(callbacks)

    def _warn_if_backed_up_before(self, callbacks) -> None:
        """A batch-level backup placed before this callback saves a check step's state
        before the check: on resume that check is lost."""
        if callbacks is None or self.every is None:
            return
        order = list(callbacks.callbacks)
        mine = next(i for i, c in enumerate(order) if c is self)
        for c in order[:mine]:
            if isinstance(c, (keras.callbacks.BackupAndRestore, keras.callbacks.ModelCheckpoint)) \
                    and getattr(c, "save_freq", "epoch") != "epoch":
                import warnings

                warnings.warn(
                    f"{type(c).__name__}(save_freq={c.save_freq!r}) comes before "
                    "ReduceLROnPlateau in the callback list, so a backup at a check step is "
                    "written before that check and a resumed run loses it; put "
                    "ReduceLROnPlateau first", stacklevel=3)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._counter.epoch_begin(self)
        self._reader.reset()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"ReduceLROnPlateau(monitor={self.monitor!r}): no such per-batch "
                           f"value; available: {sorted(logs)}")
        done = self._counter.batch_end(self, batch)
        value = self._reader.read(float(logs[self.monitor]), self._counter.batches)
        step = self._counter.step
        if self.smoothing is not None:
            if self._ema is None:
                state = self.plateau.values
                self._ema = _stats.EMA(self.smoothing, state.get("ema", 0.0),
                                       int(state.get("ema_count", 0)))
            value = self._ema.update(value)
            self.plateau.values.update({"ema": self._ema.average,
                                        "ema_count": float(self._ema.count)})
        if step // self.every > (step - done) // self.every:
            self._check(value, step)

    def on_epoch_end(self, epoch, logs=None):
        if self.every is not None:
            return
        logs = logs or {}
        if self.monitor not in logs:
            import warnings

            warnings.warn(f"ReduceLROnPlateau: monitor={self.monitor!r} is not in the epoch "
                          f"logs (available: {sorted(logs)}); no check this epoch", stacklevel=2)
            return
        self._check(float(logs[self.monitor]), epoch)

    # ----------------------------------------------------------- the rule
    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.min_delta)
            return a < best - self.min_delta
        if self.threshold_mode == "rel":
            return a > best * (self.min_delta + 1.0)
        return a > best + self.min_delta

    def _check(self, value: float, when: int) -> None:
        """One check, exactly torch's ``ReduceLROnPlateau.step(value)``."""
        state = self.plateau.values
        worst = math.inf if self.mode == "min" else -math.inf
        best = state.get("best", worst)
        wait, cooldown = state.get("wait", 0.0), state.get("cooldown", 0.0)
        if self._is_better(value, best):
            best, wait = value, 0.0
        else:
            wait += 1.0
        if cooldown > 0:
            cooldown -= 1.0
            wait = 0.0
        if wait > self.patience:
            old = self.plateau.multiplier_value
            self._set_multiplier(old * self.factor)
            self.reductions.append((when if self.every is not None else self._epoch_step(),
                                    self.plateau.multiplier_value))
            cooldown, wait = float(self.cooldown), 0.0
            if self.verbose:
                unit = "epoch" if self.every is None else "step"
                keras.utils.io_utils.print_msg(
                    f"\n{unit} {when}: ReduceLROnPlateau: {self.monitor} did not improve for "
                    f"{self.patience + 1} checks; rate multiplier {old:.4g} -> "
                    f"{self.plateau.multiplier_value:.4g}")
        state.update({"best": best, "wait": wait, "cooldown": cooldown})

    def _epoch_step(self) -> int:
        self._counter.epoch_end(self)
        return self._counter.step

    def _set_multiplier(self, value: float) -> None:
        self.plateau.set(value)
        model = self.model
        if model is None:
            return
        opt = inner_optimizer(model.optimizer)  # through the model: on JAX that syncs the state
        if isinstance(_keras.rate_of(opt), keras.Variable):
            base = self.plateau.values["base"]
            opt.learning_rate = max(value * base, min(base, self.min_lr))
        elif keras.backend.backend() == "jax":
            # on JAX the multiplier is a trace-time constant: trace the step again
            _keras.retrace(model)

    @property
    def multiplier(self) -> float:
        """The multiplier currently in force."""
        plateau = getattr(self, "plateau", None)
        return 1.0 if plateau is None else plateau.multiplier_value
