"""Extend a run: append a new phase to a compiled model's schedule at the current step.

``Plan(on_change="restart")`` starts the *same* schedule again when a later
``fit()`` changes the plan; a run continued past its planned end with a
*different* phase (re-warm to another peak and decay again, or a cooldown
branched from a stable checkpoint) needs the new phase put after the steps
already trained, without rebuilding the model: ``stepsched.extend(model,
schedule)``. The optimizer's schedule becomes ``Extended(old, schedule, at)``
(``stepsched.schedules.extend``), saved with the model like any schedule; the
train function is rebuilt so the compiled step evaluates it.
"""

from __future__ import annotations

import keras

from . import _keras, _validate
from .schedules import modifiers
from .schedules.base import Schedule, as_schedule
from .schedules.extend import Extended
from .schedules.scaled import Scaled

__all__ = ["extend"]


def extend(model, schedule: Schedule | float, at: int | None = None) -> Schedule:
    """Append ``schedule`` to the optimizer's schedule as a new phase from step ``at``.

    ``at`` defaults to the optimizer's current step (the next step trained).
    The model, its weights and optimizer slots are untouched; the optimizer's
    rate becomes ``Extended(current, schedule, at)`` (inside a plateau
    multiplier, which still applies; outside a cooldown, which the new phase
    replaces), and the train function is rebuilt. Returns the new rate.

    >>> import keras, stepsched as ss
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(ss.Linear(0.1, 0.0, 100)), loss="mse")
    >>> ss.extend(model, ss.Warmup(10) >> ss.Cosine(0.05, 0.0, 90), at=100).at(105)
    np.float32(0.025)
    """
    if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None:
        raise TypeError(f"model must be a compiled keras.Model, got {model!r}")
    schedule = as_schedule(schedule, "schedule")
    optimizer = _keras.inner_optimizer(model.optimizer)
    rate = _keras.rate_of(optimizer)
    if not isinstance(rate, Schedule):
        raise TypeError("extend needs an optimizer whose learning_rate is a stepsched schedule "
                        f"(a new phase is appended to it), got {rate!r}; compile with one, e.g. "
                        "stepsched.Constant(lr)")
    step = _keras.read_step(optimizer)
    at = step if at is None else _validate.integer("at", at, minimum=0)
    if at < step:
        raise ValueError(f"at={at} is before the optimizer's step {step}: the steps already "
                         "trained cannot be given another rate")
    new = modifiers.inside(rate, Scaled, lambda inner: Extended(inner, schedule, at))
    _keras.replace_schedule(optimizer, new)
    _keras.retrace(model)
    return new
