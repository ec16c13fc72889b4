"""``LearningRateLogger``: put the rate actually applied into Keras's logs."""

from __future__ import annotations

import inspect
import warnings

import keras

from .. import _validate
from .base import StepschedCallback, inner_optimizer

__all__ = ["LearningRateLogger", "applied_rate"]


def applied_rate(optimizer) -> float:
    """The learning rate used by the optimizer's most recent update, as a float.

    ``iterations`` is incremented after each update, so with a schedule the
    last update used ``schedule(iterations - 1)`` (the raw micro-batch counter
    under gradient accumulation, exactly as the optimizer evaluates it; step 0
    before any update). A float rate is the variable's value; a callable
    rate is called with no argument. ``LossScaleOptimizer`` is unwrapped.
    """
    opt = inner_optimizer(optimizer)
    lr = opt._learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        counter = opt._iterations
        step = max(int(keras.ops.convert_to_numpy(counter)) - 1, 0)
        value = lr(keras.ops.convert_to_tensor(step, dtype=counter.dtype))
    elif isinstance(lr, keras.Variable):
        value = lr.value
    elif callable(lr):
        value = lr()
    else:
        value = lr
    return float(keras.ops.convert_to_numpy(value))


def _running_callback_list(callback) -> keras.callbacks.CallbackList | None:
    """The ``CallbackList`` that is calling ``callback`` right now, if any.

    Keras gives a callback no reference to its siblings; the list that
    dispatches a hook is the caller a few frames up the stack.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                    c is callback for c in owner.callbacks):
                return owner
            frame = frame.f_back
    finally:
        del frame
    return None


class LearningRateLogger(StepschedCallback):
    """Write the learning rate actually applied into ``logs["learning_rate"]``.

    With ``every="batch"`` the rate is written at every batch end and at every
    epoch end; with ``every="epoch"`` only at epoch ends. Whatever reads the
    logs then records it with no other code: ``History``
    (``history.history["learning_rate"]`` per epoch), ``CSVLogger``,
    ``ProgbarLogger`` and Keras's ``TensorBoard`` (``batch_learning_rate``
    per batch, when placed *before* it in the callback list).

    The value at a batch end is the rate used by the update just made:
    ``schedule(iterations - 1)`` for a schedule, the variable's value for a
    float rate. With ``steps_per_execution=k`` the batch hook runs once per
    chunk of ``k`` steps and reports the rate of the chunk's last step. Works
    with any schedule (stepsched's or Keras's), a float rate, a callable and
    ``LossScaleOptimizer``. Being a stepsched callback, it also resolves
    ``epochs(...)``/``fraction(...)`` durations when training begins.

    Order matters for ``TensorBoard``: it writes the batch logs when its own
    hook runs, so a logger placed after it goes unseen there; a warning is
    issued when training begins in that case. (At epoch ends ``TensorBoard``
    writes the optimizer's current rate, that of the next step, under the same
    name.) ``every="epoch"`` adds no batch
    hook, so on JAX it neither forces a host sync per batch nor turns off
    asynchronous callback dispatch.

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
        if self.every == "epoch":
            # Keep Keras's default (no-op) batch hook so that async dispatch
            # stays on and nothing is read from the device per batch.
            self.on_train_batch_end = super().on_train_batch_end
            self.async_safe = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        callbacks = _running_callback_list(self)
        if callbacks is None:
            return
        order = list(callbacks.callbacks)
        mine = next(i for i, c in enumerate(order) if c is self)
        if any(isinstance(c, keras.callbacks.TensorBoard) for c in order[:mine]):
            warnings.warn(
                "LearningRateLogger is placed after keras.callbacks.TensorBoard in the callback "
                "list, so TensorBoard does not see the per-batch learning_rate; put "
                "LearningRateLogger first",
                stacklevel=2,
            )

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None:
            logs["learning_rate"] = applied_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = applied_rate(self.model.optimizer)
