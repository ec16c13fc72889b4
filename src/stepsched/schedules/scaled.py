"""``Scaled``: a schedule times a multiplier held in a variable, and its ``PlateauState``.

What plateau reduction (``stepsched.callbacks.ReduceLROnPlateau``) puts around
the optimizer's schedule; that module says how and why. The state is a
``RunState`` attached to the optimizer, so Keras's weights files carry it, and
it is in ``Scaled``'s config, so ``load_model`` brings it back.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np

from .. import _validate
from .._state import RunState
from . import _graph
from .base import Schedule, _serialize, as_schedule, number_text
from .compose import Wrapper

__all__ = ["Scaled", "PlateauState"]

_F32_MAX = float(np.finfo(np.float32).max)

#: the plateau bookkeeping, saved in this order as one float64 array
STATE_KEYS = ("best", "wait", "cooldown", "ema", "ema_count", "base")


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


def _multiplier_arg(multiplier) -> float:
    multiplier = _validate.number("multiplier", multiplier, nonnegative=True)
    if multiplier > _F32_MAX:
        raise ValueError(f"multiplier must fit in float32 (<= {_F32_MAX:.4g}), got {multiplier!r}")
    return multiplier


class PlateauState(RunState):
    """The state of one plateau reduction: the multiplier (a variable) and the bookkeeping."""

    def __init__(self, multiplier: float = 1.0, state: dict | None = None):
        super().__init__(name="stepsched_plateau", dtype="float32")
        self.multiplier = keras.Variable(_multiplier_arg(multiplier), dtype="float32",
                                         trainable=False, name="plateau_multiplier")
        self.host_multiplier = float(np.float32(multiplier))  # a host copy, kept by set()
        self.values = _state_arg(state)

    @property
    def multiplier_value(self) -> float:
        return float(keras.ops.convert_to_numpy(self.multiplier.value))

    def set(self, value) -> None:
        """Assign the multiplier (the variable and its host copy: reading the variable back
        costs a device read, 100-200 µs a batch on TensorFlow)."""
        self.multiplier.assign(value)
        self.host_multiplier = float(np.float32(value))

    def save_state(self, store) -> None:
        store["0"] = np.asarray(self.multiplier_value, np.float32)
        store["1"] = np.asarray([self.values.get(k, np.nan) for k in STATE_KEYS], np.float64)

    def load_state(self, store) -> None:
        self.set(np.asarray(store["0"], np.float32))
        values = np.asarray(store["1"], np.float64)
        self.values = {k: float(v) for k, v in zip(STATE_KEYS, values, strict=False)
                       if not math.isnan(v)}


@keras.saving.register_keras_serializable(package="stepsched")
class Scaled(Wrapper):
    r"""A schedule times a multiplier held in a variable (what plateau reduction builds).

    .. math:: \eta(t) = \max\bigl(m\,s(t),\; \min(s(t), \text{min\_lr})\bigr)

    so with ``min_lr=0`` it is ``m * s(t)``; a reduction never takes the rate
    below ``min_lr`` (nor above the schedule itself). ``state`` is the
    plateau callback's bookkeeping; both it and the current multiplier are in
    the config and in the weights file, so saving and resuming are exact. To
    change the multiplier yourself, use ``scaled.plateau.set(m)``: it keeps
    the host copy that host reads (``value_at``, the logger) go by.

    >>> import stepsched as ss
    >>> s = Scaled(ss.Constant(0.5), multiplier=0.1)
    >>> round(float(s.at(3)), 6)
    0.05
    """

    #: the value reads the multiplier variable: never tabulated ahead
    reads_variables = True

    def __init__(self, schedule: Schedule | float, multiplier: float = 1.0,
                 min_lr: float = 0.0, state: dict | None = None):
        self._set_args(schedule, min_lr)
        self.plateau = PlateauState(multiplier, state)

    def _set_args(self, schedule, min_lr) -> None:
        schedule = as_schedule(schedule, "schedule")
        min_lr = _validate.number("min_lr", min_lr, nonnegative=True)
        super().__init__(schedule=schedule, min_lr=min_lr)

    def with_schedule(self, schedule: Schedule, min_lr: float | None = None) -> Scaled:
        """The same multiplier and state (shared, not copied) over another schedule."""
        out = Scaled.__new__(Scaled)  # no state of its own to build and drop
        out._set_args(schedule, self.arg("min_lr") if min_lr is None else min_lr)
        out.plateau = self.plateau
        return out

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Scaled:
        inner = self.arg("schedule").resolve(steps_per_epoch, total_steps)
        return self if inner is self.arg("schedule") else self.with_schedule(inner)

    @property
    def multiplier(self):
        return self.plateau.multiplier

    @property
    def multiplier_value(self) -> float:
        return self.plateau.multiplier_value

    @property
    def state(self) -> dict:
        return self.plateau.values

    def host_state(self) -> float:
        """What the values depend on besides the step (``Schedule.value_at``): the host copy
        of the multiplier, which ``PlateauState.set`` keeps."""
        return self.plateau.host_multiplier

    # ----------------------------------------------------------- evaluation
    def transform(self, inner, xp):
        if isinstance(xp, _graph.Graph):
            m = xp.ops.cast(self.multiplier.value, xp.dtype)
        else:
            m = np.float64(np.float32(self.multiplier_value))
        value = inner * m
        min_lr = self.arg("min_lr")
        if min_lr > 0:
            value = xp.maximum(value, xp.minimum(inner, min_lr))
        return value

    # ----------------------------------------------------------- saving
    def get_config(self) -> dict:
        return {"schedule": _serialize(self.arg("schedule")),
                "multiplier": self.multiplier_value,
                "min_lr": self.arg("min_lr"),
                "state": dict(self.state)}

    def __reduce__(self):
        return (_from_config, (type(self), self.get_config()))

    def __repr__(self) -> str:  # the plateau bookkeeping (state) is left out
        parts = [repr(self.arg("schedule")),
                 # the shortest text of the float32 multiplier: 0.1, not 0.10000000149011612
                 f"multiplier={number_text(float(str(np.float32(self.multiplier_value))))}"]
        if self.arg("min_lr") != 0.0:
            parts.append(f"min_lr={number_text(self.arg('min_lr'))}")
        return f"Scaled({', '.join(parts)})"


def _from_config(cls, config):
    return cls.from_config(config)
