"""Every place stepsched reaches past Keras's public API (or torch's, beneath it), in one module.

Keras has no public way to read the object an optimizer evaluates as its rate
(``optimizer.learning_rate`` returns the *value*), to replace a schedule by
another schedule, to read the raw step counter under gradient accumulation
(``optimizer.iterations`` is then computed), or to ask a model to trace its
train function again. Each accessor below names the private attribute it
uses; ``tests/test_keras_private.py`` checks every one against the installed
Keras, so a change in Keras fails there, by name, rather than somewhere in
training. ``tests/test_layers.py`` fails on a private name used anywhere else.

It sits in the package's bottom layer: it imports Keras and the backends only,
so every layer above may use it (``inner_optimizer`` and ``read_step``, the two
reads every layer makes of an optimizer, are here for that reason).
"""

from __future__ import annotations

import keras


def rate_of(optimizer):
    """The optimizer's rate as given: a ``LearningRateSchedule``, a ``keras.Variable``
    (a float rate) or a callable (``optimizer._learning_rate``)."""
    return optimizer._learning_rate


def set_rate(optimizer, rate) -> None:
    """Put ``rate``, any object ``rate_of`` returns, in the optimizer as it is
    (``optimizer._learning_rate``): for a rate replaced for a while and put back
    (the LR range test), with no change to the optimizer's variables."""
    optimizer._learning_rate = rate


def replace_schedule(optimizer, schedule) -> None:
    """Put ``schedule`` in place of the optimizer's schedule (``optimizer._learning_rate``).

    Only for a schedule replacing a schedule: the optimizer's variables do not
    change. (The public setter would untrack a float rate's variable.)
    """
    if not isinstance(rate_of(optimizer), keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError("replace_schedule replaces a schedule by a schedule, got the rate "
                        f"{rate_of(optimizer)!r}")
    optimizer._learning_rate = schedule
    prepare = getattr(optimizer, "prepare_values", None)
    if prepare is not None:  # a stepsched optimizer: its values on torch, made eagerly
        prepare()


def step_variable(optimizer):
    """The raw step counter the optimizer hands its schedule (``optimizer._iterations``):
    micro-batches under gradient accumulation, where ``iterations`` is computed."""
    return optimizer._iterations


def update_count(optimizer):
    """What Keras's ``optimizer.iterations`` property gives (``_iterations``, divided by
    ``gradient_accumulation_steps`` where that is set), for a subclass that overrides the
    property: under torch.compile, ``super().iterations`` in the override gives the
    property object itself instead of its value (a graph break)."""
    counter = optimizer._iterations
    every = optimizer.gradient_accumulation_steps
    return keras.ops.floor_divide(counter, every) if every else counter


def schedule_step(optimizer):
    """The step the optimizer's schedules are evaluated at, in the step: its raw counter
    (``step_variable``), plus the steps a wrapping ``stepsched.optimizers.LossScaleOptimizer``
    with ``count="batches"`` skipped (non-finite gradients), which it tells the optimizer
    through ``optimizer._stepsched_skipped`` (stepsched's own attribute: a callable giving
    the count, or None before the wrapper is built). The optimizer's own update, its bias
    correction included, still reads its counter."""
    step = step_variable(optimizer)
    skipped = getattr(optimizer, "_stepsched_skipped", None)
    skipped = skipped() if skipped is not None else None
    if skipped is None:
        return step
    return keras.ops.add(step, keras.ops.cast(skipped, step.dtype))


def inner_optimizer(optimizer):
    """The optimizer that owns the rate (unwraps ``LossScaleOptimizer``)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def read_step(optimizer) -> int:
    """The step the optimizer's schedules are at (``schedule_step``: its raw step counter,
    micro-batches under gradient accumulation, plus the steps skipped where a
    ``LossScaleOptimizer`` counts batches), on the host."""
    step = schedule_step(inner_optimizer(optimizer))
    return int(keras.ops.convert_to_numpy(step.value if isinstance(step, keras.Variable)
                                          else step))


def gradient_accumulators(optimizer) -> list:
    """The variables in which the optimizer accumulates gradients between updates
    (``optimizer._accumulated_gradients``; empty without gradient accumulation)."""
    return list(getattr(optimizer, "_accumulated_gradients", None) or [])


def compile_state(model) -> list:
    """The model's compiled loss and metrics (``model._compile_loss``,
    ``model._compile_metrics``), those it has: each is built from the first batch
    ``fit()`` sees (``built``)."""
    parts = [getattr(model, name, None) for name in ("_compile_loss", "_compile_metrics")]
    return [p for p in parts if p is not None]


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

#: methods of ``keras.optimizers.LossScaleOptimizer`` that
#: ``stepsched.optimizers.LossScaleOptimizer`` overrides to count the steps it skips: the
#: two paths Keras takes on non-finite gradients, stateful (``apply``: TensorFlow, torch)
#: and stateless (``stateless_apply``: JAX)
OVERRIDDEN_LOSS_SCALE_METHODS = ("_stateful_handle_non_finite_grads",
                                 "_stateless_handle_non_finite_grads")


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


def torch_copies(tensors: list) -> list:
    """Exact copies of the torch tensors ``tensors``, in one fused operation
    (``torch._foreach_mul(tensors, 1.0)``, what Keras's fused updates use)."""
    import torch

    return torch._foreach_mul(tensors, 1.0)


def torch_plain_results():
    """For ``__torch_function__`` in a ``torch.Tensor`` subclass: operations on it return
    plain tensors (``torch._C._disabled_torch_function_impl``)."""
    import torch

    return torch._C._disabled_torch_function_impl


def torch_as_subclass(cls: type, tensor):
    """``tensor``'s data as an instance of the ``torch.Tensor`` subclass ``cls``, without a
    copy (``torch.Tensor._make_subclass``)."""
    import torch

    return torch.Tensor._make_subclass(cls, tensor)


#: the name under which Keras keeps its global ``SeedGenerator`` in its global state
#: (keras/src/random/seed_generator.py, ``GLOBAL_SEED_GENERATOR``)
GLOBAL_SEED_GENERATOR = "global_seed_generator"


def global_state():
    """Keras's global attribute store (``keras.src.backend.common.global_state``, with
    ``get_global_attribute`` and ``set_global_attribute``), or None if this Keras keeps
    it elsewhere; there is no public accessor in Keras 3.15."""
    try:
        from keras.src.backend.common import global_state as store
    except ImportError:  # pragma: no cover - a future Keras layout
        return None
    if not (hasattr(store, "get_global_attribute") and hasattr(store, "set_global_attribute")):
        return None  # pragma: no cover
    return store


def running_callback_list(callback) -> keras.callbacks.CallbackList | None:
    """The ``CallbackList`` that is calling ``callback`` right now, if any.

    Keras gives a callback no reference to its siblings; the list that
    dispatches a hook is the caller a few frames up the stack.
    """
    import inspect

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


def per_variable_state(optimizer, variables: list) -> dict[int, list]:
    """The optimizer's state kept per trainable variable in lists that its ``build`` fills in
    the variables' order (Keras's optimizers keep them as instance attributes, e.g.
    Adafactor's factored moments ``_r``/``_c``, made with ``add_variable``, not
    ``add_variable_from_reference``): trainable variable index -> its state variables."""
    own = {id(v) for v in variables}
    out: dict[int, list] = {}
    for value in vars(optimizer).values():
        if not isinstance(value, list) or len(value) != len(variables) or not value:
            continue
        if not all(isinstance(v, keras.Variable) for v in value) or \
                any(id(v) in own for v in value):
            continue
        for i, v in enumerate(value):
            out.setdefault(i, []).append(v)
    return out


#: the fused torch updates that ``fused_update_rates`` runs over variables at different
#: rates in one call (Keras's ``torch_adam.Adam._parallel_update_step``, of which AdamW's
#: is the same)
TORCH_FUSED_PER_VARIABLE_RATES = ("Adam", "AdamW")


def fused_update_rates(optimizer, grads, variables, rates, which: list) -> None:
    """Keras's fused torch Adam/AdamW update (``_parallel_update_step``) of ``variables``,
    each at its own rate (``rates[which[i]]`` for ``variables[i]``; ``rates`` a 1-D
    tensor), in one pass of ``torch._foreach_*`` operations.

    The operations are Keras's (keras/src/backend/torch/optimizers/torch_adam.py) with
    the scalar ``alpha`` replaced by one per variable, worked out as Keras does, element
    for element: the variables and slots come out bit-equal to one Keras call per
    rate (``tests/test_keras_private.py`` checks it against Keras's own)."""
    import torch
    from keras import ops

    keras_variables = variables
    variables = [v.value for v in variables]
    dtype = variables[0].dtype
    with torch.no_grad():
        local_step = ops.cast(optimizer.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(optimizer.beta_1, dtype), local_step)
        beta_2_power = ops.power(ops.cast(optimizer.beta_2, dtype), local_step)
        alpha = (ops.cast(rates, dtype) * ops.sqrt(1 - beta_2_power)
                 / (1 - beta_1_power)).unbind()
        alphas = [alpha[i] for i in which]
        index = optimizer._get_variable_index
        m_list = [optimizer._momentums[index(v)].value for v in keras_variables]
        v_list = [optimizer._velocities[index(v)].value for v in keras_variables]

        torch._foreach_mul_(m_list, optimizer.beta_1)
        torch._foreach_add_(m_list, grads, alpha=1 - optimizer.beta_1)
        torch._foreach_mul_(v_list, optimizer.beta_2)
        torch._foreach_add_(v_list, torch._foreach_mul(grads, grads), alpha=1 - optimizer.beta_2)
        if optimizer.amsgrad:
            v_hat_list = [optimizer._velocity_hats[index(v)].value for v in keras_variables]
            torch._foreach_maximum_(v_hat_list, v_list)
            v_list = v_hat_list
        torch._foreach_add_(
            variables,
            torch._foreach_div(torch._foreach_mul(m_list, alphas),
                               torch._foreach_add(torch._foreach_sqrt(v_list),
                                                  optimizer.epsilon)),
            alpha=-1)


def torch_scale(tensors: list, factors: list) -> None:
    """``tensors[i] *= factors[i]`` in one fused operation (``torch._foreach_mul_``, as
    Keras's torch weight decay does with one factor)."""
    import torch

    with torch.no_grad():
        torch._foreach_mul_(tensors, factors)


def uses_weight_decay(optimizer, variable) -> bool:
    """Whether the optimizer decays ``variable`` (``optimizer._use_weight_decay``: not one
    excluded by ``exclude_from_weight_decay``)."""
    return optimizer._use_weight_decay(variable)


#: optimizer -> the hyperparameters whose value Keras's torch update tests in Python
#: (``keras/src/backend/torch/optimizers``: SGD ``if self.momentum != 0``, RMSprop
#: ``if self.momentum > 0``); a scheduled one is a tensor there
TESTED_HYPERPARAMETERS = {"SGD": ("momentum",), "RMSprop": ("momentum",)}
