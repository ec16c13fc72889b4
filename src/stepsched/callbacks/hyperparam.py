"""Schedules for optimizer hyperparameters other than the learning rate.

Keras optimizers take a schedule only for ``learning_rate``. ``momentum``
(SGD, RMSprop) and ``beta_1`` (Adam, AdamW, ...) are plain Python floats that
the optimizer reads in its update step, so a compiled train step (TensorFlow,
JAX, or ``jit_compile=True`` on torch) bakes their value in at trace time.
``HyperparameterScheduler`` assigns them before every batch and therefore
requires an eager train step: the default on the torch backend, and
``model.compile(..., run_eagerly=True)`` on TensorFlow and JAX. It refuses to
run where its assignments would be silently ignored.
"""

from __future__ import annotations

import keras

from ..schedules.base import Schedule, as_schedule
from .base import StepschedCallback, fit_context


class HyperparameterScheduler(StepschedCallback):
    """Set ``optimizer.<name>`` to ``schedule(step)`` before every training batch.

    ``step`` is the optimizer's own ``iterations`` counter, so the value is
    right after a resume and across ``fit()`` calls, exactly as for a rate
    schedule. Typical use, the 1cycle momentum::

        lr = ss.OneCycle(0.1, total_steps=ss.fraction(1.0))
        model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.95), loss=...,
                      run_eagerly=True)       # not needed on the torch backend
        model.fit(..., callbacks=[ss.callbacks.HyperparameterScheduler(
            "momentum", lr.momentum())])     # "beta_1" for Adam

    Raises at the start of ``fit()`` if the optimizer has no float attribute
    ``name``, if SGD was built with ``momentum=0`` (it then has no momentum
    slots), if the train step is compiled, or if ``steps_per_execution > 1``.
    """

    def __init__(self, name: str, schedule: Schedule | float):
        super().__init__()
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an optimizer attribute name such as 'momentum' or "
                             f"'beta_1', got {name!r}")
        self.name = name
        self.schedule = as_schedule(schedule, "schedule")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._resolved = self.schedule.resolve(*fit_context(self.params))
        optimizer = self.optimizer
        current = getattr(optimizer, self.name, None)
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise ValueError(f"{type(optimizer).__name__} has no float hyperparameter "
                             f"{self.name!r} to schedule (got {current!r})")
        if self.name == "momentum" and current == 0:
            raise ValueError(f"{type(optimizer).__name__} was built with momentum=0 and keeps no "
                             "momentum state: build it with the schedule's first value")
        compiled = (not self.model.run_eagerly if keras.backend.backend() != "torch"
                    else bool(getattr(self.model, "jit_compile", False)))
        if compiled:
            raise RuntimeError(f"the compiled train step reads {self.name} once, at trace time, so "
                               "per-step values would be ignored: compile the model with "
                               "run_eagerly=True (or use the torch backend without jit_compile)")
        if getattr(self.model, "steps_per_execution", 1) > 1:
            raise RuntimeError("HyperparameterScheduler needs steps_per_execution=1: batch hooks "
                               "run once per execution")

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.optimizer
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        setattr(optimizer, self.name, float(self._resolved.at(step)))


__all__ = ["HyperparameterScheduler"]
