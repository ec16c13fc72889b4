"""Every place stepsched reaches past Keras's public API, in one module.

Keras has no public way to read the object an optimizer evaluates as its rate
(``optimizer.learning_rate`` returns the *value*), to replace a schedule by
another schedule, to read the raw step counter under gradient accumulation
(``optimizer.iterations`` is then computed), or to ask a model to trace its
train function again. Each accessor below names the private attribute it
uses; ``tests/test_keras_private.py`` checks every one against the installed
Keras, so a change in Keras fails there, by name, rather than somewhere in
training.
"""

from __future__ import annotations

import keras


def rate_of(optimizer):
    """The optimizer's rate as given: a ``LearningRateSchedule``, a ``keras.Variable``
    (a float rate) or a callable (``optimizer._learning_rate``)."""
    return optimizer._learning_rate


def replace_schedule(optimizer, schedule) -> None:
    """Put ``schedule`` in place of the optimizer's schedule (``optimizer._learning_rate``).

    Only for a schedule replacing a schedule: the optimizer's variables do not
    change. (The public setter would untrack a float rate's variable.)
    """
    if not isinstance(rate_of(optimizer), keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError("replace_schedule replaces a schedule by a schedule, got the rate "
                        f"{rate_of(optimizer)!r}")
    optimizer._learning_rate = schedule


def step_variable(optimizer):
    """The raw step counter the optimizer hands its schedule (``optimizer._iterations``):
    micro-batches under gradient accumulation, where ``iterations`` is computed."""
    return optimizer._iterations


def retrace(model) -> None:
    """Make ``model`` trace its train function again at the next step (TF and JAX keep
    Python objects read at trace time)."""
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def variable_index(optimizer, variable) -> int:
    """The index of a trainable variable in the optimizer's list
    (``optimizer._get_variable_index``; on TensorFlow the update step receives the
    ``tf.Variable``, which this maps too)."""
    return optimizer._get_variable_index(variable)


def current_learning_rate(optimizer):
    """The rate the optimizer applies at this step, evaluated in the step
    (``optimizer._get_current_learning_rate()``)."""
    return optimizer._get_current_learning_rate()


#: methods of ``keras.optimizers.Optimizer`` that stepsched's optimizers override to put
#: per-group values in place while Keras's own code runs: ``apply`` calls
#: ``_apply_weight_decay(variables)`` (which reads the rate through
#: ``_get_current_learning_rate()``) and then ``_backend_update_step``, which calls
#: ``update_step`` for each variable or, on torch, Keras's fused
#: ``_parallel_update_step`` for all of them
OVERRIDDEN_PRIVATE_METHODS = ("_apply_weight_decay", "_get_current_learning_rate",
                              "_backend_update_step")


def torch_fused_class(base: type) -> type | None:
    """On torch, the class Keras instantiates for the built-in optimizer ``base``: one
    whose ``_parallel_update_step`` updates every variable at once with
    ``torch._foreach_*`` operations (``TorchOptimizer.__new__`` swaps the class). None
    elsewhere, or for an optimizer whose fused update stepsched does not use."""
    if keras.backend.backend() != "torch" or base.__name__ not in TORCH_FUSED_NUMBER_ARGUMENTS:
        return None
    cls = type(base.__new__(base))
    return cls if cls is not base and hasattr(cls, "_parallel_update_step") else None


#: the fused torch updates stepsched uses, each with what it passes to torch as a Python
#: number (``alpha=``, or a ``_foreach_add`` scalar): a tensor there is read back to the
#: host (a sync), so where one of these is scheduled, that group takes the per-variable
#: update. Not used: SGD's and
#: Adadelta's (they take the rate, a tensor at every step, as a number) and Nadam's (it
#: reads its momentum product back to the host at every step)
TORCH_FUSED_NUMBER_ARGUMENTS = {
    "Adagrad": {"epsilon"},
    "Adam": {"beta_1", "beta_2", "epsilon"},
    "AdamW": {"beta_1", "beta_2", "epsilon"},
    "Adamax": {"beta_1", "epsilon"},
    "Lion": {"beta_1", "beta_2"},
    "RMSprop": {"rho", "epsilon"},
}


def fused_update(optimizer, grads, variables, learning_rate) -> None:
    """Keras's fused torch update of ``variables`` (``_parallel_update_step``)."""
    import torch

    with torch.no_grad():
        optimizer._parallel_update_step(grads, variables, learning_rate)


def per_variable_update(optimizer, grads, variables, learning_rate) -> None:
    """Keras's generic update, what ``BaseOptimizer._backend_update_step`` does:
    ``update_step`` once per variable."""
    for grad, variable in zip(grads, variables, strict=True):
        optimizer.update_step(grad, variable, learning_rate)


def fit_batch_size(model) -> int | None:
    """The global batch size of the ``fit()`` of ``model`` that is running now, or None.

    Keras's callback ``params`` hold no batch size. ``fit()`` keeps its data in
    a local ``epoch_iterator`` whose ``data_adapter.batch_size`` is the size of
    each batch it produces (the global batch: under ``tf.distribute`` and
    ``keras.distribution`` Keras splits it across replicas afterwards); it is
    read from the ``fit`` frame on the stack. None for a generator or a dataset
    whose batch size is unknown.
    """
    import inspect

    frame = inspect.currentframe()
    try:
        for _ in range(32):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
                iterator = frame.f_locals.get("epoch_iterator")
                adapter = getattr(iterator, "data_adapter", None)
                size = getattr(adapter, "batch_size", None) if adapter is not None else None
                try:
                    size = None if size is None else int(size)
                except (TypeError, ValueError):
                    return None
                return size if size and size > 0 else None
    finally:
        del frame
    return None
