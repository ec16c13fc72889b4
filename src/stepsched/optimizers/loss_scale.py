"""``LossScaleOptimizer``: Keras's dynamic loss scaling, with schedules that may count
batches.

Keras's ``LossScaleOptimizer`` skips the inner optimizer's update at a step whose
gradients are not finite, and the inner optimizer's step counter, the step its
schedules are evaluated at, does not advance: schedules count the updates made.
With ``count="batches"`` this subclass counts the steps it skips in a variable of
its own and every schedule of the inner optimizer (the rate, the hyperparameters,
the groups') is evaluated at ``updates + skipped``, the batches seen, as torch's
``scheduler.step()`` called every batch does beside ``GradScaler``. The inner
optimizer's own update, Adam's bias correction included, still counts the updates
made.
"""

from __future__ import annotations

import weakref

import keras
from keras import ops

from .. import _validate
from .core import ScheduledOptimizer

__all__ = ["COUNTS", "LossScaleOptimizer"]

#: what the schedules' step counts under loss scaling
COUNTS = ("updates", "batches")


class _SkippedSteps:
    """What a wrapper counting batches gives its inner optimizer (``_stepsched_skipped``):
    called, the steps it skipped (its variable, or that variable's value in the stateless
    step it is running; None before it is built)."""

    def __init__(self, wrapper):
        self._wrapper = weakref.ref(wrapper)
        self.current = None  # the value in a stateless step (JAX)

    def __call__(self):
        if self.current is not None:
            return self.current
        wrapper = self._wrapper()
        return None if wrapper is None else wrapper.skipped_steps


@keras.saving.register_keras_serializable(package="stepsched", name="LossScaleOptimizer")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """``keras.optimizers.LossScaleOptimizer`` whose schedules may count batches.

    Keras skips the inner optimizer's update at a step whose gradients are not
    finite (the loss scale is then halved), and the inner optimizer's step
    counter does not advance: its schedules count the **updates made**
    (``count="updates"``, Keras's behaviour and the default). With
    ``count="batches"`` the steps skipped are counted in a variable of this
    optimizer (``skipped_steps``: saved in weights files, restored by
    ``BackupAndRestore``) and every schedule of the inner optimizer is
    evaluated at ``updates + skipped``, the batches seen, as a torch
    ``scheduler.step()`` called every batch counts beside ``GradScaler``: the
    rate, each scheduled hyperparameter and each group's schedules. The
    inner optimizer's update still counts the updates made (``iterations``;
    Adam's bias correction), and stepsched's callbacks read the same step
    the schedules see (``LearningRateLogger`` logs the rates applied).

    ``count="batches"`` needs a ``stepsched.optimizers`` optimizer inside (a
    Keras optimizer evaluates its schedule at its own counter).

    Args:
        inner_optimizer: the optimizer to wrap.
        initial_scale: the initial loss scale (Keras's argument).
        dynamic_growth_steps: steps with finite gradients after which the scale
            doubles (Keras's argument).
        count: ``"updates"`` (default) or ``"batches"``: what the schedules'
            step counts.

    >>> import stepsched as ss
    >>> opt = ss.optimizers.LossScaleOptimizer(
    ...     ss.optimizers.SGD(ss.Linear(0.1, 0.0, 100)), count="batches")
    >>> opt.count
    'batches'
    """

    def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000,
                 name=None, count="updates", **kwargs):
        count = _validate.choice("count", count, COUNTS)
        if count == "batches" and not isinstance(inner_optimizer, ScheduledOptimizer):
            raise ValueError(
                f"count='batches' needs a stepsched.optimizers optimizer inside, got "
                f"{type(inner_optimizer).__module__}.{type(inner_optimizer).__name__}, which "
                "evaluates its schedule at its own update counter; wrap the stepsched one "
                f"(stepsched.optimizers.{type(inner_optimizer).__name__}, same arguments), or "
                "keep count='updates'")
        groups = inner_optimizer._stepsched.groups if count == "batches" else None
        frozen = [g.name for g in groups or () if g.frozen_until is not None]
        if frozen:
            raise ValueError(
                f"count='batches' with groups frozen_until a step ({', '.join(frozen)}): a "
                "group's bias correction restarts at its unfreezing update, which skipped "
                "steps would put off; keep count='updates' with frozen groups")
        super().__init__(inner_optimizer, initial_scale=initial_scale,
                         dynamic_growth_steps=dynamic_growth_steps, name=name, **kwargs)
        self.count = count
        self.skipped_steps = None  # the variable, made in build (count="batches")
        if count == "batches":
            inner_optimizer._stepsched_skipped = _SkippedSteps(self)

    def build(self, var_list):
        super().build(var_list)
        if self.count == "batches" and self.skipped_steps is None:
            self.skipped_steps = self.add_variable(
                shape=(), dtype="int", initializer="zeros", aggregation="none",
                name="skipped_steps")

    def _skipped_index(self) -> int:
        return next(i for i, v in enumerate(self.variables) if v is self.skipped_steps)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if self.skipped_steps is None:
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        # the inner optimizer's stateless update sees its own variables only: give it the
        # count as it is in this step
        holder = self.inner_optimizer._stepsched_skipped
        holder.current = optimizer_variables[self._skipped_index()]
        try:
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        finally:
            holder.current = None

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        if self.skipped_steps is not None:
            self.skipped_steps.assign_add(1)

    def _stateless_handle_non_finite_grads(self, optimizer_variables, trainable_variables):
        trainable, variables = super()._stateless_handle_non_finite_grads(
            optimizer_variables, trainable_variables)
        if self.skipped_steps is not None:
            variables = list(variables)
            i = self._skipped_index()
            variables[i] = ops.add(variables[i], ops.ones_like(variables[i]))
        return trainable, variables

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config
