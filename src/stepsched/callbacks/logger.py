"""``LearningRateLogger``: put the rate actually applied into Keras's logs."""

from __future__ import annotations

import warnings

import keras

from .. import _keras, _validate
from ..schedules.base import Schedule
from .base import (
    StepCounter,
    StepschedCallback,
    has_batch_end_hook,
    inner_optimizer,
    may_assign_rate_in_batches,
    read_step,
    running_callback_list,
)

__all__ = ["LearningRateLogger", "applied_rate"]


def applied_rate(optimizer, step: int | None = None) -> float:
    """The learning rate used by the optimizer's update at raw step ``step``, as a float.

    ``step`` defaults to the most recent update: ``iterations`` is
    incremented after each update, so with a schedule the last update used
    ``schedule(iterations - 1)`` (the raw micro-batch counter under gradient
    accumulation, exactly as the optimizer evaluates it; step 0 before any
    update). A stepsched schedule is evaluated on the host with ``at()``
    (the same numbers as in-graph); another Keras schedule in-graph; a float
    rate is the variable's value; a callable rate is called with no argument.
    ``LossScaleOptimizer`` is unwrapped.
    """
    opt = inner_optimizer(optimizer)
    lr = _keras.rate_of(opt)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        if step is None:
            step = max(read_step(opt) - 1, 0)
        if isinstance(lr, Schedule):
            return float(lr.at(step))
        value = lr(keras.ops.convert_to_tensor(step, dtype=_keras.step_variable(opt).dtype))
    elif isinstance(lr, keras.Variable):
        value = lr.value
    elif callable(lr):
        value = lr()
    else:
        value = lr
    return float(keras.ops.convert_to_numpy(value))


class LearningRateLogger(StepschedCallback):
    """Write the learning rate actually applied into ``logs["learning_rate"]``.

    With ``every="batch"`` the rate is written at every batch end and at every
    epoch end; with ``every="epoch"`` only at epoch ends. Whatever reads the
    logs then records it with no other code: ``History``
    (``history.history["learning_rate"]`` per epoch), ``CSVLogger``,
    ``ProgbarLogger`` and Keras's ``TensorBoard`` (``batch_learning_rate``
    per batch, when placed *before* it in the callback list).

    The value at a batch end is the rate used by the update just made:
    ``schedule(step - 1)`` for a schedule, the variable's value for a
    float rate. With ``steps_per_execution=k`` the batch hook runs once per
    chunk of ``k`` steps and reports the rate of the chunk's last step. Works
    with any schedule (stepsched's or Keras's), a float rate, a callable and
    ``LossScaleOptimizer``. Being a stepsched callback, it also resolves
    ``epochs(...)``/``fraction(...)`` durations when training begins.

    Cost: nothing is read from the device per batch. The step is read at
    each epoch begin and counted on the host from the batch indices Keras
    passes; a stepsched schedule is evaluated on the host with ``at()``, for
    a block of the next 256 steps at a time (``Schedule.value_at``), so a
    batch costs a lookup; a float rate is read at each epoch begin, and again
    per batch only when another callback with a batch hook may assign it (not
    for Keras's ``ProgbarLogger``, ``TensorBoard``, ``ModelCheckpoint``,
    ``BackupAndRestore`` or ``TerminateOnNaN``, which only read); nothing at all when no callback after it in the
    list has a batch hook (no one would see the value). The hook depends on
    nothing but the batch index, so it is ``async_safe``: it leaves Keras's
    callback dispatch as it would be without it (asynchronous unless another
    callback needs the batches in order). The count is re-read at each epoch end,
    where Keras has the state on the host anyway: steps a
    ``LossScaleOptimizer`` skips for non-finite gradients (which do not
    advance the optimizer's step) are caught up there, so within such an
    epoch the logged rate may run ahead by the number of skipped steps. With
    ``stepsched.optimizers.LossScaleOptimizer(..., count="batches")`` the
    schedules' step counts batches, skipped ones included, and the logger reads
    that step: the rates logged are those applied.

    With a ``stepsched.optimizers`` optimizer it also writes every scheduled
    hyperparameter (``"beta_1"``, ``"momentum"``, ...) and each variable
    group's rate (``"learning_rate/<group>"``, ``"weight_decay/<group>"``).

    Order matters for ``TensorBoard``: it writes the batch logs when its own
    hook runs, so a logger placed after it goes unseen there; a warning is
    issued when training begins in that case. (At epoch ends ``TensorBoard``
    writes the optimizer's current rate, that of the next step, under the same
    name.) ``every="epoch"`` adds no batch hook at all.

    Args:
        every: ``"batch"`` (default) or ``"epoch"``.

    Example:

    >>> import stepsched as ss
    >>> ss.callbacks.LearningRateLogger(every="epoch").every
    'epoch'
    """

    def __init__(self, every: str = "batch"):
        super().__init__()
        self.every = _validate.choice("every", every, ("batch", "epoch"))
        self._counter = StepCounter()
        # The batch hook reads nothing from the device and depends only on the batch index:
        # it may run on Keras's callback threads, so Keras's dispatch stays as it would be.
        self.async_safe = True
        self.reads_only = True  # it never assigns the rate (another logger needs no re-read)
        if self.every == "epoch":
            # Keras's default (no-op) batch hooks: nothing at all runs per batch.
            self.on_train_batch_end = super().on_train_batch_end
            self.on_train_batch_begin = super().on_train_batch_begin

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._counter.reset()
        self._optimizer = self.optimizer
        self._float_rate = None
        self._readers = True  # whether a later callback may read the per-batch logs
        self._assigners = True  # whether a callback may assign a float rate mid-epoch
        callbacks = running_callback_list(self)
        if callbacks is None:
            return
        order = list(callbacks.callbacks)
        mine = next(i for i, c in enumerate(order) if c is self)
        self._readers = any(has_batch_end_hook(c) for c in order[mine + 1:])
        # the train step never changes a float rate: read once an epoch unless a callback may
        self._assigners = any(may_assign_rate_in_batches(c) for c in order if c is not self)
        if any(isinstance(c, keras.callbacks.TensorBoard) for c in order[:mine]):
            warnings.warn(
                "LearningRateLogger is placed after keras.callbacks.TensorBoard in the callback "
                "list, so TensorBoard does not see the per-batch learning_rate; put "
                "LearningRateLogger first",
                stacklevel=2,
            )
        from .plateau import ReduceLROnPlateau

        if any(isinstance(c, ReduceLROnPlateau) for c in order[:mine]):
            warnings.warn(
                "LearningRateLogger is placed after stepsched's ReduceLROnPlateau in the "
                "callback list, so at each check that reduces the rate it logs the reduced "
                "rate, not the one the step just made used; put LearningRateLogger first",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._counter.epoch_begin(self)
        self._float_rate = None
        if isinstance(_keras.rate_of(self._optimizer), keras.Variable):
            self._float_rate = applied_rate(self.model.optimizer)  # the state is on the host

    def on_train_batch_begin(self, batch, logs=None):
        # On JAX a float rate is detached from its variable while a step runs (the state
        # lives in the jitted loop) and attached again when a callback syncs the state,
        # e.g. to assign it (ReduceLROnPlateau at a batch end): until the next step starts.
        if (self._float_rate is not None and self._assigners
                and keras.backend.backend() == "jax"):
            self._read_float_rate()

    def _read_float_rate(self) -> None:
        try:
            value = _keras.rate_of(self._optimizer).value
        except TypeError:  # detached (JAX, mid-epoch): the train step does not change it
            return
        self._float_rate = float(keras.ops.convert_to_numpy(value))

    def _rate(self, step: int) -> float:
        lr = _keras.rate_of(self._optimizer)
        if isinstance(lr, Schedule):
            return lr.value_at(max(step - 1, 0))
        if isinstance(lr, keras.Variable):
            if self._assigners:
                self._read_float_rate()
            if self._float_rate is None:  # batch hooks with no epoch begin
                self._float_rate = applied_rate(self.model.optimizer)
            return self._float_rate
        # another Keras schedule or a callable, evaluated at the step
        return applied_rate(self._optimizer, max(step - 1, 0))

    def _write(self, logs, step: int) -> None:
        if logs is None:
            return
        logs["learning_rate"] = rate = self._rate(step)
        if getattr(self._optimizer, "_stepsched", None) is not None:
            # stepsched.optimizers: every scheduled hyperparameter and each group's rate
            from ..optimizers import scheduled_values

            logs.update(scheduled_values(self._optimizer, max(step - 1, 0), rate))

    def on_train_batch_end(self, batch, logs=None):
        if self._readers:  # else no callback is given this batch's logs after this one
            self._write(logs, self._counter.step_after(self, batch))

    def on_epoch_end(self, epoch, logs=None):
        self._counter.epoch_end(self)
        self._write(logs, self._counter.step)
