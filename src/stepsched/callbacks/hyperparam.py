"""``HyperparameterScheduler``: an optimizer hyperparameter from an arbitrary Python function.

A stepsched *schedule* for ``momentum``, ``beta_1``, ``weight_decay``, ... goes
to the optimizer itself: ``stepsched.optimizers.SGD(lr, momentum=schedule)``
evaluates it inside the compiled step from the optimizer's own step counter
(exact under ``steps_per_execution``, ``jit_compile``, gradient accumulation,
save/load). This callback is for what cannot be a schedule: a Python function
of the step (reading a file, a controller, anything on the host).

Its limits, which come from assigning a Python float between batches:

- the train step must be eager: ``model.compile(..., run_eagerly=True)`` on
  TensorFlow and JAX (a compiled step reads the attribute once, at trace time;
  an eager step of a small MLP measured 152x slower on JAX and 17x on TF), the
  torch backend without ``jit_compile``;
- ``steps_per_execution`` must be 1 (batch hooks run once per execution);
- the function runs on the host before every batch and reads the step counter
  from the device each time;
- under gradient accumulation ``step`` is the raw micro-batch counter.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ..schedules.base import Schedule
from .base import StepschedCallback
from .scheduler import _takes_rate


class HyperparameterScheduler(StepschedCallback):
    """Set ``optimizer.<name> = fn(step)`` (or ``fn(step, value)``) before every training batch.

    ``step`` is the optimizer's raw step counter, so the value is right after a
    resume and across ``fit()`` calls. See the module docstring for its limits;
    a stepsched schedule raises ``TypeError`` pointing to ``stepsched.optimizers``.

    Raises at the start of ``fit()`` if the optimizer has no float attribute
    ``name``, if SGD was built with ``momentum=0`` (it then has no momentum
    slots), if the train step is compiled, or if ``steps_per_execution > 1``.
    """

    def __init__(self, name: str, schedule: Callable):
        super().__init__()
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an optimizer attribute name such as 'momentum' or "
                             f"'beta_1', got {name!r}")
        if isinstance(schedule, (Schedule, keras.optimizers.schedules.LearningRateSchedule)):
            raise TypeError(
                f"schedule: a schedule for {name} belongs in the optimizer, where it is "
                "evaluated inside the compiled step: e.g. stepsched.optimizers.SGD(lr, "
                f"{name}=schedule) (stepsched.optimizers.HYPERPARAMETERS lists what each "
                f"optimizer schedules); this callback takes a Python function, got {schedule!r}")
        if not callable(schedule) or isinstance(schedule, type):
            raise TypeError(f"schedule must be a Python function schedule(step) or "
                            f"schedule(step, value), got {schedule!r}")
        self.name = name
        self.schedule = schedule
        self.takes_value = _takes_rate(schedule, "schedule")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        optimizer = self.optimizer
        current = getattr(optimizer, self.name, None)
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise ValueError(f"{type(optimizer).__name__} has no float hyperparameter "
                             f"{self.name!r} to schedule (got {current!r})")
        if self.name in getattr(optimizer, "hyperparameter_schedules", {}):
            raise ValueError(f"{self.name} is already scheduled in the optimizer")
        if self.name == "momentum" and current == 0:
            raise ValueError(f"{type(optimizer).__name__} was built with momentum=0 and keeps no "
                             "momentum state: build it with the function's first value")
        compiled = (not self.model.run_eagerly if keras.backend.backend() != "torch"
                    else bool(getattr(self.model, "jit_compile", False)))
        if compiled:
            raise RuntimeError(f"the compiled train step reads {self.name} once, at trace time, so "
                               "per-step values would be ignored: compile the model with "
                               "run_eagerly=True (or use the torch backend without jit_compile), "
                               f"or put a stepsched schedule for {self.name} in a "
                               "stepsched.optimizers optimizer")
        if getattr(self.model, "steps_per_execution", 1) > 1:
            raise RuntimeError("HyperparameterScheduler needs steps_per_execution=1: batch hooks "
                               "run once per execution")

    def on_train_batch_begin(self, batch, logs=None):
        from .base import read_step

        optimizer = self.optimizer
        step = read_step(optimizer)
        args = (step, float(getattr(optimizer, self.name))) if self.takes_value else (step,)
        setattr(optimizer, self.name, float(self.schedule(*args)))


__all__ = ["HyperparameterScheduler"]
