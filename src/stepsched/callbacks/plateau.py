"""Reduce the learning rate on a plateau, per epoch or every N batches, on top of any schedule.

The reduction is a multiplier applied to the optimizer's rate in-graph: the
optimizer's rate becomes ``Scaled(schedule)``, a registered schedule whose
value at step ``t`` is ``schedule(t) * multiplier`` (never pushed below
``min_rate``). The schedule's shape is kept, and because the multiplier is read
inside the traced step, a reduction takes effect at exactly the next optimizer
step whatever ``steps_per_execution`` is.

Where the state lives, and why:

- The multiplier is a ``keras.Variable`` held by ``Scaled``, *not* one of the
  optimizer's variables: adding a variable to the optimizer changes its
  variable count, and ``load_model`` then skips all optimizer state. It is read
  live in-graph on TensorFlow and PyTorch; on JAX a non-optimizer variable is a
  trace-time constant, so the callback rebuilds the train function after each
  reduction (reductions are rare; nothing else is retraced).
- The plateau state (multiplier, best value, bad-check count, cooldown, EMA)
  is written in two places that cover both ways Keras saves: ``Scaled``'s
  config (``model.save`` / ``load_model`` rebuild the optimizer from it) and
  ``Scaled``'s own entry in the weights file (``save_weights`` /
  ``load_weights``, which ``BackupAndRestore`` uses), attached to the optimizer
  as ``optimizer._stepsched_plateau`` beside, not inside, its variable list.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.saving.keras_saveable import KerasSaveable

from .. import _validate
from ..schedules import _math
from ..schedules.base import Schedule, _serialize, as_schedule
from ..schedules.compose import Wrapper
from ..schedules.primitives import Constant
from .base import StepschedCallback, inner_optimizer

_F32_MAX = float(np.finfo(np.float32).max)

#: the plateau state, saved in this order as one float64 array
STATE_KEYS = ("best", "wait", "cooldown", "ema", "ema_count")

_KERAS_COUNTERPARTS = ("ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
                       "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts")


@keras.saving.register_keras_serializable(package="stepsched")
class Scaled(Wrapper, KerasSaveable):
    r"""A schedule times a multiplier held in a variable (what plateau reduction builds).

    .. math:: \eta(t) = \max\bigl(m\,s(t),\; \min(s(t), \text{min\_rate})\bigr)

    so with ``min_rate=0`` it is ``m * s(t)``; a reduction never takes the rate
    below ``min_rate`` (nor above the schedule itself). ``state`` is the
    plateau callback's bookkeeping; both it and the current multiplier are in
    the config and in the weights file, so saving and resuming are exact.

    >>> s = Scaled(Constant(0.5), multiplier=0.1)
    >>> round(float(s.at(3)), 6)
    0.05
    """

    def __init__(self, schedule: Schedule | float, multiplier: float = 1.0,
                 min_rate: float = 0.0, state: dict | None = None):
        schedule = as_schedule(schedule, "schedule")
        multiplier = _validate.number("multiplier", multiplier, nonnegative=True)
        if multiplier > _F32_MAX:
            raise ValueError(f"multiplier must fit in float32 (<= {_F32_MAX:.4g}), "
                             f"got {multiplier!r}")
        min_rate = _validate.number("min_rate", min_rate, nonnegative=True)
        super().__init__(schedule=schedule, min_rate=min_rate)
        self.multiplier = keras.Variable(multiplier, dtype="float32", trainable=False,
                                         name="plateau_multiplier")
        self.state = _state_arg(state)

    @property
    def multiplier_value(self) -> float:
        return float(keras.ops.convert_to_numpy(self.multiplier.value))

    # ----------------------------------------------------------- evaluation
    def transform(self, inner, xp):
        if isinstance(xp, _math.Graph):
            m = keras.ops.cast(self.multiplier, xp.dtype)
        else:
            m = np.float64(np.float32(self.multiplier_value))
        value = inner * m
        min_rate = self.arg("min_rate")
        if min_rate > 0:
            value = xp.maximum(value, xp.minimum(inner, min_rate))
        return value

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Scaled:
        inner = self.arg("schedule").resolve(steps_per_epoch, total_steps)
        return Scaled(inner, self.multiplier_value, self.arg("min_rate"), self.state)

    # ----------------------------------------------------------- saving
    def get_config(self) -> dict:
        return {"schedule": _serialize(self.arg("schedule")),
                "multiplier": self.multiplier_value,
                "min_rate": self.arg("min_rate"),
                "state": dict(self.state)}

    def _obj_type(self):
        # saving_lib walks a saveable's attributes minus a per-type skip list;
        # Scaled has no child saveables, so every attribute is skipped.
        global_state.set_global_attribute("saving_attr_skiplist_StepschedScaled",
                                          set(dir(self)))
        return "StepschedScaled"

    def save_own_variables(self, store) -> None:
        store["0"] = np.asarray(self.multiplier_value, np.float32)
        store["1"] = np.asarray([self.state.get(k, np.nan) for k in STATE_KEYS], np.float64)

    def load_own_variables(self, store) -> None:
        if len(store.keys()) == 0:  # saved before a plateau callback was attached
            return
        self.multiplier.assign(np.asarray(store["0"], np.float32))
        values = np.asarray(store["1"], np.float64)
        self.state = {k: float(v) for k, v in zip(STATE_KEYS, values, strict=True) if not math.isnan(v)}

    def __reduce__(self):
        return (_from_config, (type(self), self.get_config()))

    def __repr__(self) -> str:
        return f"Scaled({self.arg('schedule')!r}, multiplier={self.multiplier_value:g})"


def _state_arg(state) -> dict:
    """``state``: None or a dict from names in ``STATE_KEYS`` to numbers (``best`` may be inf)."""
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict with keys from {STATE_KEYS}, got {state!r}")
    out = {}
    for key, value in state.items():
        if key not in STATE_KEYS:
            raise ValueError(f"state keys must be among {STATE_KEYS}, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise TypeError(f"state[{key!r}] must be a real number, got {value!r}")
        out[key] = float(value)
    return out


def _from_config(cls, config):
    return cls.from_config(config)


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
        self.scaled: Scaled | None = None
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
        rate = opt._learning_rate
        changed = True
        if isinstance(rate, Scaled):
            scaled, changed = rate, rate.arg("min_rate") != self.min_lr
            scaled._args["min_rate"] = self.min_lr
        elif isinstance(rate, Schedule):
            scaled = Scaled(rate, min_rate=self.min_lr)
            opt._learning_rate = scaled
        elif isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            name = type(rate).__name__
            hint = (f"use stepsched.{name} (same arguments) instead of keras' {name}"
                    if name in _KERAS_COUNTERPARTS else
                    "express it as a stepsched schedule (see stepsched.Schedule)")
            raise TypeError(f"ReduceLROnPlateau cannot scale the Keras schedule {name} in-graph: "
                            f"{hint}")
        elif isinstance(rate, keras.Variable):
            value = float(keras.ops.convert_to_numpy(rate.value))
            scaled = Scaled(Constant(value), min_rate=self.min_lr)
            opt.learning_rate = scaled  # Keras untracks the float rate's variable
        else:
            raise TypeError(f"ReduceLROnPlateau needs a float rate or a stepsched schedule, "
                            f"got the optimizer's learning_rate {rate!r}")
        opt._stepsched_plateau = scaled
        self.scaled = scaled
        if changed and getattr(model, "train_function", None) is not None:
            model.train_function = None  # the traced step holds the old rate object

    def reset(self) -> None:
        """Forget the plateau state (the multiplier returns to 1)."""
        if self.scaled is not None:
            self.scaled.state = {}
            self.scaled.multiplier.assign(1.0)
            self._after_change()

    # ----------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._step = None  # global step, read lazily (after any restore)

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = (0, 0.0)  # (batches, running mean) at the previous batch hook

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"ReduceLROnPlateau(monitor={self.monitor!r}): no such per-batch "
                           f"value; available: {sorted(logs)}")
        n, mean = batch + 1, float(logs[self.monitor])
        n0, mean0 = getattr(self, "_seen", (0, 0.0))
        if n <= n0:  # a new epoch the hooks did not announce
            n0, mean0 = 0, 0.0
        value = (n * mean - n0 * mean0) / (n - n0)
        self._seen = (n, mean)
        if self._step is None:
            self._step = int(keras.ops.convert_to_numpy(self.optimizer._iterations.value))
        else:
            self._step += n - n0
        state = self.scaled.state
        if self.smoothing is not None:
            s = self.smoothing
            state["ema"] = s * state.get("ema", 0.0) + (1.0 - s) * value
            state["ema_count"] = state.get("ema_count", 0.0) + 1.0
            value = state["ema"] / (1.0 - s ** state["ema_count"])
        if self._step // self.every > (self._step - (n - n0)) // self.every:
            self._check(value, self._step)

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
        state = self.scaled.state
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
            old = self.scaled.multiplier_value
            self.scaled.multiplier.assign(old * self.factor)
            self._after_change()
            cooldown, wait = float(self.cooldown), 0.0
            if self.verbose:
                unit = "epoch" if self.every is None else "step"
                keras.utils.io_utils.print_msg(
                    f"\n{unit} {when}: ReduceLROnPlateau: {self.monitor} did not improve for "
                    f"{self.patience + 1} checks; rate multiplier {old:.4g} -> "
                    f"{self.scaled.multiplier_value:.4g}")
        state.update(best=best, wait=wait, cooldown=cooldown)

    def _after_change(self) -> None:
        if keras.backend.backend() == "jax" and self.model is not None:
            # on JAX the multiplier is a trace-time constant: trace the step again
            self.model.make_train_function(force=True)

    @property
    def multiplier(self) -> float:
        """The multiplier currently in force."""
        return 1.0 if self.scaled is None else self.scaled.multiplier_value
